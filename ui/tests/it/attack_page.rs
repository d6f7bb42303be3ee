//! The ATT&CK coverage page behind the real gate: a viewer reads it; techniques sit under
//! their tactics with their rules and last week's hits; tags from rule files stay text, and
//! only well-formed technique tags become links.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, Role, Secret};
use vigil_event::{Alert, EventId, Level, LogSource, Source};
use vigil_store::Store;
use vigil_ui::{guard, page_router, Gate, RuleCatalog, RuleInfo, UiState};

use crate::pages::{form, send, PASSWORD};

fn rule(title: &str, tags: &[&str]) -> RuleInfo {
    RuleInfo {
        title: title.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        enabled: true,
        ..RuleInfo::default()
    }
}

fn alert(rule_id: &str, n: u8) -> Alert {
    let event = EventId::from_bytes([n; 16]);
    Alert {
        id: Alert::derive_id(rule_id, &[event]),
        rule_id: rule_id.into(),
        rule_title: rule_id.into(),
        level: Level::High,
        tags: Vec::new(),
        event_ids: vec![event],
        time: Utc::now(),
        detected: Utc::now(),
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::default(),
        group: Default::default(),
        matched: Vec::new(),
        event_position: None,
    }
}

#[tokio::test]
async fn techniques_show_under_their_tactics_with_rules_and_hits_as_text() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store
        .index_alerts(&[alert("brute", 1), alert("brute", 2), alert("keys", 3)])
        .unwrap();
    store.commit().unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    access
        .add_user("vera", Role::Viewer, &Secret::new(PASSWORD))
        .unwrap();
    let gate = Arc::new(Gate::new(access, None, AccessConfig::default(), false));
    let catalog = RuleCatalog::loaded([
        (
            "brute".to_owned(),
            rule("Brute force", &["attack.credential-access", "attack.t1110"]),
        ),
        (
            "keys".to_owned(),
            rule(
                "Keys <script>alert(1)</script>",
                &["attack.t1552.004", "attack.t1552\"><script>x</script>"],
            ),
        ),
    ]);
    let state = UiState {
        store,
        gate: gate.clone(),
        rules: Arc::new(catalog).into(),
        backtests: None,
        playbook_runs: None,
        notifications: None,
        silences: None,
    };
    let app = guard(page_router(state), gate);
    let login = form(&[("username", "vera"), ("password", PASSWORD)]);
    let (_, headers, _) = send(&app, Method::POST, "/login", &[], Some(&login)).await;
    let session = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, html) = send(
        &app,
        Method::GET,
        "/rules/attack",
        &[("cookie", session.as_str())],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("<script>"), "{html}");
    // The malformed technique tag is no technique: not shown, and never a link.
    assert!(
        !html.contains("t1552&quot;") && !html.contains("t1552\""),
        "{html}"
    );
    // A viewer may not backtest, so is not offered it.
    assert!(!html.contains("/rules/backtest"), "{html}");
    // T1110 under Credential Access, with its rule and its two alerts of the week.
    assert!(
        html.contains(
            r#"<a href="https://attack.mitre.org/techniques/T1110/" rel="noreferrer">T1110</a>"#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<a href="/rules?q=attack.t1110">1 rule</a>, 2 hits (7 d)"#),
        "{html}"
    );
    // A rule without a tactic tag puts its technique in a column of its own.
    assert!(html.contains("No tactic tag"), "{html}");
    assert!(html.contains("T1552/004/"), "{html}");
    assert!(html.contains(", 1 hit (7 d)"), "{html}");
    // Tactics follow the kill chain.
    let initial = html.find("Initial Access").unwrap();
    let credential = html.find("Credential Access").unwrap();
    let impact = html.find(">Impact<").unwrap();
    assert!(initial < credential && credential < impact, "{html}");
}
