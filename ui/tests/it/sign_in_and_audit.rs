//! Signing in through the form and the audit log's page: failures that say no more than
//! they must and are audited, and the page admins read them on, attacker text as text.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use vigil_access::{AccessConfig, AuditFilter, Outcome, Role, Secret, ThrottleConfig};
use vigil_ui::{guard, page_router, Gate, UiState};

use crate::pages::{fixture, form, send, PASSWORD};

#[tokio::test]
async fn failed_sign_ins_say_the_same_and_are_audited() {
    let f = fixture().await;
    f.access
        .add_user("dora", Role::Analyst, &Secret::new(PASSWORD))
        .unwrap();
    f.access.disable_user("dora").unwrap();
    let hostile = r#"<img src=x onerror=alert(7)>"#;
    let mut answers = Vec::new();
    for (name, password) in [
        ("alice", "not the password at all"),
        ("nobody", PASSWORD),
        ("dora", PASSWORD),
        (hostile, PASSWORD),
    ] {
        let (status, headers, page) = send(
            &f.app,
            Method::POST,
            "/login",
            &[],
            Some(&form(&[("username", name), ("password", password)])),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {page}");
        assert!(headers.get("set-cookie").is_none(), "{name}");
        assert!(
            page.contains("That user name and password do not match."),
            "{page}"
        );
        assert!(!page.contains("<img src=x"), "{page}");
        answers.push(page.replace(&maud::html! { (name) }.into_string(), "NAME"));
    }
    // The pages differ only in the name tried, so they tell no one which names exist.
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));

    let failures = f
        .access
        .audit_entries(&AuditFilter {
            action: Some("sign_in".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    let failures: Vec<(&str, &str)> = failures
        .iter()
        .filter(|e| e.record.outcome == Outcome::Failure)
        .map(|e| {
            (
                e.record.actor.as_str(),
                e.record.reason.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (hostile, "unknown_or_disabled"),
            ("dora", "unknown_or_disabled"),
            ("nobody", "unknown_or_disabled"),
            ("alice", "wrong_password"),
        ]
    );
    // A sign-in posted from another site (login CSRF) is refused, right password or not.
    let (status, headers, _) = send(
        &f.app,
        Method::POST,
        "/login",
        &[("sec-fetch-site", "cross-site")],
        Some(&form(&[("username", "alice"), ("password", PASSWORD)])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("set-cookie").is_none());
    // An empty form is a mistake, not a guess.
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        "/login",
        &[],
        Some(&form(&[("username", "alice")])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admins_read_the_audit_log_as_text_and_others_may_not() {
    let f = fixture().await;
    let hostile = r#"</td><script>alert(8)</script>"#;
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        "/login",
        &[],
        Some(&form(&[
            ("username", hostile),
            ("password", "wrong password"),
        ])),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The analyst has no link to it and is refused.
    let (_, home) = f.get("/").await;
    assert!(!home.contains(r#"href="/audit""#), "{home}");
    let (status, _) = f.get("/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let admin = f.user("root", Role::Admin).await;
    let (_, home) = f.get_as(&admin, "/").await;
    assert!(home.contains(r#"href="/audit""#), "{home}");
    let (status, page) = f.get_as(&admin, "/audit").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("&lt;/td&gt;&lt;script&gt;alert(8)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    // Newest first: root's sign-in, before the hostile failure.
    let root_at = page
        .find("<td>root</td>")
        .expect("root's sign-in is listed");
    let hostile_at = page.find("&lt;/td&gt;").unwrap();
    assert!(root_at < hostile_at);
    assert!(page.contains("wrong_password") || page.contains("unknown_or_disabled"));

    // Filtered by actor, and by action.
    let (_, only_root) = f.get_as(&admin, "/audit?actor=root&action=").await;
    assert!(only_root.contains("<td>root</td>"), "{only_root}");
    assert!(!only_root.contains("<td>alice</td>"), "{only_root}");
    assert!(!only_root.contains("&lt;/td&gt;"), "{only_root}");
    let (_, sign_ins) = f.get_as(&admin, "/audit?action=sign_in").await;
    assert!(sign_ins.contains("<td>alice</td>"), "{sign_ins}");
    let (_, none) = f.get_as(&admin, "/audit?action=alert.update").await;
    assert!(none.contains("No entries here."), "{none}");
    // Paging back from before the first entry finds nothing; a mangled number is explained.
    let (_, before_all) = f.get_as(&admin, "/audit?before=1").await;
    assert!(before_all.contains("No entries here."), "{before_all}");
    let (status, mangled) = f.get_as(&admin, "/audit?before=x%3Cb%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        mangled.contains("&quot;x&lt;b&gt;&quot; is not an entry number"),
        "{mangled}"
    );
}

#[tokio::test]
async fn the_audit_page_goes_back_a_page_at_a_time_keeping_its_filters() {
    let f = fixture().await;
    // 130 entries by one actor among the sign-ins, newest last.
    for i in 0..130 {
        f.access
            .audit(vigil_access::AuditRecord {
                actor: "cli:ops".into(),
                action: "rules.reload".into(),
                outcome: Outcome::Success,
                target: Some(format!("run-{i:03}")),
                client_address: None,
                reason: None,
                detail: serde_json::Value::Null,
            })
            .unwrap();
    }
    let admin = f.user("root", Role::Admin).await;
    let (status, first) = f.get_as(&admin, "/audit?actor=cli%3Aops").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        first.contains("run-129") && first.contains("run-030"),
        "{first}"
    );
    assert!(!first.contains("run-029"), "{first}");
    let marker = r#"class="older" href=""#;
    let start = first.find(marker).expect("a link to older entries") + marker.len();
    let older = first[start..start + first[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(older.contains("actor=cli%3Aops"), "{older}");
    let (status, second) = f.get_as(&admin, &older).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        second.contains("run-029") && second.contains("run-000"),
        "{second}"
    );
    assert!(!second.contains("run-030"), "{second}");
    assert!(!second.contains("<td>root</td>"), "{second}");
    assert!(!second.contains(marker), "the last page links further back");
}

#[tokio::test]
async fn a_burst_of_guesses_sent_at_once_is_throttled_like_a_series() {
    let f = fixture().await;
    let config = AccessConfig {
        throttle: ThrottleConfig {
            free_failures: 2,
            lockout_failures: 3,
            address_lockout_failures: 1000,
            lockout_seconds: 600,
            ..ThrottleConfig::default()
        },
        ..AccessConfig::default()
    };
    let gate = Arc::new(Gate::new(f.access.clone(), None, config, false));
    let app = guard(
        page_router(UiState {
            store: f.store.clone(),
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        }),
        gate,
    );
    let guesses: Vec<_> = (0..24)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let guess = format!("guess number {i}");
                let body = form(&[("username", "alice"), ("password", &guess)]);
                send(&app, Method::POST, "/login", &[], Some(&body)).await.0
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("a guess answered {other}"),
        }
    }
    // Password checks run a few at a time, each after the throttle has seen the failures
    // before it: the lockout comes at three, give or take the checks already under way.
    assert!(
        (3..=6).contains(&checked),
        "{checked} of 24 guesses checked"
    );
}
