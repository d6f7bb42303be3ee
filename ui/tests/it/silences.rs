//! Silences through the API and the page, behind the real gate: who may make and end them,
//! the forms' CSRF token, the audit log, and hostile matchers and comments shown as text.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Outcome, Role, Secret};
use vigil_notify::silences::Silences;
use vigil_store::Store;
use vigil_ui::{api_router, guard, page_router, ApiToken, Gate, UiState};

use crate::pages::{form, send, PASSWORD};

struct Fixture {
    _dir: TempDir,
    app: Router,
    api: Router,
    access: Arc<AccessDb>,
    silences: Arc<Silences>,
}

fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [("vera", Role::Viewer), ("ana", Role::Analyst)] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(
        access.clone(),
        Some(ApiToken::new("bootstrap-token-for-the-silences-test")),
        AccessConfig::default(),
        false,
    ));
    let silences = Arc::new(Silences::open(&vigil_notify::db::path_in(dir.path())).unwrap());
    let state = UiState {
        store,
        gate: gate.clone(),
        rules: Default::default(),
        backtests: None,
        playbook_runs: None,
        notifications: None,
        silences: Some(silences.clone()),
    };
    Fixture {
        _dir: dir,
        app: guard(page_router(state.clone()), gate.clone()),
        api: guard(api_router(state), gate),
        access,
        silences,
    }
}

impl Fixture {
    async fn sign_in(&self, name: &str) -> String {
        crate::pages::sign_in(&self.app, name, PASSWORD).await
    }

    async fn page(&self, session: &str) -> (StatusCode, String) {
        let (status, _, body) = send(
            &self.app,
            Method::GET,
            "/silences",
            &[("cookie", session)],
            None,
        )
        .await;
        (status, body)
    }

    async fn post(
        &self,
        session: &str,
        uri: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let (status, headers, body) = send(
            &self.app,
            Method::POST,
            uri,
            &[("cookie", session)],
            Some(&form(fields)),
        )
        .await;
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(body))
    }

    async fn api(
        &self,
        method: Method,
        uri: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        crate::pages::send_api(&self.api, method, uri, bearer, body).await
    }

    fn token(&self, name: &str, scopes: &str) -> String {
        crate::pages::token(&self.access, name, scopes)
    }

    fn audited(&self, action: &str) -> Vec<vigil_access::AuditRecord> {
        self.access
            .audit_entries(&AuditFilter {
                action: Some(action.into()),
                limit: 20,
                ..AuditFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|entry| entry.record)
            .collect()
    }
}

fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_api_makes_lists_and_ends_silences_for_triage_tokens_only() {
    let f = fixture();
    let triager = f.token("triager", "triage");
    let reader = f.token("reader", "read");
    let body = json!({
        "matchers": { "rule_id": "aws_root_login", "level": ">=high" },
        "comment": "planned break-glass drill",
        "duration": "2h",
    });
    let (status, _) = f
        .api(
            Method::POST,
            "/api/v1/silences",
            &reader,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.silences.list(10).unwrap().is_empty());

    let (status, made) = f
        .api(Method::POST, "/api/v1/silences", &triager, Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["silence"]["id"].as_i64().unwrap();
    assert_eq!(made["silence"]["author"], "token:triager");

    // Bad requests are refused with a reason, and audited as failures.
    for (bad, says) in [
        (
            json!({ "matchers": {}, "comment": "c", "duration": "1h" }),
            "at least one matcher",
        ),
        (
            json!({ "matchers": { "colour": "red" }, "comment": "c", "duration": "1h" }),
            "unknown alert field",
        ),
        (
            json!({ "matchers": { "rule_id": "x" }, "comment": "c" }),
            "how long",
        ),
        (
            json!({ "matchers": { "rule_id": "x" }, "comment": "c", "duration": "1h", "extra": 1 }),
            "extra",
        ),
    ] {
        let (status, answer) = f
            .api(Method::POST, "/api/v1/silences", &triager, Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }

    let (status, listed) = f.api(Method::GET, "/api/v1/silences", &reader, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["silences"][0]["id"], id);
    assert_eq!(listed["silences"][0]["active"], true);

    let expire = format!("/api/v1/silences/{id}/expire");
    let (status, _) = f.api(Method::POST, &expire, &reader, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, ended) = f.api(Method::POST, &expire, &triager, None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["silence"]["expired_by"], "token:triager");
    let (status, _) = f
        .api(Method::POST, "/api/v1/silences/999/expire", &triager, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = f.api(Method::GET, "/api/v1/silences", &reader, None).await;
    assert_eq!(listed["silences"][0]["active"], false);

    let made = f.audited("silence.create");
    let successes: Vec<_> = made
        .iter()
        .filter(|r| r.outcome == Outcome::Success)
        .collect();
    assert_eq!(successes.len(), 1, "{made:?}");
    assert_eq!(successes[0].actor, "token:triager");
    assert_eq!(
        successes[0].target.as_deref(),
        Some(format!("silence {id}").as_str())
    );
    assert_eq!(
        made.iter()
            .filter(|r| r.outcome == Outcome::Failure)
            .count(),
        3,
        "{made:?}"
    );
    let ended = f.audited("silence.expire");
    assert!(
        ended
            .iter()
            .any(|r| r.outcome == Outcome::Success && r.actor == "token:triager"),
        "{ended:?}"
    );
}

#[tokio::test]
async fn the_page_makes_and_ends_silences_with_the_csrf_token_and_shows_text_as_text() {
    let f = fixture();
    let ana = f.sign_in("ana").await;
    let vera = f.sign_in("vera").await;
    let (status, html) = f.page(&ana).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csrf = csrf_in(&html);
    let hostile = "<script>alert(1)</script>";
    let fields = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("matchers", format!("rule_id={hostile}\nlevel=>=high")),
            ("comment", format!("drill {hostile}")),
            ("duration", "30m".to_owned()),
        ]
    };

    // Without the token, or with another's, nothing is made.
    let no_token = fields("");
    let pairs: Vec<(&str, &str)> = no_token.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = f.post(&ana, "/silences", &pairs).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.silences.list(10).unwrap().is_empty());
    // A viewer is refused even with its own token.
    let (_, vera_html) = f.page(&vera).await;
    assert!(
        !vera_html.contains(r#"action="/silences""#),
        "no form for a viewer"
    );
    let vera_fields = fields(&csrf_in(&vera_html));
    let pairs: Vec<(&str, &str)> = vera_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = f.post(&vera, "/silences", &pairs).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.silences.list(10).unwrap().is_empty());

    let good = fields(&csrf);
    let pairs: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location) = f.post(&ana, "/silences", &pairs).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let made = f.silences.list(10).unwrap();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].author, "ana");
    let (_, html) = f.page(&ana).await;
    assert!(!html.contains(hostile), "attacker text stays text");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains(&format!(r#"action="/silences/{}/expire""#, made[0].id)));

    // A bad matcher line is refused on the page, the form kept.
    let bad = [
        ("csrf", csrf.as_str()),
        ("matchers", "no equals sign"),
        ("comment", "c"),
        ("duration", "1h"),
    ];
    let (status, html) = f.post(&ana, "/silences", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("field=pattern"), "{html}");

    let expire = format!("/silences/{}/expire", made[0].id);
    let (status, _) = f.post(&ana, &expire, &[("csrf", "wrong")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f.silences.list(1).unwrap()[0].expired_by.is_none());
    let (status, _) = f.post(&ana, &expire, &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        f.silences.list(1).unwrap()[0].expired_by.as_deref(),
        Some("ana")
    );

    let made = f.audited("silence.create");
    assert!(
        made.iter()
            .any(|r| r.outcome == Outcome::Success && r.actor == "ana"),
        "{made:?}"
    );
    let ended = f.audited("silence.expire");
    assert!(
        ended
            .iter()
            .any(|r| r.outcome == Outcome::Success && r.actor == "ana"),
        "{ended:?}"
    );
}
