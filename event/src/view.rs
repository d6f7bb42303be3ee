//! An event's parts, borrowed: what the store indexes and writes, whether the event was built
//! whole ([`Event`]) or read off the bus with its record still a slice of text
//! ([`EventOnBus`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::wire::{EventOnBus, RecordOnBus};
use crate::{Event, EventId, LogSource, Record, Source};

/// The record of an [`EventRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordRef<'a> {
    /// The text of a JSON record. From an [`Event`] it was checked when the record was made;
    /// from an [`EventOnBus`] it is only known to be UTF-8 (see [`EventRef::write_json`]).
    Json(&'a str),
    /// A line of text.
    Text(&'a str),
}

impl<'a> RecordRef<'a> {
    pub fn as_str(&self) -> &'a str {
        match self {
            RecordRef::Json(text) | RecordRef::Text(text) => text,
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
                RecordOnBus::Json(text) => RecordRef::Json(text),
                RecordOnBus::Text(line) => RecordRef::Text(line),
            },
            fields: &head.fields,
        }
    }
}

impl EventRef<'_> {
    /// Appends the event as JSON to `out`: the bytes [`Event`]'s `Serialize` gives, with a
    /// JSON record's text copied in as it is rather than read again (`serde_json` would read
    /// it again; see [`crate::JsonText`]).
    ///
    /// So a JSON record's text must be JSON. It is for every [`Event`]; an event read off the
    /// bus has had its record read only by whoever read it since, as the store reads each
    /// record it indexes (and writes one that is not JSON as a text record).
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
        match self.record {
            RecordRef::Json(text) => {
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
