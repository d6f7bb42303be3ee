//! Saved searches, the live tail and the pages' scripts, through the real page routes behind
//! the real gate: a person saves, lists, shares and deletes their own searches only, with
//! CSRF; the tail streams newly indexed matches (whatever their time) and nothing the caller
//! may not see; the scripts are served under a policy that allows only them.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Map;
use tower::ServiceExt;
use vigil_access::{AuditFilter, Outcome, Role};
use vigil_event::{Event, EventId, LogSource, Record, Source, AUDIT_SOURCE};

use crate::pages::{fixture, form, send, Fixture};

/// The value of the first `name="NAME" value="…"` field after `after` in `html`.
fn field_after(html: &str, after: &str, name: &str) -> String {
    let start = html
        .find(after)
        .unwrap_or_else(|| panic!("{after} in {html}"));
    let marker = format!(r#"name="{name}" value=""#);
    let at = start + html[start..].find(&marker).expect("the field") + marker.len();
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

async fn post(
    f: &Fixture,
    session: &str,
    uri: &str,
    fields: &[(&str, &str)],
    cross_site: bool,
) -> (StatusCode, String, String) {
    let site = if cross_site {
        "cross-site"
    } else {
        "same-origin"
    };
    let (status, headers, body) = send(
        &f.app,
        Method::POST,
        uri,
        &[("cookie", session), ("sec-fetch-site", site)],
        Some(&form(fields)),
    )
    .await;
    let location = headers
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, body)
}

/// The ids of the delete forms on a saved searches page.
fn delete_actions(html: &str) -> Vec<String> {
    html.match_indices(r#"action="/searches/"#)
        .map(|(at, _)| {
            let rest = &html[at + r#"action=""#.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_search_is_saved_listed_shared_and_deleted_by_its_owner_only() {
    let f = fixture().await;
    let alice = f.user("alicia", Role::Analyst).await;
    let (status, page) = f
        .get_as(
            &alice,
            "/search?q=eventName%3AStopLogging&from=now-24h&columns=awsRegion",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = field_after(&page, r#"id="save-search""#, "csrf");
    assert_eq!(
        field_after(&page, r#"id="save-search""#, "q"),
        "eventName:StopLogging"
    );

    let hostile = r#"trails <script>alert(1)</script>"#;
    let save = [
        ("csrf", csrf.as_str()),
        ("name", hostile),
        ("q", "eventName:StopLogging"),
        ("from", "now-24h"),
        ("to", ""),
        ("columns", "awsRegion"),
    ];
    // Refused without the token, with another's, and from another site.
    let without: Vec<(&str, &str)> = save.iter().filter(|(k, _)| *k != "csrf").copied().collect();
    assert_eq!(
        post(&f, &alice, "/searches", &without, false).await.0,
        StatusCode::FORBIDDEN
    );
    let mut wrong = save;
    wrong[0].1 = "not-the-token";
    assert_eq!(
        post(&f, &alice, "/searches", &wrong, false).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&f, &alice, "/searches", &save, true).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(f.access.saved_searches("alicia").unwrap().is_empty());

    let (status, location, body) = post(&f, &alice, "/searches", &save, false).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/searches");
    let (status, list) = f.get_as(&alice, "/searches").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.contains("<script>alert"), "{list}");
    assert!(
        list.contains("trails &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{list}"
    );
    let share = "/search?q=eventName%3AStopLogging&amp;from=now-24h&amp;columns=awsRegion";
    assert!(list.contains(&format!(r#"href="{share}""#)), "{list}");

    // The link is the share: another person opens the same search.
    let bob = f.user("bobby", Role::Analyst).await;
    let (status, shared) = f.get_as(&bob, &share.replace("&amp;", "&")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        shared.contains(r#"value="eventName:StopLogging""#),
        "{shared}"
    );
    assert!(shared.contains(r#"value="now-24h""#), "{shared}");
    // But bob's list is his own, and alice's id is no more his to delete than a missing one.
    let (_, bobs) = f.get_as(&bob, "/searches").await;
    assert!(!bobs.contains("trails"), "{bobs}");
    let actions = delete_actions(&list);
    assert_eq!(actions.len(), 1, "{list}");
    let bob_csrf = field_after(&bobs, "<form", "csrf");
    let (status, _, _) = post(&f, &bob, &actions[0], &[("csrf", &bob_csrf)], false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(f.access.saved_searches("alicia").unwrap().len(), 1);
    // Nor does alice delete her own without her token.
    assert_eq!(
        post(&f, &alice, &actions[0], &[], false).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&f, &alice, &actions[0], &[("csrf", &csrf)], true)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.access.saved_searches("alicia").unwrap().len(), 1);

    let (status, location, _) = post(&f, &alice, &actions[0], &[("csrf", &csrf)], false).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/searches")
    );
    assert!(f.access.saved_searches("alicia").unwrap().is_empty());
    let (_, list) = f.get_as(&alice, "/searches").await;
    assert!(list.contains("No saved searches yet"), "{list}");

    // Each change is in the audit log under who made it.
    let entries = f
        .access
        .audit_entries(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    let seen: Vec<(&str, &str, Outcome)> = entries
        .iter()
        .map(|e| &e.record)
        .filter(|e| e.action.starts_with("saved_search."))
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.outcome))
        .collect();
    assert!(
        seen.contains(&("alicia", "saved_search.save", Outcome::Success)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("alicia", "saved_search.delete", Outcome::Success)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("bobby", "saved_search.delete", Outcome::Failure)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn bad_saves_are_explained_and_viewers_keep_no_searches() {
    let f = fixture().await;
    let alice = f.user("alicia", Role::Analyst).await;
    let (_, page) = f.get_as(&alice, "/search?q=x").await;
    let csrf = field_after(&page, r#"id="save-search""#, "csrf");
    for (name, q) in [("", "x"), ("fine", "a:("), ("bell\u{7}", "x")] {
        let (status, _, body) = post(
            &f,
            &alice,
            "/searches",
            &[("csrf", &csrf), ("name", name), ("q", q)],
            false,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?} {q:?}");
        assert!(body.contains("Not saved:"), "{body}");
    }
    assert!(f.access.saved_searches("alicia").unwrap().is_empty());

    let viewer = f.user("vera", Role::Viewer).await;
    let (status, page) = f.get_as(&viewer, "/search?q=x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(r#"id="save-search""#), "{page}");
    assert!(page.contains(r#"id="live-tail-toggle""#), "{page}");
    assert_eq!(
        f.get_as(&viewer, "/searches").await.0,
        StatusCode::FORBIDDEN
    );
}

fn event(n: u32, kind: &str, year: i32, record: &str) -> Event {
    let time = Utc.with_ymd_and_hms(year, 3, 4, 5, 6, 7).unwrap();
    Event {
        id: EventId::derive("live tail page test", &[&n.to_le_bytes()]),
        time,
        received: Utc::now(),
        source: Source {
            kind: kind.into(),
            name: format!("{kind}-source"),
        },
        logsource: LogSource::default(),
        record: Record::json(record).unwrap(),
        fields: Map::new(),
    }
}

/// An open tail's body, read as text.
struct Stream(Body);

impl Stream {
    async fn open(f: &Fixture, session: &str, uri: &str) -> Stream {
        let request = Request::get(uri)
            .header("cookie", session)
            .body(Body::empty())
            .unwrap();
        let response = f.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream(response.into_body())
    }

    /// Reads until `marker` has come, giving all read; panics after `wait`.
    async fn until(&mut self, marker: &str, wait: Duration) -> String {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + wait;
        while !text.contains(marker) {
            match tokio::time::timeout_at(deadline, self.0.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Ok(None) => panic!("the stream ended before {marker}: {text}"),
                Ok(Some(Err(error))) => panic!("{error}: {text}"),
                Err(_) => panic!("no {marker} within {wait:?}: {text}"),
            }
        }
        text
    }

    /// Whether the stream ends within `wait`, reading what comes before.
    async fn ends_within(&mut self, wait: Duration) -> (bool, String) {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.0.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Ok(None) => return (true, text),
                Ok(Some(Err(_))) | Err(_) => return (false, text),
            }
        }
    }
}

#[tokio::test]
async fn the_tail_streams_new_matches_and_nothing_hidden_from_the_caller() {
    let f = fixture().await;
    let analyst = f.user("tailer", Role::Analyst).await;
    let admin = f.user("root", Role::Admin).await;
    let uri = "/search/tail?q=eventName%3ADeleteTrail";
    // Indexed before the tails start: not part of them.
    f.store
        .index_events(&[event(
            0,
            "cloudtrail",
            2026,
            r#"{"eventName":"DeleteTrail","marker":"before-the-tail"}"#,
        )])
        .unwrap();
    f.store.commit().unwrap();
    let mut theirs = Stream::open(&f, &analyst, uri).await;
    let mut admins = Stream::open(&f, &admin, uri).await;
    for stream in [&mut theirs, &mut admins] {
        stream.until("event: ready", Duration::from_secs(5)).await;
    }
    // In commit order: the audit event and the other one come before the last match. Their
    // arrival is now: the day before and after, in case midnight passes while they are shown.
    let days = [Utc::now(), Utc::now() + chrono::Duration::seconds(30)];
    f.store
        .index_events(&[
            event(1, AUDIT_SOURCE, 2026, r#"{"eventName":"DeleteTrail","actor":"hidden-audit-entry"}"#),
            event(2, "cloudtrail", 2026, r#"{"eventName":"DescribeTrails","marker":"not-a-match"}"#),
            // Dated long ago: the tail goes by when it arrived.
            event(3, "cloudtrail", 1999, r#"{"eventName":"DeleteTrail","userIdentity":{"arn":"<img src=x onerror=alert(1)>"}}"#),
        ])
        .unwrap();
    f.store.commit().unwrap();
    let seen = theirs.until("DeleteTrail", Duration::from_secs(10)).await;
    assert!(seen.contains("\"<img src=x onerror=alert(1)>\""), "{seen}");
    assert!(seen.contains("1999-03-04 05:06:07"), "{seen}");
    // Beside its own time, when it arrived: today.
    let today = days.map(|day| format!(r#""received":"{}"#, day.format("%Y-%m-%d")));
    assert!(today.iter().any(|today| seen.contains(today)), "{seen}");
    assert!(!seen.contains("DescribeTrails"), "{seen}");
    assert!(!seen.contains("hidden-audit-entry"), "{seen}");
    assert!(!seen.contains(AUDIT_SOURCE), "{seen}");
    assert!(!seen.contains("before-the-tail"), "{seen}");
    // The message's id is its place, for a browser that reconnects.
    assert!(
        seen.lines().any(|line| line
            .strip_prefix("id: ")
            .is_some_and(|n| n.parse::<u64>().is_ok())),
        "{seen}"
    );

    // The admin may read the audit log, so sees it too: the check above can fail.
    let admin_seen = admins.until("onerror", Duration::from_secs(10)).await;
    assert!(admin_seen.contains("hidden-audit-entry"), "{admin_seen}");
    assert!(!admin_seen.contains("DescribeTrails"), "{admin_seen}");
}

#[tokio::test]
async fn tails_are_capped_refuse_bad_queries_and_end_when_the_server_stops() {
    let f = fixture().await;
    let analyst = f.user("tailer", Role::Analyst).await;
    let (status, _, body) = send(
        &f.app,
        Method::GET,
        "/search/tail?q=a%3A(",
        &[("cookie", &analyst)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.starts_with("query:"), "{body}");

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopping_app = f
        .app
        .clone()
        .layer(axum::Extension(vigil_ui::Stopping(stopping)));
    let open = |app: axum::Router, session: String| async move {
        let request = Request::get("/search/tail?q=*")
            .header("cookie", session)
            .body(Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let response = open(stopping_app.clone(), analyst.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(Stream(response.into_body()));
    }
    let refused = open(f.app.clone(), analyst.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another person still may.
    let other = f.user("other", Role::Viewer).await;
    assert_eq!(open(f.app.clone(), other).await.status(), StatusCode::OK);
    // A closed tail makes room once its task notices, within a poll.
    drop(held.pop());
    let mut reopened = None;
    for _ in 0..30 {
        let response = open(f.app.clone(), analyst.clone()).await;
        if response.status() == StatusCode::OK {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the closed tail's place was not freed");

    stop.send(true).unwrap();
    for stream in &mut held {
        let (ended, text) = stream.ends_within(Duration::from_secs(5)).await;
        assert!(ended, "{text}");
        assert!(
            text.contains("event: end") && text.contains("shutdown"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_page_without_scripts_lists_new_matches_and_reloads() {
    let f = fixture().await;
    f.store
        .index_events(&[
            event(
                4,
                "cloudtrail",
                2001,
                r#"{"eventName":"PutBucketPolicy","userIdentity":{"arn":"<b>bold</b>"}}"#,
            ),
            event(5, "cloudtrail", 2026, r#"{"eventName":"ListBuckets"}"#),
        ])
        .unwrap();
    f.store.commit().unwrap();
    let (status, headers, page) = send(
        &f.app,
        Method::GET,
        "/search/live?q=eventName%3APutBucketPolicy",
        &[("cookie", &f.user("watcher", Role::Viewer).await)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["refresh"], "5");
    assert!(page.contains("PutBucketPolicy"), "{page}");
    assert!(page.contains("2001-03-04"), "{page}");
    assert!(!page.contains("ListBuckets"), "{page}");
    assert!(!page.contains("<b>bold"), "{page}");
    assert!(page.contains("&lt;b&gt;bold"), "{page}");
}

#[tokio::test]
async fn the_policy_allows_our_scripts_only_and_they_write_text_not_markup() {
    let headers = vigil_ui::security_headers();
    let policy = headers
        .iter()
        .find(|(name, _)| name == axum::http::header::CONTENT_SECURITY_POLICY)
        .map(|(_, value)| value.to_str().unwrap().to_owned())
        .unwrap();
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(directives.contains(&wanted), "{policy}");
    }
    for unwanted in [
        "unsafe-inline",
        "unsafe-eval",
        "http:",
        "https:",
        "*",
        "data:",
    ] {
        assert!(!policy.contains(unwanted), "{unwanted} in {policy}");
    }

    let f = fixture().await;
    for script in ["/static/tail.js", "/static/keys.js"] {
        let (status, headers, body) = send(&f.app, Method::GET, script, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{script}");
        assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "Function(",
            "setTimeout('",
        ] {
            assert!(!body.contains(sink), "{script} uses {sink}");
        }
    }
    // Every page loads them from here, and holds no inline script.
    let (_, page) = f.get("/search?q=*").await;
    assert!(
        page.contains(r#"<script src="/static/tail.js" defer></script>"#),
        "{page}"
    );
    for (at, _) in page.match_indices("<script") {
        let element = &page[at..at + page[at..].find("</script>").unwrap()];
        assert!(element.starts_with(r#"<script src="/static/"#), "{element}");
        assert!(element.ends_with(" defer>"), "{element}");
    }
    assert!(
        !page.contains(" onclick=") && !page.contains("javascript:"),
        "{page}"
    );
}
