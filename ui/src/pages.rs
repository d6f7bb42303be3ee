//! Server-rendered HTML pages: an alert and its triage, and the small pieces other pages
//! borrow (a time cell, a status badge, an error box). The alert list, search, sign-in and
//! the audit log each have a module of their own, and what every page shares (its frame, the
//! forms' CSRF check) is in [`crate::frame`].
//!
//! No scripts: the pages work with plain links and forms, which keeps the content security
//! policy at `default-src 'none'` and leaves attacker-controlled text nothing to run in.
//!
//! The gate ([`crate::auth`]) has decided who may reach each page before a handler runs; a
//! handler only decides what to show its [`Caller`]: the triage forms only to those who may
//! triage. Every form that changes something (triage, sign-out) carries its session's CSRF
//! token and is refused without it, or when the browser says the request comes from another
//! site. The session cookie is also `SameSite=Strict`, so a cross-site form would not carry
//! it in the first place.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_store::{AlertChange, AlertDetail, AlertStatus, AlertView, CloseReason};

use crate::alert_story::{around_section, events_section, rule_section};
use crate::auth::Caller;
use crate::frame::{check_form, count, csrf, layout};
use crate::rule_catalog::RuleCatalog;
use crate::{call_store, CallError, UiState};

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/alerts/{id}", get(alert_page).post(triage))
        .route("/static/vigil.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/vigil.css"),
    )
}

pub(crate) fn error_box(error: &CallError) -> Markup {
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

pub(crate) fn time_cell(time: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { td.time { (time.format("%Y-%m-%d %H:%M:%S")) } }
}

pub(crate) fn status_badge(view: &AlertView) -> Markup {
    let status = view.state.status.as_str();
    html! {
        span class={ "status status-" (status) } { (status) }
        @if let Some(reason) = view.state.reason { " " span.muted { "(" (reason.as_str()) ")" } }
    }
}

async fn alert_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let story = load_alert(&state, &caller, id).await;
    alert_response(&caller, &state, StatusCode::OK, story, None)
}

/// An alert with its triage and the events behind it that the caller may see.
struct AlertStory {
    detail: AlertDetail,
    events: Vec<vigil_event::Event>,
    /// How many of the alert's events the caller may not see (Vigil's own audit events).
    hidden: usize,
    /// The notifications that carried the alert, when this process delivers them.
    deliveries: crate::deliveries::Deliveries,
}

async fn load_alert(state: &UiState, caller: &Caller, id: String) -> Result<AlertStory, CallError> {
    let store = state.store.clone();
    let deliveries = crate::deliveries::load(state.notifications.as_ref(), &id).await;
    let (detail, events) =
        call_store(move || Ok((store.alert(&id)?, store.alert_events(&id)?))).await?;
    let found = events.len();
    let events: Vec<vigil_event::Event> =
        events.into_iter().filter(|e| caller.may_see(e)).collect();
    Ok(AlertStory {
        detail,
        hidden: found - events.len(),
        events,
        deliveries,
    })
}

/// The alert page, with `problem` (a refused change) shown above the forms.
fn alert_response(
    caller: &Caller,
    state: &UiState,
    status: StatusCode,
    story: Result<AlertStory, CallError>,
    problem: Option<&str>,
) -> Response {
    match story {
        Ok(story) => {
            let body = alert_body(&story, &state.rules.catalog(), caller, problem);
            let runs = crate::playbook_runs::section(
                caller,
                state,
                &story.detail.view.alert.id.to_string(),
            );
            let body = maud::html! { (body) (runs) };
            (
                status,
                layout(&story.detail.view.alert.rule_title, Some(caller), body),
            )
                .into_response()
        }
        Err(error) => {
            let code = match error {
                CallError::NotFound(_) => StatusCode::NOT_FOUND,
                CallError::BadQuery(..) | CallError::Invalid(_) => StatusCode::BAD_REQUEST,
                CallError::Failed => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = html! { h1 { "Alert" } (error_box(&error)) };
            (code, layout("Alert", Some(caller), body)).into_response()
        }
    }
}

fn alert_body(
    story: &AlertStory,
    catalog: &RuleCatalog,
    caller: &Caller,
    problem: Option<&str>,
) -> Markup {
    let detail = &story.detail;
    let csrf = &csrf(caller);
    let view = &detail.view;
    let alert = &view.alert;
    let action = format!("/alerts/{}", alert.id);
    let current = view.state.status;
    html! {
        h1 {
            span class={ "level level-" (alert.level.as_str()) } { (alert.level.as_str()) }
            " " (alert.rule_title)
        }
        dl.facts {
            dt { "Status" } dd { (status_badge(view)) }
            dt { "Assignee" } dd { @if let Some(a) = &view.state.assignee { (a) } @else { span.muted { "unassigned" } } }
            dt { "Last change" } dd { (view.state.updated.format("%Y-%m-%d %H:%M:%S")) }
            dt { "Time" } dd { (alert.time.format("%Y-%m-%d %H:%M:%S")) }
            dt { "Detected" } dd { (alert.detected.format("%Y-%m-%d %H:%M:%S")) }
            dt { "Rule" } dd { code { (alert.rule_id) } }
            dt { "Source" } dd { (alert.source.kind) " / " (alert.source.name) }
            dt { "Events" } dd { a href={ "/search?q=" (events_query(alert)) } { (count(alert.event_ids.len(), "event")) } }
        }
        (rule_section(alert, catalog))
        (events_section(alert, &story.events, story.hidden))
        (around_section(alert, &story.events))
        (crate::deliveries::section(&story.deliveries))
        @if let Some(problem) = problem { div.error { "Not changed: " (problem) } }
        // Only those who may triage are shown the forms; the gate refuses the others' posts.
        @if caller.principal.may(Permission::Triage) { section.triage {
            form.triage method="post" action=(action) {
                h2 { "Status" }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="status";
                label { "New status "
                    select name="status" required {
                        @for s in [AlertStatus::Acknowledged, AlertStatus::Closed, AlertStatus::Open] {
                            @if s != current && !(current == AlertStatus::Closed && s == AlertStatus::Acknowledged) {
                                option value=(s.as_str()) { (s.as_str()) }
                            }
                        }
                    }
                }
                label { "Reason (when closing) "
                    select name="reason" {
                        option value="" { "—" }
                        @for r in [CloseReason::Resolved, CloseReason::FalsePositive, CloseReason::Duplicate, CloseReason::Other] {
                            option value=(r.as_str()) { (r.as_str()) }
                        }
                    }
                }
                label { "Note (optional)" textarea name="note" rows="2" {} }
                button type="submit" { "Change status" }
            }
            form.triage method="post" action=(action) {
                h2 { "Assignee" }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="assign";
                label { "Assign to (empty to unassign) "
                    input type="text" name="assignee" value=[view.state.assignee.as_deref()];
                }
                button type="submit" { "Assign" }
            }
            form.triage method="post" action=(action) {
                h2 { "Note" }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="note";
                textarea name="note" rows="3" required aria-label="Note" {}
                button type="submit" { "Add note" }
            }
        } }
        h2 { "Notes" }
        @if detail.notes.is_empty() { p.muted { "No notes yet." } }
        @for note in &detail.notes {
            div.note {
                div.muted { (note.author) ", " (note.at.format("%Y-%m-%d %H:%M:%S")) }
                p { (note.text) }
            }
        }
        h2 { "History" }
        @if detail.history.is_empty() { p.muted { "No changes yet." } } @else {
            table.history {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "From" } th { "To" } } }
                tbody {
                    @for entry in &detail.history {
                        tr {
                            (time_cell(&entry.at))
                            td { (entry.actor) }
                            td { (entry.field) }
                            td { @if let Some(old) = &entry.old { (old) } @else { span.muted { "—" } } }
                            td { @if let Some(new) = &entry.new { (new) } @else { span.muted { "—" } } }
                        }
                    }
                }
            }
        }
    }
}

/// A triage form as posted: which of the three forms, and its fields.
#[derive(Debug, Deserialize)]
struct TriageForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    note: String,
}

impl TriageForm {
    /// The change the form asks for, or why it is not one.
    fn change(&self) -> Result<AlertChange, String> {
        let note = Some(self.note.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        match self.action.as_str() {
            "status" => {
                let status = AlertStatus::parse(&self.status).ok_or_else(|| {
                    format!(
                        "unknown status {:?}; use open, acknowledged or closed",
                        self.status
                    )
                })?;
                let reason = match self.reason.trim() {
                    "" => None,
                    text => Some(CloseReason::parse(text).ok_or_else(|| {
                        format!("unknown reason {text:?}; use resolved, false_positive, duplicate or other")
                    })?),
                };
                Ok(AlertChange {
                    status: Some(status),
                    reason,
                    assignee: None,
                    note,
                })
            }
            "assign" => Ok(AlertChange {
                assignee: Some(self.assignee.trim().to_owned()),
                ..AlertChange::default()
            }),
            "note" => match note {
                Some(note) => Ok(AlertChange {
                    note: Some(note),
                    ..AlertChange::default()
                }),
                None => Err("the note is empty".to_owned()),
            },
            other => Err(format!("unknown form action {other:?}")),
        }
    }
}

/// What a change touched, for the audit log: the fields it set, not the note's text, which
/// the alert keeps.
pub(crate) fn change_detail(change: &AlertChange) -> serde_json::Value {
    let mut detail = serde_json::Map::new();
    if let Some(status) = change.status {
        detail.insert("status".into(), status.as_str().into());
    }
    if let Some(reason) = change.reason {
        detail.insert("reason".into(), reason.as_str().into());
    }
    if let Some(assignee) = &change.assignee {
        detail.insert("assignee".into(), assignee.as_str().into());
    }
    if change.note.is_some() {
        detail.insert("note_added".into(), true.into());
    }
    serde_json::Value::Object(detail)
}

async fn triage(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TriageForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        // Checked before anything else is said about the request: without the session's
        // token this is no more than a refusal.
        if let Err(refused) = check_form(&caller, &headers, "") {
            return refused.into_response();
        }
        return (StatusCode::BAD_REQUEST, "the form is malformed\n").into_response();
    };
    if let Err(refused) = check_form(&caller, &headers, &form.csrf) {
        return refused.into_response();
    }
    let change = match form.change() {
        Ok(change) => change,
        Err(problem) => {
            let story = load_alert(&state, &caller, id).await;
            return alert_response(
                &caller,
                &state,
                StatusCode::BAD_REQUEST,
                story,
                Some(&problem),
            );
        }
    };
    let store = state.store.clone();
    let target = id.clone();
    let actor = caller.principal.actor();
    let detail = change_detail(&change);
    let updated = {
        let actor = actor.clone();
        call_store(move || store.update_alert(&target, &change, &actor)).await
    };
    match updated {
        Ok(updated) => {
            let alert_id = updated.view.alert.id.to_string();
            state
                .gate
                .audit(AuditRecord {
                    actor,
                    action: "alert.update".into(),
                    outcome: Outcome::Success,
                    target: Some(alert_id.clone()),
                    client_address: caller.address.map(|a| a.to_string()),
                    reason: None,
                    detail,
                })
                .await;
            Redirect::to(&format!("/alerts/{alert_id}")).into_response()
        }
        Err(CallError::Invalid(problem)) => {
            let story = load_alert(&state, &caller, id).await;
            alert_response(
                &caller,
                &state,
                StatusCode::BAD_REQUEST,
                story,
                Some(&problem),
            )
        }
        Err(error) => alert_response(&caller, &state, StatusCode::OK, Err(error), None),
    }
}

/// A search for exactly the alert's events, already URL-encoded: ids are hex digits only.
pub(crate) fn events_query(alert: &vigil_event::Alert) -> String {
    alert
        .event_ids
        .iter()
        .map(|id| format!("id%3A{id}"))
        .collect::<Vec<_>>()
        .join("+OR+")
}
