//! The JSON API: `GET /api/v1/alerts` and `GET /api/v1/search`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use vigil_store::SearchRequest;

use crate::{call_store, CallError, UiState};

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/search", get(search_events))
}

#[derive(Debug, Deserialize)]
struct AlertsParams {
    limit: Option<usize>,
}

async fn list_alerts(State(state): State<UiState>, Query(params): Query<AlertsParams>) -> Response {
    let limit = clamp_limit(params.limit);
    let store = state.store.clone();
    match call_store(move || store.alerts(limit)).await {
        Ok(alerts) => Json(json!({ "alerts": alerts })).into_response(),
        Err(error) => error_response(error),
    }
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search_events(
    State(state): State<UiState>,
    Query(params): Query<SearchParams>,
) -> Response {
    let request = SearchRequest {
        query: params.q,
        limit: clamp_limit(params.limit),
    };
    let store = state.store.clone();
    match call_store(move || store.search(&request)).await {
        Ok(results) => Json(results).into_response(),
        Err(error) => error_response(error),
    }
}

pub(crate) fn clamp_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

fn error_response(error: CallError) -> Response {
    match error {
        CallError::BadQuery(message) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
        CallError::Failed => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "the store failed; see the server log" })),
        )
            .into_response(),
    }
}
