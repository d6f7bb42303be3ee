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
//!
//! Every record is read before anything is stored, so a delivery that cannot be taken is
//! refused whole and its retry duplicates nothing: 413 when its records inflate past the
//! per-request budget ([`FirehoseState::max_inflated_bytes`]), 400 when a data message names
//! no valid log group. A single record that cannot be read (not base64, not gzip, too large
//! inflated, not a subscription message) is quarantined with its reason, by its first
//! 64 KiB, and the rest of the delivery is taken.

use std::collections::BTreeMap;
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
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{log_group_overrides, LogGroupRecogniser, UnknownPreset};
use crate::ingestor::QUARANTINED_PREFIX_BYTES;
use crate::{IncomingRecord, IngestError, Ingestor, QuarantineKind, SourceSpec};

const REQUEST_ID_HEADER: &str = "x-amz-firehose-request-id";
const ACCESS_KEY_HEADER: &str = "x-amz-firehose-access-key";
/// The name quarantined Firehose records are filed under when no log group can be read.
const SOURCE_NAME: &str = "firehose";

/// The default of [`FirehoseState::max_inflated_bytes`]: 64 MiB.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// The bounds of `max_inflated_bytes`: 1 MiB to 1 GiB.
const MIN_INFLATED_BYTES: usize = 1024 * 1024;
const MAX_INFLATED_BYTES: usize = 1024 * 1024 * 1024;

/// The shortest access key taken; Firehose sends it in every request.
const MIN_ACCESS_KEY_CHARS: usize = 16;

/// The `[firehose]` table: the endpoint for CloudWatch subscriptions, off unless configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The access key the Firehose stream sends in `X-Amz-Firehose-Access-Key`.
    pub access_key: String,
    /// Presets for log groups whose records recognition would get wrong, as for
    /// `[[sources.cloudwatch]]`: `{ "/app/flask" = "flask-app" }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// The most bytes the gzip'd records of one request may inflate to, all together; a
    /// request past it gets 413 and nothing of it is stored. 1 MiB to 1 GiB.
    #[serde(default = "default_max_inflated_bytes")]
    pub max_inflated_bytes: usize,
}

fn default_max_inflated_bytes() -> usize {
    DEFAULT_MAX_INFLATED_BYTES
}

/// What is wrong with a `[firehose]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirehoseConfigError {
    #[error("firehose.access_key must be at least {MIN_ACCESS_KEY_CHARS} characters")]
    ShortAccessKey,
    #[error(
        "firehose.max_inflated_bytes is {0}; use {MIN_INFLATED_BYTES} (1 MiB) to {MAX_INFLATED_BYTES} (1 GiB)"
    )]
    MaxInflatedBytes(usize),
    #[error("firehose: {0}")]
    Override(UnknownPreset),
}

impl FirehoseConfig {
    /// Checks every setting, before anything binds or starts.
    pub fn validate(&self) -> Result<(), FirehoseConfigError> {
        self.recogniser().map(drop)
    }

    /// The endpoint's state, for [`router`].
    pub fn build(&self, ingestor: Arc<Ingestor>) -> Result<FirehoseState, FirehoseConfigError> {
        Ok(FirehoseState {
            ingestor,
            access_key: self.access_key.as_str().into(),
            recogniser: Arc::new(self.recogniser()?),
            max_inflated_bytes: self.max_inflated_bytes,
        })
    }

    fn recogniser(&self) -> Result<LogGroupRecogniser, FirehoseConfigError> {
        if self.access_key.trim().len() < MIN_ACCESS_KEY_CHARS {
            return Err(FirehoseConfigError::ShortAccessKey);
        }
        if !(MIN_INFLATED_BYTES..=MAX_INFLATED_BYTES).contains(&self.max_inflated_bytes) {
            return Err(FirehoseConfigError::MaxInflatedBytes(
                self.max_inflated_bytes,
            ));
        }
        let overrides =
            log_group_overrides(&self.overrides).map_err(FirehoseConfigError::Override)?;
        Ok(LogGroupRecogniser::new(overrides))
    }
}

#[derive(Clone)]
pub struct FirehoseState {
    pub ingestor: Arc<Ingestor>,
    pub access_key: Arc<str>,
    pub recogniser: Arc<LogGroupRecogniser>,
    /// The most bytes the records of one request may inflate to, all together. Records are
    /// gzip'd, and a few kilobytes of gzip can inflate to gigabytes; a request past this is
    /// refused with 413 before anything of it is stored, and memory stays near this bound.
    pub max_inflated_bytes: usize,
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
    drop(body);
    let limits = DecodeLimits {
        max_record_bytes: state.ingestor.limits().max_body_bytes,
        max_inflated_bytes: state.max_inflated_bytes,
    };
    // Inflating is CPU work of up to the budget's size: off the async workers.
    let decoded =
        tokio::task::spawn_blocking(move || decode_delivery(delivery.records, limits)).await;
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(refusal)) => {
            let status = refusal.status();
            // Firehose's ids are UUIDs; a sender's own may be as long as the body.
            let logged_id: String = request_id.chars().take(128).collect();
            tracing::warn!(request_id = logged_id, reason = %refusal, "Firehose delivery refused");
            metrics::counter!("vigil_firehose_refused_total", "reason" => refusal.label())
                .increment(1);
            return reply(status, &request_id, Some(refusal.to_string()));
        }
        Err(panic) => {
            tracing::error!(%panic, "decoding a Firehose delivery failed");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &request_id,
                Some("the delivery could not be decoded".into()),
            );
        }
    };
    match ingest_delivery(&state, decoded).await {
        Ok(()) => reply(StatusCode::OK, &request_id, None),
        // Not expected once every log group was checked, but never a reason to retry.
        Err(error @ (IngestError::InvalidSourceName(_) | IngestError::ReservedSource)) => reply(
            StatusCode::BAD_REQUEST,
            &request_id,
            Some(error.to_string()),
        ),
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

/// Bounds on inflating the records of one request.
#[derive(Debug, Clone, Copy)]
struct DecodeLimits {
    /// The most one record may inflate to; a larger one is quarantined.
    max_record_bytes: usize,
    /// The most all records of the request may inflate to together; past it the request is
    /// refused.
    max_inflated_bytes: usize,
}

/// Why a whole delivery is refused, before anything of it is stored: retrying it unchanged
/// cannot help, so the sender is told what is wrong instead.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(
        "the records inflate past the {budget}-byte budget for one request (record {position} \
         reached it); send smaller batches, or raise firehose.max_inflated_bytes"
    )]
    InflatedBudget { budget: usize, position: u64 },
    #[error(
        "record {position}: a DATA_MESSAGE needs a valid logGroup, not {log_group:?}: {reason}"
    )]
    InvalidLogGroup {
        position: u64,
        log_group: String,
        reason: &'static str,
    },
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::InflatedBudget { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::InvalidLogGroup { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Refusal::InflatedBudget { .. } => "inflated_bytes",
            Refusal::InvalidLogGroup { .. } => "log_group",
        }
    }
}

/// A delivery read, nothing of it stored yet.
#[derive(Default)]
struct Decoded {
    messages: Vec<SubscriptionMessage>,
    /// Records that cannot be read: position, the start of their data, and the reason.
    unreadable: Vec<(u64, Vec<u8>, String)>,
}

/// Inflates and reads every record, keeping within `limits`, or says why the whole delivery
/// is refused.
fn decode_delivery(records: Vec<FirehoseRecord>, limits: DecodeLimits) -> Result<Decoded, Refusal> {
    let mut decoded = Decoded::default();
    let mut inflated = 0usize;
    for (index, record) in records.into_iter().enumerate() {
        let position = index as u64 + 1;
        let remaining = limits.max_inflated_bytes.saturating_sub(inflated);
        let outcome = decode_record(&record.data, limits.max_record_bytes.min(remaining));
        inflated += outcome.inflated;
        let message = match outcome.result {
            Err(DecodeError::TooLarge) if remaining <= limits.max_record_bytes => {
                return Err(Refusal::InflatedBudget {
                    budget: limits.max_inflated_bytes,
                    position,
                })
            }
            Err(DecodeError::TooLarge) => Err(format!(
                "record data inflates past {} bytes",
                limits.max_record_bytes
            )),
            Err(DecodeError::Unreadable(reason)) => Err(reason),
            Ok(message) => Ok(message),
        };
        match message {
            Ok(message) if message.message_type == "CONTROL_MESSAGE" => {}
            Ok(message) if message.message_type == "DATA_MESSAGE" => {
                if let Err(reason) = check_log_group(&message.log_group) {
                    return Err(Refusal::InvalidLogGroup {
                        position,
                        log_group: message.log_group.chars().take(600).collect(),
                        reason,
                    });
                }
                decoded.messages.push(message);
            }
            Ok(message) => {
                let reason = format!("unknown messageType {:?}", message.message_type);
                decoded
                    .unreadable
                    .push((position, prefix(&record.data), reason));
            }
            Err(reason) => {
                let reason = if record.data.len() > QUARANTINED_PREFIX_BYTES {
                    format!(
                        "{reason} (the first {QUARANTINED_PREFIX_BYTES} of its {} bytes of data \
                         are kept)",
                        record.data.len()
                    )
                } else {
                    reason
                };
                decoded
                    .unreadable
                    .push((position, prefix(&record.data), reason));
            }
        }
    }
    Ok(decoded)
}

fn prefix(data: &str) -> Vec<u8> {
    data.as_bytes()[..data.len().min(QUARANTINED_PREFIX_BYTES)].to_vec()
}

/// Log groups name their events' source, so they must be valid source names, as every log
/// group CloudWatch allows is.
fn check_log_group(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 512 {
        return Err("it is longer than 512 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'#'))
    {
        return Err("use letters, digits, '.', '_', '-', '/' or '#'");
    }
    Ok(())
}

/// Quarantines the unreadable records and ingests every log event, grouped by log group and
/// record kind.
async fn ingest_delivery(state: &FirehoseState, decoded: Decoded) -> Result<(), IngestError> {
    for (position, data, reason) in decoded.unreadable {
        quarantine(state, &data, position, reason).await?;
    }

    // (log group, spec, records): consecutive events of one group and kind go together.
    let mut groups: Vec<(&str, SourceSpec, Vec<IncomingRecord>)> = Vec::new();
    for message in &decoded.messages {
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
    data: &[u8],
    position: u64,
    reason: String,
) -> Result<(), IngestError> {
    state
        .ingestor
        .quarantine(
            SOURCE_NAME,
            "firehose",
            data,
            position,
            QuarantineKind::Undecodable,
            reason,
        )
        .await
}

enum DecodeError {
    /// The data inflates past the limit it was decoded with.
    TooLarge,
    Unreadable(String),
}

/// What decoding one record came to, and how many bytes it inflated to on the way.
struct DecodeOutcome {
    result: Result<SubscriptionMessage, DecodeError>,
    inflated: usize,
}

fn decode_record(data: &str, limit: usize) -> DecodeOutcome {
    let unreadable = |reason: String| DecodeOutcome {
        result: Err(DecodeError::Unreadable(reason)),
        inflated: 0,
    };
    let compressed = match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
        Ok(compressed) => compressed,
        Err(e) => return unreadable(format!("record data is not base64: {e}")),
    };
    // Bounded, so a small gzip bomb cannot take the memory of the process.
    let mut json = Vec::new();
    let read = flate2::read::GzDecoder::new(compressed.as_slice())
        .take(limit as u64 + 1)
        .read_to_end(&mut json);
    drop(compressed);
    let inflated = json.len();
    let result = match read {
        Err(e) => Err(DecodeError::Unreadable(format!(
            "record data is not gzip: {e}"
        ))),
        Ok(_) if json.len() > limit => Err(DecodeError::TooLarge),
        Ok(_) => serde_json::from_slice(&json).map_err(|e| {
            DecodeError::Unreadable(format!("not a CloudWatch subscription message: {e}"))
        }),
    };
    DecodeOutcome { result, inflated }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> Result<FirehoseConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn a_config_takes_its_defaults_and_refuses_unknown_keys() {
        let firehose = config(json!({"access_key": "k".repeat(16)})).unwrap();
        assert_eq!(firehose.max_inflated_bytes, DEFAULT_MAX_INFLATED_BYTES);
        assert!(firehose.overrides.is_empty());
        assert_eq!(firehose.validate(), Ok(()));
        let typo = config(json!({"access_key": "k".repeat(16), "max_inflated": 1}));
        assert!(typo.unwrap_err().to_string().contains("max_inflated"));
    }

    #[test]
    fn short_keys_budgets_out_of_range_and_unknown_presets_are_refused() {
        let valid = config(json!({"access_key": "k".repeat(16)})).unwrap();
        let short = FirehoseConfig {
            access_key: format!("  {}  ", "k".repeat(15)),
            ..valid.clone()
        };
        assert_eq!(short.validate(), Err(FirehoseConfigError::ShortAccessKey));
        for (bytes, ok) in [
            (MIN_INFLATED_BYTES - 1, false),
            (MIN_INFLATED_BYTES, true),
            (MAX_INFLATED_BYTES, true),
            (MAX_INFLATED_BYTES + 1, false),
        ] {
            let budget = FirehoseConfig {
                max_inflated_bytes: bytes,
                ..valid.clone()
            };
            assert_eq!(budget.validate().is_ok(), ok, "{bytes}");
        }
        let error = FirehoseConfig {
            max_inflated_bytes: 100,
            ..valid.clone()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "firehose.max_inflated_bytes is 100; use 1048576 (1 MiB) to 1073741824 (1 GiB)"
        );
        let unknown = FirehoseConfig {
            overrides: BTreeMap::from([("/app".to_owned(), "flsk".to_owned())]),
            ..valid
        };
        assert_eq!(
            unknown.validate().unwrap_err().to_string(),
            r#"firehose: unknown preset "flsk" for log group "/app""#
        );
    }
}
