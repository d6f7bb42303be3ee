//! Backtests, for rule authors: run a loaded rule (by id) or pasted rule text over the stored
//! events of a time range, and read what it matched and the alerts it would have raised.
//!
//! `POST /api/v1/rules/backtest` (`{"rule": ID}` or `{"yaml": TEXT}`, with `from` and `to`)
//! answers 202 with the job's id; `GET /api/v1/rules/backtest/{job}` its progress and, once
//! done, its results. The pages: `/rules/backtest` (the form) and `/rules/backtest/{job}`,
//! which reloads itself every two seconds while the job runs (a refresh, no script). Only the
//! job's starter, or an admin, may read a job. Starting one is audited.
//!
//! Rule text, event values and rule ids are attacker-written: they stay text.

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_event::Event;

use crate::auth::Caller;
use crate::backtest_jobs::{
    BacktestError, BacktestJobs, BacktestReport, BacktestRequest, BacktestRule, JobView, StartError,
};
use crate::frame::{check_form, csrf, layout_refreshing};
use crate::search_page::{read_range, summary};
use crate::search_terms::encode;
use crate::UiState;

/// The longest value shown for a matched event's field.
const VALUE_CHARS: usize = 200;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/rules/backtest", get(form_page).post(start_from_form))
        .route("/rules/backtest/{job}", get(job_page))
}

pub(crate) fn api_router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/rules/backtest", post(start_from_api))
        .route("/api/v1/rules/backtest/{job}", get(job_json))
}

/// A matched event's key fields, as the search page summarises events.
fn key_fields(event: &Event, document: &Map<String, Value>) -> Vec<(String, String)> {
    summary(event, document)
        .into_iter()
        .filter_map(|cell| {
            let value = cell.value?;
            let value = if value.chars().count() > VALUE_CHARS {
                value.chars().take(VALUE_CHARS).chain(['…']).collect()
            } else {
                value
            };
            Some((cell.label, value))
        })
        .collect()
}

/// Whether the caller may read every job, not only their own.
fn reads_all_jobs(caller: &Caller) -> bool {
    caller.principal.may(Permission::ManageUsers)
}

/// What a request asks to run, as either surface states it.
struct Asked {
    rule: Option<String>,
    yaml: Option<String>,
    from: String,
    to: String,
}

/// Why a start was refused: the status and what to say.
struct Refusal {
    status: StatusCode,
    message: String,
    problems: Vec<(usize, String)>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }
}

/// Checks what was asked, starts the job, and audits the start (or the refusal of a rule
/// that does not load, which says what a rule author tried).
async fn start(state: &UiState, caller: &Caller, asked: Asked) -> Result<String, Refusal> {
    let Some(jobs) = state.backtests.clone() else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process does not run detection, so it has no rules to backtest",
        ));
    };
    let id = asked.rule.filter(|r| !r.trim().is_empty());
    let yaml = asked.yaml.filter(|y| !y.trim().is_empty());
    let rule = match (id, yaml) {
        (Some(id), None) => BacktestRule::Stored(id.trim().to_owned()),
        (None, Some(yaml)) => BacktestRule::Yaml(yaml),
        (Some(_), Some(_)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "choose a loaded rule or paste a rule, not both",
            ))
        }
        (None, None) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "choose a loaded rule or paste a rule's YAML",
            ))
        }
    };
    let (from, to) = match read_range(&asked.from, &asked.to) {
        Ok((Some(from), Some(to))) => (from, to),
        Ok(_) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "give both `from` and `to` (RFC 3339, a date, or now-7d)",
            ))
        }
        Err(message) => return Err(Refusal::new(StatusCode::BAD_REQUEST, message)),
    };
    let limits = jobs.limits();
    let request = BacktestRequest {
        from,
        to,
        visibility: caller.visibility(),
        max_events: limits.max_events,
        max_matches: limits.max_matches,
        summarise: key_fields,
    };
    let target = match &rule {
        BacktestRule::Stored(id) => id.clone(),
        BacktestRule::Yaml(_) => "pasted rule".to_owned(),
    };
    let owner = caller.principal.actor();
    let store = state.store.clone();
    let started = {
        let (jobs, owner): (std::sync::Arc<BacktestJobs>, String) = (jobs, owner.clone());
        tokio::task::spawn_blocking(move || jobs.start(store, &owner, rule, request)).await
    };
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            tracing::error!(%error, "backtest start task failed");
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the backtest could not start",
            ));
        }
    };
    let refusal = match &started {
        Ok(_) => None,
        Err(StartError::Busy(message)) => {
            Some(Refusal::new(StatusCode::TOO_MANY_REQUESTS, message.clone()))
        }
        Err(StartError::Backtest(error)) => Some(refused_backtest(error)),
    };
    let detail = json!({
        "from": from.to_rfc3339_opts(SecondsFormat::Secs, true),
        "to": to.to_rfc3339_opts(SecondsFormat::Secs, true),
        "job": started.as_ref().ok(),
    });
    state
        .gate
        .audit(AuditRecord {
            actor: owner,
            action: "rule.backtest".into(),
            outcome: if refusal.is_none() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            target: Some(target),
            client_address: caller.address.map(|a| a.to_string()),
            reason: refusal.as_ref().map(|r| r.message.clone()),
            detail,
        })
        .await;
    match (started, refusal) {
        (Ok(id), _) => Ok(id),
        (Err(_), Some(refusal)) => Err(refusal),
        (Err(_), None) => Err(Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "failed")),
    }
}

fn refused_backtest(error: &BacktestError) -> Refusal {
    let status = match error {
        BacktestError::UnknownRule { .. } => StatusCode::NOT_FOUND,
        BacktestError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        BacktestError::Rule { .. } | BacktestError::Invalid { .. } => StatusCode::BAD_REQUEST,
    };
    let mut refusal = Refusal::new(status, error.to_string());
    if let BacktestError::Rule { problems } = error {
        refusal.problems = problems
            .iter()
            .map(|p| (p.line, p.reason.clone()))
            .collect();
    }
    refusal
}

#[derive(Debug, Deserialize)]
struct ApiStart {
    rule: Option<String>,
    yaml: Option<String>,
    from: String,
    to: String,
}

async fn start_from_api(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<ApiStart>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": rejection.body_text() })),
            )
                .into_response()
        }
    };
    let asked = Asked {
        rule: body.rule,
        yaml: body.yaml,
        from: body.from,
        to: body.to,
    };
    match start(&state, &caller, asked).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({ "job": id, "url": format!("/api/v1/rules/backtest/{id}") })),
        )
            .into_response(),
        Err(refusal) => {
            let problems: Vec<Value> = refusal
                .problems
                .iter()
                .map(|(line, reason)| json!({ "line": line, "reason": reason }))
                .collect();
            (
                refusal.status,
                Json(json!({ "error": refusal.message, "problems": problems })),
            )
                .into_response()
        }
    }
}

fn find_job(state: &UiState, caller: &Caller, id: &str) -> Option<JobView> {
    state
        .backtests
        .as_ref()?
        .get(id, &caller.principal.actor(), reads_all_jobs(caller))
}

async fn job_json(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match find_job(&state, &caller, &id) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such backtest job of yours" })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    yaml: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl Default for StartForm {
    fn default() -> Self {
        StartForm {
            csrf: String::new(),
            rule: String::new(),
            yaml: String::new(),
            from: "now-24h".into(),
            to: "now".into(),
        }
    }
}

/// What a link to the form may fill in: `/rules/backtest?rule=ID` from a rule's page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Prefill {
    rule: String,
    from: String,
    to: String,
}

async fn form_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    prefill: Result<Query<Prefill>, QueryRejection>,
) -> Response {
    // A malformed query string only loses the prefill.
    let prefill = prefill.map(|Query(p)| p).unwrap_or_default();
    let defaults = StartForm::default();
    let form = StartForm {
        rule: prefill.rule,
        from: Some(prefill.from)
            .filter(|f| !f.is_empty())
            .unwrap_or(defaults.from),
        to: Some(prefill.to)
            .filter(|t| !t.is_empty())
            .unwrap_or(defaults.to),
        ..StartForm::default()
    };
    form_response(&state, &caller, StatusCode::OK, &form, None)
}

async fn start_from_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        if let Err(refused) = check_form(&caller, &headers, "") {
            return refused.into_response();
        }
        return (StatusCode::BAD_REQUEST, "the form is malformed\n").into_response();
    };
    if let Err(refused) = check_form(&caller, &headers, &form.csrf) {
        return refused.into_response();
    }
    let asked = Asked {
        rule: Some(form.rule.clone()).filter(|r| !r.trim().is_empty()),
        yaml: Some(form.yaml.clone()).filter(|y| !y.trim().is_empty()),
        from: form.from.clone(),
        to: form.to.clone(),
    };
    match start(&state, &caller, asked).await {
        Ok(id) => Redirect::to(&format!("/rules/backtest/{id}")).into_response(),
        Err(refusal) => form_response(&state, &caller, refusal.status, &form, Some(&refusal)),
    }
}

fn form_response(
    state: &UiState,
    caller: &Caller,
    status: StatusCode,
    form: &StartForm,
    refusal: Option<&Refusal>,
) -> Response {
    let catalog = state.rules.catalog();
    let body = html! {
        h1 { "Backtest a rule" }
        p.muted {
            "Runs a loaded rule, or rule text pasted below, over the stored events of a time \
             range, oldest first, and shows what it matched and the alerts it would have \
             raised. Nothing is raised or changed. "
            a href="/rules/attack" { "ATT&CK coverage" }
        }
        @if state.backtests.is_none() {
            p.error { "This process does not run detection, so it has no rules to backtest." }
        }
        @if let Some(refusal) = refusal {
            div.error role="alert" {
                p { (refusal.message) }
                @if !refusal.problems.is_empty() {
                    ul { @for (line, reason) in &refusal.problems { li { "line " (line) ": " (reason) } } }
                }
            }
        }
        form.backtest method="post" action="/rules/backtest" {
            input type="hidden" name="csrf" value=(csrf(caller));
            p {
                label for="backtest-rule" { "Loaded rule" } " "
                select #backtest-rule name="rule" {
                    option value="" selected[form.rule.is_empty()] { "(the pasted rule below)" }
                    @for (id, rule) in catalog.iter() {
                        option value=(id) selected[form.rule == *id] { (rule.title) " (" (id) ")" }
                    }
                }
            }
            p {
                label for="backtest-yaml" { "Or paste a rule (YAML; a correlation may name loaded rules)" }
                br;
                textarea #backtest-yaml name="yaml" rows="16" cols="90" spellcheck="false" { (form.yaml) }
            }
            p {
                label for="backtest-from" { "From" } " "
                input #backtest-from type="text" name="from" value=(form.from);
                " "
                label for="backtest-to" { "to" } " "
                input #backtest-to type="text" name="to" value=(form.to);
                " "
                span.muted { "RFC 3339, a date, or now-7d" }
            }
            button type="submit" { "Run backtest" }
        }
    };
    (
        status,
        layout_refreshing("Backtest", Some(caller), None, body),
    )
        .into_response()
}

async fn job_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(view) = find_job(&state, &caller, &id) else {
        let body = html! {
            h1 { "Backtest" }
            p { "No such backtest of yours. Finished backtests are kept for an hour." }
            p { a href="/rules/backtest" { "Start a backtest" } }
        };
        return (
            StatusCode::NOT_FOUND,
            layout_refreshing("Backtest", Some(&caller), None, body),
        )
            .into_response();
    };
    let running = view.state == "running";
    let body = html! {
        h1 { "Backtest of " (view.rule) }
        p {
            "Events from " (time_text(view.from)) " to " (time_text(view.to))
            ", started " (time_text(view.started)) " by " (view.owner) ". "
            a href="/rules/backtest" { "New backtest" }
        }
        @if !view.rules.is_empty() {
            p.muted { "Rules run: " @for (i, rule) in view.rules.iter().enumerate() { @if i > 0 { ", " } code { (rule) } } }
        }
        @match view.state {
            "running" => {
                p role="status" {
                    "Running: " (view.events_scanned) " of about " (view.estimated_total)
                    " events read. This page reloads itself every two seconds."
                }
            }
            _ => {}
        }
        @if let Some(error) = &view.error { (error_section(error)) }
        @if let Some(report) = &view.report { (report_section(report, view.estimated_total)) }
    };
    let refresh = if running { Some(2) } else { None };
    layout_refreshing("Backtest", Some(&caller), refresh, body).into_response()
}

fn time_text(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn error_section(error: &BacktestError) -> Markup {
    html! {
        div.error role="alert" {
            p { "The backtest failed: " (error) }
            @if let BacktestError::Rule { problems } = error {
                ul { @for problem in problems { li { "line " (problem.line) ": " (problem.reason) } } }
            }
        }
    }
}

/// A search for one event by id.
fn event_search(id: &str) -> String {
    format!("/search?q={}", encode(&format!("id:{id}")))
}

fn report_section(report: &BacktestReport, estimated_total: u64) -> Markup {
    html! {
        section.backtest-summary {
            h2 { "Results" }
            dl {
                dt { "Events read" } dd { (report.events_scanned) " of " (estimated_total)
                    @if report.scan_truncated { " (stopped at the limit; narrow the range)" } }
                dt { "Events matched" } dd { (report.matched_events) }
                dt { "Alerts it would have raised" } dd { (report.alerts_total) }
                dt { "Took" } dd { (report.elapsed_ms) " ms" }
            }
        }
        section.backtest-alerts {
            h2 { "Alerts it would have raised" }
            @if report.alerts.is_empty() { p.muted { "None." } } @else {
                table {
                    thead { tr { th { "Time" } th { "Rule" } th { "Level" } th { "Group" } th { "Events" } } }
                    tbody { @for alert in &report.alerts {
                        tr {
                            td.time { (time_text(alert.time)) }
                            td { (alert.rule_title) br; code { (alert.rule_id) } }
                            td { (alert.level.as_str()) }
                            td { @for (key, value) in &alert.group { span.cell { span.muted { (key) " " } (value) } " " } }
                            td { @for id in &alert.event_ids { a href=(event_search(id)) { (short(id)) } " " } }
                        }
                    } }
                }
                @if report.alerts_truncated { p.muted { "Only the first " (report.alerts.len()) " are shown." } }
            }
        }
        section.backtest-matches {
            h2 { "Matched events" }
            @if report.matches.is_empty() { p.muted { "None." } } @else {
                table.events {
                    thead { tr { th { "Time" } th { "Source" } th { "Event" } th { "Rules" } } }
                    tbody { @for matched in &report.matches {
                        tr {
                            td.time { a href=(event_search(&matched.id)) { (time_text(matched.time)) } }
                            td { (matched.source_kind) " / " (matched.source_name) }
                            td { @for (label, value) in &matched.fields { span.cell { span.muted { (label) " " } (value) } " " } }
                            td { @for rule in &matched.rules { code { (rule) } " " } }
                        }
                    } }
                }
                @if report.matches_truncated { p.muted { "Only the first " (report.matches.len()) " are shown." } }
            }
        }
    }
}

/// The start of an event id, enough to tell events apart in a list.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
