//! The HTTP NDJSON push endpoint: `POST /api/v1/ingest/{source}`.
//!
//! It answers 202 only once the accepted events are durable on the bus. Lines it cannot read
//! are quarantined and listed with their line numbers; the rest of the body is still accepted.
//! Authentication is the caller's concern: the binary wraps every `/api/v1` route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::{IngestError, Ingestor};

/// Names a delivery so that a retry of it maps each line to the same event id.
pub const BATCH_ID_HEADER: &str = "x-vigil-batch-id";

pub fn router(ingestor: Arc<Ingestor>) -> Router {
    Router::new()
        .route("/api/v1/ingest/{source}", post(ingest_ndjson))
        .with_state(ingestor)
}

async fn ingest_ndjson(
    State(ingestor): State<Arc<Ingestor>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = ingestor.limits().max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, max).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {max}-byte limit; split it into smaller batches"),
        );
    };
    let batch_id = match headers.get(BATCH_ID_HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the {BATCH_ID_HEADER} header must be visible ASCII"),
            )
        }
    };
    match ingestor.ingest_lines(&source, &body, batch_id).await {
        Ok(report) if report.accepted == 0 && report.rejected > 0 => {
            (StatusCode::BAD_REQUEST, Json(report)).into_response()
        }
        Ok(report) => (StatusCode::ACCEPTED, Json(report)).into_response(),
        Err(e @ IngestError::InvalidSourceName(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ IngestError::Bus(_)) => {
            tracing::error!(error = %e, "ingest could not store events");
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
