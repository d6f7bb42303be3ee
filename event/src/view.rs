//! An event's parts, borrowed: what the store indexes and writes, whether the event was built
//! whole ([`Event`]) or read off the bus with its record still a slice of text
//! ([`EventOnBus`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{json_document, text_document};
use crate::wire::{EventOnBus, RecordOnBus};
use crate::{Document, Event, EventId, LogSource, Record, Source};

/// The record of an [`EventRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRef<'a> {
    /// The text of a JSON record checked to be JSON: an [`Event`]'s, checked when the record
    /// was made, or one its reader has read since.
    Json(&'a str),
    /// The text of a JSON record read off the bus ([`EventOnBus`]): only known to be UTF-8.
    UncheckedJson(&'a str),
    /// A line of text.
    Text(&'a str),
}

impl<'a> RecordRef<'a> {
    pub fn as_str(&self) -> &'a str {
        match self {
            RecordRef::Json(text) | RecordRef::UncheckedJson(text) | RecordRef::Text(text) => text,
        }
    }
}

/// Every part of an event, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    pub id: &'a EventId,
    pub time: &'a DateTime<Utc>,
    pub received: &'a DateTime<Utc>,
    pub source: &'a Source,
    pub logsource: &'a LogSource,
    pub record: RecordRef<'a>,
    pub fields: &'a Map<String, Value>,
}

/// What can lend its parts as an [`EventRef`].
pub trait AsEventRef {
    fn as_event_ref(&self) -> EventRef<'_>;
}

impl AsEventRef for Event {
    fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            id: &self.id,
            time: &self.time,
            received: &self.received,
            source: &self.source,
            logsource: &self.logsource,
            record: match &self.record {
                Record::Json(text) => RecordRef::Json(text.get()),
                Record::Text(line) => RecordRef::Text(line),
            },
            fields: &self.fields,
        }
    }
}

impl AsEventRef for EventOnBus<'_> {
    fn as_event_ref(&self) -> EventRef<'_> {
        let head = &self.head;
        EventRef {
            id: &head.id,
            time: &head.time,
            received: &head.received,
            source: &head.source,
            logsource: &head.logsource,
            record: match &self.record {
                RecordOnBus::Json(text) => RecordRef::UncheckedJson(text),
                RecordOnBus::Text(line) => RecordRef::Text(line),
            },
            fields: &head.fields,
        }
    }
}

impl<'a> EventRef<'a> {
    /// The record's text when it is a JSON record, checked or not.
    pub fn json_text(&self) -> Option<&'a str> {
        match self.record {
            RecordRef::Json(text) | RecordRef::UncheckedJson(text) => Some(text),
            RecordRef::Text(_) => None,
        }
    }

    /// The fields rules look up, without building a map for a JSON record: its [`Document`]
    /// borrows from the record's text. A text record gives its derived fields, and the line
    /// under [`crate::TEXT_FIELD`] unless a derived field took that name.
    pub fn document_view(&self) -> Result<Document<'a>, serde_json::Error> {
        match self.json_text() {
            Some(text) => json_document(text),
            None => Ok(Document::Map(Cow::Owned(text_document(
                self.fields,
                self.record.as_str(),
            )))),
        }
    }

    /// Appends the event as JSON to `out`: the bytes [`Event`]'s `Serialize` gives, with a
    /// checked JSON record's text copied in as it is rather than read again (`serde_json`
    /// would read it again; see [`crate::JsonText`]).
    ///
    /// An unchecked one is read first, and written as a text record if it is not JSON, so
    /// that what is written always reads back. The store reads each record it indexes anyway,
    /// and hands its verdict here as [`RecordRef::Json`] or [`RecordRef::Text`].
    pub fn write_json(&self, out: &mut Vec<u8>) {
        /// Every field of [`Event`] before the record, in its order.
        #[derive(Serialize)]
        struct Head<'a> {
            id: &'a EventId,
            time: &'a DateTime<Utc>,
            received: &'a DateTime<Utc>,
            source: &'a Source,
            logsource: &'a LogSource,
        }
        let head = Head {
            id: self.id,
            time: self.time,
            received: self.received,
            source: self.source,
            logsource: self.logsource,
        };
        serde_json::to_writer(&mut *out, &head).expect("an event's head serialises");
        // Reopen the head's object for the fields after it.
        out.pop();
        let record = match self.record {
            RecordRef::UncheckedJson(text)
                if serde_json::from_str::<&serde_json::value::RawValue>(text).is_err() =>
            {
                RecordRef::Text(text)
            }
            RecordRef::UncheckedJson(text) => RecordRef::Json(text),
            checked => checked,
        };
        match record {
            RecordRef::Json(text) | RecordRef::UncheckedJson(text) => {
                out.extend_from_slice(br#","record":{"json":"#);
                out.extend_from_slice(text.as_bytes());
            }
            RecordRef::Text(line) => {
                out.extend_from_slice(br#","record":{"text":"#);
                serde_json::to_writer(&mut *out, line).expect("a string serialises");
            }
        }
        out.push(b'}');
        if !self.fields.is_empty() {
            out.extend_from_slice(br#","fields":"#);
            serde_json::to_writer(&mut *out, self.fields).expect("JSON values serialise");
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RecordOnBus;

    #[test]
    fn an_unchecked_record_is_written_as_json_only_if_it_is_json() {
        let event = Event {
            id: EventId::derive("view test", &[b"1"]),
            time: DateTime::<Utc>::UNIX_EPOCH,
            received: DateTime::<Utc>::UNIX_EPOCH,
            source: Source {
                kind: "http".into(),
                name: "app".into(),
            },
            logsource: LogSource::default(),
            record: Record::json(r#"{"a":1}"#).unwrap(),
            fields: Map::new(),
        };
        let message = event.to_bus();
        let mut on_bus = EventOnBus::decode(&message).unwrap();
        for (text, record) in [
            (r#"{"a":1}"#, Record::json(r#"{"a":1}"#).unwrap()),
            (r#"{"a":"#, Record::Text(r#"{"a":"#.into())),
            ("", Record::Text(String::new())),
        ] {
            on_bus.record = RecordOnBus::Json(text.into());
            let view = on_bus.as_event_ref();
            assert_eq!(view.record, RecordRef::UncheckedJson(text));
            let mut written = Vec::new();
            view.write_json(&mut written);
            let back: Event = serde_json::from_slice(&written).unwrap();
            assert_eq!(
                back,
                Event {
                    record,
                    ..event.clone()
                },
                "{text}"
            );
        }
    }
}
