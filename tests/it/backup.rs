//! `vigil backup` while Vigil runs, and `vigil restore` into a fresh data directory and into
//! the original one, through the real binary.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{wait_for, Vigil, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The rule in `rules/aws/` that fires on StopLogging and DeleteTrail.
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";
const BEFORE: u64 = 300;
const DURING: u64 = 40;
const AFTER: u64 = 200;

fn vigil(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil runs")
}

fn events(marker: &str, count: u64) -> String {
    (0..count)
        .map(|seq| {
            format!("{{\"timestamp\":\"2026-11-28T10:00:00Z\",\"marker\":\"{marker}\",\"seq\":{seq}}}\n")
        })
        .collect()
}

fn stop_logging() -> String {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory", "userName": "mallory"},
        "eventTime": "2026-11-28T12:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "backupmarker",
        "requestParameters": {"name": "management-trail"},
        "eventID": "backup-stop-logging",
    })
    .to_string()
        + "\n"
}

fn patch_alert(vigil: &Vigil, id: &str, change: Value) {
    let response = vigil
        .client
        .patch(vigil.url(&format!("/api/v1/alerts/{id}")))
        .bearer_auth(TOKEN)
        .json(&change)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{change}");
}

fn notes(vigil: &Vigil, id: &str) -> Vec<String> {
    vigil.get_json(&format!("/api/v1/alerts/{id}"))["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The alert as listed among closed alerts: the alerts index carries its restored state.
fn closed_alert(vigil: &Vigil, id: &str) -> Option<Value> {
    vigil.get_json("/api/v1/alerts?status=closed")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
}

/// Every regular file under `dir`: its path relative to `dir`, device, inode and link count.
///
/// `dir` may be a running Vigil's index, whose merges delete files while this walks it: a file
/// or directory gone by the time it is looked at is left out, not an error.
fn files(dir: &Path) -> Vec<(PathBuf, u64, u64, u64)> {
    let gone = |error: &std::io::Error| error.kind() == std::io::ErrorKind::NotFound;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Err(error) if gone(&error) && current != dir => continue,
            entries => entries.unwrap(),
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let metadata = match std::fs::symlink_metadata(&path) {
                Err(error) if gone(&error) => continue,
                metadata => metadata.unwrap(),
            };
            if metadata.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_path_buf();
                found.push((name, metadata.dev(), metadata.ino(), metadata.nlink()));
            }
        }
    }
    found
}

fn wait_total(vigil: &Vigil, query: &str, expected: u64) {
    wait_for(
        &format!("{expected} events for {query}"),
        Duration::from_secs(60),
        || (vigil.search_total(query) == expected).then_some(()),
    );
}

#[test]
fn a_backup_taken_while_running_restores_events_and_triage_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let vigil_a = Vigil::start(&data);

    assert_eq!(
        vigil_a
            .post_ndjson("app", events("before", BEFORE))
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        vigil_a.post_ndjson("cloudtrail", stop_logging()).status(),
        StatusCode::ACCEPTED
    );
    wait_total(&vigil_a, "marker:before", BEFORE);
    let alert_id = wait_for("the alert", Duration::from_secs(30), || {
        vigil_a.get_json("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule_id"] == LOGGING_DISABLED_RULE)
            .map(|a| a["id"].as_str().unwrap().to_owned())
    });
    patch_alert(
        &vigil_a,
        &alert_id,
        json!({"status": "closed", "reason": "false_positive", "assignee": "alice", "note": "noted before the backup"}),
    );

    // Back up while events keep arriving.
    let writer = {
        let (base, client) = (vigil_a.base.clone(), vigil_a.client.clone());
        std::thread::spawn(move || {
            for seq in 0..DURING {
                let response = client
                    .post(format!("{base}/api/v1/ingest/app"))
                    .bearer_auth(TOKEN)
                    .body(format!(
                        "{{\"timestamp\":\"2026-11-28T10:00:00Z\",\"marker\":\"during\",\"seq\":{seq}}}\n"
                    ))
                    .send()
                    .unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let output = vigil(&["backup", backup.to_str().unwrap()], &data);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    writer.join().unwrap();
    assert!(backup.join("backup.json").exists());
    // On the same filesystem, the backup still owns its files: none is a link to a live one.
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("same filesystem"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let live = files(&data.join("index"));
    let copies = files(&backup.join("index"));
    let mut in_common = 0;
    for (name, dev, ino, links) in &copies {
        assert_eq!(*links, 1, "{} has other links", name.display());
        if let Some((_, live_dev, live_ino, _)) = live.iter().find(|(n, ..)| n == name) {
            in_common += 1;
            assert_ne!((dev, ino), (live_dev, live_ino), "{}", name.display());
        }
    }
    assert!(
        in_common >= 5,
        "{in_common} files in common with the live index"
    );

    // After the backup: more events and more triage, which a restore may not keep.
    assert_eq!(
        vigil_a.post_ndjson("app", events("after", AFTER)).status(),
        StatusCode::ACCEPTED
    );
    patch_alert(
        &vigil_a,
        &alert_id,
        json!({"note": "noted after the backup"}),
    );
    wait_total(&vigil_a, "marker:after", AFTER);
    wait_total(&vigil_a, "marker:during", DURING);

    // A restore needs Vigil stopped.
    let refused = vigil(&["restore", backup.to_str().unwrap()], &data);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it"));
    vigil_a.kill();

    // A backup someone slipped a symbolic link into is refused, and nothing is restored.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not Vigil's").unwrap();
    let link = backup.join("index").join("alerts").join("stolen");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let tampered = dir.path().join("tampered");
    let refused = vigil(&["restore", backup.to_str().unwrap()], &tampered);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!tampered.join("index").exists());
    std::fs::remove_file(&link).unwrap();

    // Into a fresh data directory: what the backup holds, nothing after it (there is no bus
    // to replay), and the triage as it was.
    let fresh = dir.path().join("fresh");
    let output = vigil(&["restore", backup.to_str().unwrap()], &fresh);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let vigil_b = Vigil::start(&fresh);
    assert_eq!(vigil_b.search_total("marker:before"), BEFORE);
    assert_eq!(vigil_b.search_total("marker:after"), 0);
    let during = vigil_b.search_total("marker:during");
    assert!(during <= DURING, "{during} of {DURING} during the backup");
    assert_eq!(vigil_b.search_total("userAgent:backupmarker"), 1);
    let alert = closed_alert(&vigil_b, &alert_id).expect("the alert is listed as closed");
    assert_eq!(alert["reason"], "false_positive");
    assert_eq!(alert["assignee"], "alice");
    assert_eq!(notes(&vigil_b, &alert_id), vec!["noted before the backup"]);
    // Exactly one copy of the alert, and of each event, however often it was indexed.
    let alerts = vigil_b.get_json("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(alerts, 1);
    drop(vigil_b);

    // Into the original data directory: its bus replays everything after the backup.
    let output = vigil(&["restore", backup.to_str().unwrap()], &data);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("replays from offset"), "{stdout}");
    let vigil_a = Vigil::start(&data);
    wait_total(&vigil_a, "marker:after", AFTER);
    wait_total(&vigil_a, "marker:during", DURING);
    // Replays done, no copies added: the counts hold.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vigil_a.search_total("marker:before"), BEFORE);
    assert_eq!(vigil_a.search_total("marker:during"), DURING);
    assert_eq!(vigil_a.search_total("marker:after"), AFTER);
    assert_eq!(vigil_a.search_total("seq:7"), 3);
    // The triage is the backup's: the later note was made after it.
    let alert = closed_alert(&vigil_a, &alert_id).expect("the alert is listed as closed");
    assert_eq!(alert["assignee"], "alice");
    assert_eq!(notes(&vigil_a, &alert_id), vec!["noted before the backup"]);
}
