//! Durability under hostile input, through the real binary: what was acknowledged stays
//! acknowledged across restarts whatever the limits then say, and quarantine stays bounded
//! however large the records an attacker has rejected.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{wait_for, Vigil};

const INDEXED: Duration = Duration::from_secs(60);

/// `count` generic JSON events, each holding `marker` and its own sequence number.
fn events(marker: &str, count: usize) -> String {
    (0..count)
        .map(|seq| format!("{{\"marker\":\"{marker}\",\"seq\":{seq}}}\n"))
        .collect()
}

fn wait_indexed(vigil: &Vigil, query: &str, expected: u64) {
    wait_for(&format!("{expected} events for {query}"), INDEXED, || {
        (vigil.search_total(query) == expected).then_some(())
    });
}

/// A 900 KB line is accepted under the default limits; after a restart with a lower body
/// limit, its frame on the bus is still valid, so the offsets already committed stay behind
/// the end of the log and the events posted next are indexed like any other.
#[test]
fn a_lower_body_limit_after_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let big_line = format!(
        "{{\"marker\":\"bigframe\",\"pad\":\"{}\"}}\n",
        "p".repeat(900 * 1024)
    );
    {
        let vigil = Vigil::start(&data_dir);
        let mut body = events("beforerestart", 5);
        body.push_str(&big_line);
        let response = vigil.post_ndjson("durable", body);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        wait_indexed(&vigil, "marker:bigframe", 1);
        wait_indexed(&vigil, "marker:beforerestart", 5);
        vigil.kill();
    }

    // 256 KiB gives the bus a message limit of about 576 KiB, below the frame written above.
    let vigil = Vigil::start_with_env(&data_dir, &[("VIGIL_INGEST__MAX_BODY_BYTES", "262144")]);
    for round in 0..3 {
        let response = vigil.post_ndjson("durable", events(&format!("afterrestart{round}"), 10));
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    for round in 0..3 {
        wait_indexed(&vigil, &format!("marker:afterrestart{round}"), 10);
    }
    assert_eq!(vigil.search_total("marker:bigframe"), 1);
    assert_eq!(vigil.search_total("marker:beforerestart"), 5);
}

/// Lines over the line limit of 100,000 bytes: `count` of them, `len` bytes each.
fn oversize_lines(count: usize, len: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{}\n",
                ((b'a' + (i % 26) as u8) as char).to_string().repeat(len)
            )
        })
        .collect()
}

/// One page of `/api/v1/quarantine`, and how many bytes its response took.
fn quarantine_page(vigil: &Vigil, query: &str) -> (serde_json::Value, usize) {
    let response = vigil
        .client
        .get(vigil.url(&format!("/api/v1/quarantine?{query}")))
        .bearer_auth(crate::common::TOKEN)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().unwrap();
    (serde_json::from_slice(&body).unwrap(), body.len())
}

/// The base64 length of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Rejected lines of megabytes are kept as bounded prefixes with their length and hash, and
/// however many there are, one listing of 1000 stays within its byte budget and continues
/// with a cursor.
#[test]
fn quarantine_keeps_bounded_prefixes_and_lists_in_bounded_pages() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[
            ("VIGIL_INGEST__MAX_LINE_BYTES", "100000"),
            ("VIGIL_INDEX__QUARANTINE_MAX_RECORD_BYTES", "32768"),
        ],
    );
    let huge = vigil.post_ndjson("hostile", oversize_lines(5, 3 << 20));
    assert_eq!(huge.status(), StatusCode::BAD_REQUEST);
    for _ in 0..2 {
        let many = vigil.post_ndjson("hostile", oversize_lines(70, 110_000));
        assert_eq!(many.status(), StatusCode::BAD_REQUEST);
    }
    let expected = 5 + 2 * 70;

    let (first, bytes, all) = wait_for("every rejection quarantined", INDEXED, || {
        let (page, bytes) = quarantine_page(&vigil, "source=hostile&limit=1000");
        let mut all = page["records"].as_array().unwrap().clone();
        let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
        while let Some(next) = cursor {
            let (more, _) = quarantine_page(&vigil, &format!("source=hostile&cursor={next}"));
            all.extend(more["records"].as_array().unwrap().iter().cloned());
            cursor = more["next_cursor"].as_str().map(str::to_owned);
        }
        (all.len() == expected).then_some((page, bytes, all))
    });
    // 145 records of 32 KiB would be 6 MiB of base64 alone: the page stopped at its budget.
    assert!(bytes < 6 << 20, "a page of limit=1000 took {bytes} bytes");
    let page_len = first["records"].as_array().unwrap().len();
    assert!(page_len < expected, "{page_len} records");
    assert!(first["next_cursor"].is_string());

    let three_mib = all
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("3145728"))
        .count();
    assert_eq!(three_mib, 5);
    for record in &all {
        assert_eq!(record["raw"].as_str().unwrap().len(), base64_len(32768));
        assert_eq!(record["raw_truncated"], true);
        // What reached the quarantine: ingest itself keeps only an over-long line's start.
        let raw_len = record["raw_len"].as_u64().unwrap();
        assert!((32768..=3 << 20).contains(&raw_len), "{raw_len}");
        let hash = record["raw_blake3"].as_str().unwrap();
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

/// The quarantine's total stays under its bound: the oldest records go first, and are counted.
#[test]
fn quarantine_evicts_the_oldest_past_its_total_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[
            ("VIGIL_INGEST__MAX_LINE_BYTES", "100000"),
            ("VIGIL_INDEX__QUARANTINE_MAX_BYTES", "262144"),
        ],
    );
    for _ in 0..3 {
        let response = vigil.post_ndjson("hostile", oversize_lines(4, 110_000));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let evicted = wait_for("evictions", INDEXED, || {
        let evicted = vigil.metric("vigil_quarantine_evicted_total");
        (evicted >= 8.0).then_some(evicted)
    });
    let (page, _) = quarantine_page(&vigil, "limit=1000");
    let kept = page["records"].as_array().unwrap();
    assert_eq!(kept.len() as f64 + evicted, 12.0);
    assert!(vigil.metric("vigil_quarantine_bytes") <= 262144.0);
    // The newest stay: the last body's lines.
    assert_eq!(kept[0]["line"], 4);
}
