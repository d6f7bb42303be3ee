//! The HTTP NDJSON push endpoint: `POST /api/v1/ingest/{source}`.
//!
//! It answers 202 only once the accepted events are durable on the bus. Lines it cannot read
//! are quarantined and listed with their line numbers; the rest of the body is still accepted.
//! Authentication is the caller's concern: the binary wraps every `/api/v1` route.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use vigil_bus::BusError;

use crate::{IngestError, IngestReport, Ingestor};

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
    let body = match read_body(&ingestor, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let batch_id = match headers.get(BATCH_ID_HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("the {BATCH_ID_HEADER} header must be visible ASCII"),
            )
        }
    };
    report_response(
        ingestor.ingest_lines(&source, &body, batch_id).await,
        StatusCode::ACCEPTED,
    )
}

/// Reads a request body up to the ingest limit, or gives the 413 to send.
pub(crate) async fn read_body(ingestor: &Ingestor, body: Body) -> Result<Bytes, Response> {
    let max = ingestor.limits().max_body_bytes;
    axum::body::to_bytes(body, max).await.map_err(|_| {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {max}-byte limit; split it into smaller batches"),
        )
    })
}

/// The reply to a delivery: `success` with the report when anything was accepted (or nothing
/// was sent), 400 when every record was rejected, 503 with Retry-After when storage failed.
pub(crate) fn report_response(
    result: Result<IngestReport, IngestError>,
    success: StatusCode,
) -> Response {
    match result {
        Ok(report) if report.accepted == 0 && report.rejected > 0 => {
            (StatusCode::BAD_REQUEST, Json(report)).into_response()
        }
        Ok(report) => (success, Json(report)).into_response(),
        Err(e @ IngestError::InvalidSourceName(_)) => {
            error_response(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e @ IngestError::ReservedSource) => {
            error_response(StatusCode::FORBIDDEN, e.to_string())
        }
        Err(e @ IngestError::Bus(_)) => {
            log_unstored(&e, "ingest could not store events");
            let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
    }
}

/// Logs a delivery the bus did not take: an error, unless a lagging stage holds events back,
/// which is expected (the bus warns once when it starts) and only counted.
pub(crate) fn log_unstored(error: &IngestError, what: &str) {
    if let IngestError::Bus(BusError::Behind(reason)) = error {
        tracing::debug!(%reason, "ingest holds events back");
        metrics::counter!("vigil_ingest_held_back_total").increment(1);
    } else {
        tracing::error!(%error, "{what}");
    }
}

pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
