//! `vigil rules backtest` against a running Vigil: a rule file (sent as its text) and a loaded
//! rule (by id) run over stored CloudTrail events of a time range, through the API with a
//! token, with progress on stderr and the results on stdout.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::{wait_for, Vigil, TOKEN};

/// The built-in rule for a trail stopped or deleted.
const TRAIL_RULE_ID: &str = "8839b791-6198-4751-84ca-948372583b72";

const PASTED_RULE: &str = "\
title: Trail described
id: backtest-e2e-described
level: low
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: DescribeTrails}
  condition: sel
";

fn line(n: u32, minute: u32, name: &str) -> String {
    format!(
        "{{\"eventVersion\":\"1.09\",\"eventTime\":\"2026-11-28T10:{minute:02}:00Z\",\
         \"eventSource\":\"cloudtrail.amazonaws.com\",\"eventName\":\"{name}\",\
         \"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"203.0.113.{n}\",\
         \"userIdentity\":{{\"arn\":\"arn:aws:iam::1:user/u{n}\"}},\"eventID\":\"bt-{n}\"}}\n"
    )
}

fn backtest(vigil: &Vigil, rule: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "backtest", rule])
        .args([
            "--from",
            "2026-11-28T10:00:00Z",
            "--to",
            "2026-11-28T11:00:00Z",
        ])
        .args(["--server", &vigil.base])
        .args(extra)
        .env("VIGIL_API_TOKEN", TOKEN)
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil runs")
}

#[test]
fn the_cli_backtests_a_rule_file_and_a_loaded_rule_over_stored_events() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let vigil = Vigil::start(&data);
    let mut body = String::new();
    // Two described trails and three stopped ones in the range; one stopped trail after it.
    for (n, minute, name) in [
        (1, 1, "DescribeTrails"),
        (2, 2, "StopLogging"),
        (3, 3, "DescribeTrails"),
        (4, 4, "StopLogging"),
        (5, 5, "StopLogging"),
    ] {
        body.push_str(&line(n, minute, name));
    }
    body.push_str(&line(6, 0, "StopLogging").replace("T10:", "T12:"));
    let response = vigil.post_ndjson("cloudtrail", body);
    assert_eq!(response.status(), 202);
    wait_for(
        "the events to be searchable",
        Duration::from_secs(30),
        || (vigil.search_total("eventID:bt-*") == 6).then_some(()),
    );

    let rule_file = dir.path().join("described.yml");
    std::fs::write(&rule_file, PASTED_RULE).unwrap();
    let output = backtest(&vigil, rule_file.to_str().unwrap(), &["--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["rule"], "pasted rule");
    assert_eq!(view["report"]["events_scanned"], 5, "{view}");
    assert_eq!(view["report"]["matched_events"], 2, "{view}");
    assert_eq!(view["report"]["alerts_total"], 2, "{view}");
    assert!(stderr.contains("done"), "{stderr}");

    // A loaded rule by id, as a table.
    let output = backtest(&vigil, TRAIL_RULE_ID, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("events matched: 3"), "{stdout}");
    assert!(
        stdout.contains("alerts it would have raised: 3"),
        "{stdout}"
    );
    assert!(stdout.contains("event=StopLogging"), "{stdout}");

    // A rule that does not load says where and why, and fails.
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "title: broken\nlogsource: {product: aws}\ndetection:\n  sel: {a: 1}\n  condition: missing\n").unwrap();
    let output = backtest(&vigil, broken.to_str().unwrap(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("broken.yml:"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}
