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
    let text = vigil
        .client
        .get(vigil.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
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
