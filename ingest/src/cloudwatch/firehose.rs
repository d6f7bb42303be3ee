//! CloudWatch Logs subscription data delivered by Amazon Data Firehose to an HTTP endpoint:
//! `POST /ingest/firehose`.
//!
//! Firehose authenticates with the `X-Amz-Firehose-Access-Key` header rather than a bearer
//! token, so this route sits outside `/api/v1` and checks the key itself. Each record's `data`
//! is base64 of a gzip'd subscription message; control messages (sent when a subscription is
//! created) carry no events and are dropped. The reply echoes the request id as Firehose
//! expects; anything but 200 makes Firehose retry the whole request, which is safe because
//! event ids derive from each log event's CloudWatch id and its content: a retry yields the
//! same ids, and a different event sent under a known id is kept beside the first.

use std::io::Read;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;

use super::LogGroupRecogniser;
use crate::{IncomingRecord, IngestError, Ingestor, SourceSpec};

const REQUEST_ID_HEADER: &str = "x-amz-firehose-request-id";
const ACCESS_KEY_HEADER: &str = "x-amz-firehose-access-key";
/// The name quarantined Firehose records are filed under when no log group can be read.
const SOURCE_NAME: &str = "firehose";

#[derive(Clone)]
pub struct FirehoseState {
    pub ingestor: Arc<Ingestor>,
    pub access_key: Arc<str>,
    pub recogniser: Arc<LogGroupRecogniser>,
}

pub fn router(state: FirehoseState) -> Router {
    Router::new()
        .route("/ingest/firehose", post(receive))
        .with_state(state)
}

#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "requestId", default)]
    request_id: Option<String>,
    #[serde(default)]
    records: Vec<FirehoseRecord>,
}

#[derive(Deserialize)]
struct FirehoseRecord {
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionMessage {
    message_type: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    id: String,
    timestamp: i64,
    message: String,
}

fn reply(status: StatusCode, request_id: &str, error: Option<String>) -> Response {
    let mut body = json!({
        "requestId": request_id,
        "timestamp": Utc::now().timestamp_millis(),
    });
    if let Some(message) = error {
        body["errorMessage"] = json!(message);
    }
    (status, Json(body)).into_response()
}

async fn receive(State(state): State<FirehoseState>, headers: HeaderMap, body: Body) -> Response {
    let header_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let key = headers
        .get(ACCESS_KEY_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(key.ct_eq(state.access_key.as_bytes())) {
        return reply(
            StatusCode::UNAUTHORIZED,
            &header_id,
            Some("missing or wrong access key".into()),
        );
    }
    let max = state.ingestor.limits().max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, max).await else {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &header_id,
            Some(format!("request larger than {max} bytes")),
        );
    };
    let delivery: Delivery = match serde_json::from_slice(&body) {
        Ok(delivery) => delivery,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &header_id,
                Some(format!("not a Firehose delivery: {e}")),
            )
        }
    };
    let request_id = delivery.request_id.unwrap_or(header_id);
    match ingest_delivery(&state, &delivery.records).await {
        Ok(()) => reply(StatusCode::OK, &request_id, None),
        Err(error) => {
            crate::http::log_unstored(&error, "Firehose delivery not stored; Firehose will retry");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &request_id,
                Some(error.to_string()),
            )
        }
    }
}

/// Decodes every record and ingests its log events, grouped by log group and record kind.
async fn ingest_delivery(
    state: &FirehoseState,
    records: &[FirehoseRecord],
) -> Result<(), IngestError> {
    let limit = state.ingestor.limits().max_body_bytes;
    let mut messages = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let position = index as u64 + 1;
        match decode_record(&record.data, limit) {
            Ok(message) if message.message_type == "CONTROL_MESSAGE" => {}
            Ok(message) if message.message_type == "DATA_MESSAGE" => messages.push(message),
            Ok(message) => {
                let reason = format!("unknown messageType {:?}", message.message_type);
                quarantine(state, &record.data, position, reason).await?;
            }
            Err(reason) => quarantine(state, &record.data, position, reason).await?,
        }
    }

    // (log group, spec, records): consecutive events of one group and kind go together.
    let mut groups: Vec<(&str, SourceSpec, Vec<IncomingRecord>)> = Vec::new();
    for message in &messages {
        for (index, event) in message.log_events.iter().enumerate() {
            let spec =
                state
                    .recogniser
                    .recognise(&message.log_group, &message.log_stream, &event.message);
            let mut key = message.log_group.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(event.id.as_bytes());
            let record = IncomingRecord {
                bytes: event.message.as_bytes(),
                position: index as u64 + 1,
                key: Some(key),
                time: Utc.timestamp_millis_opt(event.timestamp).single(),
            };
            match groups.last_mut() {
                Some((group, group_spec, records))
                    if *group == message.log_group && *group_spec == spec =>
                {
                    records.push(record)
                }
                _ => groups.push((&message.log_group, spec, vec![record])),
            }
        }
    }
    for (log_group, spec, records) in groups {
        state
            .ingestor
            .ingest_records(log_group, &spec, records)
            .await?;
    }
    Ok(())
}

async fn quarantine(
    state: &FirehoseState,
    data: &str,
    position: u64,
    reason: String,
) -> Result<(), IngestError> {
    state
        .ingestor
        .quarantine(SOURCE_NAME, "firehose", data.as_bytes(), position, reason)
        .await
}

fn decode_record(data: &str, limit: usize) -> Result<SubscriptionMessage, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("record data is not base64: {e}"))?;
    // Bounded, so a small gzip bomb cannot take the memory of the process.
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(limit as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("record data is not gzip: {e}"))?;
    if json.len() > limit {
        return Err(format!("record data inflates past {limit} bytes"));
    }
    serde_json::from_slice(&json).map_err(|e| format!("not a CloudWatch subscription message: {e}"))
}
