//! The alert lifecycle through the JSON API, against a real store in a temporary directory.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use vigil_access::AccessDb;
use vigil_event::{Alert, Event, EventId, Level, LogSource, Record, Source};
use vigil_store::Store;
use vigil_ui::{api_router, guard, ApiToken, Gate, UiState};

use crate::pages::send_api;

/// The bootstrap token the fixture's gate accepts: an admin, who may triage.
const TOKEN: &str = "alerts-api-test-token";

fn source() -> Source {
    Source {
        kind: "cloudtrail".into(),
        name: "org-trail".into(),
    }
}

fn event(n: u32) -> Event {
    let time = Utc.with_ymd_and_hms(2026, 11, 27 + n, 9, 0, 0).unwrap();
    let record = json!({"eventName": "StopLogging", "n": n});
    Event {
        id: EventId::derive("api test", &[&n.to_le_bytes()]),
        time,
        received: time,
        source: source(),
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Map::new(),
    }
}

fn alert(rule: &str, title: &str, level: Level, events: &[Event]) -> Alert {
    let event_ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    Alert {
        id: Alert::derive_id(rule, &event_ids),
        rule_id: rule.into(),
        rule_title: title.into(),
        level,
        tags: vec!["attack.defense-evasion".into()],
        event_ids,
        time: events.last().unwrap().time,
        detected: events.last().unwrap().time,
        source: source(),
        logsource: LogSource::default(),
        group: Default::default(),
        matched: Vec::new(),
        event_position: None,
    }
}

struct Fixture {
    _dir: TempDir,
    store: Arc<Store>,
    app: Router,
    gate: Arc<Gate>,
    trail: Alert,
    login: Alert,
    events: Vec<Event>,
}

fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // Events on two days, so an alert's events come from two partitions.
    let events = vec![event(0), event(1)];
    let trail = alert(
        "trail-stopped",
        "CloudTrail logging stopped",
        Level::High,
        &events,
    );
    let login = alert(
        "root-login",
        "Root console login",
        Level::Medium,
        &events[..1],
    );
    store.index_events(&events).unwrap();
    store.index_alerts(&[trail.clone(), login.clone()]).unwrap();
    store.commit().unwrap();
    let (app, gate) = guarded_api(&dir, store.clone());
    Fixture {
        _dir: dir,
        store,
        app,
        gate,
        trail,
        login,
        events,
    }
}

/// The API behind the access check, as `vigil run` serves it, with the access database in
/// `dir` and [`TOKEN`] as the bootstrap token.
fn guarded_api(dir: &TempDir, store: Arc<Store>) -> (Router, Arc<Gate>) {
    let gate = Arc::new(Gate::new(
        Arc::new(AccessDb::open_in(dir.path()).unwrap()),
        Some(ApiToken::new(TOKEN)),
        Default::default(),
        false,
    ));
    let app = guard(
        api_router(UiState {
            store,
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        }),
        gate.clone(),
    );
    (app, gate)
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    send_api(app, method, uri, TOKEN, body).await
}

async fn patch(app: &Router, id: &str, body: Value) -> (StatusCode, Value) {
    call(
        app,
        Method::PATCH,
        &format!("/api/v1/alerts/{id}"),
        Some(body),
    )
    .await
}

/// The ids `GET /api/v1/alerts?{query}` lists, in its order.
async fn listed(app: &Router, query: &str) -> Vec<String> {
    let (status, body) = call(app, Method::GET, &format!("/api/v1/alerts?{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    ids(&body)
}

fn ids(listing: &Value) -> Vec<String> {
    listing["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_alert_moves_from_open_to_acknowledged_to_closed_with_history() {
    let f = fixture();
    let id = f.trail.id.to_string();
    let (status, detail) = call(&f.app, Method::GET, &format!("/api/v1/alerts/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["rule_title"], "CloudTrail logging stopped");
    assert_eq!(detail["history"], json!([]));

    let (status, detail) = patch(
        &f.app,
        &id,
        json!({"status": "acknowledged", "assignee": "dana", "note": "looking at the trail"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["status"], "acknowledged");
    assert_eq!(detail["assignee"], "dana");
    assert_eq!(detail["notes"][0]["text"], "looking at the trail");
    assert_eq!(detail["notes"][0]["author"], "bootstrap-token");

    let (status, detail) = patch(
        &f.app,
        &id,
        json!({"status": "closed", "reason": "false_positive"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["status"], "closed");
    assert_eq!(detail["reason"], "false_positive");
    let history: Vec<(String, Value, Value)> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["actor"], "bootstrap-token");
            assert!(h["at"].is_string());
            (
                h["field"].as_str().unwrap().to_owned(),
                h["old"].clone(),
                h["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("status".into(), json!("open"), json!("acknowledged")),
            ("assignee".into(), Value::Null, json!("dana")),
            ("note".into(), Value::Null, json!("looking at the trail")),
            ("status".into(), json!("acknowledged"), json!("closed")),
            ("reason".into(), Value::Null, json!("false_positive")),
        ]
    );

    let (_, reopened) = patch(&f.app, &id, json!({"status": "open"})).await;
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["reason"], Value::Null);
}

#[tokio::test]
async fn invalid_changes_are_refused_with_a_reason_and_change_nothing() {
    let f = fixture();
    let id = f.trail.id.to_string();
    let cases = [
        (json!({"status": "closed"}), "reason"),
        (json!({"reason": "duplicate"}), "only given when closing"),
        (json!({"status": "open"}), "already open"),
        (json!({"status": "snoozed"}), "status"),
        (json!({"reason": "bored", "status": "closed"}), "reason"),
        (json!({}), "nothing to change"),
        (json!({"note": "  "}), "empty"),
        (json!({"owner": "x"}), "owner"),
    ];
    for (body, expected) in cases {
        let (status, reply) = patch(&f.app, &id, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (_, closed) = patch(
        &f.app,
        &id,
        json!({"status": "closed", "reason": "resolved"}),
    )
    .await;
    assert_eq!(closed["status"], "closed");
    let (status, reply) = patch(&f.app, &id, json!({"status": "acknowledged"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["error"].as_str().unwrap().contains("reopen"),
        "{reply}"
    );

    let (_, detail) = call(&f.app, Method::GET, &format!("/api/v1/alerts/{id}"), None).await;
    assert_eq!(
        detail["history"].as_array().unwrap().len(),
        2,
        "only the close"
    );

    let unknown = EventId::derive("nothing", &[]).to_string();
    let (status, _) = patch(&f.app, &unknown, json!({"status": "closed"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/alerts/{unknown}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alerts_are_listed_by_status_level_rule_and_query() {
    let f = fixture();
    let (trail, login) = (f.trail.id.to_string(), f.login.id.to_string());
    patch(
        &f.app,
        &trail,
        json!({"status": "acknowledged", "assignee": "dana"}),
    )
    .await;

    let list = |query: &'static str| listed(&f.app, query);
    assert_eq!(list("").await.len(), 2);
    assert_eq!(list("status=acknowledged").await, vec![trail.clone()]);
    assert_eq!(list("status=open").await, vec![login.clone()]);
    assert_eq!(list("level=high").await, vec![trail.clone()]);
    assert_eq!(list("rule=root-login").await, vec![login.clone()]);
    assert_eq!(list("q=status:acknowledged").await, vec![trail.clone()]);
    assert_eq!(list("q=assignee:dana").await, vec![trail.clone()]);
    assert_eq!(
        list("q=rule_title:%22logging%20stopped%22").await,
        vec![trail.clone()]
    );
    assert_eq!(list("q=tags:attack.defense-evasion").await.len(), 2);
    assert_eq!(list("q=root").await, vec![login.clone()]);
    assert!(list("status=closed").await.is_empty());

    let (status, _) = call(&f.app, Method::GET, "/api/v1/alerts?status=snoozed", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, reply) = call(&f.app, Method::GET, "/api/v1/alerts?q=status:(", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["position"].is_number());
}

/// `since` follows when Vigil raised an alert, which its own clock writes; `from` and `to`
/// the alert's time, which is its last event's and so the sender's to choose. A poller for new
/// alerts uses `since`, and an event dated years back does not slip past it.
#[tokio::test]
async fn alerts_are_listed_by_detection_time_and_by_their_own_time() {
    let f = fixture();
    let mut backdated = alert(
        "trail-stopped",
        "CloudTrail logging stopped",
        Level::High,
        &[event(2)],
    );
    backdated.time = Utc.with_ymd_and_hms(2019, 1, 1, 0, 0, 0).unwrap();
    backdated.detected = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    f.store
        .index_alerts(std::slice::from_ref(&backdated))
        .unwrap();
    f.store.commit().unwrap();
    let (trail, login, backdated) = (
        f.trail.id.to_string(),
        f.login.id.to_string(),
        backdated.id.to_string(),
    );

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }
    let app = &f.app;
    let list = |query: &'static str| async move { sorted(listed(app, query).await) };
    assert_eq!(
        list("since=2026-11-28T10:00:00Z").await,
        vec![backdated.clone()]
    );
    assert_eq!(
        list("since=2026-11-28T09:00:00Z").await,
        sorted(vec![trail.clone(), backdated.clone()])
    );
    assert_eq!(list("from=2026-11-28").await, vec![trail.clone()]);
    assert_eq!(
        list("to=2026-11-28").await,
        sorted(vec![login.clone(), backdated.clone()])
    );
    assert_eq!(
        list("from=2026-11-27&to=2026-11-28&since=2026-11-27T09:00:00Z").await,
        vec![login]
    );
    assert_eq!(list("since=&from=%20").await.len(), 3);

    for (query, names) in [("since=soon", "since:"), ("to=2026-13-01", "to:")] {
        let (status, reply) = call(
            &f.app,
            Method::GET,
            &format!("/api/v1/alerts?{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.starts_with(names), "{query}: {error}");
    }
}

#[tokio::test]
async fn a_replayed_alert_keeps_its_lifecycle_state() {
    let f = fixture();
    let id = f.trail.id.to_string();
    patch(
        &f.app,
        &id,
        json!({"status": "closed", "reason": "duplicate"}),
    )
    .await;
    // The detector raises the same alert again after a crash: same rule, same events.
    let again = alert(
        "trail-stopped",
        "CloudTrail logging stopped",
        Level::High,
        &f.events,
    );
    assert_eq!(again.id, f.trail.id);
    f.store.index_alerts(&[again]).unwrap();
    f.store.commit().unwrap();
    let (_, detail) = call(&f.app, Method::GET, &format!("/api/v1/alerts/{id}"), None).await;
    assert_eq!(detail["status"], "closed");
    assert_eq!(detail["reason"], "duplicate");
    let (_, listing) = call(&f.app, Method::GET, "/api/v1/alerts?status=closed", None).await;
    assert_eq!(
        ids(&listing),
        vec![id.clone()],
        "the index copy is not reset either"
    );
    let (_, listing) = call(&f.app, Method::GET, "/api/v1/alerts", None).await;
    assert_eq!(ids(&listing).len(), 2, "still one copy of the alert");
}

#[tokio::test]
async fn an_alert_pivots_to_its_events() {
    let f = fixture();
    let uri = format!("/api/v1/alerts/{}/events", f.trail.id);
    let (status, body) = call(&f.app, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = f.events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(got, expected, "oldest first, across partitions");
    let unknown = format!("/api/v1/alerts/{}/events", EventId::derive("x", &[]));
    let (status, _) = call(&f.app, Method::GET, &unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changes_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    let events = vec![event(0)];
    let trail = alert(
        "trail-stopped",
        "CloudTrail logging stopped",
        Level::High,
        &events,
    );
    {
        let store = Store::open(dir.path()).unwrap();
        store.index_events(&events).unwrap();
        store.index_alerts(std::slice::from_ref(&trail)).unwrap();
        store.commit().unwrap();
        store
            .update_alert(
                &trail.id.to_string(),
                &vigil_store::AlertChange {
                    assignee: Some("lee".into()),
                    ..Default::default()
                },
                "api",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let detail = store.alert(&trail.id.to_string()).unwrap();
    assert_eq!(detail.view.state.assignee.as_deref(), Some("lee"));
    assert_eq!(detail.history.len(), 1);
}

#[tokio::test]
async fn the_history_and_the_audit_log_name_who_changed_an_alert() {
    let f = fixture();
    let id = f.trail.id.to_string();
    let token = |name: &str, scopes: &str| {
        f.gate
            .db
            .create_token(name, &scopes.parse().unwrap(), None, "test")
            .unwrap()
            .secret
    };
    let triager = token("triager", "triage");
    let reader = token("reader", "read");

    // A read token may look but not change.
    let uri = format!("/api/v1/alerts/{id}");
    let (status, _) = send_api(&f.app, Method::GET, &uri, reader.expose(), None).await;
    assert_eq!(status, StatusCode::OK);
    let change = json!({"assignee": "dana", "note": "mine"});
    let (status, body) = send_api(
        &f.app,
        Method::PATCH,
        &uri,
        reader.expose(),
        Some(change.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, detail) =
        send_api(&f.app, Method::PATCH, &uri, triager.expose(), Some(change)).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["notes"][0]["author"], "token:triager");
    for entry in detail["history"].as_array().unwrap() {
        assert_eq!(entry["actor"], "token:triager", "{entry}");
    }
    // An invalid change is refused, and recorded as refused.
    let (status, _) = send_api(
        &f.app,
        Method::PATCH,
        &uri,
        triager.expose(),
        Some(json!({"reason": "duplicate"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, log) = call(
        &f.app,
        Method::GET,
        "/api/v1/audit?action=alert.update",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    // Newest first: the refusal, then the change.
    assert_eq!(entries[0]["outcome"], "failure");
    assert_eq!(entries[1]["actor"], "token:triager");
    assert_eq!(entries[1]["outcome"], "success");
    assert_eq!(entries[1]["target"], id.as_str());
    assert_eq!(entries[1]["detail"]["assignee"], "dana");
    assert!(entries.iter().all(|e| e["actor"] == "token:triager"));
}
