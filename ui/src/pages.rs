//! Server-rendered HTML pages: recent alerts, event search and login.
//!
//! No scripts: the pages work with plain links and forms, which keeps the content security
//! policy at `default-src 'none'` and leaves attacker-controlled text nothing to run in.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use vigil_event::{Alert, Event};
use vigil_store::SearchRequest;

use crate::api::clamp_limit;
use crate::auth::SESSION_COOKIE;
use crate::{call_store, CallError, UiState};

/// The longest record text a results table shows; the API gives the whole record.
const RECORD_PREVIEW_CHARS: usize = 4000;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/", get(alerts_page))
        .route("/search", get(search_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/static/vigil.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/vigil.css"),
    )
}

fn layout(title: &str, signed_in: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vigil" }
                link rel="stylesheet" href="/static/vigil.css";
            }
            body {
                header {
                    a href="/" { "Vigil" }
                    @if signed_in {
                        a href="/" { "Alerts" }
                        a href="/search" { "Search" }
                        form method="post" action="/logout" { button type="submit" { "Sign out" } }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn search_form(query: &str) -> Markup {
    html! {
        form.search method="get" action="/search" {
            input type="search" name="q" value=(query) placeholder="eventName:StopLogging, objectRef.resource:secrets, or any word" autofocus;
            button type="submit" { "Search" }
        }
    }
}

fn error_box(error: &CallError) -> Markup {
    html! {
        div.error {
            @match error {
                CallError::BadQuery(message, _) | CallError::Invalid(message) => { "Query error: " (message) }
                CallError::NotFound(message) => { (message) }
                CallError::Failed => { "The search failed; the server log has the details." }
            }
        }
    }
}

fn time_cell(time: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { td.time { (time.format("%Y-%m-%d %H:%M:%S")) } }
}

async fn alerts_page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if !state.token.session_matches(&headers) {
        return Redirect::to("/login").into_response();
    }
    let store = state.store.clone();
    let alerts = call_store(move || store.alerts(100)).await;
    let body = html! {
        h1 { "Recent alerts" }
        (search_form(""))
        @match &alerts {
            Err(error) => (error_box(error)),
            Ok(alerts) if alerts.is_empty() => p.muted { "No alerts yet." },
            Ok(alerts) => (alerts_table(alerts)),
        }
    };
    layout("Alerts", true, body).into_response()
}

fn alerts_table(alerts: &[Alert]) -> Markup {
    html! {
        table {
            thead { tr { th { "Time" } th { "Level" } th { "Rule" } th { "Source" } th { "Events" } } }
            tbody {
                @for alert in alerts {
                    tr {
                        (time_cell(&alert.time))
                        td { span class={ "level level-" (alert.level.as_str()) } { (alert.level.as_str()) } }
                        td {
                            (alert.rule_title)
                            @if !alert.tags.is_empty() { br; span.muted { (alert.tags.join(", ")) } }
                        }
                        td { (alert.source.name) }
                        td { a href={ "/search?q=" (events_query(alert)) } { (alert.event_ids.len()) } }
                    }
                }
            }
        }
    }
}

/// A search for exactly the alert's events, already URL-encoded: ids are hex digits only.
fn events_query(alert: &Alert) -> String {
    alert
        .event_ids
        .iter()
        .map(|id| format!("id%3A{id}"))
        .collect::<Vec<_>>()
        .join("+OR+")
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search_page(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Response {
    if !state.token.session_matches(&headers) {
        return Redirect::to("/login").into_response();
    }
    let request = SearchRequest::new(params.q.clone(), clamp_limit(params.limit));
    let store = state.store.clone();
    let results = call_store(move || store.search(&request)).await;
    let body = html! {
        h1 { "Search events" }
        (search_form(&params.q))
        @match &results {
            Err(error) => (error_box(error)),
            Ok(results) => {
                p.muted { (results.total) " matching events; newest " (results.hits.len()) " shown." }
                (events_table(&results.hits))
            }
        }
    };
    layout("Search", true, body).into_response()
}

fn events_table(events: &[Event]) -> Markup {
    html! {
        table {
            thead { tr { th { "Time" } th { "Source" } th { "Logsource" } th { "Record" } } }
            tbody {
                @for event in events {
                    tr {
                        (time_cell(&event.time))
                        td { (event.source.kind) br; span.muted { (event.source.name) } }
                        td.muted {
                            @for part in [&event.logsource.product, &event.logsource.service, &event.logsource.category].into_iter().flatten() {
                                (part) br;
                            }
                        }
                        td { pre { (preview(event.record.as_str())) } }
                    }
                }
            }
        }
    }
}

fn preview(text: &str) -> String {
    match text.char_indices().nth(RECORD_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn login_form(failed: bool) -> Markup {
    layout(
        "Sign in",
        false,
        html! {
            form.login method="post" action="/login" {
                h1 { "Sign in to Vigil" }
                @if failed { div.error { "That token is not valid." } }
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                p.muted { "Vigil printed the token when it first started; it is also in " code { "api-token" } " in the data directory." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_page() -> Markup {
    login_form(false)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    if !state.token.matches(form.token.trim()) {
        return (StatusCode::UNAUTHORIZED, login_form(true)).into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        state.token.session_value()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
