//! Time as a weapon, through the real binary. Every event's own time is written by its sender,
//! so it must choose neither where the event is stored nor how long it is kept: partitions
//! are cut by arrival, searched by the span of event times they hold, and absurd times are
//! flagged `time_suspect` rather than trusted.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{wait_for, Vigil, TOKEN};

const INDEXED: Duration = Duration::from_secs(60);
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

fn post_json(vigil: &Vigil, source: &str, body: String) -> Value {
    let response = vigil.post_ndjson(source, body);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().unwrap()
}

/// A search's JSON answer.
fn search(vigil: &Vigil, query: &str, params: &[(&str, &str)]) -> Value {
    let response = vigil
        .client
        .get(vigil.url("/api/v1/search"))
        .query(&[("q", query), ("limit", "100")])
        .query(params)
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().unwrap()
}

fn wait_indexed(vigil: &Vigil, query: &str, expected: u64) {
    wait_for(&format!("{expected} events for {query}"), INDEXED, || {
        (vigil.search_total(query) == expected).then_some(())
    });
}

/// The names of the event partition directories.
fn partition_dirs(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("index").join("events"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

fn rfc3339(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A StopLogging record dated 45 days back raises its alert. Retention keeps 30 days and runs
/// every 200 ms; partitioned by event time, the record's partition was removed by the next
/// pass (an event arriving now keeps the current partition the newest), and the alert's
/// events were gone. By arrival, both stay.
#[test]
fn an_alert_on_an_old_event_keeps_its_event_through_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let vigil = Vigil::start_with_env(
        &data_dir,
        &[
            ("VIGIL_INDEX__RETENTION_DAYS", "30"),
            ("VIGIL_INDEX__RETENTION_INTERVAL_MS", "200"),
        ],
    );
    let old = Utc::now() - chrono::Duration::days(45);
    let record = |name: &str, time: chrono::DateTime<Utc>| {
        json!({
            "eventVersion": "1.09",
            "eventTime": rfc3339(time),
            "eventSource": "cloudtrail.amazonaws.com",
            "eventName": name,
            "userAgent": "oldtrailmarker",
            "userIdentity": {"type": "IAMUser", "userName": "mallory"},
            "requestParameters": {"name": "org-trail"},
        })
        .to_string()
    };
    let body = format!(
        "{}\n{}\n",
        record("StopLogging", old),
        record("DescribeTrails", Utc::now())
    );
    assert_eq!(post_json(&vigil, "cloudtrail", body)["accepted"], 2);
    let alert = wait_for("the StopLogging alert", INDEXED, || {
        vigil.get_json("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule_id"] == LOGGING_DISABLED_RULE)
            .cloned()
    });
    wait_indexed(&vigil, "userAgent:oldtrailmarker", 2);
    // Several retention passes.
    std::thread::sleep(Duration::from_millis(1500));

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
    // Still found by its own time, in the partition it arrived in.
    let around = search(
        &vigil,
        "userAgent:oldtrailmarker",
        &[
            ("from", &rfc3339(old - chrono::Duration::hours(1))),
            ("to", &rfc3339(old + chrono::Duration::hours(1))),
        ],
    );
    assert_eq!(around["total"], 1, "{around}");
    // One partition, for today's arrivals; two if midnight passed between the first admin's
    // audit entry and the post.
    assert!((1..=2).contains(&partition_dirs(&data_dir).len()));
}

/// Times in the year 11476 and before 1970 are accepted, stored as sent, flagged, and found
/// again after a restart. Partitioned by event time, they made directories that could not
/// be read back: search answered 0, not even saying it was incomplete.
#[test]
fn absurd_times_are_flagged_and_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let body = [
        json!({"timestamp": 300_000_000_000_000i64, "marker": "farfuture"}),
        json!({"timestamp": -5_000_000_000_000i64, "marker": "farpast"}),
        json!({"timestamp": Utc::now().timestamp_millis(), "marker": "plausible"}),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect::<String>();
    let check = |vigil: &Vigil| {
        for marker in ["farfuture", "farpast", "plausible"] {
            let found = search(vigil, &format!("marker:{marker}"), &[]);
            assert_eq!(found["total"], 1, "{marker}: {found}");
            assert_eq!(found["total_is_lower_bound"], false, "{marker}: {found}");
        }
        let suspect = search(vigil, "time_suspect:true", &[]);
        let mut markers: Vec<&str> = suspect["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["record"]["json"]["marker"].as_str().unwrap())
            .collect();
        markers.sort();
        assert_eq!(markers, ["farfuture", "farpast"], "{suspect}");
        // The records keep their times as sent.
        let future = search(vigil, "marker:farfuture", &[]);
        assert_eq!(
            future["hits"][0]["record"]["json"]["timestamp"],
            json!(300_000_000_000_000i64)
        );
        // Indexed at their arrival, they are in the last hour's range.
        let recent = search(vigil, "time_suspect:true", &[("from", "now-1h")]);
        assert_eq!(recent["total"], 2, "{recent}");
        for name in partition_dirs(&data_dir) {
            assert!(
                name.len() == 16 && name.starts_with("20"),
                "a partition named by an arrival: {name}"
            );
        }
    };
    {
        let vigil = Vigil::start(&data_dir);
        assert_eq!(post_json(&vigil, "weird", body)["accepted"], 3);
        wait_indexed(&vigil, "marker:plausible", 1);
        wait_indexed(&vigil, "time_suspect:true", 2);
        check(&vigil);
        vigil.kill();
    }
    let vigil = Vigil::start(&data_dir);
    check(&vigil);
}

/// One body of 1000 lines, a day apart, is one partition, not 1000 (and not 11k files), and
/// each day is still found by a search over its own time.
#[test]
fn a_body_spanning_a_thousand_days_makes_a_handful_of_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let vigil = Vigil::start(&data_dir);
    let now = Utc::now();
    let day = |n: i64| now - chrono::Duration::days(n);
    let body: String = (0..1000)
        .map(|n| format!("{}\n", json!({"time": rfc3339(day(n)), "spanmarker": n})))
        .collect();
    assert_eq!(post_json(&vigil, "backfill", body)["accepted"], 1000);
    wait_indexed(&vigil, "spanmarker:*", 1000);
    let partitions = partition_dirs(&data_dir);
    assert!(partitions.len() <= 2, "{partitions:?}");
    let files = walk(&data_dir.join("index").join("events"));
    assert!(files < 200, "{files} files");
    let one_day = search(
        &vigil,
        "spanmarker:*",
        &[
            ("from", &rfc3339(day(500) - chrono::Duration::hours(1))),
            ("to", &rfc3339(day(500) + chrono::Duration::hours(1))),
        ],
    );
    assert_eq!(one_day["total"], 1, "{one_day}");
    assert_eq!(one_day["hits"][0]["record"]["json"]["spanmarker"], 500);
}

/// The same batch id and line resent with a time three days later, and again now: whichever
/// ids ingest gives the resends, the index never holds one id twice. Partitioned by event
/// time, the resend went to another partition while the first copy stayed, so one id had two
/// documents. (The store's own check, for a resend whose id is stored in another partition,
/// is tried in store/tests/it/arrival.rs, where arrival days can be chosen.)
#[test]
fn a_keyed_resend_with_another_day_leaves_no_id_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let vigil = Vigil::start(&data_dir);
    let post = |time: chrono::DateTime<Utc>| {
        let response = vigil
            .client
            .post(vigil.url("/api/v1/ingest/resend"))
            .bearer_auth(TOKEN)
            .header("X-Vigil-Batch-Id", "batch-resent")
            .body(format!(
                "{}\n",
                json!({"time": rfc3339(time), "resendmarker": "yes"})
            ))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    };
    let first = Utc::now() - chrono::Duration::days(5);
    post(first);
    wait_indexed(&vigil, "resendmarker:yes", 1);
    post(first + chrono::Duration::days(3));
    post(Utc::now());
    // Something after the resends, so that they have been indexed once it is.
    post_json(&vigil, "after", json!({"aftermarker": "done"}).to_string());
    wait_indexed(&vigil, "aftermarker:done", 1);
    let found = search(&vigil, "resendmarker:yes", &[]);
    let ids: Vec<&str> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "{found}");
    assert!(!ids.is_empty());
}

/// The number of files under `dir`.
fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            if entry.path().is_dir() {
                walk(&entry.path())
            } else {
                1
            }
        })
        .sum()
}
