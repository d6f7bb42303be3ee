//! Attacks through the sources themselves: resending under a known key to rewrite what is
//! stored, Firehose deliveries that inflate without end, and source names chosen to flood
//! `/metrics` with series.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{wait_for, Vigil, TOKEN};

/// The rule in `rules/aws/` that fires on StopLogging and DeleteTrail.
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

fn cloudtrail(event_name: &str, marker: &str) -> String {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory"},
        "eventTime": "2026-11-28T12:00:00Z",
        "eventSource": if event_name == "StopLogging" { "cloudtrail.amazonaws.com" } else { "s3.amazonaws.com" },
        "eventName": event_name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": marker,
        "eventID": format!("{marker}-{event_name}"),
    })
    .to_string()
}

fn post_batch(vigil: &Vigil, batch_id: &str, body: String) -> Value {
    let response = vigil
        .client
        .post(vigil.url("/api/v1/ingest/cloudtrail"))
        .bearer_auth(TOKEN)
        .header("x-vigil-batch-id", batch_id)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().unwrap()
}

/// Once `marker` is searchable, everything ingested before it has been indexed too: the index
/// stage takes the events topic in order.
fn wait_until_indexed(vigil: &Vigil, marker: &str) {
    wait_for(marker, Duration::from_secs(30), || {
        (vigil.search_total(&format!("marker:{marker}")) == 1).then_some(())
    });
}

#[test]
fn a_resend_under_a_known_batch_and_line_never_rewrites_history() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));
    let marker = "tamperbatch";

    let report = post_batch(
        &vigil,
        "B",
        format!("{}\n", cloudtrail("StopLogging", marker)),
    );
    assert_eq!(report["accepted"], 1);
    let alert = wait_for("the StopLogging alert", Duration::from_secs(30), || {
        vigil.get_json("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule_id"] == LOGGING_DISABLED_RULE)
            .cloned()
    });

    // The attacker sends a harmless record under the same batch id and line.
    let benign = format!("{}\n", cloudtrail("GetObject", marker));
    assert_eq!(post_batch(&vigil, "B", benign.clone())["accepted"], 1);
    wait_for("both records in search", Duration::from_secs(30), || {
        (vigil.search_total(&format!("userAgent:{marker}")) == 2).then_some(())
    });
    assert_eq!(
        vigil.search_total(&format!("userAgent:{marker} AND eventName:StopLogging")),
        1
    );
    assert_eq!(
        vigil.search_total(&format!("userAgent:{marker} AND eventName:GetObject")),
        1
    );
    let events = vigil.get_json(&format!(
        "/api/v1/alerts/{}/events",
        alert["id"].as_str().unwrap()
    ));
    let names: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["record"]["json"]["eventName"])
        .collect();
    assert_eq!(names, [&json!("StopLogging")], "{events}");

    // A byte-identical resend is a retry: still one copy of each.
    assert_eq!(post_batch(&vigil, "B", benign)["accepted"], 1);
    post_batch(
        &vigil,
        "after-resend",
        json!({"marker": "tamperdone"}).to_string(),
    );
    wait_until_indexed(&vigil, "tamperdone");
    assert_eq!(vigil.search_total(&format!("userAgent:{marker}")), 2);
}

/// The distinct values of the `source` label on `/metrics`.
fn source_labels(vigil: &Vigil) -> std::collections::BTreeSet<String> {
    vigil
        .metrics_text()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let start = line.find("source=\"")? + "source=\"".len();
            let end = line[start..].find('"')?;
            Some(line[start..start + end].to_owned())
        })
        .collect()
}

#[test]
fn source_names_cannot_flood_metrics_with_series() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));
    for i in 0..300 {
        let response = vigil.post_ndjson(
            &format!("flood-{i}"),
            format!("{{\"marker\":\"labelflood\",\"n\":{i}}}\n"),
        );
        assert_eq!(response.status(), StatusCode::ACCEPTED, "source {i}");
    }
    let labels = source_labels(&vigil);
    let bound = vigil_ingest::MAX_SOURCE_LABELS + 2;
    assert!(
        labels.len() <= bound,
        "{} source labels, more than {bound}, such as {:?}",
        labels.len(),
        labels.iter().take(8).collect::<Vec<_>>()
    );
    assert!(labels.contains("other"), "{labels:?}");
    assert!(
        labels.contains("flood-0"),
        "the first names keep their own series"
    );
    // Folded into a label, never dropped: every event is stored.
    wait_for("every event indexed", Duration::from_secs(30), || {
        (vigil.search_total("marker:labelflood") == 300).then_some(())
    });
}

const FIREHOSE_KEY: &str = "firehose-access-key-0123456789";

/// `data` as gzip in stored (uncompressed) blocks, so the test needs no compressor: what
/// matters here is how many bytes a record inflates to, not how few it was sent in.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65_535).collect()
    };
    for (index, block) in blocks.iter().enumerate() {
        out.push(u8::from(index + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Standard base64 with padding, as Firehose sends record data.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Firehose record of one CloudWatch log event in `log_group` whose message is `message`.
fn firehose_record(log_group: &str, message: &str) -> Value {
    let subscription = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": log_group, "logStream": "web-1", "subscriptionFilters": ["to-vigil"],
        "logEvents": [{"id": "36000000000000000000000000000000000000000000000000000001",
                       "timestamp": 1_795_862_460_000_i64, "message": message}]});
    let gzip = gzip_stored(subscription.to_string().as_bytes());
    json!({"data": base64(&gzip)})
}

fn post_firehose(vigil: &Vigil, records: &[Value]) -> (StatusCode, Value) {
    let response = vigil
        .client
        .post(vigil.url("/ingest/firehose"))
        .header("x-amz-firehose-access-key", FIREHOSE_KEY)
        .header("x-amz-firehose-request-id", "req-1")
        .body(json!({"requestId": "req-1", "records": records}).to_string())
        .send()
        .unwrap();
    (response.status(), response.json().unwrap())
}

/// The bytes of every file under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn firehose_requests_stay_within_their_inflated_budget() {
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let budget = 2 * MIB;
    let vigil = Vigil::start_with_env(
        &data,
        &[
            ("VIGIL_FIREHOSE__ACCESS_KEY", FIREHOSE_KEY),
            ("VIGIL_FIREHOSE__MAX_INFLATED_BYTES", &budget.to_string()),
        ],
    );

    // Three records of 900 KiB each: past the budget together, so refused whole.
    let records: Vec<Value> = (0..3)
        .map(|_| firehose_record("/app/inflate", &"a".repeat(900 * 1024)))
        .collect();
    let (status, reply) = post_firehose(&vigil, &records);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    let reason = reply["errorMessage"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{budget}-byte budget")),
        "{reason}"
    );
    assert_eq!(reply["requestId"], "req-1");

    // A log event over the line limit, within the budget: only its start is kept.
    let before = bytes_under(&data);
    let oversize = 3 * MIB / 2;
    let (status, reply) = post_firehose(
        &vigil,
        &[firehose_record("/app/oversize", &"b".repeat(oversize))],
    );
    assert_eq!(status, StatusCode::OK, "{reply}");
    let listed = wait_for("the quarantined event", Duration::from_secs(30), || {
        let page = vigil.get_json("/api/v1/quarantine?source=/app/oversize");
        let records = page["records"].as_array().cloned().unwrap_or_default();
        (!records.is_empty()).then_some(records)
    });
    let reason = listed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("record is {oversize} bytes")),
        "{reason}"
    );
    let grown = bytes_under(&data).saturating_sub(before);
    assert!(
        grown < MIB as u64,
        "a {oversize}-byte event grew the data directory by {grown} bytes"
    );

    // A data message naming no valid log group is the sender's error, not a reason to retry.
    let (status, reply) = post_firehose(&vigil, &[firehose_record("", "hello")]);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply["errorMessage"].as_str().unwrap().contains("logGroup"));
}

#[test]
fn a_firehose_budget_out_of_range_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--listen", "127.0.0.1:0", "--rules"])
        .arg(rules)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env("VIGIL_API_TOKEN", TOKEN)
        .env("VIGIL_FIREHOSE__ACCESS_KEY", FIREHOSE_KEY)
        .env("VIGIL_FIREHOSE__MAX_INFLATED_BYTES", "100")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vigil started with firehose.max_inflated_bytes = 100");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exited.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("firehose.max_inflated_bytes is 100"),
        "{stderr}"
    );
}
