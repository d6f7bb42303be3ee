//! The parts of an alert's page that tell its story: what the rule looks for (from the
//! [`RuleCatalog`]), the events that matched with the fields the engine found matching
//! marked, a correlation's group values, and "search around" links to the same user, address
//! or resource near the alert's time.
//!
//! Everything here is attacker-written (rule files, event values, group values): it stays
//! text, and a value becomes a link only inside a query parameter, percent-encoded and quoted
//! as one term, or when it is an http(s) URL or a well-formed ATT&CK technique.
//!
//! The event rows pick their few fields here rather than borrow the search page's summary,
//! because the search page borrows from the alert page's module, and the modules must not
//! depend on each other in a circle.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use maud::{html, Markup};
use serde_json::{Map, Value};
use vigil_event::{Alert, Event, MatchedField};

use crate::rule_catalog::{attack_technique_url, is_web_url, RuleCatalog};
use crate::search_terms::{encode, quote_field, quote_term};

/// How far before and after the alert's time a "search around" link looks.
const AROUND_MINUTES: i64 = 15;
/// The most "search around" links shown, so that a correlation over many events stays short.
const AROUND_AT_MOST: usize = 24;
/// The longest value text shown in a cell or a link label.
const VALUE_CHARS: usize = 200;

/// Per source kind, the fields that name a user, an address or a resource.
fn pivot_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "cloudtrail" => &["userIdentity.arn", "sourceIPAddress"],
        "kubernetes-audit" => &["user.username", "sourceIPs", "objectRef.resource"],
        _ => &["username", "remote_addr"],
    }
}

/// Per source kind, the few fields a row shows: what happened, who, from where, on what.
fn key_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "cloudtrail" => &[
            "eventName",
            "userIdentity.arn",
            "sourceIPAddress",
            "errorCode",
        ],
        "kubernetes-audit" => &[
            "verb",
            "objectRef.resource",
            "objectRef.name",
            "user.username",
        ],
        _ => &["level", "message", "username", "remote_addr"],
    }
}

/// The value at a dotted `path` of nested objects. The paths asked for are this module's own,
/// none of which has a key with a dot in it.
fn field<'a>(document: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    match (document.get(first)?, rest) {
        (value, None) => Some(value),
        (Value::Object(inner), Some(rest)) => field(inner, rest),
        _ => None,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= VALUE_CHARS {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(VALUE_CHARS).collect();
        out.push('…');
        out
    }
}

/// The rule's own words: title, description, false positives, references and tags.
pub(crate) fn rule_section(alert: &Alert, catalog: &RuleCatalog) -> Markup {
    let info = catalog.get(&alert.rule_id);
    // The alert carries its tags; the catalogue's, when known, are the rule's current ones.
    let tags = info.map_or(&alert.tags, |info| &info.tags);
    html! {
        section.rule {
            h2 { "Rule" }
            @if let Some(info) = info {
                p.rule-title { (info.title) }
                @if let Some(description) = &info.description { p.description { (description) } }
                dl.facts {
                    dt { "File" } dd { code { (info.file) } ", line " (info.line) }
                    @if !info.falsepositives.is_empty() {
                        dt { "False positives" }
                        dd { ul.falsepositives { @for fp in &info.falsepositives { li { (fp) } } } }
                    }
                    @if !info.references.is_empty() {
                        dt { "References" }
                        dd { ul.references { @for reference in &info.references {
                            li { @if is_web_url(reference) {
                                a href=(reference) rel="noreferrer noopener" { (reference) }
                            } @else { (reference) } }
                        } } }
                    }
                }
            } @else if catalog.is_loaded() {
                p.muted { "Rule " code { (alert.rule_id) } " is not among the loaded rules (it was removed or renamed since)." }
            } @else {
                p.muted { "This process does not run detection, so it has not loaded the rules: only what the alert carries is shown." }
            }
            @if !tags.is_empty() {
                ul.tags { @for tag in tags {
                    li { @if let Some(url) = attack_technique_url(tag) {
                        a href=(url) rel="noreferrer noopener" { (tag) }
                    } @else { (tag) } }
                } }
            }
        }
    }
}

/// The matched events as a compact table, each linking to a search for it, and a
/// correlation's group values.
pub(crate) fn events_section(alert: &Alert, events: &[Event], hidden: usize) -> Markup {
    html! {
        section.matched {
            @if !alert.group.is_empty() {
                h2 { "Group" }
                dl.group { @for (key, value) in &alert.group { dt { (key) } dd { (cut(value)) } } }
            }
            h2 { "Matched events" }
            @if events.is_empty() { p.muted { "None of the alert's events can be shown." } } @else {
                table.events {
                    thead { tr { th { "Time" } th { "Source" } th { "Event" } } }
                    tbody { @for event in events {
                        @let document = event.document().unwrap_or_default();
                        @let matched = alert.matched_fields(&event.id);
                        tr {
                            td.time { a href={ "/search?q=id%3A" (event.id) } { (event.time.format("%Y-%m-%d %H:%M:%S")) } }
                            td { (event.source.kind) " / " (event.source.name) }
                            td {
                                @for path in key_fields(&event.source.kind) {
                                    @if let Some(value) = field(&document, path).filter(|v| !v.is_null()) {
                                        @let text = cut(&value_text(value));
                                        span.cell { span.muted { (path) " " }
                                            @if matched.iter().any(|m| m.field == *path) { mark { (text) } } @else { (text) }
                                        } " "
                                    }
                                }
                                (matched_list(matched))
                            }
                        }
                    } }
                }
            }
            @if hidden > 0 { p.muted { (hidden) " of the alert's events are not shown to you." } }
        }
    }
}

/// What the detection engine reported made the rule match one event, each value marked.
fn matched_list(matched: &[MatchedField]) -> Markup {
    html! {
        @if !matched.is_empty() {
            ul.matched-fields aria-label="Matched fields" { @for found in matched {
                li {
                    code { (found.field) } " = " mark { (cut(&found.value)) }
                    @if found.keyword { " " span.muted { "(keyword)" } }
                }
            } }
        }
    }
}

/// The (field, value) pairs worth searching around: the pivot fields of the events, then the
/// alert's group values, each once, at most [`AROUND_AT_MOST`].
pub(crate) fn around_pairs(alert: &Alert, events: &[Event]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut add = |field: &str, value: &str| {
        let pair = (field.to_owned(), value.to_owned());
        if !value.is_empty() && pairs.len() < AROUND_AT_MOST && !pairs.contains(&pair) {
            pairs.push(pair);
        }
    };
    for event in events {
        let Ok(document) = event.document() else {
            continue;
        };
        for path in pivot_fields(&event.source.kind) {
            match field(&document, path) {
                Some(Value::String(text)) => add(path, text),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::String(text) = item {
                            add(path, text);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for (key, value) in &alert.group {
        add(key, value);
    }
    pairs
}

/// A search for `field:"value"` within ±15 minutes of `time`, as a URL.
pub(crate) fn around_url(field: &str, value: &str, time: DateTime<Utc>) -> String {
    let span = Duration::minutes(AROUND_MINUTES);
    let at = |t: DateTime<Utc>| encode(&t.to_rfc3339_opts(SecondsFormat::Secs, true));
    format!(
        "/search?q={}&from={}&to={}",
        encode(&format!("{}:{}", quote_field(field), quote_term(value))),
        at(time - span),
        at(time + span)
    )
}

pub(crate) fn around_section(alert: &Alert, events: &[Event]) -> Markup {
    let pairs = around_pairs(alert, events);
    html! {
        @if !pairs.is_empty() {
            section.around {
                h2 { "Search around (±" (AROUND_MINUTES) " min)" }
                ul.around { @for (field, value) in &pairs {
                    li { a href=(around_url(field, value, alert.time)) {
                        code { (field) } " = " (cut(value))
                    } }
                } }
            }
        }
    }
}
