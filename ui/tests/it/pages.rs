//! Alert triage through the HTML pages: the session cookie, the CSRF token, the forms and
//! what the pages show, through the real page routes against a real store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Map;
use tempfile::TempDir;
use tower::ServiceExt;
use vigil_event::{Alert, Event, EventId, Level, LogSource, Record, Source};
use vigil_store::{AlertStatus, Store};
use vigil_ui::{page_router, ApiToken, UiState};

const TOKEN: &str = "pages-test-token";

struct Fixture {
    _dir: TempDir,
    store: Arc<Store>,
    app: Router,
    alert: Alert,
    /// `name=value` of the session cookie, as a browser sends it back.
    session: String,
}

fn source() -> Source {
    Source {
        kind: "cloudtrail".into(),
        name: "org-trail".into(),
    }
}

async fn fixture() -> Fixture {
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
    };
    store.index_events(&[event]).unwrap();
    store.index_alerts(std::slice::from_ref(&alert)).unwrap();
    store.commit().unwrap();
    let app = page_router(UiState {
        store: store.clone(),
        token: ApiToken::new(TOKEN),
    });
    let (status, headers, _) = send(
        &app,
        Method::POST,
        "/login",
        &[],
        Some(&form(&[("token", TOKEN)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
    let session = cookie.split(';').next().unwrap().to_owned();
    Fixture {
        _dir: dir,
        store,
        app,
        alert,
        session,
    }
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form(pairs: &[(&str, &str)]) -> String {
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

async fn send(
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

impl Fixture {
    fn path(&self) -> String {
        format!("/alerts/{}", self.alert.id)
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let (status, _, body) = send(
            &self.app,
            Method::GET,
            uri,
            &[("cookie", &self.session)],
            None,
        )
        .await;
        (status, body)
    }

    /// The CSRF token in the alert page's forms.
    async fn csrf(&self) -> String {
        let (status, html) = self.get(&self.path()).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let marker = r#"name="csrf" value=""#;
        let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }

    /// Posts a triage form with the session cookie and the given extra headers.
    async fn post(
        &self,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut all = vec![("cookie", self.session.as_str())];
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
    assert!(detail.history.iter().all(|h| h.actor == "ui"));

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
    // The right token without the session cookie.
    let (status, _, _) = send(
        &f.app,
        Method::POST,
        &f.path(),
        &[],
        Some(&form(&note_form(&csrf))),
    )
    .await;
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
    assert!(headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
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
