//! The JSON API: `GET /api/v1/search` (`q`, `from`, `to`, `limit`, `cursor`),
//! `GET /api/v1/search/histogram` (`q`, `from`, `to`), `GET /api/v1/search/facets` (`q`,
//! `field`, `from`, `to`, `size`), and the alerts: `GET /api/v1/alerts` (`status`, `level`,
//! `rule`, `q`, `from`, `to`, `since`, `limit`), `GET` and `PATCH /api/v1/alerts/{id}`, and
//! `GET /api/v1/alerts/{id}/events`, and `GET /api/v1/quarantine` (`source`, `limit`, `cursor`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use vigil_access::{AuditRecord, Outcome};
use vigil_event::Level;
use vigil_store::{
    parse_time, AlertChange, AlertFilter, AlertStatus, QuarantineFilter, SearchRequest, StoreError,
    DEFAULT_PAGE_BYTES,
};

use crate::auth::Caller;
use crate::{call_store, CallError, UiState};

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert).patch(patch_alert))
        .route("/api/v1/alerts/{id}/events", get(alert_events))
        .route("/api/v1/search", get(search_events))
        .route("/api/v1/search/histogram", get(search_histogram))
        .route("/api/v1/search/facets", get(search_facets))
        .route("/api/v1/quarantine", get(list_quarantined))
}

#[derive(Debug, Deserialize)]
struct AlertsParams {
    limit: Option<usize>,
    status: Option<String>,
    level: Option<String>,
    rule: Option<String>,
    #[serde(default)]
    q: String,
    from: Option<String>,
    to: Option<String>,
    since: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QuarantineParams {
    source: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Records that could not become events, newest first, a page at a time:
/// `{"records": [...], "next_cursor": "..."}`. Each record's `raw` is the base64 of the first
/// bytes the quarantine keeps of it, with `raw_len`, `raw_truncated` and `raw_blake3` telling
/// of the whole. A page holds at most `limit` records (up to 1000) and
/// [`DEFAULT_PAGE_BYTES`] of raw bytes and reasons, whichever comes first, so its size does
/// not follow what senders had rejected; `cursor` continues it.
async fn list_quarantined(
    State(state): State<UiState>,
    Query(params): Query<QuarantineParams>,
) -> Response {
    let filter = QuarantineFilter {
        source: params.source.filter(|s| !s.trim().is_empty()),
        limit: clamp_limit(params.limit),
        cursor: params.cursor,
        max_page_bytes: DEFAULT_PAGE_BYTES,
    };
    let store = state.store.clone();
    match call_store(move || store.quarantined(&filter)).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => error_response(error),
    }
}

async fn list_alerts(State(state): State<UiState>, Query(params): Query<AlertsParams>) -> Response {
    let filter = match alert_filter(params) {
        Ok(filter) => filter,
        Err(message) => return bad_request(message),
    };
    let store = state.store.clone();
    match call_store(move || store.list_alerts(&filter)).await {
        Ok(alerts) => Json(json!({ "alerts": alerts })).into_response(),
        Err(error) => error_response(error),
    }
}

/// The filter `params` ask for; the error is the message for the client.
fn alert_filter(params: AlertsParams) -> Result<AlertFilter, String> {
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let status = nonempty(params.status)
        .map(|s| read_status(&s))
        .transpose()?;
    let level = nonempty(params.level).map(|l| read_level(&l)).transpose()?;
    let now = Utc::now();
    Ok(AlertFilter {
        query: params.q,
        status,
        level,
        rule: nonempty(params.rule),
        from: read_time("from", params.from.as_deref(), now)?,
        to: read_time("to", params.to.as_deref(), now)?,
        // Detection time, which Vigil's clock writes, is what a poller should follow: an
        // alert's own time is its last event's, which the sender chose.
        detected_from: read_time("since", params.since.as_deref(), now)?,
        limit: clamp_limit(params.limit),
        ..AlertFilter::default()
    })
}

async fn get_alert(State(state): State<UiState>, Path(id): Path<String>) -> Response {
    let store = state.store.clone();
    match call_store(move || store.alert(&id)).await {
        Ok(alert) => Json(alert).into_response(),
        Err(error) => error_response(error),
    }
}

/// Changes an alert's triage. The history and the audit log name the caller: the user, the
/// token (`token:NAME`) or `bootstrap-token`.
async fn patch_alert(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<AlertChange>, JsonRejection>,
) -> Response {
    let change = match body {
        Ok(Json(change)) => change,
        Err(rejection) => {
            return bad_request(format!(
                "the body must be a JSON object with any of status (open, acknowledged, \
                 closed), reason (resolved, false_positive, duplicate, other), assignee and \
                 note: {}",
                rejection.body_text()
            ))
        }
    };
    let detail = json!({
        "status": change.status.map(|status| status.as_str()),
        "reason": change.reason.map(|reason| reason.as_str()),
        "assignee": change.assignee,
        "note": change.note,
    });
    let actor = caller.principal.actor();
    let store = state.store.clone();
    let target = id.clone();
    let result = call_store(move || store.update_alert(&target, &change, &actor)).await;
    let (outcome, reason) = match &result {
        Ok(_) => (Outcome::Success, None),
        Err(CallError::Invalid(message) | CallError::BadQuery(message, _)) => {
            (Outcome::Failure, Some(message.clone()))
        }
        Err(CallError::NotFound(message)) => (Outcome::Failure, Some(message.clone())),
        Err(CallError::Failed) => (Outcome::Failure, Some("internal_error".to_owned())),
    };
    state
        .gate
        .audit(AuditRecord {
            actor: caller.principal.actor(),
            action: "alert.update".to_owned(),
            outcome,
            target: Some(id),
            client_address: caller.address.map(|address| address.to_string()),
            reason,
            detail,
        })
        .await;
    match result {
        Ok(alert) => Json(alert).into_response(),
        Err(error) => error_response(error),
    }
}

async fn alert_events(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let store = state.store.clone();
    match call_store(move || store.alert_events(&id)).await {
        // Serialized straight to bytes, so each record's raw JSON is written as it came;
        // json! would parse it first, and panic on what serde_json refuses (1e400, "\ud800").
        Ok(mut events) => {
            // An alert on Vigil's audit log (a sign-in brute force) is for everyone who reads
            // alerts; the entries under it are for those who may read the audit log.
            events.retain(|event| caller.may_see(event));
            Json(AlertEvents { events }).into_response()
        }
        Err(error) => error_response(error),
    }
}

#[derive(serde::Serialize)]
struct AlertEvents {
    events: Vec<vigil_event::Event>,
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A request's time range.
#[derive(Debug, Clone, Copy)]
struct TimeRange {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

/// Reads `from` and `to` against one `now`, so `now-15m`..`now` is exactly 15 minutes. The
/// error is the message for the client.
fn time_range(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, String> {
    let now = Utc::now();
    Ok(TimeRange {
        from: read_time("from", from, now)?,
        to: read_time("to", to, now)?,
    })
}

/// Reads the `status` parameter of an alert listing, here and on the alerts page; the error
/// is the message for the client.
pub(crate) fn read_status(text: &str) -> Result<AlertStatus, String> {
    AlertStatus::parse(text)
        .ok_or_else(|| format!("status: unknown status {text:?}; use open, acknowledged or closed"))
}

/// Reads the `level` parameter of an alert listing, as [`read_status`] does `status`.
pub(crate) fn read_level(text: &str) -> Result<Level, String> {
    text.parse::<Level>()
        .map_err(|message| format!("level: {message}"))
}

/// Reads parameter `name` (absent or blank for none) against `now`, here and on the search and
/// alerts pages; the error is the message for the client.
pub(crate) fn read_time(
    name: &str,
    text: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| parse_time(t, now))
        .transpose()
        .map_err(|e| match e {
            StoreError::Query { message, .. } => format!("{name}: {message}"),
            other => format!("{name}: {other}"),
        })
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn search_events(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<SearchParams>,
) -> Response {
    let range = match time_range(params.from.as_deref(), params.to.as_deref()) {
        Ok(range) => range,
        Err(message) => return bad_request(message),
    };
    let request = SearchRequest {
        query: params.q,
        from: range.from,
        to: range.to,
        limit: clamp_limit(params.limit),
        cursor: params.cursor.filter(|c| !c.is_empty()),
        visibility: caller.visibility(),
    };
    let store = state.store.clone();
    match call_store(move || store.search(&request)).await {
        Ok(results) => Json(results).into_response(),
        Err(error) => error_response(error),
    }
}

#[derive(Debug, Deserialize)]
struct HistogramParams {
    #[serde(default)]
    q: String,
    from: Option<String>,
    to: Option<String>,
}

async fn search_histogram(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<HistogramParams>,
) -> Response {
    let range = match time_range(params.from.as_deref(), params.to.as_deref()) {
        Ok(range) => range,
        Err(message) => return bad_request(message),
    };
    let store = state.store.clone();
    let visibility = caller.visibility();
    match call_store(move || store.histogram(&params.q, &visibility, range.from, range.to)).await {
        Ok(histogram) => Json(histogram).into_response(),
        Err(error) => error_response(error),
    }
}

const DEFAULT_FACET_VALUES: usize = 10;

#[derive(Debug, Deserialize)]
struct FacetParams {
    #[serde(default)]
    q: String,
    field: String,
    from: Option<String>,
    to: Option<String>,
    size: Option<usize>,
}

async fn search_facets(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<FacetParams>,
) -> Response {
    let range = match time_range(params.from.as_deref(), params.to.as_deref()) {
        Ok(range) => range,
        Err(message) => return bad_request(message),
    };
    let size = params
        .size
        .unwrap_or(DEFAULT_FACET_VALUES)
        .clamp(1, vigil_store::MAX_FACET_VALUES);
    let store = state.store.clone();
    let visibility = caller.visibility();
    match call_store(move || {
        store.facets(
            &params.q,
            &visibility,
            &params.field,
            size,
            range.from,
            range.to,
        )
    })
    .await
    {
        Ok(facets) => Json(facets).into_response(),
        Err(error) => error_response(error),
    }
}

pub(crate) fn clamp_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

fn error_response(error: CallError) -> Response {
    match error {
        CallError::BadQuery(message, position) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": message, "position": position })),
        )
            .into_response(),
        CallError::Invalid(message) => bad_request(message),
        CallError::NotFound(message) => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response()
        }
        CallError::Failed => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "the store failed; see the server log" })),
        )
            .into_response(),
    }
}
