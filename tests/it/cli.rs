//! The rule author's commands, through the real binary: `vigil rules check|test|explain` and
//! `vigil detect`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn vigil(args: &[&str]) -> Output {
    vigil_with_stdin(args, None)
}

fn vigil_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(ROOT)
        .env("VIGIL_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("run vigil")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ndjson(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const GOOD_RULE: &str = "\
title: Good
id: 11111111-1111-4111-8111-111111111111
name: good
logsource: {product: aws, service: cloudtrail}
detection:
    selection:
        eventName: StopLogging
    condition: selection
level: high
";

/// The unknown modifier is on line 6.
const BROKEN_RULE: &str = "\
title: Broken
id: 22222222-2222-4222-8222-222222222222
logsource: {product: aws}
detection:
    selection:
        eventName|sometimes: StopLogging
    condition: selection
";

#[test]
fn our_rules_check_clean() {
    let output = vigil(&["rules", "check", "rules"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.contains("0 failures in 0 files"), "{out}");
    assert!(out.contains("3 correlations"), "{out}");
}

/// This is the CI gate for our rules: every rule has tests, and they pass.
#[test]
fn our_rules_pass_their_tests() {
    let output = vigil(&["rules", "test", "--require-tests", "rules"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.contains(" 0 failed; 0 failures in all"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    // Every rule file has its test file, and each case ran.
    let rule_files = std::fs::read_dir(Path::new(ROOT).join("rules/aws"))
        .unwrap()
        .count();
    assert!(rule_files >= 16, "{rule_files}");
    assert!(out.contains("rules/flask/flask_login_brute_force.tests.yml: Flask User Management Login Brute Force"), "{out}");
}

#[test]
fn check_reports_each_failure_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", GOOD_RULE);
    let broken = write(dir.path(), "broken.yml", BROKEN_RULE);
    let correlation = write(
        dir.path(),
        "many.yml",
        "title: Many\ncorrelation:\n  type: event_count\n  rules: [nosuch]\n  timespan: 5m\n  condition: {gte: 2}\n",
    );
    let path = dir.path().display().to_string();
    let output = vigil(&["rules", "check", &path]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{broken}:6: ")), "{out}");
    assert!(
        out.contains(&format!(
            "{correlation}:1: correlation \"Many\" refers to unknown rule \"nosuch\""
        )),
        "{out}"
    );
    assert!(out.contains("3 files: 1 rules, 0 correlations"), "{out}");
    assert!(out.contains("2 failures in 2 files"), "{out}");
    assert!(
        out.contains("1  correlation \"…\" refers to unknown rule \"…\""),
        "{out}"
    );

    let output = vigil(&["rules", "check", "--format", "json", &path]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["rules"], 1);
    assert_eq!(report["failed"], 2);
    let failures = report["failures"].as_array().unwrap();
    assert!(failures
        .iter()
        .any(|f| f["file"] == broken.as_str() && f["line"] == 6));
    assert_eq!(report["by_reason"].as_array().unwrap().len(), 2);
}

#[test]
fn check_expands_placeholders_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write(
        dir.path(),
        "expand.yml",
        "title: E\nlogsource: {product: aws}\ndetection:\n  sel:\n    userName|expand: '%admins%'\n  condition: sel\n",
    );
    let output = vigil(&["rules", "check", &rule]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("admins"), "{}", stdout(&output));
    let output = vigil(&["rules", "check", "--placeholder", "admins=root", &rule]);
    assert!(output.status.success(), "{}", stdout(&output));
}

#[test]
fn check_fails_on_a_missing_directory() {
    let output = vigil(&["rules", "check", "no/such/dir"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no/such/dir") || stderr(&output).contains("rule directories")
    );
}

#[test]
fn rule_tests_fail_on_wrong_expectations_and_missing_tests() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", GOOD_RULE);
    let tests = write(
        dir.path(),
        "good.tests.yml",
        "match:\n  - name: stop\n    event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StopLogging}\n\
         no_match:\n  - name: wrongly expected quiet\n    event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StopLogging}\n\
         \x20 - name: start\n    event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StartLogging}\n",
    );
    let path = dir.path().display().to_string();
    let output = vigil(&["rules", "test", &path]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains(&format!("{tests}: Good")), "{out}");
    assert!(out.contains("  ok    match 1: stop"), "{out}");
    assert!(
        out.contains("  FAIL  no_match 1: wrongly expected quiet: the rule matched, but must not"),
        "{out}"
    );
    assert!(out.contains("  ok    no_match 2: start"), "{out}");
    assert!(out.contains("3 cases: 2 passed, 1 failed"), "{out}");

    // Fixed, it passes; an untested rule fails only under --require-tests.
    std::fs::write(
        &tests,
        "match:\n  - event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StopLogging}\n\
         no_match:\n  - event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StartLogging}\n",
    )
    .unwrap();
    write(
        dir.path(),
        "broken.yml",
        BROKEN_RULE.replace("|sometimes", "").as_str(),
    );
    let output = vigil(&["rules", "test", &path]);
    assert!(output.status.success(), "{}", stdout(&output));
    let output = vigil(&["rules", "test", "--require-tests", &path]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("broken.yml: no tests (expected broken.tests.yml)"));
}

#[test]
fn rule_tests_report_malformed_test_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", GOOD_RULE);
    write(dir.path(), "good.tests.yml", "match:\n  - evnt: {a: 1}\n");
    write(dir.path(), "orphan.tests.yml", "match: []\n");
    let output = vigil(&["rules", "test", &dir.path().display().to_string()]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("good.tests.yml: match 1: unexpected `evnt`"),
        "{out}"
    );
    assert!(
        out.contains("orphan.tests.yml: no rule file beside it"),
        "{out}"
    );
}

#[test]
fn detect_reports_rule_matches_with_their_lines() {
    let output = vigil(&["detect", "--rules", "rules", "demo/cloudtrail.ndjson"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The documented field order, for people reading the stream.
    assert!(
        stdout(&output).starts_with(r#"{"rule_id":"#),
        "{}",
        stdout(&output)
    );
    let matches = ndjson(&output);
    let stop: Vec<&Value> = matches
        .iter()
        .filter(|m| m["rule_id"] == "8839b791-6198-4751-84ca-948372583b72")
        .collect();
    assert_eq!(stop.len(), 2, "{matches:#?}");
    assert_eq!(stop[0]["line"], 27);
    assert_eq!(stop[1]["line"], 28);
    assert_eq!(stop[0]["level"], "high");
    assert!(stop[0]["rule_title"]
        .as_str()
        .unwrap()
        .contains("CloudTrail"));
    // What matched, as alerts carry it.
    let matched = stop[0]["matched"].as_array().unwrap();
    assert!(
        matched
            .iter()
            .any(|f| f["field"] == "eventName" && f["value"] == "StopLogging"),
        "{matched:?}"
    );
    assert!(
        stderr(&output).contains("43 events, 0 bad lines"),
        "{}",
        stderr(&output)
    );
}

/// Under a logsource with a preset, `vigil detect` matches a JSON line's text without building
/// an event: the matches, their fields and the verdict on bad lines are those of reading each
/// line as an event, as it does when it recognises the source.
#[test]
fn detect_under_a_preset_logsource_matches_as_reading_events_does() {
    let demo = std::fs::read_to_string("demo/cloudtrail.ndjson").unwrap();
    let input = format!("{demo}{{\"eventName\": \n{{\"eventName\":\"x\"}} trailing\n");
    let recognised = vigil_with_stdin(&["detect", "--rules", "rules", "-"], Some(&input));
    let preset = vigil_with_stdin(
        &[
            "detect",
            "--rules",
            "rules",
            "--logsource",
            "product=aws,service=cloudtrail",
            "-",
        ],
        Some(&input),
    );
    assert!(!ndjson(&preset).is_empty());
    assert_eq!(ndjson(&preset), ndjson(&recognised));
    assert_eq!(stderr(&preset), stderr(&recognised));
    assert!(
        stderr(&preset).contains("2 bad lines"),
        "{}",
        stderr(&preset)
    );
}

#[test]
fn detect_raises_the_brute_force_correlation_on_the_demo() {
    let output = vigil(&[
        "detect",
        "--rules",
        "rules",
        "--logsource",
        "product=python,service=flask,category=application",
        "demo/flask-app.ndjson",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let matches = ndjson(&output);
    let brute: Vec<&Value> = matches
        .iter()
        .filter(|m| m["correlation"] == true)
        .collect();
    assert_eq!(brute.len(), 1, "{matches:#?}");
    assert_eq!(brute[0]["rule_id"], "5cd5704e-616a-4e0a-a020-352a1255e9df");
    assert_eq!(brute[0]["line"], 26);
    assert_eq!(brute[0]["lines"], serde_json::json!([22, 23, 24, 25, 26]));
    assert_eq!(brute[0]["group"]["username"], "m.chen");
    assert_eq!(brute[0]["group"]["remote_addr"], "203.0.113.66");
    // The failed-login rule only feeds the correlation.
    assert!(!matches
        .iter()
        .any(|m| m["rule_id"] == "fb865e6f-6266-429a-ba5b-c14bf5f72da9"));
}

/// With a correlation loaded, `vigil detect` reads each record's time, which it leaves unread
/// for rules that need none: two matches half a minute apart count together, an hour apart
/// they do not.
#[test]
fn detect_reads_record_times_when_a_correlation_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", GOOD_RULE);
    write(
        dir.path(),
        "twice.yml",
        "title: Twice\ncorrelation:\n  type: event_count\n  rules: [good]\n  timespan: 1m\n  condition: {gte: 2}\n",
    );
    let rules = dir.path().display().to_string();
    let stop = |time: &str| format!(r#"{{"eventName":"StopLogging","eventTime":"{time}"}}"#);
    for (second, correlated) in [
        ("2026-11-28T10:00:30Z", true),
        ("2026-11-28T11:00:00Z", false),
    ] {
        let input = format!("{}\n{}\n", stop("2026-11-28T10:00:00Z"), stop(second));
        let output = vigil_with_stdin(
            &[
                "detect",
                "--rules",
                &rules,
                "--logsource",
                "product=aws,service=cloudtrail",
                "-",
            ],
            Some(&input),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let matches = ndjson(&output);
        let correlations = matches.iter().filter(|m| m["correlation"] == true).count();
        assert_eq!(
            correlations,
            usize::from(correlated),
            "{second}: {matches:#?}"
        );
    }
}

#[test]
fn detect_recognises_sources_and_reports_bad_lines() {
    let access = r#"198.51.100.23 - - [28/Nov/2026:10:05:14 +0000] "GET /users?q=x%27%20OR%20%271 HTTP/1.1" 500 265 "-" "curl/8""#;
    let audit = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x","verb":"create","user":{"username":"m.chen@example.com"},"objectRef":{"resource":"pods","subresource":"exec"}}"#;
    let input = format!("{access}\nnot an event\n{{\"broken\": \n\n{audit}\n");
    let output = vigil_with_stdin(&["detect", "--rules", "rules", "-"], Some(&input));
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("line 2: neither a JSON object nor an access log line"),
        "{err}"
    );
    assert!(err.contains("line 3: not a JSON object"), "{err}");
    assert!(err.contains("2 events, 2 bad lines"), "{err}");
    let matches = ndjson(&output);
    let found: Vec<(String, u64)> = matches
        .iter()
        .map(|m| {
            (
                m["rule_id"].as_str().unwrap().to_owned(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        found.contains(&("c54eaa46-eee4-4ee0-af14-a67edd9927db".into(), 1)),
        "{found:?}"
    );
    assert!(
        found.contains(&("e479c62a-6213-4128-9b29-b87658a928ca".into(), 5)),
        "{found:?}"
    );
}

#[test]
fn detect_maps_webserver_fields_through_the_shipped_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    write(
        &rules,
        "w3c.yml",
        "title: Etc passwd read over HTTP\nid: 6b1d3f0e-3c55-4d1c-9a51-0d7f4f0e9a11\n\
         logsource:\n  category: webserver\ndetection:\n  selection:\n    cs-method: GET\n\
         \x20   cs-uri-query|contains: /etc/passwd\n    sc-status: 200\n  condition: selection\n\
         level: high\n",
    );
    let log = write(
        dir.path(),
        "access.log",
        "198.51.100.23 - - [28/Nov/2026:10:02:11 +0000] \"GET /../../etc/passwd HTTP/1.1\" 200 1024 \"-\" \"curl/8.5.0\"\n",
    );
    let rules = rules.display().to_string();
    let without = vigil(&["detect", "--rules", &rules, &log]);
    assert!(without.status.success(), "{}", stderr(&without));
    assert!(
        ndjson(&without).is_empty(),
        "W3C names match nothing unmapped"
    );

    let with = vigil(&[
        "detect",
        "--rules",
        &rules,
        "--pipeline",
        "pipelines/access-log.yml",
        &log,
    ]);
    assert!(with.status.success(), "{}", stderr(&with));
    let matches = ndjson(&with);
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(
        matches[0]["rule_id"],
        "6b1d3f0e-3c55-4d1c-9a51-0d7f4f0e9a11"
    );

    let broken = write(
        dir.path(),
        "broken.yml",
        "name: p\nmappings:\n  - fields: 3\n",
    );
    let output = vigil(&["rules", "check", "--pipeline", &broken, "rules"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("broken.yml:3"), "{err}");
}

#[test]
fn explain_shows_each_selection_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(
        dir.path(),
        "event.json",
        "{\n  \"eventVersion\": \"1.09\",\n  \"eventSource\": \"cloudtrail.amazonaws.com\",\n  \"eventName\": \"StartLogging\"\n}\n",
    );
    let rule = "rules/aws/aws_cloudtrail_logging_disabled.yml";
    let output = vigil(&["rules", "explain", rule, &event]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(out.contains("[no ] selection"), "{out}");
    assert!(out.contains("[yes] eventSource"), "{out}");
    assert!(
        out.contains("[no ] eventName (line 18): event has \"StartLogging\""),
        "{out}"
    );
    assert!(out.contains("no match \"StopLogging\""), "{out}");
    assert!(out.contains("[no ] condition: selection"), "{out}");
    assert!(out.contains("verdict: NO MATCH"), "{out}");

    std::fs::write(&event, r#"{"eventVersion":"1.09","eventSource":"cloudtrail.amazonaws.com","eventName":"DeleteTrail"}"#).unwrap();
    let output = vigil(&["rules", "explain", "--format", "json", rule, &event]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let explained = &report["rules"][0];
    assert_eq!(explained["verdict"], true);
    assert_eq!(explained["condition_result"], true);
    let values = &explained["searches"][0]["alternatives"][0]["items"][1]["values"];
    assert_eq!(values[0]["matched"], false);
    assert_eq!(values[1]["matched"], true);

    // Right detection, wrong source: the logsource is what stops it.
    let output = vigil(&[
        "rules",
        "explain",
        "--logsource",
        "product=gcp",
        rule,
        &event,
    ]);
    assert!(
        stdout(&output).contains("does not apply"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn explain_fails_on_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write(dir.path(), "broken.yml", BROKEN_RULE);
    let event = write(dir.path(), "e.json", "{\"a\": 1}");
    let output = vigil(&["rules", "explain", &rule, &event]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains(&format!("{rule}:6: ")),
        "{}",
        stdout(&output)
    );
}

#[test]
fn rule_tests_report_as_json() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", GOOD_RULE);
    let tests = write(
        dir.path(),
        "good.tests.yml",
        "match:\n  - name: stop\n    event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StopLogging}\n\
         no_match:\n  - name: wrongly expected quiet\n    event: {eventVersion: '1.09', eventSource: cloudtrail.amazonaws.com, eventName: StopLogging}\n",
    );
    write(
        dir.path(),
        "untested.yml",
        &GOOD_RULE
            .replace("1111-4111", "3333-4333")
            .replace("name: good", "name: untested"),
    );
    let path = dir.path().display().to_string();
    let output = vigil(&[
        "rules",
        "test",
        "--format",
        "json",
        "--require-tests",
        &path,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["files"].as_array().unwrap().len(), 1, "{report:#}");
    let file = &report["files"][0];
    assert_eq!(file["file"], tests);
    assert_eq!(file["rule_title"], "Good");
    assert_eq!(file["rule_id"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(file["cases"][0]["expect"], "match");
    assert_eq!(file["cases"][0]["name"], "stop");
    assert_eq!(file["cases"][0]["passed"], true);
    assert_eq!(file["cases"][1]["expect"], "no_match");
    assert_eq!(file["cases"][1]["passed"], false);
    assert_eq!(file["cases"][1]["reason"], "the rule matched, but must not");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert!(problems[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("untested.yml"));
    assert_eq!(
        report["summary"],
        serde_json::json!({"test_files": 1, "cases": 2, "passed": 1, "failed": 1, "failures": 2})
    );

    // Our own rules, as CI runs them, are clean in JSON too.
    let output = vigil(&[
        "rules",
        "test",
        "--format",
        "json",
        "--require-tests",
        "rules",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["summary"]["failures"], 0);
    assert!(
        report["summary"]["cases"].as_u64().unwrap() > 30,
        "{report:#}"
    );
}

#[test]
fn detect_recognises_the_flask_apps_logs_by_shape() {
    // No --logsource: the Flask records are recognised, so the brute force correlates.
    let output = vigil(&["detect", "--rules", "rules", "demo/flask-app.ndjson"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let matches = ndjson(&output);
    let brute: Vec<&Value> = matches
        .iter()
        .filter(|m| m["rule_id"] == "5cd5704e-616a-4e0a-a020-352a1255e9df")
        .collect();
    assert_eq!(brute.len(), 1, "{matches:#?}");
    assert_eq!(brute[0]["lines"], serde_json::json!([22, 23, 24, 25, 26]));
    // The admin-role rule is a plain Flask rule and matches on its own.
    assert!(
        matches
            .iter()
            .any(|m| m["rule_title"].as_str().unwrap_or("").contains("Admin")),
        "{matches:#?}"
    );

    // CloudTrail records, an hour later than the Flask logs, come first in the input: each
    // source keeps its own watermark, so the brute force still correlates.
    let root = Path::new(ROOT);
    let cloudtrail = std::fs::read_to_string(root.join("demo/cloudtrail.ndjson")).unwrap();
    let flask = std::fs::read_to_string(root.join("demo/flask-app.ndjson")).unwrap();
    let offset = cloudtrail.lines().count();
    let output = vigil_with_stdin(
        &["detect", "--rules", "rules", "-"],
        Some(&format!("{cloudtrail}{flask}")),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let matches = ndjson(&output);
    let brute: Vec<&Value> = matches
        .iter()
        .filter(|m| m["correlation"] == true)
        .collect();
    assert_eq!(brute.len(), 1, "{matches:#?}");
    assert_eq!(brute[0]["line"], offset + 26);
}

#[test]
fn explain_covers_correlations_through_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let failure = r#"{"asctime": "2026-11-28 10:12:01,000", "levelname": "WARNING", "name": "usermgmt.auth", "message": "Login failed", "event": "login_failed", "username": "m.chen", "reason": "invalid_password", "remote_addr": "203.0.113.66"}"#;
    let event = write(dir.path(), "failure.json", failure);
    let rule = "rules/flask/flask_login_brute_force.yml";
    let output = vigil(&["rules", "explain", rule, &event]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    assert!(
        out.contains("Flask User Management Login Brute Force (5cd5704e-616a-4e0a-a020-352a1255e9df) [correlation]"),
        "{out}"
    );
    assert!(out.contains("event_count of flask_login_failed, grouped by username, remote_addr, within 5m; condition: gte 5"), "{out}");
    assert!(out.contains("a sequence of events"), "{out}");
    assert!(
        out.contains(
            "referenced rule \"flask_login_failed\" in rules/flask/flask_login_failed.yml"
        ),
        "{out}"
    );
    // The referenced rule's own explanation, indented under it.
    assert!(out.contains("    [yes] condition: selection"), "{out}");
    assert!(
        out.contains("group-by: username = \"m.chen\", remote_addr = \"203.0.113.66\""),
        "{out}"
    );
    assert!(out.contains("verdict: COUNTS"), "{out}");

    // Without the address, the rule matches but the event cannot be grouped.
    let event = write(
        dir.path(),
        "no-address.json",
        &failure.replace(", \"remote_addr\": \"203.0.113.66\"", ""),
    );
    let output = vigil(&["rules", "explain", "--format", "json", rule, &event]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let correlation = &report["correlations"][0];
    assert_eq!(correlation["type"], "event_count");
    assert_eq!(correlation["counts"], false, "{report:#}");
    let reference = &correlation["rules"][0];
    assert_eq!(reference["kind"], "rule");
    assert_eq!(reference["explanation"]["verdict"], true);
    assert_eq!(reference["group"]["remote_addr"], Value::Null);
    assert!(
        reference["reason"]
            .as_str()
            .unwrap()
            .contains("remote_addr"),
        "{report:#}"
    );
    assert!(report["skipped"].as_array().unwrap().is_empty());

    // With the referenced rules elsewhere and not named, it says what is missing.
    let lone = write(
        dir.path(),
        "lone.yml",
        &std::fs::read_to_string(Path::new(ROOT).join(rule)).unwrap(),
    );
    let output = vigil(&["rules", "explain", &lone, &event]);
    let out = stdout(&output);
    assert!(
        out.contains("no rule with id or name \"flask_login_failed\""),
        "{out}"
    );
    assert!(out.contains("DOES NOT COUNT"), "{out}");
    let output = vigil(&["rules", "explain", "--rules", "rules/flask", &lone, &event]);
    assert!(
        stdout(&output).contains("in rules/flask/flask_login_failed.yml"),
        "{}",
        stdout(&output)
    );
}
