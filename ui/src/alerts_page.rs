//! The alerts list, Vigil's home page (`GET /`); bulk triage from it (`POST /alerts/bulk`) is in
//! `alerts_bulk.rs`.
//!
//! Server-rendered, no scripts: filters are a GET form and links, so every view of the list
//! is a URL. Counts by status and by level head the page, each a link that filters. Alerts
//! are grouped by rule and group key (a correlation's group-by values), each group a row
//! with its count, first and last seen, level, status mix and a sparkline, expanding
//! (`<details>`) to its alerts. An alert's own page and its triage forms are in
//! [`crate::pages`].
//!
//! Everything shown (rule titles, group values, assignees, tags) is attacker-controlled text:
//! maud escapes it, and URLs built here percent-encode every value they carry.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_access::Permission;
use vigil_event::Level;
use vigil_store::{AlertFilter, AlertStatus, AlertView, CloseReason};

use crate::api::{read_level, read_status, read_time};
use crate::auth::Caller;
use crate::frame::{csrf, layout};
use crate::pages::status_badge;
use crate::search_terms::encode;
use crate::{call_store, CallError, UiState};

/// The most alerts grouped on one page: grouping needs them all in memory, so a flood of
/// alerts shows its newest this many, and the page says so.
pub(crate) const GROUPED_AT_MOST: usize = 5_000;

/// The most alerts one bulk request changes; each is a store write and an audit entry.
pub(crate) const BULK_AT_MOST: usize = 1_000;

/// Bars in a group's sparkline.
const SPARK_BUCKETS: usize = 24;

const STATUSES: [AlertStatus; 3] = [
    AlertStatus::Open,
    AlertStatus::Acknowledged,
    AlertStatus::Closed,
];

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/", get(alerts_page))
}

/// The list's filters and sort order, as the URL carries them. Empty fields (a GET form
/// sends every field) mean no filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListParams {
    status: String,
    level: String,
    rule: String,
    assignee: String,
    source: String,
    tag: String,
    from: String,
    to: String,
    sort: String,
    /// Alerts raised since this time: the "new since your last visit" badge's link.
    since: String,
}

/// The parameter names of [`ListParams`], in the order URLs write them.
const LIST_KEYS: [&str; 10] = [
    "status", "level", "rule", "assignee", "source", "tag", "from", "to", "sort", "since",
];

impl ListParams {
    /// Sets the parameter `key`, if it is one of the list's; says whether it was.
    pub(crate) fn set(&mut self, key: &str, value: String) -> bool {
        let field = match key {
            "status" => &mut self.status,
            "level" => &mut self.level,
            "rule" => &mut self.rule,
            "assignee" => &mut self.assignee,
            "source" => &mut self.source,
            "tag" => &mut self.tag,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "sort" => &mut self.sort,
            "since" => &mut self.since,
            _ => return false,
        };
        *field = value;
        true
    }

    fn get(&self, key: &str) -> &str {
        match key {
            "status" => &self.status,
            "level" => &self.level,
            "rule" => &self.rule,
            "assignee" => &self.assignee,
            "source" => &self.source,
            "tag" => &self.tag,
            "from" => &self.from,
            "to" => &self.to,
            "sort" => &self.sort,
            "since" => &self.since,
            _ => "",
        }
    }

    /// The query string of these parameters with `overrides` applied, empty ones left out.
    pub(crate) fn query_with(&self, overrides: &[(&str, &str)]) -> String {
        LIST_KEYS
            .iter()
            .map(|key| {
                let value = overrides
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| self.get(key), |(_, v)| *v);
                (*key, value.trim())
            })
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| format!("{key}={}", encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The list's URL with `overrides` applied.
    fn url_with(&self, overrides: &[(&str, &str)]) -> String {
        let query = self.query_with(overrides);
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }

    /// The store filter these parameters ask for, or what is wrong with them.
    pub(crate) fn filter(&self, limit: usize) -> Result<AlertFilter, String> {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        let status = text(&self.status).map(|s| read_status(&s)).transpose()?;
        let level = text(&self.level).map(|l| read_level(&l)).transpose()?;
        let now = Utc::now();
        let time = |name: &str, value: &str| read_time(name, Some(value), now);
        Ok(AlertFilter {
            status,
            level,
            rule: text(&self.rule),
            assignee: text(&self.assignee),
            tag: text(&self.tag),
            source_kind: text(&self.source),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            detected_from: time("since", &self.since)?,
            limit,
            ..AlertFilter::default()
        })
    }

    fn sort(&self) -> Sort {
        match self.sort.trim() {
            "count" => Sort::Count,
            "level" => Sort::Level,
            "rule" => Sort::Rule,
            _ => Sort::LastSeen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Count,
    LastSeen,
    Level,
    Rule,
}

/// What a bulk triage did, as the redirect back to the list carries it: counts and fixed
/// codes only, so a link someone else writes cannot put words on the page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BulkOutcome {
    pub(crate) done: String,
    pub(crate) changed: usize,
    /// Refused because the alert is already in the asked-for state.
    pub(crate) refused_same: usize,
    /// Refused because a closed alert cannot be acknowledged.
    pub(crate) refused_closed: usize,
    /// Refused for another reason: unknown alert, invalid change, failure.
    pub(crate) refused_other: usize,
    /// Over [`BULK_AT_MOST`]: not attempted.
    pub(crate) skipped: usize,
}

/// Alerts of one rule and group key.
struct Group<'a> {
    rule_id: &'a str,
    rule_title: &'a str,
    group: &'a BTreeMap<String, String>,
    /// Newest first, as listed.
    alerts: Vec<&'a AlertView>,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    level: Level,
    statuses: [usize; 3],
}

fn status_index(status: AlertStatus) -> usize {
    STATUSES.iter().position(|s| *s == status).unwrap_or(0)
}

/// Groups `alerts` by rule and group key, sorted by `sort` (ties: newest first).
fn group(alerts: &[AlertView], sort: Sort) -> Vec<Group<'_>> {
    let mut groups: BTreeMap<(&str, &BTreeMap<String, String>), Group<'_>> = BTreeMap::new();
    for view in alerts {
        let alert = &view.alert;
        let entry = groups
            .entry((alert.rule_id.as_str(), &alert.group))
            .or_insert_with(|| Group {
                rule_id: &alert.rule_id,
                rule_title: &alert.rule_title,
                group: &alert.group,
                alerts: Vec::new(),
                first: alert.time,
                last: alert.time,
                level: alert.level,
                statuses: [0; 3],
            });
        entry.alerts.push(view);
        entry.first = entry.first.min(alert.time);
        entry.last = entry.last.max(alert.time);
        entry.level = entry.level.max(alert.level);
        entry.statuses[status_index(view.state.status)] += 1;
    }
    let mut groups: Vec<Group<'_>> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        let primary = match sort {
            Sort::Count => b.alerts.len().cmp(&a.alerts.len()),
            Sort::LastSeen => std::cmp::Ordering::Equal,
            Sort::Level => b.level.cmp(&a.level),
            Sort::Rule => a
                .rule_title
                .to_lowercase()
                .cmp(&b.rule_title.to_lowercase()),
        };
        primary.then(b.last.cmp(&a.last))
    });
    groups
}

/// What identifies a group in the bulk form: its rule and group key, as JSON.
fn group_token(group: &Group<'_>) -> String {
    serde_json::json!([group.rule_id, group.group]).to_string()
}

/// Counts of matching alerts by status (whatever the status filter) and by level (whatever
/// the level filter), so each count is what its link would list.
struct Counts {
    statuses: Vec<(AlertStatus, usize)>,
    levels: Vec<(Level, usize)>,
    /// All alerts the filters match.
    total: usize,
}

fn counts(
    store: &vigil_store::Store,
    filter: &AlertFilter,
) -> Result<Counts, vigil_store::StoreError> {
    let statuses = STATUSES
        .iter()
        .map(|&status| {
            let one = AlertFilter {
                status: Some(status),
                ..filter.clone()
            };
            Ok((status, store.count_alerts(&one)?))
        })
        .collect::<Result<Vec<_>, vigil_store::StoreError>>()?;
    let levels = Level::ALL
        .iter()
        .rev()
        .map(|&level| {
            let one = AlertFilter {
                level: Some(level),
                ..filter.clone()
            };
            Ok((level, store.count_alerts(&one)?))
        })
        .collect::<Result<Vec<_>, vigil_store::StoreError>>()?;
    let total = store.count_alerts(filter)?;
    Ok(Counts {
        statuses,
        levels,
        total,
    })
}

/// What the page lists: the counts and the newest matching alerts.
struct Listing {
    counts: Counts,
    alerts: Vec<AlertView>,
    /// Alerts raised since the caller's last visit, when there was one.
    new: Option<(DateTime<Utc>, usize)>,
}

async fn alerts_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
    outcome: Result<Query<BulkOutcome>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        let body =
            html! { h1 { "Recent alerts" } div.error { "The page's parameters are malformed." } };
        return (
            StatusCode::BAD_REQUEST,
            layout("Alerts", Some(&caller), body),
        )
            .into_response();
    };
    let outcome = outcome.map(|Query(o)| o).unwrap_or_default();
    let filter = match params.filter(GROUPED_AT_MOST) {
        Ok(filter) => filter,
        Err(problem) => {
            let body = html! {
                h1 { "Recent alerts" }
                (filter_form(&params))
                div.error { (problem) }
            };
            return (
                StatusCode::BAD_REQUEST,
                layout("Alerts", Some(&caller), body),
            )
                .into_response();
        }
    };
    let visit = Visit::read(
        &headers,
        state.gate.tls,
        &caller.principal.actor(),
        Utc::now(),
    );
    let since = visit.since;
    let store = state.store.clone();
    let listing = call_store(move || {
        let counts = counts(&store, &filter)?;
        let alerts = store.list_alerts(&filter)?;
        let new = match since {
            Some(since) => {
                let raised = AlertFilter {
                    detected_from: Some(since),
                    ..AlertFilter::default()
                };
                Some((since, store.count_alerts(&raised)?))
            }
            None => None,
        };
        Ok(Listing {
            counts,
            alerts,
            new,
        })
    })
    .await;
    let body = match &listing {
        Err(error) => html! { h1 { "Recent alerts" } (filter_form(&params)) (error_box(error)) },
        Ok(listing) => list_body(&caller, &params, &outcome, listing),
    };
    (
        [(header::SET_COOKIE, visit.cookie(state.gate.tls))],
        layout("Alerts", Some(&caller), body),
    )
        .into_response()
}

/// The "new since your last visit" state, kept in a cookie of the browser rather than on
/// the server: a visit is a run of page loads less than [`VISIT_GAP`] apart, and the badge
/// counts the alerts raised since the previous visit ended, so following the page's own
/// links does not reset it. The cookie names the user by a hash, so another person signing
/// in on the same browser starts afresh; it holds numbers only, and a value that does not
/// parse is a first visit.
struct Visit {
    /// When the previous visit ended; `None` on a first visit.
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    user: String,
}

/// How long without loading the alerts page ends a visit.
const VISIT_GAP: chrono::Duration = chrono::Duration::minutes(30);

fn visit_cookie_name(tls: bool) -> &'static str {
    // Over TLS the `__Host-` prefix makes browsers refuse it from a sibling host or plain HTTP.
    if tls {
        "__Host-vigil_alerts_visit"
    } else {
        "vigil_alerts_visit"
    }
}

impl Visit {
    fn read(headers: &HeaderMap, tls: bool, actor: &str, now: DateTime<Utc>) -> Visit {
        let user = blake3::hash(format!("vigil alerts visit v1\0{actor}").as_bytes()).to_hex()
            [..16]
            .to_owned();
        let name = visit_cookie_name(tls);
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value);
        let parsed = value.and_then(|value| {
            let mut parts = value.split('.');
            let last = parts.next()?.parse::<i64>().ok()?;
            let since = parts.next()?.parse::<i64>().ok()?;
            let owner = parts.next()?;
            (parts.next().is_none() && owner == user).then_some(())?;
            Some((
                DateTime::<Utc>::from_timestamp(last, 0)?,
                DateTime::<Utc>::from_timestamp(since, 0)?,
            ))
        });
        let since = parsed.map(
            |(last, since)| {
                if now - last > VISIT_GAP {
                    last
                } else {
                    since
                }
            },
        );
        Visit { since, now, user }
    }

    /// The cookie that records this page load.
    fn cookie(&self, tls: bool) -> String {
        let since = self.since.unwrap_or(self.now);
        let secure = if tls { "; Secure" } else { "" };
        format!(
            "{}={}.{}.{}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}",
            visit_cookie_name(tls),
            self.now.timestamp(),
            since.timestamp(),
            self.user
        )
    }
}

fn error_box(error: &CallError) -> Markup {
    html! {
        div.error {
            @match error {
                CallError::BadQuery(message, _) | CallError::Invalid(message) => { "Filter error: " (message) }
                CallError::NotFound(message) => { (message) }
                CallError::Failed => { "Listing the alerts failed; the server log has the details." }
            }
        }
    }
}

fn list_body(
    caller: &Caller,
    params: &ListParams,
    outcome: &BulkOutcome,
    listing: &Listing,
) -> Markup {
    let counts = &listing.counts;
    let groups = group(&listing.alerts, params.sort());
    let triage = caller.principal.may(Permission::Triage);
    html! {
        h1 { "Recent alerts" }
        @if let Some((since, n)) = listing.new {
            @if n > 0 {
                p.new-since {
                    a.badge href=(ListParams::default().url_with(&[("since", &since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))])) {
                        (n) " new since your last visit"
                    }
                }
            }
        }
        (counts_nav(params, counts))
        (filter_form(params))
        (outcome_box(outcome))
        @if counts.total > listing.alerts.len() {
            p.notice.bound {
                "The newest " (listing.alerts.len()) " of " (counts.total)
                " matching alerts are grouped here; narrow the filters to see the rest."
            }
        }
        @if groups.is_empty() {
            p.muted { "No alerts here." }
        } @else if triage {
            form.bulk method="post" action="/alerts/bulk" {
                input type="hidden" name="csrf" value=(csrf(caller));
                @for key in LIST_KEYS {
                    @let value = params.get(key).trim();
                    @if !value.is_empty() { input type="hidden" name=(key) value=(value); }
                }
                (bulk_controls())
                (groups_table(params, &groups, true))
            }
        } @else {
            (groups_table(params, &groups, false))
        }
    }
}

fn counts_nav(params: &ListParams, counts: &Counts) -> Markup {
    html! {
        nav.counts aria-label="Alert counts" {
            span.count-group {
                span.muted { "Status: " }
                @for (status, n) in &counts.statuses {
                    a class={ "count status-" (status.as_str()) } href=(params.url_with(&[("status", status.as_str())])) {
                        (status.as_str()) " " strong { (n) }
                    }
                }
            }
            span.count-group {
                span.muted { "Level: " }
                @for (level, n) in &counts.levels {
                    a class={ "count level-" (level.as_str()) } href=(params.url_with(&[("level", level.as_str())])) {
                        (level.as_str()) " " strong { (n) }
                    }
                }
            }
        }
    }
}

fn filter_form(params: &ListParams) -> Markup {
    let text = |name: &'static str, label: &'static str, hint: &'static str| {
        html! { label { (label) " " input type="text" name=(name) value=(params.get(name)) placeholder=(hint); } }
    };
    html! {
        form.filters.alert-filters method="get" action="/" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[params.status.trim().eq_ignore_ascii_case(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "Level "
                select name="level" {
                    option value="" { "any" }
                    @for l in Level::ALL.iter().rev() {
                        option value=(l.as_str()) selected[params.level.trim().eq_ignore_ascii_case(l.as_str())] { (l.as_str()) }
                    }
                }
            }
            (text("rule", "Rule", "rule id"))
            (text("assignee", "Assignee", "user"))
            (text("source", "Source", "cloudtrail"))
            (text("tag", "Tag", "attack.t1078"))
            (text("from", "From", "now-24h"))
            (text("to", "To", "now"))
            @if !params.sort.trim().is_empty() { input type="hidden" name="sort" value=(params.sort.trim()); }
            @if !params.since.trim().is_empty() { label { "Raised since " input type="text" name="since" value=(params.since.trim()); } }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
    }
}

fn outcome_box(outcome: &BulkOutcome) -> Markup {
    let done = match outcome.done.as_str() {
        "acknowledge" => "acknowledged",
        "close" => "closed",
        "assign" => "assigned",
        _ => return html! {},
    };
    let refused = outcome.refused_same + outcome.refused_closed + outcome.refused_other;
    html! {
        div.notice.bulk-outcome role="status" {
            (outcome.changed) " " (plural(outcome.changed)) " " (done) "."
            @if refused > 0 {
                " " (refused) " refused:"
                @if outcome.refused_same > 0 { " " (outcome.refused_same) " already in that state;" }
                @if outcome.refused_closed > 0 { " " (outcome.refused_closed) " closed (reopen before acknowledging);" }
                @if outcome.refused_other > 0 { " " (outcome.refused_other) " unknown or not changeable;" }
            }
            @if outcome.skipped > 0 {
                " " (outcome.skipped) " not attempted: one request changes at most " (BULK_AT_MOST) " alerts."
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "alert"
    } else {
        "alerts"
    }
}

fn bulk_controls() -> Markup {
    html! {
        fieldset.bulk-actions {
            legend { "With the selected alerts and groups" }
            label { "Action "
                select name="action" required {
                    option value="acknowledge" { "acknowledge" }
                    option value="close" { "close" }
                    option value="assign" { "assign" }
                }
            }
            label { "Reason (to close) "
                select name="reason" {
                    option value="" { "—" }
                    @for r in [CloseReason::Resolved, CloseReason::FalsePositive, CloseReason::Duplicate, CloseReason::Other] {
                        option value=(r.as_str()) { (r.as_str()) }
                    }
                }
            }
            label { "Assignee (to assign; empty unassigns) " input type="text" name="assign_to"; }
            button type="submit" { "Apply" }
        }
    }
}

fn sort_header(params: &ListParams, sort: &'static str, label: &'static str) -> Markup {
    let current = params.sort.trim() == sort || (sort == "last" && params.sort() == Sort::LastSeen);
    html! {
        th aria-sort=[current.then_some("descending")] {
            a href=(params.url_with(&[("sort", sort)])) { (label) }
        }
    }
}

fn groups_table(params: &ListParams, groups: &[Group<'_>], selectable: bool) -> Markup {
    html! {
        table.alert-groups {
            thead { tr {
                @if selectable { th { span.visually-hidden { "Select" } } }
                (sort_header(params, "count", "Count"))
                (sort_header(params, "last", "Last seen"))
                th { "First seen" }
                (sort_header(params, "level", "Level"))
                (sort_header(params, "rule", "Rule and alerts"))
                th { "Status" }
                th { "Over time" }
            } }
            tbody {
                @for group in groups { (group_row(group, selectable)) }
            }
        }
    }
}

fn group_row(group: &Group<'_>, selectable: bool) -> Markup {
    let count = group.alerts.len();
    html! {
        tr.group {
            @if selectable {
                td { input type="checkbox" name="group" value=(group_token(group)) aria-label={ "Select all " (count) " alerts of this group" }; }
            }
            td.count { (count) }
            td.time { (group.last.format("%Y-%m-%d %H:%M:%S")) }
            td.time { (group.first.format("%Y-%m-%d %H:%M:%S")) }
            td { span class={ "level level-" (group.level.as_str()) } { (group.level.as_str()) } }
            td {
                details {
                    summary {
                        span.rule-title { (group.rule_title) }
                        @for (key, value) in group.group {
                            " " span.group-value { (key) "=" (value) }
                        }
                    }
                    ul.group-alerts {
                        @for view in &group.alerts {
                            li {
                                @if selectable {
                                    input type="checkbox" name="id" value=(view.alert.id) aria-label={ "Select alert " (view.alert.id) };
                                    " "
                                }
                                a href={ "/alerts/" (view.alert.id) } { (view.alert.time.format("%Y-%m-%d %H:%M:%S")) }
                                " " (status_badge(view))
                                @if let Some(assignee) = &view.state.assignee { " " span.assignee { (assignee) } }
                                " " span.muted { (view.alert.source.kind) " / " (view.alert.source.name) }
                                @if !view.alert.tags.is_empty() { " " span.muted { (view.alert.tags.join(", ")) } }
                            }
                        }
                    }
                }
            }
            td.status-mix {
                @for (status, n) in STATUSES.iter().zip(group.statuses) {
                    @if n > 0 { span class={ "status status-" (status.as_str()) } { (status.as_str()) " " (n) } " " }
                }
            }
            td.spark { (sparkline(group)) }
        }
    }
}

/// A small bar chart of the group's alerts per time bucket over its span, as inline SVG
/// with presentational attributes only (the content security policy allows no `style`).
fn sparkline(group: &Group<'_>) -> Markup {
    const WIDTH: usize = 96;
    const HEIGHT: usize = 20;
    let span = (group.last - group.first).num_milliseconds().max(0);
    let mut buckets = [0usize; SPARK_BUCKETS];
    for view in &group.alerts {
        let offset = (view.alert.time - group.first).num_milliseconds().max(0);
        let index = if span == 0 {
            SPARK_BUCKETS - 1
        } else {
            ((offset as i128 * SPARK_BUCKETS as i128) / (span as i128 + 1)) as usize
        };
        buckets[index.min(SPARK_BUCKETS - 1)] += 1;
    }
    let peak = buckets.iter().copied().max().unwrap_or(1).max(1);
    let bar = WIDTH / SPARK_BUCKETS;
    let title = format!(
        "{} {} from {} to {}",
        group.alerts.len(),
        plural(group.alerts.len()),
        group.first.format("%Y-%m-%d %H:%M:%S"),
        group.last.format("%Y-%m-%d %H:%M:%S"),
    );
    html! {
        svg.sparkline xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" {
            title { (title) }
            @for (i, n) in buckets.iter().enumerate() {
                @if *n > 0 {
                    @let h = (n * HEIGHT).div_ceil(peak).max(1);
                    rect x=(i * bar) y=(HEIGHT - h) width=(bar.saturating_sub(1).max(1)) height=(h) fill="currentColor" {}
                }
            }
        }
    }
}
