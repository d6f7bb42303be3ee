use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use vigil_bus::{Bus, BusError, Message, Topics};
use vigil_event::wire::EventFormat;
use vigil_event::{Event, EventId, Quarantined, Source, AUDIT_SOURCE};

use crate::normalise::normalise_line;
use crate::{RecordFormat, SourceCatalog, SourceSpec};

/// The longest record ingest takes by default (`max_line_bytes`); `vigil detect` holds lines
/// to it too.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

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
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
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

/// How much of a record over the line limit is quarantined: its first bytes, with its
/// length in the reason.
pub const QUARANTINED_PREFIX_BYTES: usize = 64 * 1024;

/// Why a record was quarantined, as the `reason` label of `vigil_quarantined_total`: a fixed
/// set of kinds, since the reason text itself holds the sender's bytes and labels must stay
/// few.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QuarantineKind {
    /// Longer than the record (line) limit.
    TooLarge,
    /// Not UTF-8.
    Utf8,
    /// A JSON source's record that is not a JSON object.
    Json,
    /// An access log source's line that does not parse.
    AccessLog,
    /// A VPC flow log source's record that does not parse.
    VpcFlow,
    /// Delivered data that holds no readable record (a Firehose record that does not decode).
    Undecodable,
}

impl QuarantineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineKind::TooLarge => "too_large",
            QuarantineKind::Utf8 => "utf8",
            QuarantineKind::Json => "json",
            QuarantineKind::AccessLog => "access_log",
            QuarantineKind::VpcFlow => "vpc_flow",
            QuarantineKind::Undecodable => "undecodable",
        }
    }

    /// The kind of a record within the size limit that `spec` refused: the check that
    /// failed, taken in the order normalising makes them.
    fn of_refused(spec: &SourceSpec, bytes: &[u8]) -> QuarantineKind {
        if std::str::from_utf8(bytes).is_err() {
            return QuarantineKind::Utf8;
        }
        match spec.format {
            RecordFormat::Json => QuarantineKind::Json,
            RecordFormat::AccessLog => QuarantineKind::AccessLog,
            RecordFormat::VpcFlow => QuarantineKind::VpcFlow,
            // Text takes any UTF-8; nothing else refuses it.
            RecordFormat::Text => QuarantineKind::Utf8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid source name {0:?}: use 1 to 512 letters, digits, '.', '_', '-', '/' or '#'")]
    InvalidSourceName(String),
    #[error("the source name and kind {AUDIT_SOURCE} are reserved for Vigil's own audit log")]
    ReservedSource,
    #[error("events could not be stored: {0}")]
    Bus(#[from] BusError),
}

/// Turns delivered lines into events on the bus, and what it cannot read into quarantine.
pub struct Ingestor {
    bus: Arc<dyn Bus>,
    topics: Topics,
    catalog: SourceCatalog,
    limits: IngestLimits,
    event_format: EventFormat,
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
            event_format: EventFormat::default(),
        }
    }

    /// Writes events to the bus in `format` (framed unless told otherwise).
    pub fn with_event_format(self, event_format: EventFormat) -> Self {
        Ingestor {
            event_format,
            ..self
        }
    }

    pub fn limits(&self) -> IngestLimits {
        self.limits
    }

    /// The spec the catalog gives source `name`.
    pub fn spec_for(&self, name: &str) -> SourceSpec {
        self.catalog.resolve(name)
    }

    /// Ingests newline-separated records from source `source_name`, returning once every
    /// accepted event and every quarantined line is durable.
    ///
    /// Event ids come from the content, so a retried delivery yields the same ids and the
    /// index keeps one copy. Identical lines within one delivery are told apart by how often
    /// they occurred before; a `batch_id` (unique per delivery, stable across retries) ties
    /// ids to line positions as well, never instead: a line sent again under the same batch
    /// and position with other bytes is another event, and the first one stays.
    pub async fn ingest_lines(
        &self,
        source_name: &str,
        body: &[u8],
        batch_id: Option<&str>,
    ) -> Result<IngestReport, IngestError> {
        let spec = self.catalog.resolve(source_name);
        self.ingest_records(source_name, &spec, lines(body, batch_id))
            .await
    }

    /// Ingests Vigil's own audit log entries, one JSON object per line, as events of source
    /// [`AUDIT_SOURCE`]: the one path by which that source is written.
    pub async fn ingest_audit_log(
        &self,
        body: &[u8],
        batch_id: &str,
    ) -> Result<IngestReport, IngestError> {
        let spec = self.catalog.resolve(AUDIT_SOURCE);
        self.ingest_any_records(AUDIT_SOURCE, &spec, lines(body, Some(batch_id)))
            .await
    }

    /// Ingests records of one delivery from source `source_name`, read as `spec` says,
    /// returning once every accepted event and every quarantined record is durable. The
    /// audit log's source name and kind are refused: a sender that could write them could
    /// forge the record of who did what, and set off the rules that watch it.
    pub async fn ingest_records<'a>(
        &self,
        source_name: &str,
        spec: &SourceSpec,
        records: impl IntoIterator<Item = IncomingRecord<'a>>,
    ) -> Result<IngestReport, IngestError> {
        if source_name.eq_ignore_ascii_case(AUDIT_SOURCE) || spec.kind == AUDIT_SOURCE {
            return Err(IngestError::ReservedSource);
        }
        self.ingest_any_records(source_name, spec, records).await
    }

    async fn ingest_any_records<'a>(
        &self,
        source_name: &str,
        spec: &SourceSpec,
        records: impl IntoIterator<Item = IncomingRecord<'a>>,
    ) -> Result<IngestReport, IngestError> {
        if !valid_source_name(source_name) {
            return Err(IngestError::InvalidSourceName(source_name.to_owned()));
        }
        let source = Source {
            kind: spec.kind.clone(),
            name: source_name.to_owned(),
        };
        let received = Utc::now();
        let mut report = IngestReport::default();
        let mut events = Vec::new();
        let mut quarantine = Vec::new();
        let mut kinds: std::collections::BTreeMap<QuarantineKind, u64> = Default::default();
        // Each record's whole text is hashed: with SipHash, 1.7% of a process taking
        // CloudTrail records at 30,000 a second. The map lives for one request, and its hasher
        // is seeded at random (per process and per map), so a sender cannot choose collisions.
        let mut seen: HashMap<&[u8], u64, foldhash::fast::RandomState> = HashMap::default();
        let mut bytes = 0u64;

        for record in records {
            bytes += record.bytes.len() as u64;
            let oversize = record.bytes.len() > self.limits.max_line_bytes;
            let outcome = if oversize {
                let mut reason = format!(
                    "record is {} bytes; the limit is {}",
                    record.bytes.len(),
                    self.limits.max_line_bytes
                );
                if record.bytes.len() > QUARANTINED_PREFIX_BYTES {
                    reason.push_str(&format!(
                        " (its first {QUARANTINED_PREFIX_BYTES} bytes are kept)"
                    ));
                }
                Err(reason)
            } else {
                let occurrence = match &record.key {
                    // The key already tells identical records apart.
                    Some(_) => 1,
                    None => {
                        let occurrence = seen.entry(record.bytes).or_insert(0);
                        *occurrence += 1;
                        *occurrence
                    }
                };
                let id = event_id(source_name, &record, occurrence);
                normalise_line(spec, &source, record.bytes, id, received, record.time)
            };
            match outcome {
                Ok(event) => events.push((event, record.position)),
                Err(reason) => {
                    reject(&mut report, record.position, &reason);
                    let kind = if oversize {
                        QuarantineKind::TooLarge
                    } else {
                        QuarantineKind::of_refused(spec, record.bytes)
                    };
                    *kinds.entry(kind).or_default() += 1;
                    quarantine.push(Quarantined {
                        source: source.clone(),
                        reason,
                        line: Some(record.position),
                        received,
                        // An oversize record's start is evidence enough; all of it, times
                        // every record of a delivery, is a way to fill the disk.
                        raw: if oversize {
                            record.bytes[..record.bytes.len().min(QUARANTINED_PREFIX_BYTES)]
                                .to_vec()
                        } else {
                            record.bytes.to_vec()
                        },
                    });
                }
            }
        }

        // Source names are the sender's choice: a bounded set of them become labels.
        let label = crate::source_label(source_name);
        metrics::counter!("vigil_ingest_bytes_total", "source" => label.clone()).increment(bytes);
        // Events first: when either publish fails the sender retries the whole delivery, and
        // events have ids, so a second copy changes nothing, while quarantined records would
        // be listed twice. Events are also what a lagging stage holds back.
        let mut accepted = 0;
        if !events.is_empty() {
            let message = |event: &Event| {
                let payload = event.to_bus_as(self.event_format);
                Message::new(source_name.as_bytes().to_vec(), payload)
            };
            let messages = events.iter().map(|(event, _)| message(event)).collect();
            accepted = match self.bus.publish(&self.topics.events, messages).await {
                Err(BusError::MessageTooLarge { max, .. }) => {
                    // Nothing of the batch was taken. An event whose message outgrows the bus
                    // (a line within the line limit whose derived fields escape to several
                    // times its size, or a bus whose limit is under the line limit) is
                    // quarantined alone, rather than the whole delivery refused, and retried,
                    // for ever. The messages are made again: this is the rare path.
                    let mut kept = Vec::with_capacity(events.len());
                    for (event, position) in &events {
                        let message = message(event);
                        let size = message.key.len() + message.payload.len();
                        if size + BUS_MESSAGE_SLACK <= max {
                            kept.push(message);
                            continue;
                        }
                        let reason = format!(
                            "the event's bus message is {size} bytes; the bus takes up to {max}"
                        );
                        reject(&mut report, *position, &reason);
                        *kinds.entry(QuarantineKind::TooLarge).or_default() += 1;
                        let line = event.record.as_str().as_bytes();
                        quarantine.push(Quarantined {
                            source: source.clone(),
                            reason,
                            line: Some(*position),
                            received,
                            raw: line[..line.len().min(QUARANTINED_PREFIX_BYTES)].to_vec(),
                        });
                    }
                    report.errors.sort_by_key(|rejection| rejection.line);
                    let taken = kept.len();
                    if taken > 0 {
                        self.bus.publish(&self.topics.events, kept).await?;
                    }
                    taken
                }
                published => {
                    published?;
                    events.len()
                }
            };
            metrics::counter!("vigil_events_in_total", "source" => label.clone())
                .increment(accepted as u64);
        }
        if !quarantine.is_empty() {
            self.publish_quarantined(source_name, &quarantine).await?;
            for (kind, count) in kinds {
                metrics::counter!(
                    "vigil_quarantined_total",
                    "source" => label.clone(),
                    "reason" => kind.as_str(),
                )
                .increment(count);
            }
        }
        report.accepted = accepted;
        Ok(report)
    }
}

impl Ingestor {
    /// Quarantines something a source delivered that holds no readable record, such as an
    /// undecodable Firehose record, so it is kept with its reason instead of dropped.
    pub async fn quarantine(
        &self,
        source_name: &str,
        source_kind: &str,
        raw: &[u8],
        position: u64,
        kind: QuarantineKind,
        reason: String,
    ) -> Result<(), IngestError> {
        let record = Quarantined {
            source: Source {
                kind: source_kind.to_owned(),
                name: source_name.to_owned(),
            },
            reason,
            line: Some(position),
            received: Utc::now(),
            raw: raw.to_vec(),
        };
        self.publish_quarantined(source_name, std::slice::from_ref(&record))
            .await?;
        metrics::counter!(
            "vigil_quarantined_total",
            "source" => crate::source_label(source_name),
            "reason" => kind.as_str(),
        )
        .increment(1);
        Ok(())
    }
}

impl Ingestor {
    /// Publishes quarantined records whole when the bus takes them. A bus with a smaller
    /// message limit than a rejected record (Kafka's is usually a few MiB) gets the record's
    /// first bytes instead, with the reason saying how much was kept: the rejection and its
    /// evidence are kept, and the request is not refused over a record already refused.
    async fn publish_quarantined(
        &self,
        source_name: &str,
        records: &[Quarantined],
    ) -> Result<(), BusError> {
        let messages = records.iter().map(|q| to_message(source_name, q)).collect();
        match self.bus.publish(&self.topics.quarantine, messages).await {
            Err(BusError::MessageTooLarge { max, .. }) => {
                let fitted = records
                    .iter()
                    .map(|record| to_message(source_name, &fit_to_bus(record, max)))
                    .collect();
                self.bus.publish(&self.topics.quarantine, fitted).await
            }
            other => other,
        }
    }
}

/// Room left in a bus message's limit for what a backend adds around key and payload (the
/// embedded bus's frame takes 4 bytes; Kafka's record headers a few dozen).
const BUS_MESSAGE_SLACK: usize = 1024;

/// Counts a refused line in `report`, listing it while the list has room.
fn reject(report: &mut IngestReport, line: u64, reason: &str) {
    if report.errors.len() < MAX_LISTED_REJECTIONS {
        report.errors.push(Rejection {
            line,
            reason: reason.to_owned(),
        });
    }
    report.rejected += 1;
}

/// `record` cut so that its message, raw bytes in base64, stays under `max` bytes.
fn fit_to_bus(record: &Quarantined, max: usize) -> Quarantined {
    // Room for the envelope (source, reason, times) around the base64 of the raw bytes.
    const ENVELOPE: usize = 16 * 1024;
    let keep = max.saturating_sub(ENVELOPE) / 4 * 3;
    if record.raw.len() <= keep {
        return record.clone();
    }
    let mut fitted = record.clone();
    fitted.raw.truncate(keep);
    fitted.reason = format!(
        "{} (only the first {keep} of its {} bytes are kept: the bus takes messages up to {max} bytes)",
        record.reason,
        record.raw.len()
    );
    fitted
}

/// One record as a source delivered it.
#[derive(Debug, Clone)]
pub struct IncomingRecord<'a> {
    pub bytes: &'a [u8],
    /// Where the record was in its delivery: the 1-based line or item number.
    pub position: u64,
    /// What identifies the record at its source, such as a CloudWatch event id or an audit id
    /// and stage. The id derives from it and the content together; without one, from the
    /// content alone. Keys must be unambiguous: no two different identities may be written
    /// as the same bytes (length-prefix or fix the width of their parts).
    pub key: Option<Vec<u8>>,
    /// When the source says the record happened, if the record itself may not.
    pub time: Option<chrono::DateTime<Utc>>,
}

/// The id of the event made from `record`, delivered by source `source_name`.
///
/// A keyed record's id comes from its key *and* its content (the bytes, and the time its
/// source stamped on it if any): a retry of the same record gets the same id, so the index
/// keeps one copy, while a record sent again under the same key with anything changed gets a
/// new id, and so can never overwrite the event stored under the first one, nor take it away
/// from the alerts raised on it. Without a key, identical records of one delivery are told
/// apart by `occurrence`: how many times the same bytes came before, counting this one.
///
/// Every part is length-prefixed by [`EventId::derive`], so different (source, key, content)
/// triples cannot share an id by running into each other.
fn event_id(source_name: &str, record: &IncomingRecord<'_>, occurrence: u64) -> EventId {
    let time: Option<[u8; 12]> = record.time.map(|time| {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&time.timestamp().to_le_bytes());
        bytes[8..].copy_from_slice(&time.timestamp_subsec_nanos().to_le_bytes());
        bytes
    });
    let occurrence = occurrence.to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![source_name.as_bytes()];
    let domain = match &record.key {
        Some(key) => {
            parts.extend([key.as_slice(), record.bytes]);
            "vigil event v2 keyed"
        }
        // Unchanged since v1, so a retry across an upgrade still finds the same ids.
        None => {
            parts.extend([record.bytes, occurrence.as_slice()]);
            "vigil event v1 content"
        }
    };
    if let Some(time) = &time {
        parts.push(time);
    }
    EventId::derive(domain, &parts)
}

fn to_message(key: &str, value: &impl Serialize) -> Message {
    let payload = serde_json::to_vec(value).expect("events and quarantine records serialise");
    Message::new(key.as_bytes().to_vec(), payload)
}

/// The lines of a delivery as records: empty lines skipped, `\r\n` read as `\n`, each keyed
/// by `batch_id` and its line number when there is a batch id.
fn lines<'a>(
    body: &'a [u8],
    batch_id: Option<&'a str>,
) -> impl Iterator<Item = IncomingRecord<'a>> + 'a {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(move |(index, line)| {
            let position = index as u64 + 1;
            IncomingRecord {
                bytes: line.strip_suffix(b"\r").unwrap_or(line),
                position,
                key: batch_id.map(|batch| {
                    let mut key = batch.as_bytes().to_vec();
                    key.extend_from_slice(&position.to_le_bytes());
                    key
                }),
                time: None,
            }
        })
        .filter(|record| !record.bytes.iter().all(u8::is_ascii_whitespace))
}

/// Source names may be CloudWatch log group names, hence `/` and `#`.
pub(crate) fn valid_source_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(raw_len: usize) -> Quarantined {
        Quarantined {
            source: Source {
                kind: "http".into(),
                name: "app".into(),
            },
            reason: "record is too long".into(),
            line: Some(1),
            received: Utc::now(),
            raw: vec![b'x'; raw_len],
        }
    }

    #[test]
    fn a_rejected_record_is_cut_to_fit_a_small_bus_and_says_so() {
        let max = 1024 * 1024;
        let fitted = fit_to_bus(&rejected(3 * 1024 * 1024), max);
        let message = to_message("app", &fitted);
        assert!(message.payload.len() <= max, "{}", message.payload.len());
        assert!(fitted.raw.len() > max / 2, "keeps as much as fits");
        assert!(fitted
            .reason
            .starts_with("record is too long (only the first"));
        assert!(fitted
            .reason
            .contains(&format!("of its {} bytes", 3 * 1024 * 1024)));
    }

    fn keyed<'a>(bytes: &'a [u8], key: &[u8]) -> IncomingRecord<'a> {
        IncomingRecord {
            bytes,
            position: 1,
            key: Some(key.to_vec()),
            time: None,
        }
    }

    #[test]
    fn a_refused_record_is_labelled_by_the_check_it_failed_never_its_text() {
        let generic = SourceSpec::generic();
        let cases: [(&SourceSpec, &[u8], QuarantineKind); 4] = [
            (&generic, b"{\"user\": ", QuarantineKind::Json),
            (&generic, b"{\"user\": \"\xff\"}", QuarantineKind::Utf8),
            (
                &SourceSpec::access_log(),
                b"not an access log",
                QuarantineKind::AccessLog,
            ),
            (
                &SourceSpec::vpc_flow(),
                b"2 123 eni-1",
                QuarantineKind::VpcFlow,
            ),
        ];
        let source = Source {
            kind: "http".into(),
            name: "app".into(),
        };
        for (spec, bytes, expected) in cases {
            let id = EventId::derive("test", &[bytes]);
            let refused = normalise_line(spec, &source, bytes, id, Utc::now(), None);
            assert!(
                refused.is_err(),
                "{:?} is refused",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(QuarantineKind::of_refused(spec, bytes), expected);
        }
        let labels: Vec<&str> = [
            QuarantineKind::TooLarge,
            QuarantineKind::Utf8,
            QuarantineKind::Json,
            QuarantineKind::AccessLog,
            QuarantineKind::VpcFlow,
            QuarantineKind::Undecodable,
        ]
        .iter()
        .map(|kind| kind.as_str())
        .collect();
        assert_eq!(
            labels,
            [
                "too_large",
                "utf8",
                "json",
                "access_log",
                "vpc_flow",
                "undecodable"
            ]
        );
    }

    #[test]
    fn a_keyed_id_follows_the_key_and_the_content() {
        let stop = br#"{"eventName":"StopLogging"}"#;
        let get = br#"{"eventName":"GetObject"}"#;
        let id = |record: &IncomingRecord| event_id("trail", record, 1);
        assert_eq!(id(&keyed(stop, b"B1")), id(&keyed(stop, b"B1")), "a retry");
        assert_ne!(
            id(&keyed(stop, b"B1")),
            id(&keyed(get, b"B1")),
            "other content under the same key is another event"
        );
        assert_ne!(id(&keyed(stop, b"B1")), id(&keyed(stop, b"B2")));
        assert_ne!(
            event_id("trail", &keyed(stop, b"B1"), 1),
            event_id("trail2", &keyed(stop, b"B1"), 1)
        );
        // Where the key ends and the content begins is part of the id.
        assert_ne!(id(&keyed(b"xy", b"k")), id(&keyed(b"y", b"kx")));

        // The time a source stamps beside the record (CloudWatch's) is content too.
        let at = |seconds: i64| {
            let mut record = keyed(stop, b"B1");
            record.time = chrono::DateTime::from_timestamp(seconds, 0);
            id(&record)
        };
        assert_eq!(at(1_795_000_000), at(1_795_000_000));
        assert_ne!(at(1_795_000_000), at(1_795_000_000 + 86_400));
        assert_ne!(at(1_795_000_000), id(&keyed(stop, b"B1")));
    }

    #[test]
    fn an_unkeyed_id_is_the_content_and_its_occurrence_as_before() {
        let record = IncomingRecord {
            bytes: b"{}",
            position: 7,
            key: None,
            time: None,
        };
        assert_eq!(
            event_id("app", &record, 2),
            EventId::derive(
                "vigil event v1 content",
                &[b"app", b"{}", &2u64.to_le_bytes()]
            ),
            "unchanged, so a retry across an upgrade keeps its ids"
        );
        assert_ne!(event_id("app", &record, 1), event_id("app", &record, 2));
    }

    #[test]
    fn a_record_that_fits_is_kept_whole() {
        let record = rejected(1000);
        assert_eq!(fit_to_bus(&record, 1024 * 1024), record);
    }
}
