//! The operators' health page: per-source counts, the last event and the silent flag, the
//! last day's quarantine, and what each role sees, through the real page routes behind the
//! real gate against a real store.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Map;
use tempfile::TempDir;
use vigil_access::{AccessConfig, AccessDb, Role, Secret};
use vigil_event::{Event, EventId, LogSource, Quarantined, Record, Source, AUDIT_SOURCE};
use vigil_store::Store;
use vigil_ui::{guard, page_router, Gate, UiState};

use crate::pages::{form, send, PASSWORD};

/// A source name a sender chose to break the page with.
const HOSTILE_NAME: &str = "<script>alert('name')</script>";
/// A quarantine reason carrying markup.
const HOSTILE_REASON: &str = "not JSON <b>bold</b>";

struct Fixture {
    _dir: TempDir,
    app: Router,
}

fn source(kind: &str, name: &str) -> Source {
    Source {
        kind: kind.into(),
        name: name.into(),
    }
}

fn event(n: u32, source: Source, ago: Duration) -> Event {
    let time = Utc::now() - ago;
    Event {
        id: EventId::derive("health test", &[&n.to_be_bytes()]),
        time,
        received: time,
        source,
        logsource: LogSource::default(),
        record: Record::json(r#"{"eventName":"Probe"}"#).unwrap(),
        fields: Map::new(),
    }
}

async fn fixture() -> Fixture {
    fixture_with(Vec::new()).await
}

/// The fixture's events and quarantine, with `more` events beside them.
async fn fixture_with(more: Vec<Event>) -> Fixture {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let mut events = more;
    // Three recent events from a live source.
    for n in 0..3 {
        events.push(event(
            n,
            source("cloudtrail", "org-trail"),
            Duration::minutes(5),
        ));
    }
    // A source that went quiet three hours ago, with a name meant to run as script.
    events.push(event(
        10,
        source("syslog", HOSTILE_NAME),
        Duration::hours(3),
    ));
    // Vigil's own audit events, for admins only.
    events.push(event(
        20,
        source(AUDIT_SOURCE, "vigil"),
        Duration::minutes(2),
    ));
    store.index_events(&events).unwrap();
    store.commit().unwrap();
    let raw = b"<img src=x onerror=alert(1)>\x00\xff".to_vec();
    let quarantined: Vec<Quarantined> = (0..2)
        .map(|n| Quarantined {
            source: source("cloudtrail", "org-trail"),
            reason: HOSTILE_REASON.into(),
            line: Some(n + 1),
            received: Utc::now() - Duration::minutes(10),
            raw: raw.clone(),
        })
        .chain(std::iter::once(Quarantined {
            source: source(AUDIT_SOURCE, "vigil"),
            reason: "audit only reason".into(),
            line: Some(7),
            received: Utc::now() - Duration::minutes(10),
            raw: b"secret audit bytes".to_vec(),
        }))
        .collect();
    store.add_quarantined(&quarantined).unwrap();
    let access = Arc::new(AccessDb::open_in(dir.path()).unwrap());
    for (name, role) in [("viewer", Role::Viewer), ("admin", Role::Admin)] {
        access.add_user(name, role, &Secret::new(PASSWORD)).unwrap();
    }
    let gate = Arc::new(Gate::new(access, None, AccessConfig::default(), false));
    let app = guard(
        page_router(UiState {
            store,
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        }),
        gate,
    );
    Fixture { _dir: dir, app }
}

impl Fixture {
    /// The health page as `user` sees it.
    async fn health_as(&self, user: &str) -> String {
        let (status, headers, body) = send(
            &self.app,
            Method::POST,
            "/login",
            &[],
            Some(&form(&[("username", user), ("password", PASSWORD)])),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let cookie = headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let (status, _, html) = send(
            &self.app,
            Method::GET,
            "/health",
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        html
    }
}

/// The table row of the health page that names `name`.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(name)
        .unwrap_or_else(|| panic!("{name} not on the page: {html}"));
    let start = html[..at].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

#[tokio::test]
async fn sources_show_their_counts_last_event_and_silence() {
    let fixture = fixture().await;
    let html = fixture.health_as("viewer").await;
    let live = row(&html, "<td>org-trail</td>");
    assert!(
        live.contains(r#"<td class="count">3</td><td class="count">3</td>"#),
        "{live}"
    );
    assert!(
        live.contains("<svg") && live.contains("<title>3 events arrived in the last hour"),
        "{live}"
    );
    assert!(
        live.contains("min ago") && live.contains("receiving"),
        "{live}"
    );
    assert!(!live.contains("silent"), "{live}");
    let quiet = row(&html, "<td>syslog</td>");
    assert!(quiet.contains(r#"class="silent""#), "{quiet}");
    assert!(
        quiet.contains("silent for over an hour") && quiet.contains("3 h ago"),
        "{quiet}"
    );
    assert!(
        quiet.contains(r#"<td class="count">0</td><td class="count">1</td>"#),
        "{quiet}"
    );
}

#[tokio::test]
async fn quarantine_is_counted_by_reason_with_escaped_samples() {
    let fixture = fixture().await;
    let html = fixture.health_as("viewer").await;
    assert!(
        html.contains(r#"<span class="count">2</span> not JSON &lt;b&gt;bold&lt;/b&gt;"#),
        "{html}"
    );
    assert!(html.contains("line 2"), "{html}");
    assert!(html.contains("30 bytes"), "{html}");
    assert!(
        html.contains(r"&lt;img src=x onerror=alert(1)&gt;\x00\xff"),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/api/v1/quarantine?source=org-trail""#),
        "{html}"
    );
}

#[tokio::test]
async fn a_viewer_does_not_see_the_audit_source_and_an_admin_does() {
    let fixture = fixture().await;
    let viewer = fixture.health_as("viewer").await;
    assert!(!viewer.contains(AUDIT_SOURCE), "{viewer}");
    assert!(!viewer.contains("audit only reason"), "{viewer}");
    let admin = fixture.health_as("admin").await;
    assert!(
        admin.contains(&format!("<td>{AUDIT_SOURCE}</td>")),
        "{admin}"
    );
    assert!(admin.contains("audit only reason"), "{admin}");
}

#[tokio::test]
async fn hostile_names_and_bytes_stay_text() {
    let fixture = fixture().await;
    let html = fixture.health_as("admin").await;
    // The frame's own same-origin scripts aside, no element comes from hostile text.
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert('name')&lt;/script&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn partitions_are_listed_with_their_events_and_the_retention() {
    let fixture = fixture().await;
    let html = fixture.health_as("admin").await;
    let start = html
        .find(r#"<table class="health partitions">"#)
        .unwrap_or_else(|| panic!("no partition table: {html}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert!(!rows.is_empty(), "{table}");
    // Each row: start, event times, events, bytes; every event indexed is in one of them.
    let counts: Vec<u64> = rows
        .iter()
        .flat_map(|row| row.split(r#"<td class="count">"#).skip(1))
        .map(|cell| cell[..cell.find('<').unwrap()].parse().unwrap())
        .collect();
    let events: u64 = counts.iter().step_by(2).sum();
    assert_eq!(events, 5, "{table}");
    assert!(
        counts.iter().skip(1).step_by(2).all(|bytes| *bytes > 0),
        "{table}"
    );
    assert!(html.contains("no age limit"), "{html}");
    assert!(html.contains("does not run detection"), "{html}");
}

/// `event`, dated `dated` by its sender and received `arrived` ago.
fn dated(n: u32, source: Source, dated: DateTime<Utc>, arrived: Duration) -> Event {
    Event {
        time: dated,
        received: Utc::now() - arrived,
        ..event(n, source, Duration::zero())
    }
}

/// Senders choose their events' times; the page counts and dates what arrived. A source
/// dating its records years back (or minutes ahead) still shows as busy now, and one dating
/// stale records as new still shows as silent, with its own times beside the arrivals.
#[tokio::test]
async fn rates_and_the_last_event_follow_arrival_not_the_senders_times() {
    let long_ago = Utc.with_ymd_and_hms(2021, 3, 1, 12, 0, 0).unwrap();
    let fixture = fixture_with(vec![
        dated(
            30,
            source("cloudtrail", "backdated"),
            long_ago,
            Duration::minutes(3),
        ),
        dated(
            31,
            source("cloudtrail", "backdated"),
            long_ago,
            Duration::minutes(2),
        ),
        dated(
            32,
            source("cloudtrail", "backdated"),
            Utc::now() + Duration::minutes(10),
            Duration::seconds(150),
        ),
        dated(
            40,
            source("cloudtrail", "stale"),
            Utc::now() - Duration::minutes(1),
            Duration::hours(3),
        ),
    ])
    .await;
    let html = fixture.health_as("viewer").await;

    let busy = row(&html, "<td>backdated</td>");
    assert!(
        busy.contains(r#"<td class="count">3</td><td class="count">3</td>"#),
        "{busy}"
    );
    assert!(
        busy.contains("<title>3 events arrived in the last hour"),
        "{busy}"
    );
    assert!(
        busy.contains("receiving") && !busy.contains("silent"),
        "{busy}"
    );
    // The two dated years back arrived late; the one dated minutes ahead did not.
    assert!(cell(busy, "count late").ends_with(">2"), "{busy}");
    // The last to arrive was dated in 2021: its arrival is minutes ago, its own time shown
    // apart, with the gap.
    let arrival = cell(busy, "arrival");
    assert!(arrival.contains("2 min ago"), "{arrival}");
    let own = cell(busy, "event-time");
    assert!(
        own.contains("2021-03-01T12:00:00Z") && own.contains("days before its arrival"),
        "{own}"
    );

    let stale = row(&html, "<td>stale</td>");
    assert!(
        stale.contains(r#"<td class="count">0</td><td class="count">1</td>"#),
        "{stale}"
    );
    assert!(stale.contains("silent for over an hour"), "{stale}");
    assert!(cell(stale, "count late").ends_with(">0"), "{stale}");
    assert!(cell(stale, "arrival").contains("3 h ago"), "{stale}");
    assert!(
        cell(stale, "event-time").contains("h after its arrival"),
        "{stale}"
    );
}

/// The cell of `row` with class `class`.
fn cell<'a>(row: &'a str, class: &str) -> &'a str {
    let open = format!(r#"<td class="{class}">"#);
    let at = row
        .find(&open)
        .unwrap_or_else(|| panic!("no {class} cell: {row}"));
    let rest = &row[at..];
    &rest[..rest.find("</td>").unwrap()]
}
