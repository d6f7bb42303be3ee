//! Alert triage through the HTML pages: signing in, sessions and their CSRF tokens, the
//! forms each role is shown, the audit page, and what the pages show, through the real page
//! routes behind the real gate, against a real store and access database.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Map;
use tempfile::TempDir;
use tower::ServiceExt;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Outcome, Role, Secret};
use vigil_event::{Alert, Event, EventId, Level, LogSource, Record, Source};
use vigil_store::{AlertStatus, Store};
use vigil_ui::{guard, page_router, Gate, UiState};

/// Every test user's password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) struct Fixture {
    _dir: TempDir,
    pub(crate) store: Arc<Store>,
    pub(crate) access: Arc<AccessDb>,
    pub(crate) app: Router,
    pub(crate) alert: Alert,
    /// `name=value` of the analyst's session cookie, as a browser sends it back.
    session: String,
}

fn source() -> Source {
    Source {
        kind: "cloudtrail".into(),
        name: "org-trail".into(),
    }
}

pub(crate) async fn fixture() -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let time = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
    let event = Event {
        id: EventId::derive("pages test", &[b"1"]),
        time,
        received: time,
        source: source(),
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(r#"{"eventName":"StopLogging"}"#).unwrap(),
        fields: Map::new(),
    };
    let event_ids = vec![event.id];
    // Rule titles come from rule files, which can come from anywhere.
    let alert = Alert {
        id: Alert::derive_id("trail-stopped", &event_ids),
        rule_id: "trail-stopped".into(),
        rule_title: "Trail stopped <script>alert(1)</script>".into(),
        level: Level::High,
        tags: vec!["attack.defense-evasion".into()],
        event_ids,
        time,
        detected: time,
        source: source(),
        logsource: LogSource::default(),
        group: Default::default(),
        matched: Vec::new(),
        event_position: None,
    };
    store.index_events(&[event]).unwrap();
    store.index_alerts(std::slice::from_ref(&alert)).unwrap();
    store.commit().unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    access
        .add_user("alice", Role::Analyst, &Secret::new(PASSWORD))
        .unwrap();
    let gate = Arc::new(Gate::new(
        access.clone(),
        None,
        AccessConfig::default(),
        false,
    ));
    let app = guard(
        page_router(UiState {
            store: store.clone(),
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        }),
        gate,
    );
    let session = sign_in(&app, "alice", PASSWORD).await;
    Fixture {
        _dir: dir,
        store,
        access,
        app,
        alert,
        session,
    }
}

/// Signs in through the form and gives the session cookie as a browser sends it back.
pub(crate) async fn sign_in(app: &Router, name: &str, password: &str) -> String {
    let (status, headers, body) = send(
        app,
        Method::POST,
        "/login",
        &[],
        Some(&form(&[("username", name), ("password", password)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], "/");
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
    cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a page's forms.
fn csrf_in(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/x-www-form-urlencoded");
            Body::from(body.to_owned())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// A page as the holder of the session cookie `session` gets it.
pub(crate) async fn get_page(app: &Router, session: &str, uri: &str) -> (StatusCode, String) {
    let (status, _, body) = send(app, Method::GET, uri, &[("cookie", session)], None).await;
    (status, body)
}

/// An API call with a bearer token and an optional JSON body; the answer as JSON (null when
/// it is not JSON).
pub(crate) async fn send_api(
    api: &Router,
    method: Method,
    uri: &str,
    bearer: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {bearer}"));
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = api
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A new API token's secret.
pub(crate) fn token(access: &vigil_access::AccessDb, name: &str, scopes: &str) -> String {
    access
        .create_token(name, &scopes.parse().unwrap(), None, "test")
        .unwrap()
        .secret
        .expose()
        .to_owned()
}

impl Fixture {
    fn path(&self) -> String {
        format!("/alerts/{}", self.alert.id)
    }

    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, String) {
        self.get_as(&self.session, uri).await
    }

    pub(crate) async fn get_as(&self, session: &str, uri: &str) -> (StatusCode, String) {
        get_page(&self.app, session, uri).await
    }

    /// The CSRF token in the alert page's forms, for the analyst's session.
    async fn csrf(&self) -> String {
        self.csrf_of(&self.session).await
    }

    async fn csrf_of(&self, session: &str) -> String {
        let (status, html) = self.get_as(session, &self.path()).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        csrf_in(&html)
    }

    /// Posts a triage form with the analyst's session cookie and the given extra headers.
    async fn post(
        &self,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        self.post_as(&self.session, fields, headers).await
    }

    async fn post_as(
        &self,
        session: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut all = vec![("cookie", session)];
        all.extend_from_slice(headers);
        send(
            &self.app,
            Method::POST,
            &self.path(),
            &all,
            Some(&form(fields)),
        )
        .await
    }

    /// Adds a user and signs them in.
    pub(crate) async fn user(&self, name: &str, role: Role) -> String {
        self.access
            .add_user(name, role, &Secret::new(PASSWORD))
            .unwrap();
        sign_in(&self.app, name, PASSWORD).await
    }

    fn status(&self) -> AlertStatus {
        self.store
            .alert(&self.alert.id.to_string())
            .unwrap()
            .view
            .state
            .status
    }
}

#[tokio::test]
async fn an_alert_is_triaged_through_the_forms_and_shows_its_history() {
    let f = fixture().await;
    let (status, home) = f.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains(&format!(r#"href="{}""#, f.path())), "{home}");
    assert!(home.contains(r#"class="status status-open""#), "{home}");

    let csrf = f.csrf().await;
    let (status, headers, _) = f
        .post(
            &[
                ("csrf", &csrf),
                ("action", "status"),
                ("status", "acknowledged"),
                ("reason", ""),
                ("note", ""),
            ],
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], f.path());
    assert_eq!(f.status(), AlertStatus::Acknowledged);

    let hostile_assignee = r#"bob"><img src=x onerror=alert(2)>"#;
    let (status, _, _) = f
        .post(
            &[
                ("csrf", &csrf),
                ("action", "assign"),
                ("assignee", hostile_assignee),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = f
        .post(
            &[
                ("csrf", &csrf),
                ("action", "note"),
                ("note", "seen <script>alert(3)</script> before"),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = f
        .post(
            &[
                ("csrf", &csrf),
                ("action", "status"),
                ("status", "closed"),
                ("reason", "false_positive"),
                ("note", "planned change"),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let detail = f.store.alert(&f.alert.id.to_string()).unwrap();
    assert_eq!(detail.view.state.status, AlertStatus::Closed);
    assert_eq!(
        detail.view.state.assignee.as_deref(),
        Some(hostile_assignee)
    );
    assert_eq!(detail.notes.len(), 2);
    // The history names who made each change, and so does the audit log.
    assert!(
        detail.history.iter().all(|h| h.actor == "alice"),
        "{:?}",
        detail.history
    );
    let audited = f
        .access
        .audit_entries(&AuditFilter {
            action: Some("alert.update".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(audited.len(), 4, "{audited:?}");
    for entry in &audited {
        assert_eq!(entry.record.actor, "alice");
        assert_eq!(entry.record.outcome, Outcome::Success);
        assert_eq!(
            entry.record.target.as_deref(),
            Some(f.alert.id.to_string().as_str())
        );
    }
    // Newest first: the closing change, with what it set.
    assert_eq!(audited[0].record.detail["status"], "closed", "{audited:?}");
    assert_eq!(audited[0].record.detail["reason"], "false_positive");

    let (status, page) = f.get(&f.path()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"class="status status-closed""#), "{page}");
    assert!(page.contains("false_positive"));
    assert!(page.contains("planned change"));
    // Every piece of attacker-controlled text is escaped, in text and in attributes.
    assert!(page.contains("seen &lt;script&gt;alert(3)&lt;/script&gt; before"));
    assert!(page.contains("Trail stopped &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("bob&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!page.contains("<script>"));
    assert!(!page.contains("<img src=x"));
    // The history lists each change: status twice, the assignee, two notes, the reason.
    let history = &page[page.find("History").unwrap()..];
    for field in ["status", "assignee", "note", "reason"] {
        assert!(history.contains(&format!("<td>{field}</td>")), "{history}");
    }
    assert!(history.contains("acknowledged"));

    let (_, home) = f.get("/").await;
    assert!(home.contains(r#"class="status status-closed""#), "{home}");
    assert!(home.contains("bob&quot;&gt;&lt;img"), "{home}");
    assert!(!home.contains("<script>"));
    let (_, open) = f.get("/?status=open").await;
    assert!(
        !open.contains(&f.path()),
        "a closed alert is not listed as open"
    );
}

/// A note form with the given CSRF token.
fn note_form(csrf: &str) -> [(&str, &str); 3] {
    [("csrf", csrf), ("action", "note"), ("note", "x")]
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_from_other_sites_change_nothing() {
    let f = fixture().await;
    let csrf = f.csrf().await;

    // No token, a wrong one, and one cut short.
    for bad in ["", "0000", &csrf[1..]] {
        let (status, _, _) = f.post(&note_form(bad), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "token {bad:?}");
    }
    // The right token, but the browser says the form was on another site.
    let (status, _, _) = f
        .post(&note_form(&csrf), &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f
        .post(
            &note_form(&csrf),
            &[("origin", "https://evil.example"), ("host", "vigil.local")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The right token without the session cookie: the gate sends the browser to sign in.
    let (status, headers, _) = send(
        &f.app,
        Method::POST,
        &f.path(),
        &[],
        Some(&form(&note_form(&csrf))),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login");
    // Tokens are per session: the same user's second session has a token of its own, and
    // each session's token is refused in the other.
    let second = sign_in(&f.app, "alice", PASSWORD).await;
    assert_ne!(second, f.session);
    let second_csrf = f.csrf_of(&second).await;
    assert_ne!(second_csrf, csrf);
    let (status, _, _) = f.post_as(&second, &note_form(&csrf), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f.post(&note_form(&second_csrf), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Sign-out is a form too.
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        "/logout",
        &[("cookie", &f.session)],
        Some(&form(&[("csrf", "nope")])),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let detail = f.store.alert(&f.alert.id.to_string()).unwrap();
    assert!(detail.history.is_empty(), "{:?}", detail.history);

    // The same request with the token and a same-origin request goes through.
    let (status, _, _) = f
        .post(
            &note_form(&csrf),
            &[("origin", "http://vigil.local"), ("host", "vigil.local")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        f.store.alert(&f.alert.id.to_string()).unwrap().notes.len(),
        1
    );
    let (status, headers, _) = send(
        &f.app,
        Method::POST,
        "/logout",
        &[("cookie", &f.session)],
        Some(&form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login");
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The session is over on the server, whatever the browser keeps: its cookie and token
    // are refused, and the other session goes on.
    let (status, _) = f.get("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = f.post(&note_form(&csrf), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = f.get_as(&second, "/").await;
    assert_eq!(status, StatusCode::OK);
    let signed_out = f
        .access
        .audit_entries(&AuditFilter {
            action: Some("sign_out".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(signed_out.len(), 1, "{signed_out:?}");
    assert_eq!(signed_out[0].record.actor, "alice");
}

#[tokio::test]
async fn an_invalid_change_is_explained_on_the_page_and_changes_nothing() {
    let f = fixture().await;
    let csrf = f.csrf().await;
    let (status, _, page) = f
        .post(
            &[
                ("csrf", &csrf),
                ("action", "status"),
                ("status", "closed"),
                ("reason", ""),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("closing needs a reason"), "{page}");
    assert_eq!(f.status(), AlertStatus::Open);

    let (status, _, page) = f
        .post(
            &[("csrf", &csrf), ("action", "status"), ("status", "bogus")],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("unknown status"), "{page}");

    let (status, _, _) = f
        .post(&[("csrf", &csrf), ("action", "note"), ("note", "  ")], &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(f
        .store
        .alert(&f.alert.id.to_string())
        .unwrap()
        .history
        .is_empty());

    let (status, _) = f.get("/alerts/0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alert_pages_need_a_session() {
    let f = fixture().await;
    let (status, headers, _) = send(&f.app, Method::GET, &f.path(), &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/login");
}

#[tokio::test]
async fn a_viewer_reads_alerts_but_is_shown_no_triage_forms_and_cannot_post_one() {
    let f = fixture().await;
    let viewer = f.user("vera", Role::Viewer).await;
    let (status, page) = f.get_as(&viewer, &f.path()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Trail stopped &lt;script&gt;"), "{page}");
    assert!(!page.contains("form class=\"triage\""), "{page}");
    assert!(!page.contains("name=\"action\""), "{page}");
    // The header names who is signed in, with their role and a way out.
    assert!(page.contains("vera") && page.contains("viewer"), "{page}");
    assert!(page.contains(r#"action="/logout""#), "{page}");
    assert!(!page.contains(r#"href="/audit""#), "{page}");
    // Even with a CSRF token of their own session, the gate refuses the post.
    let csrf = csrf_in(&page);
    let (status, _, _) = f.post_as(&viewer, &note_form(&csrf), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(f
        .store
        .alert(&f.alert.id.to_string())
        .unwrap()
        .notes
        .is_empty());

    // The analyst is shown the forms.
    let (_, page) = f.get(&f.path()).await;
    assert!(page.contains("form class=\"triage\""), "{page}");
    assert!(page.contains("alice") && page.contains("analyst"), "{page}");
}

/// Sends `request` as if over a connection from `peer`, as `vigil run` records it.
async fn send_from(app: &Router, peer: &str, mut request: Request<Body>) -> (StatusCode, String) {
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn people_a_trusted_proxy_names_triage_with_a_csrf_token_of_their_own() {
    let f = fixture().await;
    let config = AccessConfig {
        proxy: Some(vigil_access::ProxyConfig {
            trusted: vec!["10.0.0.7/32".parse().unwrap()],
            user_header: "x-forwarded-user".into(),
            groups_header: "x-forwarded-groups".into(),
            roles: [("soc".to_owned(), Role::Analyst)].into(),
            default_role: Some(Role::Viewer),
        }),
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
    let page = |user: &str, groups: &str| {
        Request::get(f.path())
            .header("x-forwarded-user", user)
            .header("x-forwarded-groups", groups)
            .body(Body::empty())
            .unwrap()
    };
    let note = |user: &str, csrf: &str| {
        Request::post(f.path())
            .header("x-forwarded-user", user)
            .header("x-forwarded-groups", "soc")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form(&note_form(csrf))))
            .unwrap()
    };
    const PROXY: &str = "10.0.0.7:40000";

    let (status, html) = send_from(&app, PROXY, page("pat", "soc")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("form class=\"triage\""), "{html}");
    // Nothing to sign out of here: the proxy holds the sign-in.
    assert!(!html.contains(r#"action="/logout""#), "{html}");
    let pat = csrf_in(&html);
    let (_, other) = send_from(&app, PROXY, page("quinn", "soc")).await;
    let quinn = csrf_in(&other);
    assert_ne!(pat, quinn);
    // A viewer by the default role is shown no form.
    let (_, viewer) = send_from(&app, PROXY, page("val", "everyone")).await;
    assert!(!viewer.contains("form class=\"triage\""), "{viewer}");

    // Another person's token, or none, is refused; one's own goes through.
    for bad in [quinn.as_str(), ""] {
        let (status, _) = send_from(&app, PROXY, note("pat", bad)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "token {bad:?}");
    }
    let (status, body) = send_from(&app, PROXY, note("pat", &pat)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let detail = f.store.alert(&f.alert.id.to_string()).unwrap();
    assert_eq!(detail.notes.len(), 1);
    assert_eq!(detail.history[0].actor, "pat");

    // The header counts only from the proxy: from anywhere else it names no one.
    let (status, _) = send_from(&app, "10.0.0.8:40000", note("pat", &pat)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        f.store.alert(&f.alert.id.to_string()).unwrap().notes.len(),
        1
    );
}
