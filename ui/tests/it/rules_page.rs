//! The rules pages and API behind the real gate: who may see, reload, enable and disable
//! rules, the CSRF check on the forms, the audit log of each change, and rule text (which
//! comes from pull requests) kept as text. The rules are a small runtime of this test's own:
//! the ui crate only knows the `RuleRuntime` trait, whose real implementation (the pipeline's)
//! has its own tests.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::Utc;
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Outcome, Role, Secret};
use vigil_event::{Level, LogSource};
use vigil_store::Store;
use vigil_ui::rule_catalog::RuleFailure;
use vigil_ui::rule_runtime::{ReloadOutcome, RuleRuntimeError};
use vigil_ui::{
    api_router, guard, page_router, ApiToken, Gate, RuleCatalog, RuleInfo, RuleRuntime, Rules,
    UiState,
};

use crate::pages::{form, send, PASSWORD};

const RULE_ID: &str = "5f1c0000-0000-4000-8000-000000000001";
const HOSTILE_TITLE: &str = "Brute <script>alert('title')</script> force";
const HOSTILE_YAML: &str = "title: x\n# </pre><script>alert('yaml')</script>\n";
const TOKEN: &str = "rules-page-test-token";

/// Rules held in memory, changed as the real runtime would change them.
struct TestRules {
    enabled: Mutex<bool>,
    last: Mutex<Option<ReloadOutcome>>,
}

impl TestRules {
    fn outcome(&self, trigger: &str, swapped: bool) -> ReloadOutcome {
        ReloadOutcome {
            at: Utc::now(),
            trigger: trigger.into(),
            swapped,
            generation: 1,
            rules: 1,
            errors: if swapped {
                Vec::new()
            } else {
                vec![RuleFailure {
                    file: "rules/new.yml".into(),
                    line: 3,
                    reason: "unknown modifier <b>x</b>".into(),
                }]
            },
            message: None,
        }
    }
}

impl RuleRuntime for TestRules {
    fn catalog(&self) -> Arc<RuleCatalog> {
        let info = RuleInfo {
            title: HOSTILE_TITLE.into(),
            level: Some(Level::High),
            logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
            file: "rules/brute.yml".into(),
            line: 1,
            status: Some("experimental".into()),
            enabled: *self.enabled.lock().unwrap(),
            yaml: HOSTILE_YAML.into(),
            ..RuleInfo::default()
        };
        let failures = vec![RuleFailure {
            file: "rules/broken <i>.yml".into(),
            line: 7,
            reason: "mapping values are not allowed here".into(),
        }];
        Arc::new(RuleCatalog::loaded([(RULE_ID.to_owned(), info)]).with_failures(failures, 1))
    }

    fn last_reload(&self) -> Option<ReloadOutcome> {
        self.last.lock().unwrap().clone()
    }

    fn reload(&self, trigger: &str) -> Result<ReloadOutcome, RuleRuntimeError> {
        // The test's rule files have an error: the reload is refused.
        let outcome = self.outcome(trigger, false);
        *self.last.lock().unwrap() = Some(outcome.clone());
        Ok(outcome)
    }

    fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        _actor: &str,
    ) -> Result<ReloadOutcome, RuleRuntimeError> {
        if id != RULE_ID {
            return Err(RuleRuntimeError::UnknownRule(id.into()));
        }
        *self.enabled.lock().unwrap() = enabled;
        Ok(self.outcome(if enabled { "enable" } else { "disable" }, true))
    }
}

struct Fixture {
    _dir: TempDir,
    app: Router,
    api: Router,
    access: Arc<AccessDb>,
    rules: Arc<TestRules>,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [("vera", Role::Viewer), ("rita", Role::RuleAuthor)] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(
        access.clone(),
        Some(ApiToken::new(TOKEN)),
        AccessConfig::default(),
        false,
    ));
    let rules = Arc::new(TestRules {
        enabled: Mutex::new(true),
        last: Mutex::new(None),
    });
    let state = UiState {
        store,
        gate: gate.clone(),
        rules: Rules::new(rules.clone()),
        backtests: None,
        playbook_runs: None,
        notifications: None,
        silences: None,
    };
    Fixture {
        _dir: dir,
        app: guard(page_router(state.clone()), gate.clone()),
        api: guard(api_router(state), gate),
        access,
        rules,
    }
}

impl Fixture {
    async fn sign_in(&self, name: &str) -> String {
        crate::pages::sign_in(&self.app, name, PASSWORD).await
    }

    async fn get(&self, session: &str, uri: &str) -> (StatusCode, String) {
        crate::pages::get_page(&self.app, session, uri).await
    }

    async fn post(&self, session: &str, uri: &str, body: &str) -> StatusCode {
        send(
            &self.app,
            Method::POST,
            uri,
            &[("cookie", session)],
            Some(body),
        )
        .await
        .0
    }

    fn enabled(&self) -> bool {
        *self.rules.enabled.lock().unwrap()
    }

    fn audited(&self, action: &str) -> Vec<vigil_access::AuditEntry> {
        self.access
            .audit_entries(&AuditFilter {
                action: Some(action.into()),
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap()
    }
}

fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

fn state_uri() -> String {
    format!("/rules/{RULE_ID}/state")
}

#[tokio::test]
async fn the_list_shows_each_rule_and_each_failure_as_text() {
    let f = fixture().await;
    let vera = f.sign_in("vera").await;
    let (status, html) = f.get(&vera, "/rules").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(&format!(r#"href="/rules/{RULE_ID}""#)),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("Brute &lt;script&gt;"), "{html}");
    assert!(html.contains("aws / cloudtrail") && html.contains("experimental"));
    assert!(html.contains("rules/broken &lt;i&gt;.yml") && html.contains("<td>7</td>"));
    assert!(html.contains("mapping values are not allowed here"));
    assert!(html.contains("1 rules and correlations loaded, 1 failed to load, 0 disabled"));
    // A viewer gets no reload button.
    assert!(!html.contains(r#"action="/rules/reload""#), "{html}");

    // The filters narrow the list.
    let (_, html) = f.get(&vera, "/rules?q=nothing-like-it").await;
    assert!(html.contains("No rule fits these filters."), "{html}");
    let (_, html) = f.get(&vera, "/rules?level=high&enabled=yes&q=BRUTE").await;
    assert!(html.contains(&format!("/rules/{RULE_ID}")), "{html}");
    let (_, html) = f.get(&vera, "/rules?enabled=no").await;
    assert!(!html.contains(&format!("/rules/{RULE_ID}")), "{html}");

    // Its page shows the YAML as text.
    let (status, html) = f.get(&vera, &format!("/rules/{RULE_ID}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("# &lt;/pre&gt;&lt;script&gt;alert('yaml')&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        !html.contains(&state_uri()),
        "a viewer got the form: {html}"
    );
    let (status, _) = f.get(&vera, "/rules/no-such-rule").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The health page counts them too.
    let (_, html) = f.get(&vera, "/health").await;
    assert!(
        html.contains("Rules: 1 loaded, 1 failed to load, 0 disabled"),
        "{html}"
    );
}

#[tokio::test]
async fn a_viewer_cannot_disable_a_rule_and_a_rule_author_can_with_the_form_s_token() {
    let f = fixture().await;
    let vera = f.sign_in("vera").await;
    let (_, html) = f.get(&vera, "/rules").await;
    let vera_csrf = csrf_in(&html);
    let body = form(&[("csrf", &vera_csrf), ("enabled", "false")]);
    assert_eq!(
        f.post(&vera, &state_uri(), &body).await,
        StatusCode::FORBIDDEN
    );
    assert!(f.enabled());

    let rita = f.sign_in("rita").await;
    let (_, html) = f.get(&rita, &format!("/rules/{RULE_ID}")).await;
    assert!(html.contains("Disable this rule"), "{html}");
    let csrf = csrf_in(&html);
    // Without the session's token, or with another session's, nothing changes.
    for wrong in ["", "not-the-token", vera_csrf.as_str()] {
        let body = form(&[("csrf", wrong), ("enabled", "false")]);
        assert_eq!(
            f.post(&rita, &state_uri(), &body).await,
            StatusCode::FORBIDDEN
        );
    }
    assert!(f.enabled());
    assert!(f.audited("rule.disable").is_empty());

    let body = form(&[("csrf", &csrf), ("enabled", "false")]);
    assert_eq!(
        f.post(&rita, &state_uri(), &body).await,
        StatusCode::SEE_OTHER
    );
    assert!(!f.enabled());
    let audited = f.audited("rule.disable");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].record.actor, "rita");
    assert_eq!(audited[0].record.target.as_deref(), Some(RULE_ID));
    assert_eq!(audited[0].record.outcome, Outcome::Success);
    let (_, html) = f.get(&rita, &format!("/rules/{RULE_ID}")).await;
    assert!(html.contains("Enable this rule"), "{html}");

    let body = form(&[("csrf", &csrf), ("enabled", "true")]);
    assert_eq!(
        f.post(&rita, &state_uri(), &body).await,
        StatusCode::SEE_OTHER
    );
    assert!(f.enabled());
    assert_eq!(f.audited("rule.enable")[0].record.actor, "rita");

    // An unknown rule is refused, and the refusal audited.
    let body = form(&[("csrf", &csrf), ("enabled", "false")]);
    let status = f.post(&rita, "/rules/no-such-rule/state", &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let refused = f.audited("rule.disable");
    assert_eq!(refused[0].record.outcome, Outcome::Failure);
    assert_eq!(refused[0].record.reason.as_deref(), Some("unknown rule"));
    assert_eq!(refused[0].record.target.as_deref(), Some("no-such-rule"));
}

#[tokio::test]
async fn a_refused_reload_is_reported_on_the_list_and_audited() {
    let f = fixture().await;
    let rita = f.sign_in("rita").await;
    let (_, html) = f.get(&rita, "/rules").await;
    assert!(html.contains(r#"action="/rules/reload""#), "{html}");
    let csrf = csrf_in(&html);
    assert_eq!(
        f.post(&rita, "/rules/reload", "csrf=wrong").await,
        StatusCode::FORBIDDEN
    );
    assert!(f.audited("rules.reload").is_empty());
    let body = form(&[("csrf", &csrf)]);
    assert_eq!(
        f.post(&rita, "/rules/reload", &body).await,
        StatusCode::SEE_OTHER
    );
    let (_, html) = f.get(&rita, "/rules").await;
    assert!(
        html.contains("was refused; the rules running stay"),
        "{html}"
    );
    assert!(
        html.contains("rules/new.yml") && html.contains("unknown modifier &lt;b&gt;x&lt;/b&gt;")
    );
    let audited = f.audited("rules.reload");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].record.actor, "rita");
    assert_eq!(audited[0].record.outcome, Outcome::Failure);
}

#[tokio::test]
async fn the_api_lists_rules_and_disables_them_for_the_token() {
    let f = fixture().await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let (status, _, body) = send(&f.api, Method::GET, "/api/v1/rules", &auth, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["rules"][0]["id"], RULE_ID);
    assert_eq!(listed["rules"][0]["enabled"], true);
    assert_eq!(listed["failures"][0]["line"], 7);

    let uri = format!("/api/v1/rules/{RULE_ID}/disable");
    let (status, _, body) = send(&f.api, Method::POST, &uri, &auth, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!f.enabled());
    assert_eq!(f.audited("rule.disable")[0].record.actor, "bootstrap-token");

    let (status, _, body) = send(&f.api, Method::POST, "/api/v1/rules/reload", &auth, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["swapped"], false);
    assert_eq!(refused["errors"][0]["file"], "rules/new.yml");
}
