//! The alerts list (`GET /`) and bulk triage (`POST /alerts/bulk`), through the real page
//! routes behind the real gate, against a real store and access database.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, TimeZone, Utc};
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, AuditFilter, Outcome, Role, Secret};
use vigil_event::{Alert, EventId, Level, LogSource, Source};
use vigil_store::{AlertChange, AlertStatus, CloseReason, Store};
use vigil_ui::{guard, page_router, Gate, UiState};

use crate::pages::{form, send, PASSWORD};

struct Page {
    _dir: TempDir,
    store: Arc<Store>,
    access: Arc<AccessDb>,
    app: Router,
    /// The analyst alice's session cookie, `name=value`.
    alice: String,
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap()
}

/// What varies between the test alerts.
#[derive(Clone)]
struct Spec {
    rule: &'static str,
    title: &'static str,
    level: Level,
    group: Vec<(&'static str, &'static str)>,
    kind: &'static str,
    tags: Vec<&'static str>,
    minutes: i64,
}

fn spec(rule: &'static str, title: &'static str, level: Level) -> Spec {
    Spec {
        rule,
        title,
        level,
        group: Vec::new(),
        kind: "cloudtrail",
        tags: Vec::new(),
        minutes: 0,
    }
}

/// The `n`th alert of `spec`; alerts of one spec differ in their event only.
fn alert(spec: &Spec, n: usize) -> Alert {
    // Alerts of one rule but other group values are other alerts.
    let group = format!("{:?}", spec.group);
    let event_ids = vec![EventId::derive(
        "alerts page test",
        &[
            spec.rule.as_bytes(),
            group.as_bytes(),
            &n.to_le_bytes(),
            &spec.minutes.to_le_bytes(),
        ],
    )];
    let time = base_time() + Duration::minutes(spec.minutes + n as i64);
    Alert {
        id: Alert::derive_id(spec.rule, &event_ids),
        rule_id: spec.rule.into(),
        rule_title: spec.title.into(),
        level: spec.level,
        tags: spec.tags.iter().map(|t| t.to_string()).collect(),
        event_ids,
        time,
        detected: time,
        source: Source {
            kind: spec.kind.into(),
            name: format!("{}-source", spec.kind),
        },
        logsource: LogSource::default(),
        group: spec
            .group
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        matched: Vec::new(),
        event_position: None,
    }
}

async fn sign_in(app: &Router, name: &str) -> String {
    let (status, headers, body) = send(
        app,
        Method::POST,
        "/login",
        &[],
        Some(&form(&[("username", name), ("password", PASSWORD)])),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let cookie = headers["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

impl Page {
    async fn new(alerts: &[Alert]) -> Page {
        let dir = TempDir::new().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store.index_alerts(alerts).unwrap();
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
        let alice = sign_in(&app, "alice").await;
        Page {
            _dir: dir,
            store,
            access,
            app,
            alice,
        }
    }

    async fn get(&self, uri: &str) -> String {
        self.get_as(&self.alice, uri).await
    }

    async fn get_as(&self, session: &str, uri: &str) -> String {
        let (status, _, body) =
            send(&self.app, Method::GET, uri, &[("cookie", session)], None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }

    async fn bulk(
        &self,
        session: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut all = vec![("cookie", session)];
        all.extend_from_slice(headers);
        let (status, headers, body) = send(
            &self.app,
            Method::POST,
            "/alerts/bulk",
            &all,
            Some(&form(fields)),
        )
        .await;
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(body))
    }

    fn status_of(&self, alert: &Alert) -> AlertStatus {
        self.store
            .alert(&alert.id.to_string())
            .unwrap()
            .view
            .state
            .status
    }
}

fn link(alert: &Alert) -> String {
    format!(r#"href="/alerts/{}""#, alert.id)
}

/// The values of the page's inputs named `name`, unescaped.
fn values_of(html: &str, name: &str) -> Vec<String> {
    let marker = format!(r#"name="{name}" value=""#);
    html.match_indices(&marker)
        .map(|(at, _)| {
            let start = at + marker.len();
            let end = start + html[start..].find('"').unwrap();
            html[start..end]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The rows of the groups table, in order.
fn group_rows(html: &str) -> Vec<&str> {
    html.split(r#"<tr class="group">"#).skip(1).collect()
}

#[tokio::test]
async fn counts_by_status_and_level_head_the_page_and_filter() {
    let high = spec("r-high", "High thing", Level::High);
    let low = spec("r-low", "Low thing", Level::Low);
    let alerts = vec![alert(&high, 0), alert(&high, 1), alert(&low, 0)];
    let page = Page::new(&alerts).await;
    page.store
        .update_alert(
            &alerts[2].id.to_string(),
            &AlertChange {
                status: Some(AlertStatus::Acknowledged),
                ..AlertChange::default()
            },
            "alice",
        )
        .unwrap();
    let html = page.get("/").await;
    for expected in [
        r#"href="/?status=open">open <strong>2</strong>"#,
        r#"href="/?status=acknowledged">acknowledged <strong>1</strong>"#,
        r#"href="/?status=closed">closed <strong>0</strong>"#,
        r#"href="/?level=high">high <strong>2</strong>"#,
        r#"href="/?level=low">low <strong>1</strong>"#,
        r#"href="/?level=critical">critical <strong>0</strong>"#,
    ] {
        assert!(html.contains(expected), "{expected}\n{html}");
    }
    // Under a level filter, the status counts are of that level, and the links keep it.
    let html = page.get("/?level=low").await;
    assert!(
        html.contains(r#"href="/?status=open&amp;level=low">open <strong>0</strong>"#),
        "{html}"
    );
    assert!(
        html.contains(
            r#"href="/?status=acknowledged&amp;level=low">acknowledged <strong>1</strong>"#
        ),
        "{html}"
    );
    // Following a count's link lists what it counted.
    let html = page.get("/?status=acknowledged").await;
    assert!(html.contains(&link(&alerts[2])), "{html}");
    assert!(!html.contains(&link(&alerts[0])), "{html}");
}

#[tokio::test]
async fn each_filter_narrows_the_list() {
    let plain = spec("r-plain", "Plain", Level::Medium);
    let critical = spec("r-critical", "Critical one", Level::Critical);
    let k8s = Spec {
        kind: "kubernetes_audit",
        ..spec("r-k8s", "Secrets read", Level::Medium)
    };
    let tagged = Spec {
        tags: vec!["attack.t1078"],
        ..spec("r-tagged", "Tagged", Level::Medium)
    };
    let late = Spec {
        minutes: 24 * 60,
        ..spec("r-late", "A day later", Level::Medium)
    };
    let assigned = spec("r-assigned", "Assigned one", Level::Medium);
    let alerts: Vec<Alert> = [&plain, &critical, &k8s, &tagged, &late, &assigned]
        .iter()
        .map(|s| alert(s, 0))
        .collect();
    let page = Page::new(&alerts).await;
    page.store
        .update_alert(
            &alerts[5].id.to_string(),
            &AlertChange {
                assignee: Some("Bob".into()),
                status: Some(AlertStatus::Closed),
                reason: Some(CloseReason::Resolved),
                ..AlertChange::default()
            },
            "alice",
        )
        .unwrap();
    let only = |uri: &'static str, index: usize| (uri, index);
    for (uri, index) in [
        only("/?level=critical", 1),
        only("/?rule=r-k8s", 2),
        only("/?source=kubernetes_audit", 2),
        only("/?tag=attack.t1078", 3),
        only("/?from=2026-11-29T00:00:00Z", 4),
        only("/?assignee=bob", 5),
        only("/?status=closed", 5),
    ] {
        let html = page.get(uri).await;
        for (i, alert) in alerts.iter().enumerate() {
            assert_eq!(
                html.contains(&link(alert)),
                i == index,
                "{uri}: alert {i} ({})",
                alert.rule_id
            );
        }
        // The form shows the filter it applied.
        let (key, value) = uri[2..].split_once('=').unwrap();
        if !matches!(key, "level" | "status") {
            assert!(
                html.contains(&format!(r#"name="{key}" value="{value}""#)),
                "{uri}: {html}"
            );
        }
    }
    // `to` excludes the late alert, and an empty form field is no filter.
    let html = page
        .get("/?to=2026-11-29T00:00:00Z&rule=&assignee=&status=")
        .await;
    assert!(!html.contains(&link(&alerts[4])));
    assert!(html.contains(&link(&alerts[0])));
    // A bad filter is said so, not a failure.
    let (status, _, body) = send(
        &page.app,
        Method::GET,
        "/?from=yesterday-ish",
        &[("cookie", &page.alice)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("from:"), "{body}");
    // Worded as the search page and the API word it.
    assert!(
        body.contains("from: `yesterday-ish` is not a time"),
        "{body}"
    );
}

#[tokio::test]
async fn twenty_identical_alerts_are_one_group_that_expands_to_them() {
    let sqli = spec("r-sqli", "SQL injection", Level::High);
    let correlation = |user: &'static str| Spec {
        group: vec![("user", user)],
        ..spec("r-brute", "Brute force", Level::Medium)
    };
    let mut alerts: Vec<Alert> = (0..20).map(|n| alert(&sqli, n)).collect();
    alerts.extend((0..3).map(|n| alert(&correlation("alice"), n)));
    alerts.extend((0..2).map(|n| alert(&correlation("bob"), n)));
    let page = Page::new(&alerts).await;
    let html = page.get("/?sort=count").await;
    let rows = group_rows(&html);
    assert_eq!(rows.len(), 3, "{html}");
    let sqli_row = rows[0];
    assert!(
        sqli_row.contains(r#"<td class="count">20</td>"#),
        "{sqli_row}"
    );
    assert!(sqli_row.contains("<details>"), "{sqli_row}");
    for alert in &alerts[..20] {
        assert!(sqli_row.contains(&link(alert)), "{sqli_row}");
    }
    // First and last seen: the oldest and newest of the twenty.
    assert!(sqli_row.contains("2026-11-28 09:00:00") && sqli_row.contains("2026-11-28 09:19:00"));
    assert!(sqli_row.contains("open 20"), "the status mix: {sqli_row}");
    // A correlation groups by its group-by values too.
    assert!(rows[1].contains(r#"<td class="count">3</td>"#) && rows[1].contains("user=alice"));
    assert!(rows[2].contains(r#"<td class="count">2</td>"#) && rows[2].contains("user=bob"));
}

#[tokio::test]
async fn columns_sort_by_their_header_links() {
    let many = spec("r-many", "Many low", Level::Low);
    let newest = Spec {
        minutes: 60,
        ..spec("r-newest", "Newest critical", Level::Critical)
    };
    let middle = Spec {
        minutes: 30,
        ..spec("r-middle", "A middle medium", Level::Medium)
    };
    let mut alerts: Vec<Alert> = (0..5).map(|n| alert(&many, n)).collect();
    alerts.push(alert(&newest, 0));
    alerts.push(alert(&middle, 0));
    alerts.push(alert(&middle, 1));
    let page = Page::new(&alerts).await;
    let order = |html: &str| -> Vec<&'static str> {
        group_rows(html)
            .iter()
            .map(|row| {
                ["Many low", "Newest critical", "A middle medium"]
                    .into_iter()
                    .find(|title| row.contains(title))
                    .unwrap()
            })
            .collect()
    };
    let html = page.get("/").await;
    for sort in ["count", "last", "level", "rule"] {
        assert!(html.contains(&format!(r#"href="/?sort={sort}""#)), "{html}");
    }
    assert_eq!(
        order(&html),
        ["Newest critical", "A middle medium", "Many low"]
    );
    assert_eq!(
        order(&page.get("/?sort=count").await),
        ["Many low", "A middle medium", "Newest critical"]
    );
    assert_eq!(
        order(&page.get("/?sort=level").await),
        ["Newest critical", "A middle medium", "Many low"]
    );
    assert_eq!(
        order(&page.get("/?sort=rule").await),
        ["A middle medium", "Many low", "Newest critical"]
    );
    // Sorting keeps the filters.
    let html = page.get("/?level=low&sort=count").await;
    assert!(
        html.contains(r#"href="/?level=low&amp;sort=rule""#),
        "{html}"
    );
}

#[tokio::test]
async fn a_group_has_a_sparkline_of_its_alerts_over_time() {
    let burst = spec("r-burst", "Burst", Level::High);
    let alerts: Vec<Alert> = (0..20).map(|n| alert(&burst, n)).collect();
    let page = Page::new(&alerts).await;
    let html = page.get("/").await;
    let start = html.find("<svg").expect("a sparkline");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    assert!(
        svg.contains("<title>20 alerts from 2026-11-28 09:00:00 to 2026-11-28 09:19:00</title>"),
        "{svg}"
    );
    // One alert a minute over 19 minutes: every one of 24 buckets but a few has a bar.
    let bars = svg.matches("<rect").count();
    assert!((15..=20).contains(&bars), "{bars} bars: {svg}");
    assert!(!svg.contains("style"), "{svg}");
}

#[tokio::test]
async fn a_group_is_acknowledged_in_bulk_and_alerts_closed_with_a_reason() {
    let sqli = spec("r-sqli", "SQL injection", Level::High);
    let other = spec("r-other", "Other", Level::Low);
    let mut alerts: Vec<Alert> = (0..20).map(|n| alert(&sqli, n)).collect();
    alerts.extend((0..3).map(|n| alert(&other, n)));
    let page = Page::new(&alerts).await;
    let html = page.get("/?level=high").await;
    let csrf = values_of(&html, "csrf").pop().expect("a CSRF field");
    let groups = values_of(&html, "group");
    assert_eq!(groups.len(), 1, "{html}");

    let (status, location) = page
        .bulk(
            &page.alice,
            &[
                ("csrf", &csrf),
                ("level", "high"),
                ("action", "acknowledge"),
                ("group", &groups[0]),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert!(location.starts_with("/?level=high&"), "{location}");
    assert!(location.contains("changed=20"), "{location}");
    for alert in &alerts[..20] {
        assert_eq!(page.status_of(alert), AlertStatus::Acknowledged);
        let history = page.store.alert(&alert.id.to_string()).unwrap().history;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].actor, "alice");
    }
    for alert in &alerts[20..] {
        assert_eq!(page.status_of(alert), AlertStatus::Open);
    }
    let audited = page
        .access
        .audit_entries(&AuditFilter {
            action: Some("alert.update".into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(audited.len(), 20);
    assert!(audited
        .iter()
        .all(|e| e.record.actor == "alice" && e.record.outcome == Outcome::Success));
    let html = page.get(&location).await;
    assert!(html.contains("20 alerts acknowledged."), "{html}");

    // Closing needs a reason; with one, it closes; an alert already closed is refused and
    // said so, not fatal.
    let ids: Vec<String> = alerts[20..].iter().map(|a| a.id.to_string()).collect();
    let (status, _) = page
        .bulk(
            &page.alice,
            &[("csrf", &csrf), ("action", "close"), ("id", &ids[0])],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(page.status_of(&alerts[20]), AlertStatus::Open);
    fn close<'a>(csrf: &'a str, ids: Vec<&'a str>) -> Vec<(&'static str, &'a str)> {
        let mut fields = vec![
            ("csrf", csrf),
            ("action", "close"),
            ("reason", "false_positive"),
        ];
        fields.extend(ids.into_iter().map(|id| ("id", id)));
        fields
    }
    let (status, _) = page
        .bulk(&page.alice, &close(&csrf, vec![&ids[0]]), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, location) = page
        .bulk(
            &page.alice,
            &close(
                &csrf,
                vec![
                    &ids[0],
                    &ids[1],
                    &ids[2],
                    "00112233445566778899aabbccddeeff",
                ],
            ),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        location.contains("changed=2")
            && location.contains("refused_same=1")
            && location.contains("refused_other=1"),
        "{location}"
    );
    for alert in &alerts[20..] {
        let detail = page.store.alert(&alert.id.to_string()).unwrap();
        assert_eq!(detail.view.state.status, AlertStatus::Closed);
        assert_eq!(detail.view.state.reason, Some(CloseReason::FalsePositive));
        assert!(detail.history.iter().all(|h| h.actor == "alice"));
    }
    let html = page.get(&location).await;
    assert!(html.contains("2 alerts closed."), "{html}");
    assert!(html.contains("1 already in that state"), "{html}");
    assert!(html.contains("1 unknown or not changeable"), "{html}");
    // The index sees the closed alerts too.
    let html = page.get("/?status=closed").await;
    assert!(html.contains(r#"<td class="count">3</td>"#), "{html}");

    // Assigning a group by a ticked alert.
    let (status, _) = page
        .bulk(
            &page.alice,
            &[
                ("csrf", &csrf),
                ("action", "assign"),
                ("assign_to", "dana"),
                ("id", &alerts[0].id.to_string()),
            ],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let detail = page.store.alert(&alerts[0].id.to_string()).unwrap();
    assert_eq!(detail.view.state.assignee.as_deref(), Some("dana"));
    let html = page.get("/?assignee=dana").await;
    assert_eq!(group_rows(&html).len(), 1, "{html}");
}

#[tokio::test]
async fn bulk_triage_is_refused_without_the_token_from_other_sites_and_to_viewers() {
    let sqli = spec("r-sqli", "SQL injection", Level::High);
    let alerts: Vec<Alert> = (0..3).map(|n| alert(&sqli, n)).collect();
    let page = Page::new(&alerts).await;
    let html = page.get("/").await;
    let csrf = values_of(&html, "csrf").pop().unwrap();
    let id = alerts[0].id.to_string();
    let ack = |csrf: &str| -> Vec<(&'static str, String)> {
        vec![
            ("csrf", csrf.to_owned()),
            ("action", "acknowledge".into()),
            ("id", id.clone()),
        ]
    };
    let as_refs =
        |fields: &[(&'static str, String)]| -> Vec<(&'static str, String)> { fields.to_vec() };
    for (fields, headers) in [
        (as_refs(&ack("")), vec![]),
        (as_refs(&ack("0000")), vec![]),
        (as_refs(&ack(&csrf)), vec![("sec-fetch-site", "cross-site")]),
        (
            as_refs(&ack(&csrf)),
            vec![("origin", "https://evil.example"), ("host", "vigil.local")],
        ),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = page.bulk(&page.alice, &fields, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(page.status_of(&alerts[0]), AlertStatus::Open);

    // A viewer is shown no checkboxes nor the form, and the gate refuses their post.
    page.access
        .add_user("vera", Role::Viewer, &Secret::new(PASSWORD))
        .unwrap();
    let vera = sign_in(&page.app, "vera").await;
    let html = page.get_as(&vera, "/").await;
    assert!(html.contains(&link(&alerts[0])), "{html}");
    assert!(!html.contains(r#"type="checkbox""#), "{html}");
    assert!(!html.contains("/alerts/bulk"), "{html}");
    let own = values_of(&html, "csrf").pop().unwrap();
    let fields = ack(&own);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = page.bulk(&vera, &fields, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(page.status_of(&alerts[0]), AlertStatus::Open);
    // The analyst's own, from the page, goes through.
    let fields = ack(&csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = page.bulk(&page.alice, &fields, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(page.status_of(&alerts[0]), AlertStatus::Acknowledged);
}

#[tokio::test]
async fn hostile_titles_group_values_and_assignees_stay_text() {
    let hostile = Spec {
        group: vec![("user", r#""><img src=x onerror=alert(2)>"#)],
        tags: vec!["<svg onload=alert(4)>"],
        ..spec("r-hostile", "<script>alert(1)</script>", Level::High)
    };
    let alerts = vec![alert(&hostile, 0), alert(&hostile, 1)];
    let page = Page::new(&alerts).await;
    page.store
        .update_alert(
            &alerts[0].id.to_string(),
            &AlertChange {
                assignee: Some("<b onmouseover=alert(3)>x</b>".into()),
                ..AlertChange::default()
            },
            "alice",
        )
        .unwrap();
    let html = page
        .get("/?tag=%3Csvg%20onload%3Dalert(4)%3E&rule=%22%3E%3Cscript%3E")
        .await;
    // The hostile rule filter matches nothing, and its value stays an attribute value.
    assert!(
        html.contains(r#"value="&quot;&gt;&lt;script&gt;""#),
        "{html}"
    );
    let html = page.get("/?tag=%3Csvg%20onload%3Dalert(4)%3E").await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;b onmouseover=alert(3)&gt;x&lt;/b&gt;"),
        "{html}"
    );
    assert!(html.contains("&lt;svg onload=alert(4)&gt;"), "{html}");
    // Kept in the URLs of the counts and sort links, percent-encoded.
    assert!(
        html.contains("tag=%3Csvg%20onload%3Dalert%284%29%3E"),
        "{html}"
    );
    for raw in ["<script>", "<img", "<b ", "<svg onload"] {
        assert!(!html.contains(raw), "{raw} in {html}");
    }
}

#[tokio::test]
async fn the_page_says_when_it_groups_only_the_newest_alerts() {
    let flood = spec("r-flood", "Flood", Level::Low);
    let alerts: Vec<Alert> = (0..5_001).map(|n| alert(&flood, n)).collect();
    let page = Page::new(&alerts).await;
    let html = page.get("/").await;
    assert!(
        html.contains("The newest 5000 of 5001 matching alerts are grouped here"),
        "{}",
        &html[..html.len().min(4000)]
    );
    assert!(html.contains(r#"<td class="count">5000</td>"#));
    // The oldest is the one left out.
    assert!(!html.contains(&link(&alerts[0])));
    assert!(html.contains(&link(&alerts[5_000])));
    // Under the bound, no such notice.
    let html = page.get("/?to=2026-11-28T10:00:00Z").await;
    assert!(
        !html.contains("matching alerts are grouped here"),
        "under the bound"
    );
}

/// The alerts page's response to `cookie`: its HTML and the visit cookie it sets.
async fn visit(page: &Page, cookie: &str) -> (String, String) {
    let (status, headers, html) =
        send(&page.app, Method::GET, "/", &[("cookie", cookie)], None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let set = headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict"),
        "{set}"
    );
    (html, set.split(';').next().unwrap().to_owned())
}

/// The href of the "new since your last visit" badge.
fn badge_link(html: &str) -> Option<String> {
    let marker = r#"<a class="badge" href=""#;
    let start = html.find(marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn a_badge_counts_the_alerts_raised_since_the_last_visit() {
    let old = alert(&spec("r-old", "Old", Level::Low), 0);
    let page = Page::new(std::slice::from_ref(&old)).await;
    // A first visit has nothing to compare with.
    let (html, cookie) = visit(&page, &page.alice).await;
    assert!(!html.contains("new since your last visit"), "{html}");
    let tag = cookie.rsplit('.').next().unwrap().to_owned();

    let mut fresh = alert(&spec("r-fresh", "Fresh", Level::High), 0);
    fresh.detected = Utc::now() - Duration::hours(1);
    page.store
        .index_alerts(std::slice::from_ref(&fresh))
        .unwrap();
    page.store.commit().unwrap();
    // The last visit ended two hours ago.
    let now = Utc::now().timestamp();
    let earlier = format!("vigil_alerts_visit={}.{}.{tag}", now - 7_200, now - 10_800);
    let (html, next) = visit(&page, &format!("{}; {earlier}", page.alice)).await;
    assert!(html.contains("1 new since your last visit"), "{html}");
    let link = badge_link(&html).unwrap();
    assert!(link.starts_with("/?since="), "{link}");
    let listed = page.get(&link).await;
    assert!(listed.contains(&self::link(&fresh)), "{listed}");
    assert!(!listed.contains(&self::link(&old)), "{listed}");
    // Within the same visit the badge stays, whatever the page's links load.
    let (html, _) = visit(&page, &format!("{}; {next}", page.alice)).await;
    assert!(html.contains("1 new since your last visit"), "{html}");

    // Another user's visit, or a cookie that does not parse, is a first visit.
    for other in [
        format!(
            "vigil_alerts_visit={}.{}.0000000000000000",
            now - 7_200,
            now - 10_800
        ),
        "vigil_alerts_visit=<script>.1.x".to_owned(),
        format!("vigil_alerts_visit={}.{}", now - 7_200, now - 10_800),
    ] {
        let (html, _) = visit(&page, &format!("{}; {other}", page.alice)).await;
        assert!(!html.contains("new since your last visit"), "{other}");
        assert!(!html.contains("<script>"));
    }
}
