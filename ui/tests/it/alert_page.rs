//! An alert's page tells the whole story: the rule's own words from the rule catalogue, the
//! matched events and group values, and "search around" links, all of it attacker-written
//! text that must stay text.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{TimeZone, Utc};
use serde_json::Map;
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, Role, Secret};
use vigil_event::{
    Alert, Event, EventId, Level, LogSource, MatchedEvent, MatchedField, Record, Source,
};
use vigil_store::Store;
use vigil_ui::{guard, page_router, Gate, RuleCatalog, RuleInfo, UiState};

use crate::pages::{form, send, PASSWORD};

const HOSTILE_ARN: &str = r#"arn:aws:iam::1:user/<script>alert(5)</script>" OR x"#;
const HOSTILE_GROUP: &str = "<img src=x onerror=alert(6)>";
const HOSTILE_KEYWORD: &str = "<svg onload=alert(7)>";

struct Story {
    _dir: TempDir,
    app: Router,
    path: String,
    cloudtrail_id: EventId,
    audit_id: EventId,
}

fn event(name: &[u8], kind: &str, json: &str) -> Event {
    let time = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
    Event {
        id: EventId::derive("alert page test", &[name]),
        time,
        received: time,
        source: Source {
            kind: kind.into(),
            name: format!("{kind}-1"),
        },
        logsource: LogSource::default(),
        record: Record::json(json).unwrap(),
        fields: Map::new(),
    }
}

fn catalog() -> RuleCatalog {
    RuleCatalog::loaded([(
        "brute-force".to_owned(),
        RuleInfo {
            title: "Brute <b>force</b>".into(),
            description: Some("Many failed sign-ins <script>alert(2)</script>".into()),
            falsepositives: vec!["Users who forget <i>passwords</i>".into()],
            references: vec![
                "https://example.com/ref".into(),
                "javascript:alert(3)".into(),
                "the internal wiki".into(),
            ],
            tags: vec![
                "attack.credential-access".into(),
                "attack.t1110".into(),
                "attack.t1110.001".into(),
                r#"attack.t1110"><script>alert(4)</script>"#.into(),
            ],
            level: Some(Level::High),
            logsource: LogSource::default(),
            file: "rules/brute.yml".into(),
            line: 1,
            ..RuleInfo::default()
        },
    )])
}

async fn story(rules: RuleCatalog) -> Story {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let cloudtrail = event(
        b"1",
        "cloudtrail",
        &serde_json::json!({
            "eventName": "ConsoleLogin",
            "userIdentity": {"arn": HOSTILE_ARN},
            "sourceIPAddress": "203.0.113.9",
        })
        .to_string(),
    );
    let kubernetes = event(
        b"2",
        "kubernetes-audit",
        r#"{"verb":"get","user":{"username":"mallory"},"sourceIPs":["10.1.1.1"],"objectRef":{"resource":"secrets"}}"#,
    );
    let audit = event(
        b"3",
        "vigil-audit",
        r#"{"action":"sign_in","username":"AUDIT-ONLY-NAME"}"#,
    );
    let event_ids = vec![cloudtrail.id, kubernetes.id, audit.id];
    let alert = Alert {
        id: Alert::derive_id("brute-force", &event_ids),
        rule_id: "brute-force".into(),
        rule_title: "Brute force".into(),
        level: Level::High,
        tags: vec![],
        event_ids,
        time: cloudtrail.time,
        detected: cloudtrail.time,
        source: cloudtrail.source.clone(),
        logsource: LogSource::default(),
        group: [("user.name".to_owned(), HOSTILE_GROUP.to_owned())].into(),
        // What the engine reported for the CloudTrail event; the others have nothing.
        matched: vec![MatchedEvent {
            event_id: cloudtrail.id,
            fields: [
                ("eventName", "ConsoleLogin", false),
                ("userIdentity.arn", HOSTILE_ARN, false),
                ("responseElements.note", HOSTILE_KEYWORD, true),
            ]
            .into_iter()
            .map(|(field, value, keyword)| MatchedField {
                field: field.into(),
                value: value.into(),
                keyword,
            })
            .collect(),
        }],
        event_position: None,
    };
    let (cloudtrail_id, audit_id) = (cloudtrail.id, audit.id);
    store
        .index_events(&[cloudtrail, kubernetes, audit])
        .unwrap();
    store.index_alerts(std::slice::from_ref(&alert)).unwrap();
    store.commit().unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [("vera", Role::Viewer), ("ada", Role::Admin)] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(access, None, AccessConfig::default(), false));
    let app = guard(
        page_router(UiState {
            store,
            gate: gate.clone(),
            rules: Arc::new(rules).into(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        }),
        gate,
    );
    Story {
        _dir: dir,
        app,
        path: format!("/alerts/{}", alert.id),
        cloudtrail_id,
        audit_id,
    }
}

impl Story {
    /// The alert's page as `user` sees it.
    async fn page(&self, user: &str) -> String {
        let login = form(&[("username", user), ("password", PASSWORD)]);
        let (status, headers, body) =
            send(&self.app, Method::POST, "/login", &[], Some(&login)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let cookie = headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let (status, _, body) = send(
            &self.app,
            Method::GET,
            &self.path,
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// Percent-encoding as the page writes query parameters: everything but unreserved characters.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_rule_s_description_false_positives_and_references_render() {
    let page = story(catalog()).await.page("vera").await;
    assert!(
        page.contains("Many failed sign-ins &lt;script&gt;alert(2)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("Users who forget &lt;i&gt;passwords&lt;/i&gt;"));
    assert!(page.contains("rules/brute.yml"));
    assert!(page.contains(r#"<a href="https://example.com/ref""#));
    // A reference that is no http(s) URL is text, not a link.
    assert!(page.contains("<li>javascript:alert(3)</li>"), "{page}");
    assert!(page.contains("<li>the internal wiki</li>"));
    assert!(!page.contains("href=\"javascript:"));
}

#[tokio::test]
async fn technique_tags_link_to_att_ck_and_tactics_stay_text() {
    let page = story(catalog()).await.page("vera").await;
    assert!(page.contains(r#"<a href="https://attack.mitre.org/techniques/T1110/" rel="noreferrer noopener">attack.t1110</a>"#), "{page}");
    assert!(page.contains(r#"<a href="https://attack.mitre.org/techniques/T1110/001/" rel="noreferrer noopener">attack.t1110.001</a>"#));
    assert!(page.contains("<li>attack.credential-access</li>"));
    assert!(page.contains("<li>attack.t1110&quot;&gt;&lt;script&gt;alert(4)&lt;/script&gt;</li>"));
}

#[tokio::test]
async fn the_matched_events_and_group_values_render_and_link_to_their_search() {
    let s = story(catalog()).await;
    let page = s.page("vera").await;
    assert!(
        page.contains(&format!("href=\"/search?q=id%3A{}\"", s.cloudtrail_id)),
        "{page}"
    );
    assert!(page.contains("ConsoleLogin"));
    assert!(page.contains("arn:aws:iam::1:user/&lt;script&gt;alert(5)&lt;/script&gt;&quot; OR x"));
    assert!(page.contains("secrets"));
    assert!(page.contains("<dt>user.name</dt><dd>&lt;img src=x onerror=alert(6)&gt;</dd>"));
}

#[tokio::test]
async fn the_fields_that_matched_are_marked_and_listed_under_their_event() {
    let page = story(catalog()).await.page("vera").await;
    let arn = "arn:aws:iam::1:user/&lt;script&gt;alert(5)&lt;/script&gt;&quot; OR x";
    // The key fields that matched are marked in the row; the others are not.
    assert!(
        page.contains(r#"<span class="muted">eventName </span><mark>ConsoleLogin</mark>"#),
        "{page}"
    );
    assert!(page.contains(&format!(
        r#"<span class="muted">userIdentity.arn </span><mark>{arn}</mark>"#
    )));
    assert!(page.contains(r#"<span class="muted">sourceIPAddress </span>203.0.113.9"#));
    // Under the event, each matched field with its value marked, hostile text escaped.
    assert!(page.contains(&format!(
        "<li><code>userIdentity.arn</code> = <mark>{arn}</mark></li>"
    )));
    assert!(page.contains(
        r#"<li><code>responseElements.note</code> = <mark>&lt;svg onload=alert(7)&gt;</mark> <span class="muted">(keyword)</span></li>"#
    ), "{page}");
    // Only the CloudTrail event has matched fields.
    assert_eq!(page.matches(r#"class="matched-fields""#).count(), 1);
    assert_eq!(page.matches("<mark>").count(), 5, "{page}");
}

#[tokio::test]
async fn search_around_links_carry_the_quoted_value_and_fifteen_minutes_either_side() {
    let page = story(catalog()).await.page("vera").await;
    let range = "&amp;from=2026-11-28T08%3A45%3A00Z&amp;to=2026-11-28T09%3A15%3A00Z";
    for (field, quoted) in [
        ("sourceIPAddress", r#""203.0.113.9""#.to_owned()),
        ("sourceIPs", r#""10.1.1.1""#.to_owned()),
        ("objectRef.resource", r#""secrets""#.to_owned()),
        ("user.username", r#""mallory""#.to_owned()),
        (
            "userIdentity.arn",
            format!("\"{}\"", HOSTILE_ARN.replace('"', "\\\"")),
        ),
        ("user.name", format!("\"{HOSTILE_GROUP}\"")),
    ] {
        let link = format!(
            "href=\"/search?q={}{range}\"",
            encoded(&format!("{field}:{quoted}"))
        );
        assert!(page.contains(&link), "{link} in {page}");
    }
}

#[tokio::test]
async fn a_viewer_does_not_see_audit_events_under_an_alert_and_an_admin_does() {
    let s = story(catalog()).await;
    let viewer = s.page("vera").await;
    assert!(!viewer.contains("AUDIT-ONLY-NAME"));
    let audit_row = format!("href=\"/search?q=id%3A{}\"", s.audit_id);
    assert!(!viewer.contains(&audit_row));
    assert!(viewer.contains("events are not shown to you"), "{viewer}");
    let admin = s.page("ada").await;
    assert!(admin.contains("AUDIT-ONLY-NAME"), "{admin}");
    assert!(admin.contains(&audit_row));
    assert!(!admin.contains("events are not shown to you"));
}

#[tokio::test]
async fn hostile_text_stays_text() {
    let page = story(catalog()).await.page("vera").await;
    // `<script src=` is the page's own same-origin script; the payloads are `<script>alert`.
    for raw in [
        "<script>",
        "<img",
        "<b>force",
        "<i>passwords",
        "onerror=alert(6)>",
        "<svg",
    ] {
        assert!(!page.contains(raw), "{raw} in {page}");
    }
}

#[tokio::test]
async fn without_loaded_rules_the_page_says_why_the_rule_is_missing() {
    let page = story(RuleCatalog::not_loaded()).await.page("vera").await;
    assert!(page.contains("does not run detection"), "{page}");
    let page = story(RuleCatalog::loaded([])).await.page("vera").await;
    assert!(page.contains("is not among the loaded rules"), "{page}");
}
