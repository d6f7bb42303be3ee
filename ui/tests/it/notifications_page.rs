//! The outbox in the console, behind the real gate: dead letters listed with their attempts
//! and last error (a receiver's hostile answer shown as text), re-sent by an analyst through
//! a form with the session's CSRF token and audited, never by a viewer; and each delivery's
//! state on the alert's page.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Outcome, Role, Secret};
use vigil_event::{Alert, EventId, Level, LogSource, Source};
use vigil_notify::{DeliveryState, Notification, NotificationKind, Outbox, OutboxConfig};
use vigil_store::Store;
use vigil_ui::{api_router, guard, page_router, Gate, UiState};

use crate::pages::{form, send, PASSWORD};

const HOSTILE: &str = "<script>alert('receiver')</script>";

struct Fixture {
    _dir: TempDir,
    app: Router,
    api: Router,
    access: Arc<AccessDb>,
    outbox: Arc<Outbox>,
    alert: Alert,
    id: String,
}

fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let time = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
    let source = Source {
        kind: "cloudtrail".into(),
        name: "org-trail".into(),
    };
    let event_ids = vec![EventId::derive("outbox page test", &[b"1"])];
    let alert = Alert {
        id: Alert::derive_id("trail-stopped", &event_ids),
        rule_id: "trail-stopped".into(),
        rule_title: "Trail stopped <b>now</b>".into(),
        level: Level::High,
        tags: vec![],
        event_ids,
        time,
        detected: time,
        source,
        logsource: LogSource::default(),
        group: BTreeMap::new(),
        matched: Vec::new(),
        event_position: None,
    };
    store.index_alerts(std::slice::from_ref(&alert)).unwrap();
    store.commit().unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [("vera", Role::Viewer), ("ana", Role::Analyst)] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(
        access.clone(),
        None,
        AccessConfig::default(),
        false,
    ));
    let outbox = Arc::new(Outbox::open_in(dir.path(), OutboxConfig::default()).unwrap());
    // A group key may hold alert values, which attackers write: `/` and `?` included.
    let id = "root/{rule_id=x?y}:pager:1".to_owned();
    let notification = Notification {
        id: id.clone(),
        receiver: "pager".into(),
        group_key: "root/{rule_id=x?y}".into(),
        group: BTreeMap::new(),
        kind: NotificationKind::Firing,
        alerts: vec![alert.clone()],
        total_alerts: 1,
        new_alerts: 1,
        created: time,
    };
    outbox.enqueue(&[notification], Utc::now()).unwrap();
    assert!(outbox
        .mark_dead(&id, &format!("refused with 400: {HOSTILE}"), Utc::now())
        .unwrap());
    let state = UiState {
        store,
        gate: gate.clone(),
        rules: Default::default(),
        backtests: None,
        playbook_runs: None,
        notifications: Some(outbox.clone()),
        silences: None,
    };
    Fixture {
        _dir: dir,
        app: guard(page_router(state.clone()), gate.clone()),
        api: guard(api_router(state), gate),
        access,
        outbox,
        alert,
        id,
    }
}

impl Fixture {
    async fn sign_in(&self, name: &str) -> String {
        crate::pages::sign_in(&self.app, name, PASSWORD).await
    }

    async fn get(&self, session: &str, uri: &str) -> (StatusCode, String) {
        crate::pages::get_page(&self.app, session, uri).await
    }

    fn resend_path(&self) -> String {
        format!("/notifications/{}/resend", encode(&self.id))
    }

    fn state(&self) -> DeliveryState {
        self.outbox.get(&self.id).unwrap().unwrap().state
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn csrf_in(html: &str) -> Option<String> {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker)? + marker.len();
    Some(html[start..start + html[start..].find('"').unwrap()].to_owned())
}

#[tokio::test]
async fn dead_letters_are_listed_as_text_and_only_analysts_may_re_send() {
    let f = fixture();
    let viewer = f.sign_in("vera").await;
    let (status, html) = f.get(&viewer, "/notifications").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Dead letters (1)"), "{html}");
    assert!(html.contains("pager") && html.contains("refused with 400"));
    // The receiver's answer and the rule's title are text, never markup.
    assert!(
        !html.contains(HOSTILE) && !html.contains("<b>now"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains(&format!("/alerts/{}", f.alert.id)));
    // A viewer is shown no form, and the gate refuses the post.
    assert!(!html.contains("Re-send"), "{html}");
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        &f.resend_path(),
        &[("cookie", viewer.as_str())],
        Some(&form(&[("csrf", "")])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(f.state(), DeliveryState::Dead);

    let analyst = f.sign_in("ana").await;
    let (_, html) = f.get(&analyst, "/notifications").await;
    assert!(html.contains("Re-send"), "{html}");
    assert!(html.contains(&f.resend_path()), "{html}");
    let csrf = csrf_in(&html).unwrap();
    // Without the session's token: refused, nothing changes.
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        &f.resend_path(),
        &[("cookie", analyst.as_str())],
        Some(&form(&[("csrf", "forged")])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(f.state(), DeliveryState::Dead);
    // With it: pending again, due now, attempts from zero, and audited.
    let (status, headers, body) = send(
        &f.app,
        Method::POST,
        &f.resend_path(),
        &[("cookie", analyst.as_str())],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(headers["location"]
        .to_str()
        .unwrap()
        .starts_with("/notifications?state=pending"));
    let row = f.outbox.get(&f.id).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (DeliveryState::Pending, 0));
    let audited = f
        .access
        .audit_entries(&AuditFilter {
            action: Some("notification.resend".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].record.actor, "ana");
    assert_eq!(audited[0].record.outcome, Outcome::Success);
    assert_eq!(audited[0].record.target.as_deref(), Some(f.id.as_str()));
    // Again: nothing dead to re-send.
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        &f.resend_path(),
        &[("cookie", analyst.as_str())],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_alert_page_shows_each_delivery_and_the_api_lists_by_state() {
    let f = fixture();
    let viewer = f.sign_in("vera").await;
    let (status, html) = f.get(&viewer, &format!("/alerts/{}", f.alert.id)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let section = &html[html.find("<h2>Notifications</h2>").expect(&html)..];
    assert!(section.contains("pager") && section.contains("firing"));
    assert!(section.contains("delivery-dead"), "{section}");
    assert!(!section.contains(HOSTILE));

    let bearer = f
        .access
        .create_token("reader", &"read".parse().unwrap(), None, "test")
        .unwrap()
        .secret
        .expose()
        .to_owned();
    let get = |uri: &'static str| {
        let request = axum::http::Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {bearer}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let api = f.api.clone();
        async move {
            let response = tower::ServiceExt::oneshot(api, request).await.unwrap();
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let (status, dead) = get("/api/v1/notifications").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dead["notifications"][0]["id"], f.id.as_str());
    assert_eq!(dead["notifications"][0]["attempts"], 1);
    assert_eq!(
        dead["notifications"][0]["alert_ids"][0],
        f.alert.id.to_string()
    );
    let (_, pending) = get("/api/v1/notifications?state=pending").await;
    assert_eq!(pending["notifications"].as_array().unwrap().len(), 0);
    let (status, bad) = get("/api/v1/notifications?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"]
        .as_str()
        .unwrap()
        .contains("dead, pending or sent"));
}
