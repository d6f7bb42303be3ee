//! Detection under attack, through the real binary: backdated events must still be matched,
//! counted and correlated, and a rule file built to exhaust the loader must be refused with
//! its file and line rather than crash Vigil.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{wait_for, Vigil};

const BRUTE_FORCE_RULE: &str = "5cd5704e-616a-4e0a-a020-352a1255e9df";
const ROLE_ESCALATION_RULE: &str = "07c1db24-9510-40d5-a42d-da9c5ba6ce5b";

/// A Flask app log record, as python logging writes it, at `time`.
fn flask(time: DateTime<Utc>, fields: Value) -> String {
    let mut record = json!({
        "asctime": time.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
        "levelname": "WARNING",
        "remote_addr": "203.0.113.66",
    });
    for (key, value) in fields.as_object().unwrap() {
        record[key] = value.clone();
    }
    record.to_string()
}

fn failed_login(time: DateTime<Utc>, user: &str) -> String {
    flask(
        time,
        json!({"name": "usermgmt.auth", "message": "Login failed", "event": "login_failed",
               "username": user, "reason": "invalid_password"}),
    )
}

/// A rule whose selection nests `depth` lists deep, on line 7.
fn deep_rule(depth: usize) -> String {
    format!(
        "title: Deep\nid: 44444444-0000-4000-8000-000000000001\nlogsource: {{product: test}}\n\
         detection:\n  sel:\n    kind:\n      {}x\n  condition: sel\n",
        "- ".repeat(depth)
    )
}

fn alerts_of(vigil: &Vigil, rule: &str) -> Vec<Value> {
    vigil.get_json("/api/v1/alerts?limit=100")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|alert| alert["rule_id"] == rule)
        .cloned()
        .collect()
}

#[test]
fn a_backdated_burst_is_matched_counted_and_still_correlates() {
    let dir = tempfile::tempdir().unwrap();
    // A rule directory holding a rule nested 300k deep as well: `vigil run` loads the others
    // and keeps running.
    let deep = dir.path().join("deep-rules");
    std::fs::create_dir(&deep).unwrap();
    std::fs::write(deep.join("deep.yml"), deep_rule(300_000)).unwrap();
    let mut vigil = Vigil::start_with(
        &dir.path().join("data"),
        &["--rules", deep.to_str().unwrap()],
        &[],
    );

    // The Flask app's stream is live, then six failed logins stamped three days back arrive
    // in one delivery, with a role escalation from the same afternoon.
    let now = Utc::now();
    let then = now - chrono::Duration::days(3);
    let mut body = vec![failed_login(now, "someone-else")];
    for i in 0..6 {
        body.push(failed_login(then + chrono::Duration::seconds(i), "m.chen"));
    }
    body.push(flask(
        then + chrono::Duration::seconds(10),
        json!({"name": "usermgmt.admin", "message": "Role changed", "event": "role_changed",
               "username": "m.chen", "actor_role": "support", "target_user": "m.chen",
               "old_role": "support", "role": "admin"}),
    ));
    let response = vigil.post_ndjson("flask-app", body.join("\n") + "\n");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.json::<Value>().unwrap()["accepted"], 8);

    // Rules still match the late events...
    let escalation = wait_for("the role escalation alert", Duration::from_secs(30), || {
        alerts_of(&vigil, ROLE_ESCALATION_RULE).pop()
    });
    assert_eq!(escalation["event_ids"].as_array().unwrap().len(), 1);
    // ...and the late burst correlates among late events, apart from the live windows.
    let brute = wait_for("the brute force alert", Duration::from_secs(30), || {
        alerts_of(&vigil, BRUTE_FORCE_RULE).pop()
    });
    assert_eq!(brute["group"]["username"], "m.chen");
    assert_eq!(brute["event_ids"].as_array().unwrap().len(), 5);
    let alert_time: DateTime<Utc> = brute["time"].as_str().unwrap().parse().unwrap();
    assert!(alert_time < now - chrono::Duration::days(2), "{brute}");

    // The six late failures are counted for their source; the live one and the escalation,
    // which feeds no correlation, are not.
    let late = wait_for("the late events counter", Duration::from_secs(30), || {
        let late =
            vigil.labelled_metric("vigil_detect_late_events_total", &["source=\"flask-app\""]);
        (late > 0.0).then_some(late)
    });
    assert_eq!(late, 6.0);
    assert!(vigil.is_running());
}

#[test]
fn made_up_users_do_not_push_out_a_real_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    // Room for eight groups only, so the flood below overflows it many times over.
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[("VIGIL_DETECT__MAX_GROUPS", "8")],
    );
    let now = Utc::now();
    let mut body = Vec::new();
    // Two real attempts, then three more, each after a burst of failures for made-up users
    // stamped later (a group's first input alone is not protected from such a burst: see the
    // README's security model).
    body.push(failed_login(now, "m.chen"));
    for attempt in 1..5 {
        let at = now + chrono::Duration::milliseconds(attempt * 100);
        body.push(failed_login(at, "m.chen"));
        for i in 0..50 {
            let later = at + chrono::Duration::milliseconds(i + 1);
            body.push(failed_login(later, &format!("made-up-{attempt}-{i}")));
        }
    }
    let response = vigil.post_ndjson("flask-app", body.join("\n") + "\n");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let brute = wait_for("the brute force alert", Duration::from_secs(30), || {
        alerts_of(&vigil, BRUTE_FORCE_RULE).pop()
    });
    assert_eq!(brute["group"]["username"], "m.chen");
    assert_eq!(alerts_of(&vigil, BRUTE_FORCE_RULE).len(), 1);
    let label = format!("rule=\"{BRUTE_FORCE_RULE}\"");
    let evicted = wait_for("the evictions counter", Duration::from_secs(30), || {
        let evicted = vigil.labelled_metric("vigil_detect_correlation_evictions_total", &[&label]);
        (evicted > 0.0).then_some(evicted)
    });
    // 200 made-up groups in eight places (the real one fired and left), all counted.
    assert_eq!(evicted, 200.0 - 8.0);
}

#[test]
fn a_deeply_nested_rule_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yml"), deep_rule(1)).unwrap();
    std::fs::write(dir.path().join("deep.yml"), deep_rule(300_000)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "check"])
        .arg(dir.path())
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    let deep = Path::new(dir.path()).join("deep.yml");
    assert!(
        text.contains(&format!("{}:7: ", deep.display())),
        "the message names the file and line: {text}"
    );
    assert!(text.contains("nest deeper than 64 levels"), "{text}");
    assert!(
        text.contains("1 rules"),
        "the other file still loads: {text}"
    );
}

#[test]
fn a_deeply_nested_rule_test_file_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deep.yml"), deep_rule(1)).unwrap();
    let tests = dir.path().join("deep.tests.yml");
    let text = format!(
        "match:\n  - event:\n      kind:\n        {}x\n",
        "- ".repeat(300_000)
    );
    std::fs::write(&tests, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["rules", "test"])
        .arg(dir.path())
        .env("VIGIL_LOG", "warn")
        .output()
        .expect("vigil runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{}: line 4: ", tests.display())),
        "the message names the file and line: {text}"
    );
    assert!(text.contains("nest deeper than 64 levels"), "{text}");
}
