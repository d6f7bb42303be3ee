//! `GET /audit`: the audit log for admins, newest first, filtered by actor and action, a page
//! at a time. The gate lets only those who may read the audit log reach it.
//!
//! Nearly everything here was written by someone else: a failed sign-in records the name it
//! tried, whatever that was. Every cell is text that maud escapes; nothing is `PreEscaped`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_access::{AuditEntry, AuditFilter, Outcome};

use crate::auth::Caller;
use crate::frame::layout;
use crate::search_terms::encode;
use crate::UiState;

/// Entries on one page.
const PAGE_ENTRIES: usize = 100;

/// The longest filter text taken: names and actions are short, and a longer one finds nothing.
const MAX_FILTER_CHARS: usize = 256;

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/audit", get(audit_page))
}

#[derive(Debug, Default, Deserialize)]
struct AuditParams {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// Text, not a number, so that a mangled link is explained on the page, not refused bare.
    #[serde(default)]
    before: String,
}

/// A filter's text, or `None` when empty.
fn filter_text(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_FILTER_CHARS).collect())
}

async fn audit_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p);
    let (params, problem) = match params {
        Ok(params) => (params, None),
        Err(rejection) => (AuditParams::default(), Some(rejection.body_text())),
    };
    let before = match params.before.trim() {
        "" => Ok(None),
        text => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{text:?} is not an entry number")),
    };
    let (before, problem) = match (before, problem) {
        (Ok(before), problem) => (before, problem),
        (Err(bad), _) => (None, Some(bad)),
    };
    let filter = AuditFilter {
        actor: filter_text(&params.actor),
        action: filter_text(&params.action),
        before,
        // One more than shown, to know whether there is an older page.
        limit: PAGE_ENTRIES + 1,
    };
    let db = state.gate.db.clone();
    let query = filter.clone();
    let entries = match tokio::task::spawn_blocking(move || db.audit_entries(&query)).await {
        Ok(Ok(entries)) => Ok(entries),
        Ok(Err(error)) => {
            tracing::error!(%error, "reading the audit log failed");
            Err(())
        }
        Err(error) => {
            tracing::error!(%error, "the audit log's task failed");
            Err(())
        }
    };
    let status = match (&entries, &problem) {
        (Err(()), _) => StatusCode::INTERNAL_SERVER_ERROR,
        (_, Some(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let body = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/audit" {
            label { "Actor " input type="text" name="actor" value=[filter.actor.as_deref()]; }
            label { "Action " input type="text" name="action" value=[filter.action.as_deref()] placeholder="sign_in, alert.update…"; }
            button type="submit" { "Filter" }
            @if filter.actor.is_some() || filter.action.is_some() {
                " " a href="/audit" { "Clear" }
            }
        }
        @if let Some(problem) = &problem { div.error { (problem) } }
        @match &entries {
            Err(()) => div.error { "Reading the audit log failed; the server log has the details." },
            Ok(entries) if entries.is_empty() => p.muted { "No entries here." },
            Ok(entries) => {
                (entries_table(&entries[..entries.len().min(PAGE_ENTRIES)]))
                @if entries.len() > PAGE_ENTRIES {
                    @let oldest = entries[PAGE_ENTRIES - 1].seq;
                    p { a.older href=(older_link(&filter, oldest)) { "Older entries" } }
                }
            }
        }
    };
    (status, layout("Audit log", Some(&caller), body)).into_response()
}

fn entries_table(entries: &[AuditEntry]) -> Markup {
    let optional = |text: &Option<String>| -> Markup {
        html! { @if let Some(text) = text { (text) } @else { span.muted { "—" } } }
    };
    html! {
        table.audit {
            thead { tr {
                th { "Time" } th { "Actor" } th { "Action" } th { "Outcome" } th { "Target" }
                th { "Client address" } th { "Reason" } th { "Detail" }
            } }
            tbody {
                @for entry in entries {
                    @let record = &entry.record;
                    @let outcome = outcome_text(record.outcome);
                    tr {
                        td.time title=(entry.seq) { (entry.time.format("%Y-%m-%d %H:%M:%S")) }
                        td { (record.actor) }
                        td { code { (record.action) } }
                        td { span class={ "outcome outcome-" (outcome) } { (outcome) } }
                        td { (optional(&record.target)) }
                        td { (optional(&record.client_address)) }
                        td { (optional(&record.reason)) }
                        td {
                            @if record.detail.is_null() { span.muted { "—" } }
                            @else { code { (record.detail.to_string()) } }
                        }
                    }
                }
            }
        }
    }
}

fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

/// The next page's address, keeping the filters.
fn older_link(filter: &AuditFilter, before: i64) -> String {
    let mut link = format!("/audit?before={before}");
    for (name, value) in [("actor", &filter.actor), ("action", &filter.action)] {
        if let Some(value) = value {
            link.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_links_keep_the_filters_encoded() {
        let filter = AuditFilter {
            actor: Some("a&b=c <d>".into()),
            action: Some("sign_in".into()),
            before: None,
            limit: 1,
        };
        assert_eq!(
            older_link(&filter, 42),
            "/audit?before=42&actor=a%26b%3Dc%20%3Cd%3E&action=sign_in"
        );
        assert_eq!(older_link(&AuditFilter::default(), 7), "/audit?before=7");
    }

    #[test]
    fn filters_are_trimmed_and_bounded() {
        assert_eq!(filter_text("  "), None);
        assert_eq!(filter_text(" alice ").as_deref(), Some("alice"));
        assert_eq!(
            filter_text(&"x".repeat(1000)).map(|t| t.len()),
            Some(MAX_FILTER_CHARS)
        );
    }
}
