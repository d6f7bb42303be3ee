use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::TopLevel;
use crate::{AsEventRef, Document, EventId};

/// Where an event came from: the kind of source and the name of this instance of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// The kind of source, such as `cloudtrail`, `kubernetes-audit` or `http`.
    pub kind: String,
    /// This source's name, such as a log group or the path segment of the ingest endpoint.
    pub name: String,
}

/// The Sigma logsource triple, assigned by the source.
///
/// A missing element means "not stated"; rule routing treats it as unknown, not as a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl LogSource {
    pub fn new(product: Option<&str>, service: Option<&str>, category: Option<&str>) -> Self {
        LogSource {
            product: product.map(str::to_owned),
            service: service.map(str::to_owned),
            category: category.map(str::to_owned),
        }
    }
}

/// The original record, exactly as the source delivered it.
///
/// JSON records keep their bytes (key order, number spelling, escapes) through the bus and
/// into the index; they are parsed only where fields are needed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    /// A JSON object.
    Json(JsonText),
    /// A line of text that is not JSON, such as an access log line.
    Text(String),
}

/// A JSON record's text, kept byte for byte, and checked to be JSON when it was made: by
/// [`Record::json`], by [`Record::checked_json`] or by deserializing.
///
/// It was `serde_json`'s `RawValue`, which only `serde_json`'s own walk of the text can make.
/// Ingest reads every record with the record parser ([`crate::json::check_object`]) to decide
/// on it, so each record was walked twice before it reached the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(Box<str>);

impl JsonText {
    pub fn get(&self) -> &str {
        &self.0
    }
}

impl Serialize for JsonText {
    /// As the JSON it holds. `serde_json` only writes raw JSON it has read itself, so this
    /// reads the text once more; [`Event::write_json`] writes an event without that.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(JsonText(raw.into()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    #[error("a JSON record must be an object, not {0}")]
    NotAnObject(&'static str),
}

impl Record {
    /// Wraps a JSON text, which must hold one object.
    pub fn json(text: &str) -> Result<Self, RecordError> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        match raw.get().as_bytes().first() {
            Some(b'{') => Ok(Record::Json(JsonText(raw.into()))),
            Some(b'[') => Err(RecordError::NotAnObject("an array")),
            Some(b'"') => Err(RecordError::NotAnObject("a string")),
            _ => Err(RecordError::NotAnObject("a scalar")),
        }
    }

    /// The JSON record of an object the record parser checked, as ingest decides on records:
    /// the text is not read again.
    pub fn checked_json(object: &TopLevel<'_>) -> Self {
        Record::Json(JsonText(object.text().into()))
    }

    /// The record's original text.
    pub fn as_str(&self) -> &str {
        match self {
            Record::Json(raw) => raw.get(),
            Record::Text(text) => text,
        }
    }

    pub fn is_json(&self) -> bool {
        matches!(self, Record::Json(_))
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.is_json() == other.is_json() && self.as_str() == other.as_str()
    }
}

/// One event on its way through Vigil.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    /// When the event happened, as the record says; the receive time when it says nothing.
    pub time: DateTime<Utc>,
    /// When Vigil received it.
    pub received: DateTime<Utc>,
    pub source: Source,
    #[serde(default)]
    pub logsource: LogSource,
    pub record: Record,
    /// Fields a parser derived from a text record, such as the columns of an access log line.
    /// They sit beside the record and never replace it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// The source name and kind of Vigil's own audit log, forwarded into the pipeline so that rules
/// can watch Vigil. No sender may use it: ingest refuses it on every path but the forwarder's.
pub const AUDIT_SOURCE: &str = "vigil-audit";

/// The field name under which a text record's line appears in [`Event::document`].
pub const TEXT_FIELD: &str = "message";

impl Event {
    /// The event as one JSON object for field lookups.
    ///
    /// A JSON record gives its own object, read by [`crate::json::parse_object`], the parser
    /// whose verdict ingest applied: a record ingest accepted always has a document (numbers
    /// beyond `f64`, lone surrogates and deep nesting included). A text record gives its
    /// derived fields, plus the line itself under [`TEXT_FIELD`] unless a derived field
    /// already took that name.
    ///
    /// The error stays `serde_json`'s type, which callers (the detect engine's API) carry;
    /// it holds the parser's message and byte position.
    pub fn document(&self) -> Result<Map<String, Value>, serde_json::Error> {
        match &self.record {
            Record::Json(raw) => crate::json::parse_object(raw.get())
                .map_err(<serde_json::Error as serde::de::Error>::custom),
            Record::Text(text) => Ok(text_document(&self.fields, text)),
        }
    }

    /// [`Event::document`]'s fields, read without building a map for a JSON record: its
    /// [`Document`] borrows from the record's text.
    pub fn document_view(&self) -> Result<Document<'_>, serde_json::Error> {
        self.as_event_ref().document_view()
    }

    /// Appends the event as JSON to `out`: the bytes its `Serialize` gives, with the record's
    /// text copied in as it is rather than read again (see [`JsonText`]). The store keeps
    /// every event it indexes this way.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.as_event_ref().write_json(out);
    }
}

/// A JSON record's document, read by the tape where it can (see [`Document::parse`]), with the
/// parser's error as `serde_json`'s type.
pub(crate) fn json_document(text: &str) -> Result<Document<'_>, serde_json::Error> {
    Document::parse(text).map_err(<serde_json::Error as serde::de::Error>::custom)
}

/// A text record's document: its derived fields, and the line under [`TEXT_FIELD`] unless a
/// derived field took that name.
pub(crate) fn text_document(fields: &Map<String, Value>, line: &str) -> Map<String, Value> {
    let mut doc = fields.clone();
    doc.entry(TEXT_FIELD)
        .or_insert_with(|| Value::String(line.to_owned()));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(record: Record) -> Event {
        let now = Utc::now();
        Event {
            id: EventId::derive("test", &[b"1"]),
            time: now,
            received: now,
            source: Source {
                kind: "http".into(),
                name: "app".into(),
            },
            logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
            record,
            fields: Map::new(),
        }
    }

    #[test]
    fn json_record_keeps_its_bytes_through_serde() {
        let original = r#"{"z":1,"a":1.50,"s":"\u00e9"}"#;
        let ev = event(Record::json(original).unwrap());
        let wire = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.record.as_str(), original);
        assert_eq!(back, ev);
    }

    #[test]
    fn write_json_gives_the_bytes_serde_gives() {
        let mut with_fields = event(Record::Text("GET /a?b=\"c\" 200\u{1}".into()));
        with_fields.fields.insert("status".into(), Value::from(200));
        with_fields
            .fields
            .insert("path".into(), Value::from("/a\u{e9}"));
        let events = [
            event(Record::json(r#"{"z":1.50,"a":"\u00e9\"\n","b":[{}],"c":"é"}"#).unwrap()),
            event(Record::Text("plain line".into())),
            with_fields,
            Event {
                logsource: LogSource::default(),
                ..event(Record::json("{}").unwrap())
            },
        ];
        for ev in events {
            let mut written = Vec::new();
            ev.write_json(&mut written);
            assert_eq!(
                String::from_utf8(written.clone()).unwrap(),
                serde_json::to_string(&ev).unwrap()
            );
            let back: Event = serde_json::from_slice(&written).unwrap();
            assert_eq!(back, ev);
        }
    }

    #[test]
    fn a_checked_record_is_the_object_without_the_space_around_it() {
        for (line, object) in [
            (r#"{"a":[1, {"b":"}"}]}"#, r#"{"a":[1, {"b":"}"}]}"#),
            (" \t{\"a\":1} \r", r#"{"a":1}"#),
            ("{}\r", "{}"),
        ] {
            let checked = Record::checked_json(&crate::json::check_object(line).unwrap());
            assert_eq!(checked.as_str(), object, "{line:?}");
            // What the serde_json check made of the same line.
            assert_eq!(checked, Record::json(line).unwrap(), "{line:?}");
        }
    }

    #[test]
    fn json_record_must_be_an_object() {
        assert!(matches!(
            Record::json("[1]"),
            Err(RecordError::NotAnObject(_))
        ));
        assert!(matches!(
            Record::json("3"),
            Err(RecordError::NotAnObject(_))
        ));
        assert!(matches!(
            Record::json("{"),
            Err(RecordError::InvalidJson(_))
        ));
    }

    #[test]
    fn json_document_reads_what_serde_json_refuses() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let text =
            format!(r#"{{"pad":1e400,"ua":"x\ud800","deep":{deep},"eventName":"StopLogging"}}"#);
        assert!(serde_json::from_str::<Map<String, Value>>(&text).is_err());
        let ev = event(Record::json(&text).unwrap());
        let doc = ev.document().unwrap();
        assert_eq!(doc["eventName"], "StopLogging");
        assert_eq!(doc["pad"], "1e400");
        assert_eq!(doc["ua"], "x\u{fffd}");
        // A record that is not an object is an error with the parser's position.
        let ev = event(serde_json::from_str(r#"{"json":[1]}"#).unwrap());
        let err = ev.document().unwrap_err();
        assert!(err.to_string().contains("at byte 0"), "{err}");
    }

    #[test]
    fn text_document_carries_the_line_and_fields() {
        let mut ev = event(Record::Text("GET / 200".into()));
        ev.fields.insert("status".into(), Value::from(200));
        let doc = ev.document().unwrap();
        assert_eq!(doc["message"], "GET / 200");
        assert_eq!(doc["status"], 200);
    }
}
