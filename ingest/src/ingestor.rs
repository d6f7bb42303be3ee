use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use vigil_bus::{Bus, BusError, Message, Topics};
use vigil_event::{EventId, Quarantined, Source};

use crate::normalise::normalise_line;
use crate::SourceCatalog;

/// Size limits on what a source may deliver.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// A longer record is quarantined, never truncated.
    pub max_line_bytes: usize,
    /// The largest request body a push endpoint reads.
    pub max_body_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_line_bytes: 1024 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One line that did not become an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line number in the delivery.
    pub line: u64,
    pub reason: String,
}

/// What happened to a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Events now durable on the bus.
    pub accepted: usize,
    /// Lines quarantined instead.
    pub rejected: usize,
    /// The first [`MAX_LISTED_REJECTIONS`] rejections, in line order.
    pub errors: Vec<Rejection>,
}

/// Beyond this many, rejections are counted but not listed, to keep replies small.
pub const MAX_LISTED_REJECTIONS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid source name {0:?}: use 1 to 128 letters, digits, '.', '_' or '-'")]
    InvalidSourceName(String),
    #[error("events could not be stored: {0}")]
    Bus(#[from] BusError),
}

/// Turns delivered lines into events on the bus, and what it cannot read into quarantine.
pub struct Ingestor {
    bus: Arc<dyn Bus>,
    topics: Topics,
    catalog: SourceCatalog,
    limits: IngestLimits,
}

impl Ingestor {
    pub fn new(
        bus: Arc<dyn Bus>,
        topics: Topics,
        catalog: SourceCatalog,
        limits: IngestLimits,
    ) -> Self {
        Ingestor {
            bus,
            topics,
            catalog,
            limits,
        }
    }

    pub fn limits(&self) -> IngestLimits {
        self.limits
    }

    /// Ingests newline-separated records from source `source_name`, returning once every
    /// accepted event and every quarantined line is durable.
    ///
    /// Event ids come from the content, so a retried delivery yields the same ids and the
    /// index keeps one copy. Identical lines within one delivery are told apart by how often
    /// they occurred before; a `batch_id` (unique per delivery, stable across retries) ties
    /// ids to line positions instead.
    pub async fn ingest_lines(
        &self,
        source_name: &str,
        body: &[u8],
        batch_id: Option<&str>,
    ) -> Result<IngestReport, IngestError> {
        if !valid_source_name(source_name) {
            return Err(IngestError::InvalidSourceName(source_name.to_owned()));
        }
        let spec = self.catalog.resolve(source_name);
        let source = Source {
            kind: spec.kind.clone(),
            name: source_name.to_owned(),
        };
        let received = Utc::now();
        let mut report = IngestReport::default();
        let mut events = Vec::new();
        let mut quarantine = Vec::new();
        let mut seen: HashMap<&[u8], u64> = HashMap::new();

        for (index, line) in body.split(|&b| b == b'\n').enumerate() {
            let line_number = index as u64 + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let outcome = if line.len() > self.limits.max_line_bytes {
                Err(format!(
                    "line is {} bytes; the limit is {}",
                    line.len(),
                    self.limits.max_line_bytes
                ))
            } else {
                let id = match batch_id {
                    Some(batch) => EventId::derive(
                        "vigil event v1 batch",
                        &[
                            source_name.as_bytes(),
                            batch.as_bytes(),
                            &line_number.to_le_bytes(),
                        ],
                    ),
                    None => {
                        let occurrence = seen.entry(line).or_insert(0);
                        *occurrence += 1;
                        EventId::derive(
                            "vigil event v1 content",
                            &[source_name.as_bytes(), line, &occurrence.to_le_bytes()],
                        )
                    }
                };
                normalise_line(&spec, &source, line, id, received)
            };
            match outcome {
                Ok(event) => events.push(event),
                Err(reason) => {
                    if report.errors.len() < MAX_LISTED_REJECTIONS {
                        report.errors.push(Rejection {
                            line: line_number,
                            reason: reason.clone(),
                        });
                    }
                    report.rejected += 1;
                    quarantine.push(Quarantined {
                        source: source.clone(),
                        reason,
                        line: Some(line_number),
                        received,
                        raw: line.to_vec(),
                    });
                }
            }
        }

        let bytes = body.len() as u64;
        metrics::counter!("vigil_ingest_bytes_total", "source" => source_name.to_owned())
            .increment(bytes);
        if !quarantine.is_empty() {
            let messages = quarantine
                .iter()
                .map(|q| to_message(source_name, q))
                .collect();
            self.bus.publish(&self.topics.quarantine, messages).await?;
            metrics::counter!("vigil_quarantined_total", "source" => source_name.to_owned())
                .increment(quarantine.len() as u64);
        }
        if !events.is_empty() {
            let messages = events.iter().map(|e| to_message(source_name, e)).collect();
            self.bus.publish(&self.topics.events, messages).await?;
            metrics::counter!("vigil_events_in_total", "source" => source_name.to_owned())
                .increment(events.len() as u64);
        }
        report.accepted = events.len();
        Ok(report)
    }
}

fn to_message(key: &str, value: &impl Serialize) -> Message {
    let payload = serde_json::to_vec(value).expect("events and quarantine records serialise");
    Message::new(key.as_bytes().to_vec(), payload)
}

fn valid_source_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
