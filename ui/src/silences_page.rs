//! Silences from the console and the API: list them, make one (matchers, a comment, how
//! long), end one early. A silenced alert joins no notification group.
//!
//! `GET /api/v1/silences`, `POST /api/v1/silences` (JSON: `matchers`, `comment`,
//! `duration` or `ends`), `POST /api/v1/silences/{id}/expire`; the page `/silences` with its
//! forms `POST /silences` and `POST /silences/{id}/expire`. Making and ending silences is an
//! analyst's right (triage), checked by the gate; the forms carry the session's CSRF token;
//! every attempt is audited with its actor. Matchers and comments are attacker text: shown
//! as text.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_notify::routing::MatchValue;
use vigil_notify::silences::{NewSilence, Silence, SilenceError, Silences};

use crate::auth::Caller;
use crate::frame::{check_form, csrf, layout};
use crate::UiState;

/// Silences listed at most, newest first.
const LIST_AT_MOST: usize = 200;
/// Matcher lines a form may hold.
const MAX_FORM_LINES: usize = 32;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/silences", get(silences_page).post(create_form))
        .route("/silences/{id}/expire", post(expire_form))
}

pub(crate) fn api_router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/silences", get(api_list).post(api_create))
        .route("/api/v1/silences/{id}/expire", post(api_expire))
}

/// Why a request about silences failed.
enum Failure {
    /// This process notifies nobody, so it keeps no silences.
    Off,
    NotFound,
    Invalid(String),
    Failed,
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Failure::Off | Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::Invalid(_) => StatusCode::BAD_REQUEST,
            Failure::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Off => "this process keeps no silences (it does not notify)".into(),
            Failure::NotFound => "no silence has this id".into(),
            Failure::Invalid(reason) => reason.clone(),
            Failure::Failed => "the notify database failed; see the server log".into(),
        }
    }
}

/// Runs a silences call off the async workers (writes fsync).
async fn call<T: Send + 'static>(
    state: &UiState,
    work: impl FnOnce(&Silences) -> Result<T, SilenceError> + Send + 'static,
) -> Result<T, Failure> {
    let Some(silences) = state.silences.clone() else {
        return Err(Failure::Off);
    };
    let silences: Arc<Silences> = silences;
    match tokio::task::spawn_blocking(move || work(&silences)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(SilenceError::Invalid(reason))) => Err(Failure::Invalid(reason)),
        Ok(Err(error)) => {
            tracing::error!(%error, "silences failed");
            Err(Failure::Failed)
        }
        Err(error) => {
            tracing::error!(%error, "the silences task failed");
            Err(Failure::Failed)
        }
    }
}

fn api_error(failure: &Failure) -> Response {
    (
        failure.status(),
        Json(json!({ "error": failure.message() })),
    )
        .into_response()
}

async fn api_list(State(state): State<UiState>) -> Response {
    let now = Utc::now();
    match call(&state, |s| s.list(LIST_AT_MOST)).await {
        Ok(silences) => {
            let rows: Vec<serde_json::Value> = silences
                .iter()
                .map(|s| {
                    let mut row = serde_json::to_value(s).unwrap_or_default();
                    row["active"] = json!(s.is_active(now));
                    row
                })
                .collect();
            Json(json!({ "silences": rows })).into_response()
        }
        Err(Failure::Off) => Json(json!({ "notifying": false, "silences": [] })).into_response(),
        Err(failure) => api_error(&failure),
    }
}

/// Makes a silence and audits the attempt, made or refused.
async fn create(state: &UiState, caller: &Caller, new: NewSilence) -> Result<Silence, Failure> {
    let author = caller.principal.actor();
    let detail = json!({ "matchers": new.matchers, "comment": new.comment, "duration": new.duration, "ends": new.ends });
    let result = {
        let author = author.clone();
        call(state, move |s| s.create(&new, &author, Utc::now())).await
    };
    state
        .gate
        .audit(AuditRecord {
            actor: author,
            action: "silence.create".into(),
            outcome: if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            target: result.as_ref().ok().map(|s| format!("silence {}", s.id)),
            client_address: caller.address.map(|a| a.to_string()),
            reason: result.as_ref().err().map(Failure::message),
            detail,
        })
        .await;
    result
}

/// Ends a silence now and audits the attempt.
async fn expire(state: &UiState, caller: &Caller, id: &str) -> Result<Silence, Failure> {
    let actor = caller.principal.actor();
    let result = match id.parse::<i64>() {
        Err(_) => Err(Failure::NotFound),
        Ok(id) => {
            let actor = actor.clone();
            call(state, move |s| s.expire(id, &actor, Utc::now()))
                .await
                .and_then(|found| found.ok_or(Failure::NotFound))
        }
    };
    state
        .gate
        .audit(AuditRecord {
            actor,
            action: "silence.expire".into(),
            outcome: if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            target: Some(format!(
                "silence {}",
                id.chars().take(40).collect::<String>()
            )),
            client_address: caller.address.map(|a| a.to_string()),
            reason: result.as_ref().err().map(Failure::message),
            detail: serde_json::Value::Null,
        })
        .await;
    result
}

async fn api_create(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Response {
    let new = match body {
        Ok(Json(new)) => new,
        Err(rejection) => {
            return api_error(&Failure::Invalid(rejection.body_text()));
        }
    };
    match create(&state, &caller, new).await {
        Ok(silence) => (StatusCode::CREATED, Json(json!({ "silence": silence }))).into_response(),
        Err(failure) => api_error(&failure),
    }
}

async fn api_expire(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match expire(&state, &caller, &id).await {
        Ok(silence) => Json(json!({ "silence": silence })).into_response(),
        Err(failure) => api_error(&failure),
    }
}

#[derive(Debug, Default, Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    /// One `field=pattern` a line; lines of the same field are alternatives.
    #[serde(default)]
    matchers: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    duration: String,
}

/// The form's matcher lines as the API's matchers.
fn parse_lines(text: &str) -> Result<BTreeMap<String, MatchValue>, String> {
    let mut by_field: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > MAX_FORM_LINES {
        return Err(format!("at most {MAX_FORM_LINES} matcher lines"));
    }
    for line in lines {
        let Some((field, pattern)) = line.split_once('=') else {
            return Err(format!(
                "write each matcher as field=pattern, such as rule_id=aws_root_login; not {line:?}"
            ));
        };
        by_field
            .entry(field.trim().to_owned())
            .or_default()
            .push(pattern.trim().to_owned());
    }
    Ok(by_field
        .into_iter()
        .map(|(field, mut patterns)| {
            let value = if patterns.len() == 1 {
                MatchValue::One(patterns.remove(0))
            } else {
                MatchValue::Any(patterns)
            };
            (field, value)
        })
        .collect())
}

async fn create_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &form.csrf) {
        return refused.into_response();
    }
    let result = match parse_lines(&form.matchers) {
        Err(reason) => Err(Failure::Invalid(reason)),
        Ok(matchers) => {
            let new = NewSilence {
                matchers,
                comment: form.comment.clone(),
                duration: Some(form.duration.trim().to_owned()),
                ..NewSilence::default()
            };
            create(&state, &caller, new).await
        }
    };
    match result {
        Ok(silence) => Redirect::to(&format!("/silences?made={}", silence.id)).into_response(),
        Err(failure) => render(&state, &caller, Some(&failure), Some(&form)).await,
    }
}

#[derive(Debug, Default, Deserialize)]
struct ExpireForm {
    #[serde(default)]
    csrf: String,
}

async fn expire_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ExpireForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &token) {
        return refused.into_response();
    }
    match expire(&state, &caller, &id).await {
        Ok(_) => Redirect::to("/silences").into_response(),
        Err(failure) => render(&state, &caller, Some(&failure), None).await,
    }
}

async fn silences_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    render(&state, &caller, None, None).await
}

async fn render(
    state: &UiState,
    caller: &Caller,
    problem: Option<&Failure>,
    form: Option<&CreateForm>,
) -> Response {
    let now = Utc::now();
    let listed = call(state, |s| s.list(LIST_AT_MOST)).await;
    let status = match (problem, &listed) {
        (Some(failure), _) => failure.status(),
        (None, Err(Failure::Off)) => StatusCode::OK,
        (None, Err(failure)) => failure.status(),
        (None, Ok(_)) => StatusCode::OK,
    };
    let may_change = caller.principal.may(Permission::Triage);
    let csrf = csrf(caller);
    let body = html! {
        h1 { "Silences" }
        p.muted { "A silenced alert joins no notification group: nobody is paged for it. It is still raised, stored and listed." }
        @if let Some(problem) = problem { div.error { (problem.message()) } }
        @match &listed {
            Err(Failure::Off) => p.muted { "This process keeps no silences: it does not notify (no notify role, or no receiver configured)." },
            Err(_) => div.error { "Reading the silences failed; the server log has the details." },
            Ok(silences) => {
                @if may_change { (create_form_markup(&csrf, form)) }
                @let (active, ended): (Vec<&Silence>, Vec<&Silence>) = silences.iter().partition(|s| s.ends > now);
                h2 { "Active and pending (" (active.len()) ")" }
                (table(&active, now, may_change, &csrf))
                h2 { "Ended (" (ended.len()) ")" }
                (table(&ended, now, false, &csrf))
            }
        }
    };
    (status, layout("Silences", Some(caller), body)).into_response()
}

fn create_form_markup(csrf: &str, form: Option<&CreateForm>) -> Markup {
    let (matchers, comment, duration) = match form {
        Some(f) => (f.matchers.as_str(), f.comment.as_str(), f.duration.as_str()),
        None => ("", "", "2h"),
    };
    html! {
        form.silence method="post" action="/silences" {
            input type="hidden" name="csrf" value=(csrf);
            label for="silence-matchers" { "Matchers, one field=pattern a line (level=>=high, rule_id=aws_root_login, tag=attack.*, source=org-trail, logsource.product=aws, group.user=alice)" }
            textarea id="silence-matchers" name="matchers" rows="3" required { (matchers) }
            label for="silence-comment" { "Why" }
            input id="silence-comment" name="comment" type="text" required value=(comment);
            label for="silence-duration" { "For how long (30m, 2h, 1d; at most 90 days)" }
            input id="silence-duration" name="duration" type="text" required value=(duration);
            button type="submit" { "Silence" }
        }
    }
}

fn matchers_text(matchers: &BTreeMap<String, MatchValue>) -> String {
    matchers
        .iter()
        .map(|(field, value)| match value {
            MatchValue::One(pattern) => format!("{field}={pattern}"),
            MatchValue::Any(patterns) => format!("{field}={}", patterns.join(" | ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn table(rows: &[&Silence], now: DateTime<Utc>, may_expire: bool, csrf: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "None." }
        } @else {
            table.silences {
                thead { tr {
                    th { "Matchers" } th { "Comment" } th { "Author" } th { "Starts" } th { "Ends" }
                    @if may_expire { th { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for silence in rows {
                        tr {
                            td { code { (matchers_text(&silence.matchers)) } }
                            td { (silence.comment) }
                            td { (silence.author) }
                            td { (when(silence.starts)) @if silence.starts > now { " (pending)" } }
                            td {
                                (when(silence.ends))
                                @if let Some(by) = &silence.expired_by { " (ended by " (by) ")" }
                            }
                            @if may_expire {
                                td {
                                    form method="post" action={ "/silences/" (silence.id) "/expire" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Expire" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
