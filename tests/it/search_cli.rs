//! `vigil search` against a data directory whose store is still open for writing.

use std::process::Command;

use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::Store;

fn event(n: u32, name: &str) -> Event {
    let time = Utc.with_ymd_and_hms(2026, 11, 20 + n, 8, 0, 0).unwrap();
    let record = json!({"eventName": name, "n": n});
    Event {
        id: EventId::derive("cli test", &[&n.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::default(),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Map::new(),
    }
}

fn vigil(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .env_remove("VIGIL_API_TOKEN")
        .output()
        .expect("vigil runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn search_reads_a_data_directory_beside_a_live_writer() {
    let dir = tempfile::TempDir::new().unwrap();
    // The writer stays open for the whole test, as a running Vigil would.
    let writer = Store::open(&dir.path().join("index")).unwrap();
    writer
        .index_events(&[
            event(0, "StopLogging"),
            event(1, "ConsoleLogin"),
            event(2, "StopLogging"),
        ])
        .unwrap();
    writer.commit().unwrap();
    let data_dir = dir.path().to_str().unwrap();

    let (ok, stdout, stderr) = vigil(&[
        "search",
        "eventName:StopLogging",
        "--data-dir",
        data_dir,
        "--format",
        "json",
    ]);
    assert!(ok, "{stderr}");
    let reply: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reply["total"], 2);
    assert_eq!(
        reply["hits"][0]["id"],
        event(2, "StopLogging").id.to_string(),
        "newest first"
    );

    let (ok, stdout, stderr) = vigil(&[
        "search",
        "",
        "--data-dir",
        data_dir,
        "--from",
        "2026-11-21",
        "--to",
        "2026-11-22",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ConsoleLogin"), "{stdout}");
    assert!(stdout.contains("-- 1 shown of 1"), "{stdout}");

    let (ok, _, stderr) = vigil(&["search", "eventName:(", "--data-dir", data_dir]);
    assert!(!ok);
    assert!(stderr.contains("syntax error"), "{stderr}");
    let (ok, _, stderr) = vigil(&["search", "x", "--server", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(stderr.contains("--token"), "{stderr}");
    drop(writer);
}
