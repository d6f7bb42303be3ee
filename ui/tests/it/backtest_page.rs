//! Backtests behind the real gate: who may start one and read it, the CSRF check on the form,
//! the refreshing results page, the audit of each start, and rule text and event values kept
//! as text. The backtester is this test's own (the ui crate knows only the trait; the
//! pipeline's real one has its own tests): it "matches" events whose `eventName` is
//! `StopLogging`, and waits for the test's word before it finishes, so the page can be seen
//! while the job runs.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::Utc;
use serde_json::{json, Value};
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Role, Secret};
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::Store;
use vigil_ui::backtest_jobs::{
    BacktestError, BacktestJobs, BacktestLimits, BacktestProgress, BacktestReport, BacktestRequest,
    BacktestRule, Backtester, MatchedEvent, PreparedBacktest, RuleProblem,
};
use vigil_ui::{api_router, guard, page_router, ApiToken, Gate, UiState};

use crate::pages::{form, send, PASSWORD};

const TOKEN: &str = "backtest-page-test-token";
const GOOD_RULE: &str = "title: stops\nlogsource: {product: aws}\n";
const HOSTILE_VALUE: &str = "StopLogging<script>alert(1)</script>";

/// Lets jobs finish once the test says so.
#[derive(Default)]
struct Gatekeeper {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gatekeeper {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

struct TestBacktester(Arc<Gatekeeper>);

struct TestRun(Arc<Gatekeeper>);

impl Backtester for TestBacktester {
    fn prepare(&self, rule: &BacktestRule) -> Result<Box<dyn PreparedBacktest>, BacktestError> {
        match rule {
            BacktestRule::Yaml(text) if text.contains("broken") => Err(BacktestError::Rule {
                problems: vec![RuleProblem {
                    line: 3,
                    reason: "unknown modifier <b>x</b>".into(),
                }],
            }),
            BacktestRule::Yaml(_) => Ok(Box::new(TestRun(self.0.clone()))),
            BacktestRule::Stored(id) => Err(BacktestError::UnknownRule { id: id.clone() }),
        }
    }
}

impl PreparedBacktest for TestRun {
    fn rules(&self) -> Vec<String> {
        vec!["stops".into()]
    }

    fn run(
        self: Box<Self>,
        store: &Store,
        request: &BacktestRequest,
        progress: &BacktestProgress,
    ) -> Result<BacktestReport, BacktestError> {
        let page = store
            .events_in_time_order(request.from, request.to, &request.visibility, None, 100)
            .map_err(|_| BacktestError::Failed)?;
        progress.set_estimated_total(page.events.len() as u64);
        self.0.wait();
        let mut report = BacktestReport {
            rules: self.rules(),
            ..BacktestReport::default()
        };
        for event in &page.events {
            report.events_scanned += 1;
            progress.add_scanned(1);
            let document = event.document().unwrap();
            let name = document["eventName"].as_str().unwrap_or_default();
            if name.starts_with("StopLogging") {
                report.matched_events += 1;
                report.matches.push(MatchedEvent {
                    id: event.id.to_string(),
                    time: event.time,
                    source_kind: event.source.kind.clone(),
                    source_name: event.source.name.clone(),
                    rules: vec!["stops".into()],
                    fields: (request.summarise)(event, &document),
                });
            }
        }
        Ok(report)
    }
}

struct Fixture {
    _dir: TempDir,
    app: Router,
    api: Router,
    access: Arc<AccessDb>,
    gatekeeper: Arc<Gatekeeper>,
}

fn event(n: u8, name: &str, kind: &str) -> Event {
    Event {
        id: EventId::from_bytes([n; 16]),
        time: Utc::now() - chrono::Duration::minutes(10),
        received: Utc::now(),
        source: Source {
            kind: kind.into(),
            name: kind.into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&json!({ "eventName": name }).to_string()).unwrap(),
        fields: serde_json::Map::new(),
    }
}

fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store
        .index_events(&[
            event(1, HOSTILE_VALUE, "cloudtrail"),
            event(2, "DescribeTrails", "cloudtrail"),
            // Vigil's own audit log: only admins may read it, so it is not backtested for
            // anyone else either.
            event(3, "StopLogging-in-the-audit-log", "vigil-audit"),
        ])
        .unwrap();
    store.commit().unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [
        ("vera", Role::Viewer),
        ("ana", Role::Analyst),
        ("rita", Role::RuleAuthor),
    ] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(
        access.clone(),
        Some(ApiToken::new(TOKEN)),
        AccessConfig::default(),
        false,
    ));
    let gatekeeper = Arc::new(Gatekeeper::default());
    let jobs = BacktestJobs::new(
        Arc::new(TestBacktester(gatekeeper.clone())),
        BacktestLimits::default(),
    );
    let state = UiState {
        store,
        gate: gate.clone(),
        rules: Default::default(),
        backtests: Some(Arc::new(jobs)),
        playbook_runs: None,
        notifications: None,
        silences: None,
    };
    Fixture {
        _dir: dir,
        app: guard(page_router(state.clone()), gate.clone()),
        api: guard(api_router(state), gate),
        access,
        gatekeeper,
    }
}

impl Fixture {
    async fn sign_in(&self, name: &str) -> String {
        crate::pages::sign_in(&self.app, name, PASSWORD).await
    }

    async fn get(&self, session: &str, uri: &str) -> (StatusCode, String) {
        crate::pages::get_page(&self.app, session, uri).await
    }

    /// Posts the backtest form; gives the status, where it sends the browser, and the page.
    async fn start(&self, session: &str, fields: &[(&str, &str)]) -> (StatusCode, String, String) {
        let body = form(fields);
        let (status, headers, text) = send(
            &self.app,
            Method::POST,
            "/rules/backtest",
            &[("cookie", session)],
            Some(&body),
        )
        .await;
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, text)
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
}

fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Waits for a job to finish, reading its page as its owner would.
async fn finished_page(f: &Fixture, session: &str, path: &str) -> String {
    for _ in 0..200 {
        let (status, html) = f.get(session, path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        if !html.contains("http-equiv=\"refresh\"") {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the backtest never finished");
}

#[tokio::test]
async fn a_rule_author_backtests_a_pasted_rule_and_reads_it_while_it_runs_and_after() {
    let f = fixture();
    let vera = f.sign_in("vera").await;
    assert_eq!(
        f.get(&vera, "/rules/backtest").await.0,
        StatusCode::FORBIDDEN
    );

    let rita = f.sign_in("rita").await;
    let (status, html) = f.get(&rita, "/rules/backtest").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csrf = csrf_in(&html);
    // A link may fill the form in.
    let (_, prefilled) = f.get(&rita, "/rules/backtest?from=now-7d&rule=x").await;
    assert!(prefilled.contains(r#"value="now-7d""#), "{prefilled}");

    // Without the form's token: refused, and nothing started.
    let fields = [
        ("rule", ""),
        ("yaml", GOOD_RULE),
        ("from", "now-1h"),
        ("to", "now"),
    ];
    let (status, _, _) = f.start(&rita, &fields).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A rule that does not load says which line and why, as text.
    let broken = [
        ("csrf", csrf.as_str()),
        ("yaml", "title: broken"),
        ("from", "now-1h"),
        ("to", "now"),
    ];
    let (status, _, html) = f.start(&rita, &broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(
        html.contains("line 3: unknown modifier &lt;b&gt;x&lt;/b&gt;"),
        "{html}"
    );
    // A range that ends before it starts is refused too.
    let backwards = [
        ("csrf", csrf.as_str()),
        ("yaml", GOOD_RULE),
        ("from", "now"),
        ("to", "now-1h"),
    ];
    assert_eq!(f.start(&rita, &backwards).await.0, StatusCode::BAD_REQUEST);

    let good = [
        ("csrf", csrf.as_str()),
        ("yaml", GOOD_RULE),
        ("from", "now-1h"),
        ("to", "now"),
    ];
    let (status, location, html) = f.start(&rita, &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(location.starts_with("/rules/backtest/"), "{location}");

    // While it runs, the page says so and reloads itself.
    let (status, html) = f.get(&rita, &location).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="2">"#),
        "{html}"
    );
    assert!(html.contains("Running: "), "{html}");

    // Another person cannot read it, not even that it exists.
    let ana = f.sign_in("ana").await;
    let (status, html) = f.get(&ana, &location).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(!html.contains("StopLogging"), "{html}");

    f.gatekeeper.open();
    let html = finished_page(&f, &rita, &location).await;
    assert!(html.contains("Events matched"), "{html}");
    // The matched event's value stays text, and links to its search.
    assert!(html.contains("StopLogging&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    let event_id = EventId::from_bytes([1; 16]).to_string();
    assert!(
        html.contains(&format!("/search?q=id%3A{event_id}")),
        "{html}"
    );
    // The audit log's event is not hers to backtest.
    assert!(!html.contains("in-the-audit-log"), "{html}");

    let started = f
        .access
        .audit_entries(&AuditFilter {
            action: Some("rule.backtest".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    let by_rita: Vec<_> = started
        .iter()
        .filter(|entry| entry.record.actor == "rita")
        .collect();
    // The broken rule and the backwards range were refused and audited as such.
    assert_eq!(by_rita.len(), 3, "{started:?}");
    assert!(by_rita
        .iter()
        .any(|e| e.record.outcome == vigil_access::Outcome::Success));
}

#[tokio::test]
async fn the_api_starts_jobs_for_backtesters_and_shows_each_only_to_its_owner() {
    let f = fixture();
    f.gatekeeper.open();
    let reader = f.token("reader", "read");
    let triager = f.token("triager", "triage");
    let other = f.token("other", "triage");
    let body = json!({ "yaml": GOOD_RULE, "from": "now-1h", "to": "now" });

    let (status, _) = f
        .api(
            Method::POST,
            "/api/v1/rules/backtest",
            &reader,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, started) = f
        .api(
            Method::POST,
            "/api/v1/rules/backtest",
            &triager,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = started["job"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/rules/backtest/{job}");

    let mut view = Value::Null;
    for _ in 0..200 {
        let (status, got) = f.api(Method::GET, &uri, &triager, None).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        view = got;
        if view["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["report"]["matched_events"], 1, "{view}");
    assert_eq!(view["owner"], "token:triager");

    // Another backtester's token is told there is no such job; an admin may read it.
    let (status, _) = f.api(Method::GET, &uri, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.api(Method::GET, &uri, TOKEN, None).await;
    assert_eq!(status, StatusCode::OK);

    // Bad requests say why.
    let broken = json!({ "yaml": "broken", "from": "now-1h", "to": "now" });
    let (status, refused) = f
        .api(
            Method::POST,
            "/api/v1/rules/backtest",
            &triager,
            Some(broken),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["problems"][0]["line"], 3, "{refused}");
    let unknown = json!({ "rule": "no-such-rule", "from": "now-1h", "to": "now" });
    let (status, _) = f
        .api(
            Method::POST,
            "/api/v1/rules/backtest",
            &triager,
            Some(unknown),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .api(
            Method::POST,
            "/api/v1/rules/backtest",
            &triager,
            Some(json!({ "from": "now-1h" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
