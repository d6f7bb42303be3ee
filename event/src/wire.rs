//! How an [`Event`] travels on the bus: a small JSON head, then the record's text as it came.
//!
//! An event used to travel as one JSON object with the record inside it. Reading that back
//! meant `serde_json` walking every byte of the record to find where it ends, and copying it
//! into a `RawValue`, before detection parsed it again: the bus decode cost the detect stage
//! more than matching did (1.7 times as many samples in a profile of `bus_throughput`). Here
//! the record follows the head whole, so a reader takes it as a slice of the message.
//!
//! A message is [`FRAMED`], the head's length (four bytes, little-endian), the head (a JSON
//! object: the event's id, times, source, logsource, derived fields and the record's kind),
//! then the record's text. Messages written before this format are one JSON object, which
//! starts with `{`, and still decode.
//!
//! A record read this way is only checked to be UTF-8. Ingest checked it with the record
//! parser before it went on the bus; detection parses it when a rule may match (and
//! quarantines what it cannot read); the index stage hands it to the store, whose read of the
//! record as it indexes it is its check; and [`EventOnBus::into_event`] checks a JSON record
//! as `Record::json` does, for a reader that wants the whole event.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AsEventRef, Document, Event, EventId, LogSource, Record, RecordError, Source};

/// The first byte of a framed message. A message in the earlier format is a JSON object, so
/// it starts with `{`.
pub const FRAMED: u8 = 0x01;

/// The format ingest writes events in. Readers take both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// A head, then the record: see the [module docs](self).
    #[default]
    Framed,
    /// One JSON object, as a Vigil before 5 December 2026 wrote and reads events: for a
    /// rolling upgrade, until every role reads framed events.
    Json,
}

/// Why a bus message is not an event.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("a framed event of {0} bytes is shorter than its head says")]
    Truncated(usize),
    #[error("unreadable event head: {0}")]
    Head(serde_json::Error),
    #[error("the event's record is not UTF-8 (at byte {0} of it)")]
    NotUtf8(usize),
    #[error("unreadable event record: {0}")]
    Record(#[from] RecordError),
    #[error("unreadable event: {0}")]
    Whole(serde_json::Error),
    #[error("not an event: it starts with byte {0:#04x}")]
    UnknownFormat(u8),
    #[error("an empty message is not an event")]
    Empty,
    #[error("the event's derived fields nest deeper than {MAX_FIELDS_DEPTH} levels")]
    FieldsTooDeep,
}

/// The deepest nesting of derived fields an event may have. Ingest derives flat fields (an
/// access log line's columns). A head's fields are read as `serde_json` values, which take an
/// object keyed by `serde_json`'s raw-value token for the JSON its string holds, read with a
/// depth limit of its own: a forged message could so nest fields deeper than the store can
/// read its stored copy of the event back, and every search page holding it would fail.
pub const MAX_FIELDS_DEPTH: usize = 32;

fn check_fields_depth(fields: &Map<String, Value>) -> Result<(), WireError> {
    let mut open: Vec<(&Value, usize)> = fields.values().map(|value| (value, 1)).collect();
    while let Some((value, depth)) = open.pop() {
        if depth > MAX_FIELDS_DEPTH {
            return Err(WireError::FieldsTooDeep);
        }
        match value {
            Value::Array(items) => open.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(members) => open.extend(members.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Which variant of [`Record`] the text after the head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordKind {
    Json,
    Text,
}

/// An event without its record, as the head holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventHead {
    pub id: EventId,
    #[serde(with = "exact_time")]
    pub time: DateTime<Utc>,
    #[serde(with = "exact_time")]
    pub received: DateTime<Utc>,
    pub source: Source,
    #[serde(default)]
    pub logsource: LogSource,
    #[serde(default)]
    pub fields: Map<String, Value>,
    record: RecordKind,
}

/// [`EventHead`] borrowed from an event, to write it without copying.
#[derive(Serialize)]
struct HeadOf<'a> {
    id: &'a EventId,
    #[serde(with = "exact_time")]
    time: &'a DateTime<Utc>,
    #[serde(with = "exact_time")]
    received: &'a DateTime<Utc>,
    source: &'a Source,
    logsource: &'a LogSource,
    #[serde(skip_serializing_if = "Map::is_empty")]
    fields: &'a Map<String, Value>,
    record: RecordKind,
}

/// Times as whole seconds and nanoseconds since the epoch: exact (leap seconds included), and
/// read without parsing a date, which was a tenth of decoding an event's head.
mod exact_time {
    use chrono::{DateTime, Utc};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, out: S) -> Result<S::Ok, S::Error> {
        (time.timestamp(), time.timestamp_subsec_nanos()).serialize(out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<DateTime<Utc>, D::Error> {
        let (seconds, nanoseconds) = <(i64, u32)>::deserialize(input)?;
        DateTime::from_timestamp(seconds, nanoseconds)
            .ok_or_else(|| D::Error::custom("a time out of range"))
    }
}

/// A record read off the bus: its text, borrowed from the message where it was framed.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOnBus<'a> {
    /// A JSON record's text, as the message holds it: ingest accepted it as one JSON object,
    /// but nothing on this side of the bus has checked it yet.
    Json(Cow<'a, str>),
    /// A line of text, with its derived fields in the head.
    Text(Cow<'a, str>),
}

/// An event read off the bus, its record not yet checked beyond UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOnBus<'a> {
    pub head: EventHead,
    pub record: RecordOnBus<'a>,
}

impl Event {
    /// The event as a bus message: see the [module docs](self).
    pub fn to_bus(&self) -> Vec<u8> {
        let (kind, record) = match &self.record {
            Record::Json(raw) => (RecordKind::Json, raw.get()),
            Record::Text(text) => (RecordKind::Text, text.as_str()),
        };
        let head = HeadOf {
            id: &self.id,
            time: &self.time,
            received: &self.received,
            source: &self.source,
            logsource: &self.logsource,
            fields: &self.fields,
            record: kind,
        };
        let mut out = Vec::with_capacity(record.len() + 256);
        out.push(FRAMED);
        out.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut out, &head).expect("an event's head serialises");
        let head_len =
            u32::try_from(out.len() - 5).expect("a head is far under 4 GiB: records are lines");
        out[1..5].copy_from_slice(&head_len.to_le_bytes());
        out.extend_from_slice(record.as_bytes());
        out
    }

    /// The event as a bus message in `format`.
    pub fn to_bus_as(&self, format: EventFormat) -> Vec<u8> {
        match format {
            EventFormat::Framed => self.to_bus(),
            EventFormat::Json => {
                let mut out = Vec::with_capacity(self.record.as_str().len() + 256);
                self.write_json(&mut out);
                out
            }
        }
    }

    /// The event a bus message holds, in either format, its JSON record checked as
    /// [`Record::json`] checks one.
    pub fn from_bus(message: &[u8]) -> Result<Event, WireError> {
        EventOnBus::decode(message)?.into_event()
    }
}

impl<'a> EventOnBus<'a> {
    /// Reads a bus message, borrowing a framed message's record.
    pub fn decode(message: &'a [u8]) -> Result<Self, WireError> {
        match message.first() {
            Some(&FRAMED) => Self::framed(&message[1..]),
            Some(b'{') => {
                let event: Event = serde_json::from_slice(message).map_err(WireError::Whole)?;
                check_fields_depth(&event.fields)?;
                Ok(EventOnBus::from(event))
            }
            Some(&other) => Err(WireError::UnknownFormat(other)),
            None => Err(WireError::Empty),
        }
    }

    fn framed(rest: &'a [u8]) -> Result<Self, WireError> {
        let total = rest.len() + 1;
        let (length, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(WireError::Truncated(total))?;
        // No limit of its own: the message is already read, and a text record's derived fields
        // (a long URL, once as the target and again as the path) may outgrow the line.
        let head_len = u32::from_le_bytes(*length) as usize;
        let (head, record) = rest
            .split_at_checked(head_len)
            .ok_or(WireError::Truncated(total))?;
        let head: EventHead = serde_json::from_slice(head).map_err(WireError::Head)?;
        check_fields_depth(&head.fields)?;
        let record =
            std::str::from_utf8(record).map_err(|e| WireError::NotUtf8(e.valid_up_to()))?;
        let record = match head.record {
            RecordKind::Json => RecordOnBus::Json(Cow::Borrowed(record)),
            RecordKind::Text => RecordOnBus::Text(Cow::Borrowed(record)),
        };
        Ok(EventOnBus { head, record })
    }

    /// [`Event::document_view`] of the event, without building it.
    pub fn document_view(&self) -> Result<Document<'_>, serde_json::Error> {
        self.as_event_ref().document_view()
    }

    /// The event, owning its record, which stays unchecked.
    pub fn into_owned(self) -> EventOnBus<'static> {
        let record = match self.record {
            RecordOnBus::Json(text) => RecordOnBus::Json(Cow::Owned(text.into_owned())),
            RecordOnBus::Text(text) => RecordOnBus::Text(Cow::Owned(text.into_owned())),
        };
        EventOnBus {
            head: self.head,
            record,
        }
    }

    /// The whole event; a JSON record is checked to be one object, as [`Record::json`] does.
    pub fn into_event(self) -> Result<Event, WireError> {
        let record = match self.record {
            RecordOnBus::Json(text) => Record::json(&text)?,
            RecordOnBus::Text(text) => Record::Text(text.into_owned()),
        };
        let EventHead {
            id,
            time,
            received,
            source,
            logsource,
            fields,
            record: _,
        } = self.head;
        Ok(Event {
            id,
            time,
            received,
            source,
            logsource,
            record,
            fields,
        })
    }
}

impl From<Event> for EventOnBus<'_> {
    fn from(event: Event) -> Self {
        let (kind, record) = match event.record {
            Record::Json(raw) => (
                RecordKind::Json,
                RecordOnBus::Json(Cow::Owned(raw.get().into())),
            ),
            Record::Text(text) => (RecordKind::Text, RecordOnBus::Text(Cow::Owned(text))),
        };
        EventOnBus {
            head: EventHead {
                id: event.id,
                time: event.time,
                received: event.received,
                source: event.source,
                logsource: event.logsource,
                fields: event.fields,
                record: kind,
            },
            record,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn event(record: Record) -> Event {
        let time = Utc.timestamp_millis_opt(1_764_000_000_123).unwrap();
        Event {
            id: EventId::derive("test", &[b"1"]),
            time,
            received: time + chrono::Duration::seconds(2),
            source: Source {
                kind: "http".into(),
                name: "trail\u{e9}\"".into(),
            },
            logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
            record,
            fields: Map::new(),
        }
    }

    /// Keys out of order, a number as written, escapes and a character outside ASCII: the
    /// bytes a record arrived with.
    const RECORD: &str = r#"{"z":1.50,"a":"\u00e9\"\n","b":[{}],"c":"é"}"#;

    #[test]
    fn events_come_back_whole_their_records_borrowed_and_byte_for_byte() {
        let mut text = event(Record::Text("GET /a\"b 200".into()));
        text.fields.insert("status".into(), Value::from(200));
        // Times are the sender's: the extremes, a leap second and nanoseconds come back exact.
        let mut extremes = event(Record::json(RECORD).unwrap());
        extremes.time = DateTime::<Utc>::MIN_UTC;
        extremes.received = DateTime::<Utc>::MAX_UTC;
        let mut leap = text.clone();
        leap.time = Utc.timestamp_opt(1_483_228_799, 1_000_000_001).unwrap();
        leap.received = Utc.timestamp_opt(-1, 999_999_999).unwrap();
        let json = event(Record::json(RECORD).unwrap());
        // Derived fields larger than the line they came from.
        let mut long = text.clone();
        for name in ["target", "path"] {
            long.fields
                .insert(name.into(), Value::from("/a".repeat(600_000)));
        }
        for original in [json, text, extremes, leap, long] {
            let message = original.to_bus();
            assert_eq!(message[0], FRAMED);
            let on_bus = EventOnBus::decode(&message).unwrap();
            let (RecordOnBus::Json(record) | RecordOnBus::Text(record)) = &on_bus.record;
            assert!(matches!(record, Cow::Borrowed(_)));
            assert_eq!(record, original.record.as_str());
            assert_eq!(
                on_bus.document_view().unwrap().to_map(),
                original.document().unwrap()
            );
            assert_eq!(on_bus.into_event().unwrap(), original);
            assert_eq!(Event::from_bus(&message).unwrap(), original);
        }
    }

    #[test]
    fn messages_of_the_earlier_format_still_decode() {
        let original = event(Record::json(RECORD).unwrap());
        let message = original.to_bus_as(EventFormat::Json);
        assert_eq!(message, serde_json::to_vec(&original).unwrap());
        assert_eq!(original.to_bus_as(EventFormat::Framed), original.to_bus());
        let on_bus = EventOnBus::decode(&message).unwrap();
        assert_eq!(on_bus.record, RecordOnBus::Json(Cow::Owned(RECORD.into())));
        assert_eq!(on_bus.head.source, original.source);
        assert_eq!(Event::from_bus(&message).unwrap(), original);
    }

    /// A message of `head` (as JSON text) and `record` bytes, its head's length as written.
    fn framed(head_len: u32, head: &str, record: &[u8]) -> Vec<u8> {
        let mut message = vec![FRAMED];
        message.extend_from_slice(&head_len.to_le_bytes());
        message.extend_from_slice(head.as_bytes());
        message.extend_from_slice(record);
        message
    }

    #[test]
    fn damaged_messages_say_what_is_wrong() {
        let good = event(Record::json(RECORD).unwrap()).to_bus();
        let head_len = u32::from_le_bytes(good[1..5].try_into().unwrap());
        let head = std::str::from_utf8(&good[5..5 + head_len as usize]).unwrap();
        let error = |message: &[u8]| EventOnBus::decode(message).unwrap_err();
        assert!(matches!(error(b""), WireError::Empty));
        assert!(matches!(error(b"[1]"), WireError::UnknownFormat(b'[')));
        assert!(matches!(error(&good[..3]), WireError::Truncated(3)));
        assert!(matches!(
            error(&framed(head_len + 1000, head, b"{}")),
            WireError::Truncated(_)
        ));
        assert!(matches!(
            error(&framed(u32::MAX, head, b"{}")),
            WireError::Truncated(_)
        ));
        assert!(matches!(
            error(&framed(3, "{\"i", b"{}")),
            WireError::Head(_)
        ));
        let not_utf8 = framed(head_len, head, b"{\"a\":\"\xff\"}");
        assert!(matches!(error(&not_utf8), WireError::NotUtf8(6)));
        assert!(matches!(error(b"{\"id\":1}"), WireError::Whole(_)));
        let far = head.replacen("\"time\":[", "\"time\":[9999999999999999,0],\"t\":[", 1);
        assert!(matches!(
            error(&framed(far.len() as u32, &far, b"{}")),
            WireError::Head(_)
        ));
        // Derived fields nested past the limit through serde_json's raw-value token, which a
        // plain JSON reader would refuse at its own depth limit.
        let mut nested = "1".to_owned();
        for _ in 0..3 {
            let inner = format!("{}{nested}{}", "[".repeat(20), "]".repeat(20));
            nested = serde_json::to_string(&serde_json::json!({
                "$serde_json::private::RawValue": inner
            }))
            .unwrap();
        }
        let deep = head.replacen(
            "\"source\":",
            &format!("\"fields\":{{\"f\":{nested}}},\"source\":"),
            1,
        );
        assert!(matches!(
            error(&framed(deep.len() as u32, &deep, b"{}")),
            WireError::FieldsTooDeep
        ));
        let shallow = head.replacen("\"source\":", "\"fields\":{\"f\":[[1]]},\"source\":", 1);
        assert!(EventOnBus::decode(&framed(shallow.len() as u32, &shallow, b"{}")).is_ok());
        // A record that is not one JSON object reads off the bus, but is no event: detection
        // fails to parse it, `into_event` refuses it, and the store keeps it as text.
        for record in ["[1]", "{\"a\":", ""] {
            let message = framed(head_len, head, record.as_bytes());
            let on_bus = EventOnBus::decode(&message).unwrap();
            assert!(on_bus.document_view().is_err(), "{record}");
            assert!(
                matches!(Event::from_bus(&message), Err(WireError::Record(_))),
                "{record}"
            );
        }
    }
}
