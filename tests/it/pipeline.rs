//! The whole trip through the real binary: HTTP ingest, the bus, detection, the index, the API.

use std::time::Duration;

use crate::common::{wait_for, Vigil, TOKEN};
use reqwest::StatusCode;
use serde_json::Value;

/// The rule in `rules/aws/` that fires on StopLogging and DeleteTrail.
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

fn stop_logging(marker: &str) -> String {
    serde_json::json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory", "userName": "mallory"},
        "eventTime": "2026-11-28T12:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": marker,
        "requestParameters": {"name": "management-trail"},
        "eventID": marker,
    })
    .to_string()
}

#[test]
fn an_event_travels_from_ingest_to_alert_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));

    let response = vigil.post_ndjson("cloudtrail", format!("{}\n", stop_logging("tripmarker1")));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report: Value = response.json().unwrap();
    assert_eq!(report["accepted"], 1);

    let alert = wait_for("the alert", Duration::from_secs(30), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule_id"] == LOGGING_DISABLED_RULE)
            .cloned()
    });
    assert_eq!(alert["level"], "high");
    assert_eq!(alert["source"]["kind"], "cloudtrail");
    assert_eq!(alert["event_ids"].as_array().unwrap().len(), 1);
    // The engine's account of what matched travels with the alert through the bus and the
    // alert index.
    let matched = &alert["matched"][0];
    assert_eq!(matched["event_id"], alert["event_ids"][0], "{alert}");
    let fields: Vec<(&str, &str)> = matched["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("eventSource", "cloudtrail.amazonaws.com"),
            ("eventName", "StopLogging")
        ]
    );

    let hits = wait_for("the event in search", Duration::from_secs(30), || {
        let found = vigil.get_json("/api/v1/search?q=userAgent:tripmarker1");
        (found["total"] == 1).then_some(found)
    });
    let event = &hits["hits"][0];
    assert_eq!(event["id"], alert["event_ids"][0]);
    assert_eq!(event["record"]["json"]["eventName"], "StopLogging");
    assert_eq!(event["logsource"]["service"], "cloudtrail");
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No index commit before the kill: every event must come back from the bus.
    let vigil = Vigil::start_with_env(&data, &[("VIGIL_INDEX__COMMIT_INTERVAL_MS", "600000")]);
    for batch in 0..BATCHES {
        let body: String = (0..PER_BATCH)
            .map(|i| {
                format!(
                    "{{\"timestamp\":\"2026-11-28T10:00:00Z\",\"marker\":\"crashmarker\",\"seq\":{}}}\n",
                    batch * PER_BATCH + i
                )
            })
            .collect();
        let response = vigil.post_ndjson("crash-app", body);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    vigil.kill();

    let vigil = Vigil::start(&data);
    let expected = (BATCHES * PER_BATCH) as u64;
    wait_for("every event indexed", Duration::from_secs(60), || {
        (vigil.search_total("marker:crashmarker") == expected).then_some(())
    });
    // Replays after the restart must not add copies.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vigil.search_total("marker:crashmarker"), expected);
    assert_eq!(vigil.search_total("seq:4321"), 1);
}

#[test]
fn malformed_input_gets_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));

    let body = format!(
        "{}\n{{\"broken\": \n{}\n",
        stop_logging("m1"),
        stop_logging("m2")
    );
    let response = vigil.post_ndjson("cloudtrail", body);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report: Value = response.json().unwrap();
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["errors"][0]["line"], 2);

    let huge = format!("{{\"a\":\"{}\"}}\n", "x".repeat(10 * 1024 * 1024));
    let response = vigil.post_ndjson("app", huge);
    assert!(response.status().is_client_error(), "{}", response.status());
    let report: Value = response.json().unwrap();
    let reason = report["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("limit"), "{reason}");

    let response = vigil.post_ndjson("app", &b"{\"user\":\"\xff\xfe\"}\n"[..]);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let report: Value = response.json().unwrap();
    assert_eq!(report["errors"][0]["reason"], "invalid UTF-8 at byte 9");

    let body_over_limit = "x".repeat(17 * 1024 * 1024);
    let response = vigil.post_ndjson("app", body_over_limit);
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let health = vigil.client.get(vigil.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let response = vigil.post_ndjson("cloudtrail", stop_logging("m3"));
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for("the good lines indexed", Duration::from_secs(30), || {
        (vigil.search_total("eventID:m1 OR eventID:m2 OR eventID:m3") == 3).then_some(())
    });

    // What was rejected is kept, with its reason, and visible through the API.
    let records = wait_for("the quarantine", Duration::from_secs(30), || {
        let found = vigil.get_json("/api/v1/quarantine?source=cloudtrail");
        let records = found["records"].as_array().unwrap().clone();
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["line"], 2);
    assert_eq!(
        records[0]["raw"], "eyJicm9rZW4iOiA=",
        "base64 of the broken line"
    );
    assert!(records[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not a JSON object"));
    // Each rejection is indexed on its own schedule; wait for both of the app's.
    let app = wait_for("the app's quarantine", Duration::from_secs(30), || {
        let found = vigil.get_json("/api/v1/quarantine?source=app");
        (found["records"].as_array().unwrap().len() >= 2).then_some(found)
    });
    let reasons: Vec<&str> = app["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"invalid UTF-8 at byte 9"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("the limit is")),
        "{reasons:?}"
    );
}

#[test]
fn api_needs_the_token_but_health_and_metrics_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));
    let client = &vigil.client;

    for path in ["/api/v1/alerts", "/api/v1/search?q=x"] {
        let status = client.get(vigil.url(path)).send().unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let status = client
            .get(vigil.url(path))
            .bearer_auth("wrong-token-0123456789")
            .send()
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let status = client
        .post(vigil.url("/api/v1/ingest/cloudtrail"))
        .body(stop_logging("unauth"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        vigil
            .post_ndjson("cloudtrail", stop_logging("metrics1"))
            .status(),
        StatusCode::ACCEPTED
    );
    let metrics = wait_for("detection metrics", Duration::from_secs(30), || {
        let text = vigil.metrics_text();
        text.contains("vigil_alerts_raised_total{level=\"high\"} 1")
            .then_some(text)
    });
    for name in [
        "vigil_events_in_total{source=\"cloudtrail\"} 1",
        "vigil_bus_lag{",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // Detection also sees the audit events the refused requests above were logged as, and
    // counts a batch when it commits, so the record may be counted with some of them.
    let detected = vigil.metric("vigil_events_detected_total");
    assert!(detected >= 1.0, "{detected} events detected");
}

#[test]
fn pages_escape_attacker_text_and_need_a_session() {
    const PASSWORD: &str = "correct horse battery staple";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    vigil_access::AccessDb::open_in(&data)
        .unwrap()
        .add_user(
            "ana",
            vigil_access::Role::Analyst,
            &vigil_access::Secret::new(PASSWORD),
        )
        .unwrap();
    let vigil = Vigil::start(&data);
    let no_redirects = crate::common::client_without_redirects();

    let response = no_redirects.get(vigil.url("/")).send().unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login");

    let hostile = r#"{"timestamp":"2026-11-28T10:00:00Z","msg":"<script>alert(1)</script>","user":"\"><img src=x onerror=alert(2)>"}"#;
    assert_eq!(
        vigil.post_ndjson("app", hostile).status(),
        StatusCode::ACCEPTED
    );
    wait_for("the hostile event indexed", Duration::from_secs(30), || {
        (vigil.search_total("script") == 1).then_some(())
    });

    let wrong = no_redirects
        .post(vigil.url("/login"))
        .form(&[("username", "ana"), ("password", "not-the-password")])
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let login = no_redirects
        .post(vigil.url("/login"))
        .form(&[("username", "ana"), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains(TOKEN) && !cookie.contains(PASSWORD),
        "the cookie must carry neither the API token nor the password"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = no_redirects
        .get(vigil.url("/search?q=script"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("<img src=x"));

    let home = no_redirects
        .get(vigil.url("/"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().unwrap().contains("Recent alerts"));
}
