//! Playbook runs on the alert's page and in the API: each run's state and plan, Approve for
//! runs waiting for approval, Undo where the action allows it.
//!
//! The runs live with the responder (the `respond/` crate, in the process with the index
//! role); the UI reaches them through [`PlaybookRuns`], so it depends on no AWS code. Approving
//! and undoing need the triage permission (analysts and up), a CSRF token on forms, and are
//! recorded in the audit log and in the alert's history under the user's name.

use std::future::Future;
use std::pin::Pin;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_store::AlertChange;

use crate::auth::Caller;
use crate::frame::{check_form, csrf};
use crate::{call_store, UiState};

/// One playbook run as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub id: String,
    pub alert_id: String,
    pub playbook_id: String,
    pub action: String,
    /// automatic, approval or dry-run.
    pub mode: String,
    /// planned, awaiting_approval, running, succeeded, failed, dry_run or undone.
    pub state: String,
    /// What the action does (or would do), in a sentence.
    pub summary: Option<String>,
    /// The resolved parameters.
    pub plan: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: u32,
    pub undoable: bool,
    /// Who approved or undid it.
    pub actor: Option<String>,
    pub updated: DateTime<Utc>,
}

/// Why approving or undoing did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    NotFound(String),
    /// The run's state does not allow it.
    Conflict(String),
    Failed(String),
}

pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<RunView, RunError>> + Send + 'a>>;

/// The responder's runs, as the UI needs them; implemented over `vigil_respond::Responder` by
/// the pipeline.
pub trait PlaybookRuns: Send + Sync {
    fn runs(&self, alert_id: &str) -> Result<Vec<RunView>, String>;
    fn approve<'a>(&'a self, run_id: &'a str, actor: &'a str) -> RunFuture<'a>;
    fn undo<'a>(&'a self, run_id: &'a str, actor: &'a str) -> RunFuture<'a>;
}

#[derive(Clone, Copy)]
enum Step {
    Approve,
    Undo,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Approve => "approve",
            Step::Undo => "undo",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Step::Approve => "approved",
            Step::Undo => "undone",
        }
    }
}

pub(crate) fn api_router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/alerts/{id}/playbook-runs", get(list_runs))
        .route("/api/v1/playbook-runs/{id}/approve", post(api_approve))
        .route("/api/v1/playbook-runs/{id}/undo", post(api_undo))
}

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route(
            "/alerts/{id}/playbook-runs/{run}/approve",
            post(page_approve),
        )
        .route("/alerts/{id}/playbook-runs/{run}/undo", post(page_undo))
}

async fn list_runs(State(state): State<UiState>, Path(id): Path<String>) -> Response {
    let Some(runs) = state.playbook_runs.clone() else {
        return Json(json!({ "runs": [] })).into_response();
    };
    match tokio::task::spawn_blocking(move || runs.runs(&id)).await {
        Ok(Ok(runs)) => Json(json!({ "runs": runs })).into_response(),
        Ok(Err(error)) => {
            tracing::error!(%error, "reading playbook runs failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn api_approve(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    api_response(act(&state, &caller, &id, Step::Approve).await)
}

async fn api_undo(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    api_response(act(&state, &caller, &id, Step::Undo).await)
}

fn api_response(outcome: Result<RunView, RunError>) -> Response {
    match outcome {
        Ok(run) => Json(run).into_response(),
        Err(RunError::NotFound(message)) => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response()
        }
        Err(RunError::Conflict(message)) => {
            (StatusCode::CONFLICT, Json(json!({ "error": message }))).into_response()
        }
        Err(RunError::Failed(message)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": message })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct StepForm {
    #[serde(default)]
    csrf: String,
}

async fn page_approve(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((alert, run)): Path<(String, String)>,
    form: Result<Form<StepForm>, FormRejection>,
) -> Response {
    page_step(state, caller, headers, alert, run, form, Step::Approve).await
}

async fn page_undo(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((alert, run)): Path<(String, String)>,
    form: Result<Form<StepForm>, FormRejection>,
) -> Response {
    page_step(state, caller, headers, alert, run, form, Step::Undo).await
}

async fn page_step(
    state: UiState,
    caller: Caller,
    headers: HeaderMap,
    alert: String,
    run: String,
    form: Result<Form<StepForm>, FormRejection>,
    step: Step,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &token) {
        return refused.into_response();
    }
    // The run must be one of this alert's: a form cannot act on another alert's run.
    if !run.starts_with(&format!("{alert}:")) {
        return (StatusCode::NOT_FOUND, "no such run for this alert\n").into_response();
    }
    match act(&state, &caller, &run, step).await {
        Ok(_) => Redirect::to(&format!("/alerts/{alert}")).into_response(),
        Err(RunError::NotFound(message)) => (StatusCode::NOT_FOUND, message).into_response(),
        Err(RunError::Conflict(message)) => (StatusCode::CONFLICT, message).into_response(),
        Err(RunError::Failed(message)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
        }
    }
}

/// Approves or undoes `run_id` for `caller`, then records it in the audit log and the
/// alert's history.
async fn act(
    state: &UiState,
    caller: &Caller,
    run_id: &str,
    step: Step,
) -> Result<RunView, RunError> {
    let Some(runs) = state.playbook_runs.clone() else {
        return Err(RunError::NotFound("no playbooks are configured".into()));
    };
    let actor = caller.principal.actor();
    let outcome = match step {
        Step::Approve => runs.approve(run_id, &actor).await,
        Step::Undo => runs.undo(run_id, &actor).await,
    };
    let (result, reason, detail) = match &outcome {
        Ok(run) => (
            Outcome::Success,
            run.error.clone(),
            json!({ "alert": run.alert_id, "playbook": run.playbook_id, "action": run.action, "state": run.state }),
        ),
        Err(RunError::NotFound(m) | RunError::Conflict(m) | RunError::Failed(m)) => {
            (Outcome::Failure, Some(m.clone()), Value::Null)
        }
    };
    state
        .gate
        .audit(AuditRecord {
            actor: actor.clone(),
            action: format!("playbook.{}", step.name()),
            outcome: result,
            target: Some(run_id.to_owned()),
            client_address: caller.address.map(|a| a.to_string()),
            reason,
            detail,
        })
        .await;
    if let Ok(run) = &outcome {
        let note = history_note(run, step.words());
        let (store, alert) = (state.store.clone(), run.alert_id.clone());
        let change = AlertChange {
            note: Some(note),
            ..AlertChange::default()
        };
        if call_store(move || store.update_alert(&alert, &change, &actor))
            .await
            .is_err()
        {
            tracing::warn!(
                run = run_id,
                "cannot record the playbook run in the alert's history"
            );
        }
    }
    outcome
}

/// The line a run leaves in its alert's history; `what` says what happened ("approved").
pub fn history_note(run: &RunView, what: &str) -> String {
    let mut note = format!(
        "Playbook {} ({}), {what}: {}",
        run.playbook_id, run.action, run.state
    );
    for extra in [&run.summary, &run.error].into_iter().flatten() {
        note.push_str(" — ");
        note.push_str(extra);
    }
    note
}

/// The alert page's section: each run, its state and plan, and its buttons.
pub(crate) fn section(caller: &Caller, state: &UiState, alert_id: &str) -> Markup {
    let Some(source) = &state.playbook_runs else {
        return html! {};
    };
    let runs = match source.runs(alert_id) {
        Ok(runs) => runs,
        Err(error) => {
            tracing::error!(%error, "reading playbook runs failed");
            return html! { section.playbooks { h2 { "Playbooks" } p.error { "The playbook runs cannot be read now." } } };
        }
    };
    if runs.is_empty() {
        return html! {};
    }
    let may_act = caller.principal.may(Permission::Triage);
    let token = csrf(caller);
    html! {
        section.playbooks {
            h2 { "Playbooks" }
            table {
                thead { tr { th { "Playbook" } th { "Action" } th { "Mode" } th { "State" } th { "Plan" } th { "Updated" } th {} } }
                tbody {
                    @for run in &runs {
                        tr {
                            td { (run.playbook_id) }
                            td { code { (run.action) } }
                            td { (run.mode) }
                            td { span class={ "run-state " (run.state) } { (run.state) }
                                @if let Some(actor) = &run.actor { " by " (actor) } }
                            td {
                                @if let Some(summary) = &run.summary { (summary) }
                                @if let Some(error) = &run.error { div.error { (error) } }
                            }
                            td { (run.updated.to_rfc3339_opts(SecondsFormat::Secs, true)) }
                            td {
                                @if may_act && run.state == "awaiting_approval" {
                                    form method="post" action={ "/alerts/" (alert_id) "/playbook-runs/" (run.id) "/approve" } {
                                        input type="hidden" name="csrf" value=(token);
                                        button type="submit" { "Approve" }
                                    }
                                }
                                @if may_act && run.undoable {
                                    form method="post" action={ "/alerts/" (alert_id) "/playbook-runs/" (run.id) "/undo" } {
                                        input type="hidden" name="csrf" value=(token);
                                        button type="submit" { "Undo" }
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
