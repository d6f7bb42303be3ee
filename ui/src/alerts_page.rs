//! The alerts list, Vigil's home page (`GET /`).
//!
//! Server-rendered, no scripts: filters are a GET form and links, so every view of the list
//! is a URL. An alert's own page and its triage forms are in [`crate::pages`].

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_store::{AlertFilter, AlertStatus, AlertView};

use crate::auth::Caller;
use crate::frame::layout;
use crate::pages::{events_query, status_badge};
use crate::{call_store, CallError, UiState};

/// Alerts listed on the home page.
const ALERTS_SHOWN: usize = 100;

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/", get(alerts_page))
}

fn error_box(error: &CallError) -> Markup {
    html! {
        div.error {
            @match error {
                CallError::BadQuery(message, _) | CallError::Invalid(message) => { "Query error: " (message) }
                CallError::NotFound(message) => { (message) }
                CallError::Failed => { "Listing the alerts failed; the server log has the details." }
            }
        }
    }
}

fn time_cell(time: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { td.time { (time.format("%Y-%m-%d %H:%M:%S")) } }
}

#[derive(Debug, Deserialize)]
struct AlertsParams {
    status: Option<String>,
}

async fn alerts_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<AlertsParams>,
) -> Response {
    let status = params.status.as_deref().and_then(AlertStatus::parse);
    let filter = AlertFilter {
        query: String::new(),
        status,
        level: None,
        rule: None,
        limit: ALERTS_SHOWN,
    };
    let store = state.store.clone();
    let alerts = call_store(move || store.list_alerts(&filter)).await;
    let body = html! {
        h1 { "Recent alerts" }
        nav.filters {
            "Show: "
            a href="/" { "all" }
            @for s in [AlertStatus::Open, AlertStatus::Acknowledged, AlertStatus::Closed] {
                " · " a href={ "/?status=" (s.as_str()) } { (s.as_str()) }
            }
        }
        @match &alerts {
            Err(error) => (error_box(error)),
            Ok(alerts) if alerts.is_empty() => p.muted { "No alerts here." },
            Ok(alerts) => (alerts_table(alerts)),
        }
    };
    layout("Alerts", Some(&caller), body).into_response()
}

fn alerts_table(alerts: &[AlertView]) -> Markup {
    html! {
        table {
            thead { tr { th { "Time" } th { "Level" } th { "Rule" } th { "Status" } th { "Assignee" } th { "Source" } th { "Events" } } }
            tbody {
                @for view in alerts {
                    @let alert = &view.alert;
                    tr {
                        (time_cell(&alert.time))
                        td { span class={ "level level-" (alert.level.as_str()) } { (alert.level.as_str()) } }
                        td {
                            a href={ "/alerts/" (alert.id) } { (alert.rule_title) }
                            @if !alert.tags.is_empty() { br; span.muted { (alert.tags.join(", ")) } }
                        }
                        td { (status_badge(view)) }
                        td { @if let Some(assignee) = &view.state.assignee { (assignee) } @else { span.muted { "—" } } }
                        td { (alert.source.name) }
                        td { a href={ "/search?q=" (events_query(alert)) } { (alert.event_ids.len()) } }
                    }
                }
            }
        }
    }
}
