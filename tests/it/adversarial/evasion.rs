//! Evasion: a record the attacker pads so that it is accepted, then never detected. A lone
//! surrogate escape, a number beyond f64 or nesting past every parser's limit must neither hide
//! an event from the rules nor from field search; what ingest cannot read, it refuses at once
//! (400 and quarantine), never after a 202.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{wait_for, Vigil, TOKEN};

/// rules/aws/aws_cloudtrail_logging_disabled.yml: StopLogging or DeleteTrail.
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";
/// rules/flask/flask_login_brute_force.yml: five failed logins for a user from one address.
const BRUTE_FORCE_RULE: &str = "5cd5704e-616a-4e0a-a020-352a1255e9df";

const WAIT: Duration = Duration::from_secs(30);

/// A CloudTrail record of `event_name`, with `extra` (raw JSON members) spliced in before its
/// last member, as an attacker writing the record would.
fn cloudtrail(event_name: &str, marker: &str, extra: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    format!(
        r#"{{"eventVersion":"1.10","userIdentity":{{"type":"IAMUser","userName":"mallory"}},"eventTime":"{now}","eventSource":"cloudtrail.amazonaws.com","eventName":"{event_name}","awsRegion":"eu-west-1","sourceIPAddress":"203.0.113.9","requestParameters":{{"name":"management-trail"}},{extra},"userAgent":"{marker}"}}"#
    )
}

/// The answer of a search. Its hits hold records as they were written, which hold what strict
/// JSON readers refuse (serde_json reads neither `1e400` nor `"\ud800"`), so it is read with
/// the record parser.
fn search(vigil: &Vigil, query: &str, limit: usize) -> Value {
    get_records_json(
        vigil,
        "/api/v1/search",
        &[("q", query), ("limit", &limit.to_string())],
    )
}

fn get_records_json(vigil: &Vigil, path: &str, query: &[(&str, &str)]) -> Value {
    let response = vigil
        .client
        .get(vigil.url(path))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let text = response.text().unwrap();
    let object = vigil_event::json::parse_object(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Value::Object(object)
}

fn total(vigil: &Vigil, query: &str) -> u64 {
    search(vigil, query, 1)["total"].as_u64().unwrap()
}

/// The id of the one event that `query` finds, once it is indexed.
fn indexed_id(vigil: &Vigil, query: &str) -> String {
    wait_for(query, WAIT, || {
        let found = search(vigil, query, 5);
        (found["total"] == 1).then(|| found["hits"][0]["id"].as_str().unwrap().to_owned())
    })
}

/// The alert of `rule` that holds event `id`, once raised.
fn alert_with_event(vigil: &Vigil, rule: &str, id: &str) -> Value {
    wait_for(&format!("an alert of {rule} on {id}"), WAIT, || {
        let alerts = vigil.get_json("/api/v1/alerts?limit=100");
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|alert| {
                alert["rule_id"] == rule
                    && alert["event_ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|e| e == id))
            })
            .cloned()
    })
}

#[test]
fn padded_records_still_raise_their_alerts_and_are_found_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));

    // Six failed logins whose user agent ends in a lone surrogate, as Python's json.dumps
    // writes an attacker's string.
    let now = Utc::now();
    let burst: String = (0..6)
        .map(|i| {
            let at = now - chrono::Duration::seconds(10 - i);
            format!(
                concat!(
                    r#"{{"asctime":"{}","levelname":"WARNING","name":"usermgmt.auth","#,
                    r#""message":"Login failed","event":"login_failed","username":"evsurrogate","#,
                    r#""reason":"invalid_password","remote_addr":"203.0.113.66","#,
                    r#""user_agent":"python-requests/2.31\ud800"}}"#,
                    "\n"
                ),
                at.format("%Y-%m-%d %H:%M:%S,%3f")
            )
        })
        .collect();
    let response = vigil.post_ndjson("flask-app", burst);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.json::<Value>().unwrap()["accepted"], 6);

    // A StopLogging padded with a number beyond f64.
    let padded = cloudtrail("StopLogging", "evpadnumber", r#""pad":1e400"#);
    // A DeleteTrail with the rule's fields at top level and a subtree nested 200 deep.
    let deep = format!(
        r#""deep":{}"evdeepneedle"{}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let nested = cloudtrail("DeleteTrail", "evdeepnesting", &deep);
    let response = vigil.post_ndjson("cloudtrail", format!("{padded}\n{nested}\n"));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.json::<Value>().unwrap()["accepted"], 2);

    // Each is in the index, by its fields.
    let stop_logging = indexed_id(&vigil, "eventName:StopLogging AND userAgent:evpadnumber");
    let delete_trail = indexed_id(&vigil, "eventName:DeleteTrail AND userAgent:evdeepnesting");
    assert_eq!(total(&vigil, "pad:1e400"), 1);
    wait_for("the six logins indexed", WAIT, || {
        (total(&vigil, "username:evsurrogate AND event:login_failed") == 6).then_some(())
    });
    // The CLI finds them too, from the data directory and through the server: one padded hit
    // must not fail an analyst's search.
    let data_dir = dir.path().join("data");
    for place in [
        vec!["--data-dir", data_dir.to_str().unwrap()],
        vec!["--server", &vigil.base, "--token", TOKEN],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "search",
                "eventName:StopLogging AND pad:1e400",
                "--format",
                "json",
            ])
            .args(&place)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{place:?}: {stderr}");
        assert!(stdout.contains(&stop_logging), "{place:?}: {stdout}");
    }
    // The deep text is still there for keyword search.
    assert_eq!(total(&vigil, "evdeepneedle"), 1);

    // And each raised its alert.
    alert_with_event(&vigil, LOGGING_DISABLED_RULE, &stop_logging);
    alert_with_event(&vigil, LOGGING_DISABLED_RULE, &delete_trail);
    let brute = wait_for("the brute force alert", WAIT, || {
        let alerts = vigil.get_json("/api/v1/alerts?limit=100");
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|alert| alert["rule_id"] == BRUTE_FORCE_RULE)
            .cloned()
    });
    let events = get_records_json(
        &vigil,
        &format!("/api/v1/alerts/{}/events", brute["id"].as_str().unwrap()),
        &[],
    );
    let text = events.to_string();
    assert!(text.contains("evsurrogate"), "{text}");

    // The depth limit was applied at ingest and reported.
    assert!(vigil.metric("vigil_ingest_depth_limited_total") >= 1.0);
}

#[test]
fn what_ingest_cannot_read_is_refused_at_once_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));

    // Broken syntax, here deep inside a padded subtree: refused with the line and the position.
    let broken = cloudtrail(
        "StopLogging",
        "evbroken",
        &format!(r#""deep":{}01{}"#, "[".repeat(300), "]".repeat(300)),
    );
    let response = vigil.post_ndjson("cloudtrail", format!("{broken}\n"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let report: Value = response.json().unwrap();
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["errors"][0]["line"], 1);
    let reason = report["errors"][0]["reason"].as_str().unwrap().to_owned();
    // Found after the padding: the record's time is now, which may hold "01" too.
    let position = broken.find("[01]").unwrap() + 2;
    assert_eq!(
        reason,
        format!("not a JSON object: invalid number at byte {position}")
    );

    let records = wait_for("the quarantine", WAIT, || {
        let found = vigil.get_json("/api/v1/quarantine?source=cloudtrail");
        let records = found["records"].as_array().unwrap().clone();
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["line"], 1);
    assert_eq!(records[0]["reason"], reason.as_str());
    // Nothing of it reached the index or the rules.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(total(&vigil, "userAgent:evbroken"), 0);
}
