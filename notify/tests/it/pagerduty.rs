//! The PagerDuty receiver against a local Events v2 endpoint that checks each event the way
//! PagerDuty documents it: 202 for a valid event, 400 with the errors otherwise.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use vigil_event::Level;
use vigil_notify::{DeliveryError, NotificationKind};

use crate::common::{alert, build, notification, HttpReceiver, Recorded};

const ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";

/// The Events v2 schema's rules for one event: what is required, of which type and length.
fn schema_errors(event: &Value) -> Vec<String> {
    let mut errors: Vec<String> = Vec::new();
    let Some(object) = event.as_object() else {
        return vec!["the event is not an object".into()];
    };
    const KNOWN: [&str; 8] = [
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "images",
        "links",
        "client",
        "client_url",
    ];
    for key in object.keys() {
        if !KNOWN.contains(&key.as_str()) {
            errors.push(format!("unknown field {key}"));
        }
    }
    let string =
        |value: &Value, field: &str, max: usize, errors: &mut Vec<String>| match value.as_str() {
            Some(text) if !text.is_empty() && text.chars().count() <= max => {}
            Some(text) => errors.push(format!("{field}: length {}", text.chars().count())),
            None => errors.push(format!("{field}: missing or not a string")),
        };
    match event["routing_key"].as_str() {
        Some(key) if key.len() == 32 => {}
        _ => errors.push("routing_key: must be the integration's 32 characters".into()),
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push(format!("event_action: {:?}", event["event_action"]));
    }
    if action != "trigger" || !event["dedup_key"].is_null() {
        string(&event["dedup_key"], "dedup_key", 255, &mut errors);
    }
    if action == "trigger" {
        let payload = &event["payload"];
        if !payload.is_object() {
            errors.push("payload: required to trigger".into());
        } else {
            string(&payload["summary"], "payload.summary", 1024, &mut errors);
            string(&payload["source"], "payload.source", 255, &mut errors);
            let severity = payload["severity"].as_str().unwrap_or_default();
            if !["critical", "error", "warning", "info"].contains(&severity) {
                errors.push(format!("payload.severity: {:?}", payload["severity"]));
            }
            if let Some(timestamp) = payload.get("timestamp") {
                let parses = timestamp
                    .as_str()
                    .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
                if !parses {
                    errors.push("payload.timestamp: not ISO 8601".into());
                }
            }
            for field in ["component", "group", "class"] {
                if let Some(value) = payload.get(field) {
                    string(value, &format!("payload.{field}"), 1024, &mut errors);
                }
            }
            if payload
                .get("custom_details")
                .is_some_and(|details| !details.is_object())
            {
                errors.push("payload.custom_details: not an object".into());
            }
        }
    }
    if let Some(links) = event.get("links") {
        let valid = links.as_array().is_some_and(|links| {
            links.iter().all(|link| {
                link["href"].as_str().is_some_and(|h| h.starts_with("http"))
                    && link.get("text").is_none_or(Value::is_string)
            })
        });
        if !valid {
            errors.push("links: each needs an href".into());
        }
    }
    errors
}

async fn events_endpoint() -> HttpReceiver {
    HttpReceiver::start(Arc::new(|request: &Recorded| {
        let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let errors = schema_errors(&event);
        if errors.is_empty() {
            let body = json!({"status": "success", "message": "Event processed",
                              "dedup_key": event["dedup_key"]});
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        } else {
            let body = json!({"status": "invalid event",
                              "message": "Event object is invalid", "errors": errors});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }))
    .await
}

#[test]
fn the_schema_check_refuses_what_pagerduty_would() {
    let valid = json!({"routing_key": ROUTING_KEY, "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "error"}});
    assert!(schema_errors(&valid).is_empty());
    let mut bad = valid.clone();
    bad["payload"]["severity"] = json!("high");
    assert_eq!(schema_errors(&bad).len(), 1);
    bad = valid.clone();
    bad["payload"]["summary"] = json!("x".repeat(1025));
    assert_eq!(schema_errors(&bad).len(), 1);
    let resolve = json!({"routing_key": ROUTING_KEY, "event_action": "resolve"});
    assert_eq!(
        schema_errors(&resolve).len(),
        1,
        "resolve needs its dedup_key"
    );
}

#[tokio::test]
async fn a_group_triggers_acknowledges_and_resolves_one_incident() {
    let endpoint = events_endpoint().await;
    std::env::set_var("VIGIL_IT_PD_KEY", ROUTING_KEY);
    let receivers = build(json!({
        "ui_url": "https://vigil.example.com",
        "receivers": [{"name": "pager", "kind": "pagerduty", "url": endpoint.url("/v2/enqueue"),
                       "routing_key_env": "VIGIL_IT_PD_KEY"}],
    }));
    let pager = &receivers[0];
    // A hostile, oversized title still makes a valid event.
    let title = format!("Root login <script> {}", "x".repeat(2000));
    let alerts = vec![
        alert(
            "aws-root-login",
            &title,
            Level::Critical,
            &[("user", "root")],
        ),
        alert(
            "aws-console-login",
            "Console login",
            Level::Medium,
            &[("user", "root")],
        ),
    ];
    for (id, kind) in [
        ("n-1", NotificationKind::Firing),
        ("n-2", NotificationKind::Acknowledged),
        ("n-3", NotificationKind::Resolved),
    ] {
        let sent = notification(id, kind, alerts.clone());
        if let Err(error) = pager.send(&sent).await {
            panic!("{kind:?}: {error}");
        }
    }
    let events: Vec<Value> = endpoint.recorded().iter().map(Recorded::json).collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
    for event in &events {
        assert_eq!(event["dedup_key"], "{}/{user=\"alice\"}");
        assert_eq!(event["routing_key"], ROUTING_KEY);
    }
    let payload = &events[0]["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["group"], "aws-root-login,aws-console-login");
    assert_eq!(payload["component"], "cloudtrail");
    assert_eq!(payload["custom_details"]["notification_id"], "n-1");
    assert_eq!(
        events[0]["links"][0]["href"],
        format!("https://vigil.example.com/alerts/{}", alerts[0].id)
    );
}

#[tokio::test]
async fn a_refused_event_is_not_retried_and_a_busy_pagerduty_is() {
    let endpoint = events_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let receivers = build(json!({
        "receivers": [{"name": "wrong-key", "kind": "pagerduty", "url": endpoint.url("/v2/enqueue"),
                       "routing_key_file": crate::common::secret_file(&dir, "key", "short")}],
    }));
    let sent = notification("n-1", NotificationKind::Firing, vec![]);
    let error = receivers[0].send(&sent).await.unwrap_err();
    match error {
        DeliveryError::Rejected { status, body } => {
            assert_eq!(status, 400);
            assert!(body.contains("routing_key"), "{body}");
            assert!(!body.contains("short"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    let busy = HttpReceiver::answering(StatusCode::TOO_MANY_REQUESTS).await;
    std::env::set_var("VIGIL_IT_PD_KEY_2", ROUTING_KEY);
    let receivers = build(json!({
        "receivers": [{"name": "busy", "kind": "pagerduty", "url": busy.url("/v2/enqueue"),
                       "routing_key_env": "VIGIL_IT_PD_KEY_2"}],
    }));
    let error = receivers[0].send(&sent).await.unwrap_err();
    assert!(matches!(error, DeliveryError::Transient(_)), "{error:?}");
}
