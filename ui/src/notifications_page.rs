//! The outbox from the console and the API: notifications by state (dead letters first,
//! pending with their attempts and last error, recently sent), and re-sending a dead letter
//! once its receiver is fixed.
//!
//! `GET /api/v1/notifications?state=dead|pending|sent`, `POST
//! /api/v1/notifications/{id}/resend`, the page `/notifications` and its form `POST
//! /notifications/{id}/resend`. Re-sending is an analyst's right (triage), checked by the
//! gate, and audited; the form carries the session's CSRF token. Receivers' error texts are
//! written by whatever answered the request, so they are shown as text, bounded.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::Utc;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_notify::{Delivery, DeliveryState, NotificationKind, Outbox, OutboxError};

use crate::auth::Caller;
use crate::frame::{check_form, csrf, layout};
use crate::search_terms::encode;
use crate::UiState;

/// Rows listed at most, newest first.
const LIST_AT_MOST: usize = 200;

/// An id the request names is kept to this length in the audit log.
const MAX_ID_CHARS: usize = 200;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/notifications", get(notifications_page))
        .route("/notifications/{id}/resend", post(resend_form))
}

pub(crate) fn api_router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/notifications", get(api_list))
        .route("/api/v1/notifications/{id}/resend", post(api_resend))
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    #[serde(default)]
    state: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// The state asked for (dead letters when none), or why the text is not one.
fn state_of(params: &ListParams) -> Result<DeliveryState, String> {
    match params.state.trim() {
        "" => Ok(DeliveryState::Dead),
        text => DeliveryState::parse(text)
            .ok_or_else(|| "state must be dead, pending or sent".to_owned()),
    }
}

/// One notification as the API lists it: what it is about and where it stands, with the
/// ids of the alerts it carries (their pages have the rest).
#[derive(Serialize)]
struct ApiDelivery<'a> {
    id: &'a str,
    receiver: &'a str,
    kind: NotificationKind,
    group_key: &'a str,
    state: DeliveryState,
    attempts: u32,
    next_attempt_at: Option<chrono::DateTime<Utc>>,
    last_error: Option<&'a str>,
    enqueued: chrono::DateTime<Utc>,
    sent_at: Option<chrono::DateTime<Utc>>,
    dead_at: Option<chrono::DateTime<Utc>>,
    alert_ids: Vec<String>,
    total_alerts: u64,
}

impl<'a> From<&'a Delivery> for ApiDelivery<'a> {
    fn from(d: &'a Delivery) -> Self {
        ApiDelivery {
            id: &d.id,
            receiver: &d.receiver,
            kind: d.kind,
            group_key: &d.group_key,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: (d.state == DeliveryState::Pending).then_some(d.next_attempt_at),
            last_error: d.last_error.as_deref(),
            enqueued: d.enqueued,
            sent_at: d.sent_at,
            dead_at: d.dead_at,
            alert_ids: d
                .notification
                .alerts
                .iter()
                .map(|a| a.id.to_string())
                .collect(),
            total_alerts: d.notification.total_alerts,
        }
    }
}

/// Runs an outbox call off the async workers (each is a SQLite statement, writes fsync).
async fn call_outbox<T: Send + 'static>(
    outbox: &Arc<Outbox>,
    call: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, ()> {
    let outbox = outbox.clone();
    match tokio::task::spawn_blocking(move || call(&outbox)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::error!(%error, "the outbox failed");
            Err(())
        }
        Err(error) => {
            tracing::error!(%error, "the outbox's task failed");
            Err(())
        }
    }
}

async fn api_list(
    State(state): State<UiState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return api_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let wanted = match state_of(&params) {
        Ok(wanted) => wanted,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(outbox) = &state.notifications else {
        return Json(json!({ "notifying": false, "state": wanted, "notifications": [] }))
            .into_response();
    };
    let limit = params.limit.unwrap_or(100).clamp(1, LIST_AT_MOST);
    match call_outbox(outbox, move |o| o.list(wanted, limit)).await {
        Ok(rows) => {
            let rows: Vec<ApiDelivery> = rows.iter().map(ApiDelivery::from).collect();
            Json(json!({ "notifying": true, "state": wanted, "notifications": rows }))
                .into_response()
        }
        Err(()) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the outbox failed; see the server log",
        ),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why a resend did not happen.
enum ResendError {
    /// No dead letter of this id here (unknown, not dead, or this process delivers none).
    NotFound,
    Failed,
}

/// Makes a dead letter pending again, wakes its receiver's task, and audits the attempt.
async fn resend(state: &UiState, caller: &Caller, id: String) -> Result<Delivery, ResendError> {
    let result = match &state.notifications {
        None => Err(ResendError::NotFound),
        Some(outbox) => {
            let id = id.clone();
            match call_outbox(outbox, move |o| o.resend(&id, Utc::now())).await {
                Ok(Some(row)) => Ok(row),
                Ok(None) => Err(ResendError::NotFound),
                Err(()) => Err(ResendError::Failed),
            }
        }
    };
    state
        .gate
        .audit(AuditRecord {
            actor: caller.principal.actor(),
            action: "notification.resend".into(),
            outcome: if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            target: Some(id.chars().take(MAX_ID_CHARS).collect()),
            client_address: caller.address.map(|a| a.to_string()),
            reason: match &result {
                Ok(_) => None,
                Err(ResendError::NotFound) => Some("no dead letter of this id".into()),
                Err(ResendError::Failed) => Some("the outbox failed".into()),
            },
            detail: match &result {
                Ok(row) => json!({ "receiver": row.receiver, "group_key": row.group_key }),
                Err(_) => serde_json::Value::Null,
            },
        })
        .await;
    result
}

async fn api_resend(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match resend(&state, &caller, id).await {
        Ok(row) => Json(json!({ "resent": ApiDelivery::from(&row) })).into_response(),
        Err(ResendError::NotFound) => {
            api_error(StatusCode::NOT_FOUND, "no dead letter has this id")
        }
        Err(ResendError::Failed) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the outbox failed; see the server log",
        ),
    }
}

#[derive(Debug, Deserialize)]
struct ResendForm {
    #[serde(default)]
    csrf: String,
}

async fn resend_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ResendForm>, FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &token) {
        return refused.into_response();
    }
    match resend(&state, &caller, id).await {
        Ok(row) => Redirect::to(&format!(
            "/notifications?state=pending&resent={}",
            encode(&row.id)
        ))
        .into_response(),
        Err(error) => {
            let (status, message) = match error {
                ResendError::NotFound => (
                    StatusCode::NOT_FOUND,
                    "No dead letter has this id: it was re-sent already, or pruned.",
                ),
                ResendError::Failed => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Re-sending failed; the server log has the details.",
                ),
            };
            let body = html! {
                h1 { "Notifications" }
                div.error { (message) }
                p { a href="/notifications" { "Back to the dead letters" } }
            };
            (status, layout("Notifications", Some(&caller), body)).into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct PageParams {
    #[serde(default)]
    state: String,
    #[serde(default)]
    resent: String,
}

async fn notifications_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Response {
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let wanted = state_of(&ListParams {
        state: params.state.clone(),
        limit: None,
    });
    let (wanted, problem) = match wanted {
        Ok(wanted) => (wanted, None),
        Err(message) => (DeliveryState::Dead, Some(message)),
    };
    let rows = match &state.notifications {
        None => None,
        Some(outbox) => Some(
            call_outbox(outbox, move |o| {
                Ok((o.list(wanted, LIST_AT_MOST)?, o.counts()?))
            })
            .await,
        ),
    };
    let status = match (&rows, &problem) {
        (Some(Err(())), _) => StatusCode::INTERNAL_SERVER_ERROR,
        (_, Some(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let may_resend = caller.principal.may(Permission::Triage);
    let csrf = csrf(&caller);
    let body = html! {
        h1 { "Notifications" }
        @if let Some(problem) = &problem { div.error { (problem) } }
        @if !params.resent.is_empty() {
            div.notice { "Re-sent; it is pending again: " code { (params.resent.chars().take(MAX_ID_CHARS).collect::<String>()) } }
        }
        @match &rows {
            None => p.muted { "This process delivers no notifications (it does not have the notify role, or no receiver is configured)." },
            Some(Err(())) => div.error { "Reading the outbox failed; the server log has the details." },
            Some(Ok((rows, counts))) => {
                nav.tabs {
                    @for tab in [DeliveryState::Dead, DeliveryState::Pending, DeliveryState::Sent] {
                        @let n = counts.get(&tab).copied().unwrap_or(0);
                        @if tab == wanted {
                            strong { (tab_label(tab)) " (" (n) ")" }
                        } @else {
                            a href={ "/notifications?state=" (tab.as_str()) } { (tab_label(tab)) " (" (n) ")" }
                        }
                        " "
                    }
                }
                @if rows.is_empty() {
                    p.muted { "None here." }
                } @else {
                    (table(rows, may_resend, &csrf))
                }
            }
        }
    };
    (status, layout("Notifications", Some(&caller), body)).into_response()
}

fn tab_label(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Dead => "Dead letters",
        DeliveryState::Pending => "Pending",
        DeliveryState::Sent => "Sent",
    }
}

fn kind_label(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Firing => "firing",
        NotificationKind::Acknowledged => "acknowledged",
        NotificationKind::Resolved => "resolved",
    }
}

fn table(rows: &[Delivery], may_resend: bool, csrf: &str) -> Markup {
    html! {
        table.notifications {
            thead { tr {
                th { "Written" } th { "Receiver" } th { "Kind" } th { "Alerts" }
                th { "Attempts" } th { "When" } th { "Last error" }
                @if may_resend { th { span.visually-hidden { "Actions" } } }
            } }
            tbody {
                @for row in rows {
                    tr {
                        td { (row.enqueued.format("%Y-%m-%d %H:%M:%S")) }
                        td { (row.receiver) }
                        td { (kind_label(row.kind)) }
                        td {
                            @for alert in row.notification.alerts.iter().take(3) {
                                a href={ "/alerts/" (alert.id) } { (alert.rule_title) } " "
                            }
                            @if row.notification.total_alerts > 3 {
                                span.muted { "of " (row.notification.total_alerts) }
                            }
                        }
                        td { (row.attempts) }
                        td {
                            span class={ "delivery delivery-" (row.state.as_str()) } { (row.state.as_str()) } " "
                            @match row.state {
                                DeliveryState::Pending => { "next " (row.next_attempt_at.format("%H:%M:%S")) }
                                DeliveryState::Sent => @if let Some(at) = row.sent_at { "sent " (at.format("%H:%M:%S")) },
                                DeliveryState::Dead => @if let Some(at) = row.dead_at { "dead since " (at.format("%Y-%m-%d %H:%M:%S")) },
                            }
                        }
                        td.error-text { @if let Some(error) = &row.last_error { (error) } }
                        @if may_resend {
                            td {
                                @if row.state == DeliveryState::Dead {
                                    form method="post" action={ "/notifications/" (encode(&row.id)) "/resend" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button type="submit" { "Re-send" }
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
