//! The search page, Discover-style and without scripts: a query box with a time range kept
//! in the URL, a histogram of the matches drawn as SVG whose bars zoom into their bucket, a
//! sidebar of the fields in the shown events with their top values, and the events as
//! summary rows that open into a tree where every value is a filter link.
//!
//! Every value shown here is attacker-written (keys included). It reaches the page only
//! through maud, which escapes it, and reaches a link only percent-encoded inside a query
//! parameter of a `/search` URL, and in that query only as one quoted term
//! ([`crate::search_terms::quote_term`]).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_access::Permission;
use vigil_event::Event;
use vigil_store::{Facets, Histogram, SampleAbove, SearchRequest, SearchResults};

use crate::api::{clamp_limit, read_time};
use crate::auth::Caller;
use crate::frame::{count, csrf, layout};
use crate::pages::time_cell;
use crate::search_terms::{add_clause, encode, filter_clause};
use crate::{call_store, CallError, UiState};

/// The longest raw record text an event shows; the API gives the whole record.
const RECORD_PREVIEW_CHARS: usize = 4000;
/// The most fields the sidebar lists, and how deep into a record it looks for them.
pub const SIDEBAR_FIELDS: usize = 30;
const SIDEBAR_DEPTH: usize = 3;
/// Top values per sidebar field.
pub const SIDEBAR_VALUES: usize = 5;
/// The most matches the sidebar counts values in; past it, an even sample of about as many.
/// Counting every match of a million took 250 ms and more (benches/RESULTS.md).
pub const SIDEBAR_SAMPLE: u64 = 20_000;
/// The most extra columns, and the longest column path, a URL may ask for.
const MAX_COLUMNS: usize = 10;
const MAX_COLUMN_CHARS: usize = 200;
/// Bounds on an event's tree, so one hostile record cannot make the page huge.
const TREE_DEPTH: usize = 16;
const TREE_NODES: usize = 1000;
/// The longest cell text in a summary row.
const CELL_CHARS: usize = 200;

/// The time range presets: label and `from` (all end at `now`).
const PRESETS: [(&str, &str); 5] = [
    ("15 min", "now-15m"),
    ("1 h", "now-1h"),
    ("24 h", "now-24h"),
    ("7 d", "now-7d"),
    ("30 d", "now-30d"),
];

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/search", get(search_page))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    #[serde(default)]
    pub(crate) q: String,
    #[serde(default)]
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) to: String,
    #[serde(default)]
    columns: String,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// What the page was asked for, as typed: links and inputs repeat it.
#[derive(Debug, Clone, Default)]
struct View {
    q: String,
    from: String,
    to: String,
    columns: Vec<String>,
}

impl View {
    fn of(params: &SearchParams) -> View {
        View {
            q: params.q.clone(),
            from: params.from.trim().to_owned(),
            to: params.to.trim().to_owned(),
            columns: params
                .columns
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && c.chars().count() <= MAX_COLUMN_CHARS)
                .take(MAX_COLUMNS)
                .map(str::to_owned)
                .collect(),
        }
    }

    /// This search's URL with `change` applied.
    fn url_with(&self, change: impl FnOnce(&mut View)) -> String {
        let mut view = self.clone();
        change(&mut view);
        view.url()
    }

    fn url(&self) -> String {
        let mut parts = Vec::new();
        let columns = self.columns.join(",");
        for (name, value) in [
            ("q", self.q.as_str()),
            ("from", &self.from),
            ("to", &self.to),
            ("columns", &columns),
        ] {
            if !value.is_empty() {
                parts.push(format!("{name}={}", encode(value)));
            }
        }
        format!("/search?{}", parts.join("&"))
    }

    /// The URL of this search narrowed by `clause`.
    fn narrowed(&self, clause: &str) -> String {
        self.url_with(|view| view.q = add_clause(&view.q, clause))
    }
}

/// The search page's URL for these parameters, as typed (`columns` comma-separated): the
/// link a saved search shares.
pub(crate) fn search_url(q: &str, from: &str, to: &str, columns: &str) -> String {
    View::of(&SearchParams {
        q: q.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        columns: columns.to_owned(),
        ..SearchParams::default()
    })
    .url()
}

/// The text of a value as shown.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A time range's `from` and `to`, each open when `None`.
pub(crate) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The time range read against one `now`; the error is the message to show.
pub(crate) fn read_range(from: &str, to: &str) -> Result<TimeRange, String> {
    let now = Utc::now();
    Ok((
        read_time("from", Some(from), now)?,
        read_time("to", Some(to), now)?,
    ))
}

/// Everything the page shows, fetched in one blocking call.
struct Found {
    results: SearchResults,
    histogram: Histogram,
    sidebar: Vec<Facets>,
}

async fn search_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<SearchParams>,
) -> Response {
    let view = View::of(&params);
    let (from, to) = match read_range(&view.from, &view.to) {
        Ok(range) => range,
        Err(message) => {
            let body = html! { (search_header(&view)) div.error { "Time range: " (message) } };
            return (
                StatusCode::BAD_REQUEST,
                layout("Search", Some(&caller), body),
            )
                .into_response();
        }
    };
    let request = SearchRequest {
        query: view.q.clone(),
        from,
        to,
        limit: clamp_limit(params.limit),
        cursor: params.cursor.clone().filter(|c| !c.is_empty()),
        visibility: caller.visibility(),
    };
    let store = state.store.clone();
    let found = call_store(move || {
        let visibility = request.visibility.clone();
        let results = store.search(&request)?;
        let histogram = store.histogram(&request.query, &visibility, from, to)?;
        let mut sidebar = Vec::new();
        let fields = sidebar_fields(&results.hits);
        let counted = store.facets_of_fields(
            &request.query,
            &visibility,
            &fields,
            SIDEBAR_VALUES,
            from,
            to,
            Some(SampleAbove {
                limit: SIDEBAR_SAMPLE,
                // The search just counted them, unless a partition could not be read.
                matches: (!results.total_is_lower_bound).then_some(results.total),
            }),
        )?;
        for (field, facets) in fields.iter().zip(counted) {
            // A path the index cannot count (a hostile key) leaves its field out, not the page.
            match facets {
                Ok(facets) if !facets.values.is_empty() => sidebar.push(facets),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, field, "no facets for a sidebar field"),
            }
        }
        Ok(Found {
            results,
            histogram,
            sidebar,
        })
    })
    .await;
    let (status, content) = match &found {
        Ok(found) => (StatusCode::OK, found_body(&view, &caller, found)),
        Err(error) => {
            let status = match error {
                CallError::BadQuery(..) | CallError::Invalid(_) => StatusCode::BAD_REQUEST,
                CallError::NotFound(_) => StatusCode::NOT_FOUND,
                CallError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, query_error(&view.q, error))
        }
    };
    let body = html! { (search_header(&view)) (content) };
    (status, layout("Search", Some(&caller), body)).into_response()
}

/// The title, the query form with its time range and presets, and the query help.
fn search_header(view: &View) -> Markup {
    html! {
        h1 { "Search events" }
        form.search.search-page method="get" action="/search" {
            div.query-row {
                label.visually-hidden for="q" { "Query" }
                input #q type="search" name="q" value=(view.q) placeholder="eventName:StopLogging, objectRef.resource:secrets, or any word" autofocus;
                button type="submit" { "Search" }
            }
            div.range-row {
                label { "From " input type="text" name="from" value=(view.from) placeholder="now-24h or 2026-11-28T09:00:00Z"; }
                label { "To " input type="text" name="to" value=(view.to) placeholder="now"; }
                @if !view.columns.is_empty() {
                    input type="hidden" name="columns" value=(view.columns.join(","));
                }
                nav.presets aria-label="Time range presets" {
                    @for (label, from) in PRESETS {
                        @let current = view.from == from && (view.to.is_empty() || view.to == "now");
                        a.current[current] href=(view.url_with(|v| { v.from = from.to_owned(); v.to = "now".to_owned(); }))
                            aria-current=[current.then_some("true")] { (label) }
                    }
                    a href=(view.url_with(|v| { v.from.clear(); v.to.clear(); })) { "all time" }
                }
            }
        }
        (query_help())
    }
}

/// The grammar, one click away.
fn query_help() -> Markup {
    html! {
        details.query-help {
            summary { "Query syntax" }
            ul {
                li { code { "word" } " finds a word anywhere in the event; " code { "\"two words\"" } " finds them adjacent." }
                li { code { "field:value" } " looks at one path of the record, such as " code { "eventName:ConsoleLogin" } " or " code { "user.username:alice" } "; " code { "source_kind" } ", " code { "source_name" } ", " code { "product" } ", " code { "service" } " and " code { "category" } " match the whole value." }
                li { code { "a b" } " and " code { "a AND b" } " need both; " code { "a OR b" } " either; " code { "-a" } " or " code { "NOT a" } " excludes; parentheses group: " code { "(a OR b) c" } ". Operators are upper case." }
                li { code { "*" } " and " code { "?" } " are wildcards (" code { "userIdentity.arn:*admin*" } "); " code { "/regex/" } " matches one whole word." }
                li { "Ranges and comparisons: " code { "sc-status:[500 TO 599]" } ", " code { "bytes:>1000" } ", " code { "time:>now-1h" } "; " code { "field:*" } " means the field is present." }
                li { "A backslash escapes the next character; inside quotes only " code { "\\\"" } " and " code { "\\\\" } " need it." }
                li { "Times (" code { "from" } ", " code { "to" } ") take RFC 3339, a date, " code { "now" } " or " code { "now-15m" } " (units s m h d w); " code { "from" } " is inclusive, " code { "to" } " exclusive." }
            }
        }
    }
}

/// A failed search: a query error with a marker under where it went wrong.
fn query_error(query: &str, error: &CallError) -> Markup {
    html! {
        div.error {
            @match error {
                CallError::BadQuery(message, position) => {
                    "Query error: " (message)
                    @if let Some(position) = position {
                        @let (line, marker) = marked(query, *position);
                        pre.query-marker aria-hidden="true" { (line) "\n" (marker) }
                    }
                }
                CallError::Invalid(message) | CallError::NotFound(message) => { "Query error: " (message) }
                CallError::Failed => { "The search failed; the server log has the details." }
            }
        }
    }
}

/// The query on one line and a `^` under the character at byte `position` (or just past
/// the end); a position inside a character points at that character.
pub(crate) fn marked(query: &str, position: usize) -> (String, String) {
    let flat: String = query
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut at = position.min(query.len());
    while !query.is_char_boundary(at) {
        at -= 1;
    }
    let column = query[..at].chars().count();
    (flat, format!("{}^", " ".repeat(column)))
}

fn found_body(view: &View, caller: &Caller, found: &Found) -> Markup {
    let results = &found.results;
    html! {
        p.muted {
            (results.total) @if results.total_is_lower_bound { " or more" } " matching events; "
            (results.hits.len()) " shown, newest first."
        }
        p.export {
            "Export these events: "
            a href=(export_url(view, "ndjson")) { "NDJSON" } " · "
            a href=(export_url(view, "csv")) { "CSV" }
        }
        (keep_and_follow(view, caller))
        // Every bar of the histogram is a link, so a keyboard would tab through a hundred of
        // them before reaching an event.
        a.skip-link href="#events" { "Skip to the events" }
        (histogram_svg(view, &found.histogram))
        div.discover {
            (sidebar(view, &found.sidebar))
            section.results #events tabindex="-1" aria-label="Events" {
                @if results.hits.is_empty() { p.muted { "No events match." } } @else {
                    (events_table(view, &results.hits))
                }
                @if let Some(cursor) = &results.next_cursor {
                    p { a href={ (view.url()) "&cursor=" (encode(cursor)) } { "Older events" } }
                }
            }
        }
    }
}

/// The save form (for those who may keep searches), the link to the saved ones, and the
/// live tail: a link to the page without scripts, which tail.js turns into a toggle that
/// streams into the hidden panel below it.
fn keep_and_follow(view: &View, caller: &Caller) -> Markup {
    let query = encode(&view.q);
    html! {
        div.keep-and-follow {
            p.live-tail-links {
                a #live-tail-toggle .live-tail-toggle href={ "/search/live?q=" (query) }
                    data-stream={ "/search/tail?q=" (query) } { "Live tail" }
                @if caller.principal.may(Permission::SavedSearches) {
                    " · " a href="/searches" { "Saved searches" }
                }
            }
            @if caller.principal.may(Permission::SavedSearches) {
                form #save-search .save-search method="post" action="/searches" {
                    input type="hidden" name="csrf" value=(csrf(caller));
                    input type="hidden" name="q" value=(view.q);
                    input type="hidden" name="from" value=(view.from);
                    input type="hidden" name="to" value=(view.to);
                    input type="hidden" name="columns" value=(view.columns.join(","));
                    label { "Save this search as " input #save-search-name type="text" name="name" required maxlength="100"; }
                    " " button type="submit" { "Save" }
                }
            }
            section #live-tail .live-tail hidden aria-label="Live tail" {
                p.live-tail-bar {
                    button #live-tail-pause type="button" { "Pause" } " "
                    span #live-tail-status role="status" aria-live="polite" {}
                }
                p.muted { "New matching events as Vigil indexes them, newest on top, whatever their own time: the time range above does not apply." }
                table #live-tail-table .events .live-events {
                    thead { tr { th { "Time" } th { "Received" } th { "Source" } th { "Event" } } }
                    tbody #live-tail-rows {}
                }
            }
        }
    }
}

/// The export of this search in `format`.
fn export_url(view: &View, format: &str) -> String {
    let url = view.url_with(|v| v.columns.clear());
    let query = url.strip_prefix("/search?").unwrap_or_default();
    format!("/search/export?format={format}&{query}")
}

/// The histogram: one bar per bucket, each a link to the same search over its bucket.
fn histogram_svg(view: &View, histogram: &Histogram) -> Markup {
    const BAR: usize = 10;
    const HEIGHT: u64 = 60;
    let buckets = &histogram.buckets;
    if buckets.is_empty() {
        return html! {};
    }
    let most = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let width = buckets.len() * BAR;
    let interval = Duration::seconds(histogram.interval_seconds);
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    html! {
        figure.histogram {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (width) " " (HEIGHT) }
                preserveAspectRatio="none" role="group" aria-label="Matching events over time; each bar zooms into its interval" {
                @for (i, bucket) in buckets.iter().enumerate() {
                    @let end = bucket.start + interval;
                    @let height = if bucket.count == 0 { 0 } else { (bucket.count * HEIGHT).div_ceil(most).max(1) };
                    a href=(view.url_with(|v| { v.from = stamp(bucket.start); v.to = stamp(end); })) {
                        title { (count(bucket.count as usize, "event")) " from " (stamp(bucket.start)) " to " (stamp(end)) }
                        // A full-height transparent target keeps short bars easy to click.
                        rect.target x=(i * BAR) y="0" width=(BAR) height=(HEIGHT) {}
                        rect.bar x=(i * BAR + 1) y=(HEIGHT - height) width=(BAR - 2) height=(height) {}
                    }
                }
            }
            figcaption.muted {
                (stamp(buckets[0].start)) " – " (stamp(buckets[buckets.len() - 1].start + interval))
                ", " (histogram.interval_seconds) " s per bar"
            }
        }
    }
}

/// The record paths in `events`, most common first and at most [`SIDEBAR_FIELDS`], then by
/// name; `source_kind` first, to count the sources. Public for the benchmark of the page.
pub fn sidebar_fields(events: &[Event]) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for event in events {
        if let Ok(document) = event.document() {
            let mut seen = std::collections::BTreeSet::new();
            collect_paths(&document, "", 1, &mut seen);
            for path in seen {
                *counts.entry(path).or_default() += 1;
            }
        }
    }
    let mut fields: Vec<(String, usize)> = counts.into_iter().collect();
    fields.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    fields.truncate(SIDEBAR_FIELDS - 1);
    let mut names: Vec<String> = fields.into_iter().map(|(name, _)| name).collect();
    names.sort();
    names.insert(0, "source_kind".to_owned());
    names
}

fn collect_paths(
    object: &Map<String, Value>,
    prefix: &str,
    depth: usize,
    out: &mut std::collections::BTreeSet<String>,
) {
    for (key, value) in object {
        if key.is_empty() || key.chars().count() > 100 {
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if depth < SIDEBAR_DEPTH => {
                collect_paths(inner, &path, depth + 1, out)
            }
            Value::Object(_) | Value::Null => {}
            Value::Array(items) => {
                if items.iter().any(|i| !i.is_object() && !i.is_array()) {
                    out.insert(path);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

fn sidebar(view: &View, facets: &[Facets]) -> Markup {
    html! {
        aside.fields aria-label="Fields" {
            h2 { "Fields" }
            @if facets.is_empty() { p.muted { "No fields." } }
            @if let Some(sample) = facets.first().and_then(|f| f.sample) {
                p.muted.sampled { "Values counted in 1 of every " (sample.one_in) " of the " (sample.matches) " matches." }
            }
            @for facet in facets {
                details open[facet.field == "source_kind"] {
                    summary { (facet.field) }
                    ul {
                        @for value in &facet.values {
                            @let text = value_text(&value.value);
                            li {
                                a.value href=(view.narrowed(&filter_clause(&facet.field, &value.value, false)))
                                    title={ "Only " (facet.field) " " (cut(&text, CELL_CHARS)) } { (cut(&text, 80)) }
                                " " span.count { (value.count) } " "
                                a.exclude href=(view.narrowed(&filter_clause(&facet.field, &value.value, true)))
                                    aria-label={ "Without " (facet.field) " " (cut(&text, CELL_CHARS)) } { "−" }
                            }
                        }
                        @if facet.other_count > 0 { li.muted { "other values: " (facet.other_count) } }
                    }
                }
            }
        }
    }
}

/// One summary cell: a label, the path it comes from, and the value there.
pub(crate) struct Cell {
    pub(crate) label: String,
    pub(crate) value: Option<String>,
}

/// The value at `path` in `document`, where a key may itself hold dots
/// (`annotations.authorization.k8s.io/decision`).
pub(crate) fn lookup<'a>(document: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = document.get(path) {
        return Some(value);
    }
    for (at, _) in path.match_indices('.') {
        if let Some(Value::Object(inner)) = document.get(&path[..at]) {
            if let Some(found) = lookup(inner, &path[at + 1..]) {
                return Some(found);
            }
        }
    }
    None
}

/// What a row says about an event, by its source kind.
pub(crate) fn summary(event: &Event, document: &Map<String, Value>) -> Vec<Cell> {
    let at = |paths: &[&str]| -> Option<String> {
        paths
            .iter()
            .find_map(|p| lookup(document, p).filter(|v| !v.is_null()))
            .map(value_text)
    };
    let cell = |label: &str, paths: &[&str]| Cell {
        label: label.to_owned(),
        value: at(paths),
    };
    match event.source.kind.as_str() {
        "cloudtrail" => vec![
            cell("event", &["eventName"]),
            cell("user", &["userIdentity.arn"]),
            cell("address", &["sourceIPAddress"]),
            cell("region", &["awsRegion"]),
            cell("error", &["errorCode"]),
        ],
        "kubernetes-audit" => {
            let object = match (at(&["objectRef.namespace"]), at(&["objectRef.name"])) {
                (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
                (namespace, name) => namespace.or(name),
            };
            vec![
                cell("verb", &["verb"]),
                cell("resource", &["objectRef.resource"]),
                Cell {
                    label: "object".into(),
                    value: object,
                },
                cell("user", &["user.username"]),
            ]
        }
        _ if ["levelname", "level", "message", "msg"]
            .iter()
            .any(|k| document.contains_key(*k)) =>
        {
            vec![
                cell("level", &["levelname", "level"]),
                cell("message", &["message", "msg"]),
                cell("user", &["username", "user"]),
                cell("address", &["remote_addr", "client_ip", "address"]),
            ]
        }
        _ => document
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array() && !v.is_null())
            .take(4)
            .map(|(k, v)| Cell {
                label: k.clone(),
                value: Some(value_text(v)),
            })
            .collect(),
    }
}

fn events_table(view: &View, events: &[Event]) -> Markup {
    html! {
        table.events {
            thead { tr {
                th { "Time" } th { "Source" } th { "Event" }
                @for column in &view.columns { th { (column) } }
            } }
            tbody {
                @for event in events {
                    @let document = event.document().unwrap_or_default();
                    tr {
                        (time_cell(&event.time))
                        td { (event.source.kind) br; span.muted { (event.source.name) } }
                        td.event {
                            details {
                                summary {
                                    @for cell in summary(event, &document) {
                                        @if let Some(value) = &cell.value {
                                            span.cell { span.label { (cell.label) } " " (cut(value, CELL_CHARS)) } " "
                                        }
                                    }
                                }
                                (event_tree(view, &document))
                                details.raw {
                                    summary { "Raw JSON" }
                                    pre { (cut(event.record.as_str(), RECORD_PREVIEW_CHARS)) }
                                }
                            }
                        }
                        @for column in &view.columns {
                            td { @if let Some(value) = lookup(&document, column) { (cut(&value_text(value), CELL_CHARS)) } }
                        }
                    }
                }
            }
        }
    }
}

/// The event as nested lists, each scalar a link that narrows the search to it.
fn event_tree(view: &View, document: &Map<String, Value>) -> Markup {
    let budget = std::cell::Cell::new(TREE_NODES);
    html! { div.tree { (object_tree(view, document, "", 0, &budget)) } }
}

fn object_tree(
    view: &View,
    object: &Map<String, Value>,
    prefix: &str,
    depth: usize,
    budget: &std::cell::Cell<usize>,
) -> Markup {
    html! {
        dl {
            @for (key, value) in object {
                @let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                dt { (key) }
                dd { (value_tree(view, value, &path, depth + 1, budget)) }
            }
        }
    }
}

fn value_tree(
    view: &View,
    value: &Value,
    path: &str,
    depth: usize,
    budget: &std::cell::Cell<usize>,
) -> Markup {
    let left = budget.get();
    if left == 0 {
        return html! { span.muted { "…" } };
    }
    budget.set(left - 1);
    if depth > TREE_DEPTH {
        return html! { code { (cut(&value.to_string(), CELL_CHARS)) } };
    }
    html! {
        @match value {
            Value::Object(inner) => (object_tree(view, inner, path, depth, budget)),
            Value::Array(items) => ul { @for item in items { li { (value_tree(view, item, path, depth + 1, budget)) } } },
            Value::Null => span.muted { "null" },
            scalar => a.filter href=(view.narrowed(&filter_clause(path, scalar, false))) { (cut(&value_text(scalar), RECORD_PREVIEW_CHARS)) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_points_at_the_character_at_the_position() {
        assert_eq!(marked("ab cd", 3), ("ab cd".into(), "   ^".into()));
        assert_eq!(marked("é x", 3), ("é x".into(), "  ^".into()));
        assert_eq!(marked("é\nx", 1), ("é x".into(), "^".into()));
        assert_eq!(marked("ab", 99), ("ab".into(), "  ^".into()));
    }

    #[test]
    fn lookups_follow_dotted_paths_and_dotted_keys() {
        let document: Map<String, Value> = serde_json::from_str(
            r#"{"a":{"b":1},"annotations":{"authorization.k8s.io/decision":"allow"}}"#,
        )
        .unwrap();
        assert_eq!(lookup(&document, "a.b"), Some(&Value::from(1)));
        assert_eq!(
            lookup(&document, "annotations.authorization.k8s.io/decision"),
            Some(&Value::from("allow"))
        );
        assert_eq!(lookup(&document, "a.c"), None);
    }
}
