//! The event and alert model that every Vigil stage speaks.
//!
//! An [`Event`] is one security-relevant record as a source delivered it: the original bytes are
//! kept unchanged in [`Record`], and the pipeline only adds what it needs around them (a stable id,
//! times, where it came from and the Sigma logsource triple). Detection matches on the record's own
//! field names, so SigmaHQ rules written against CloudTrail or Kubernetes audit work unchanged.
//!
//! An [`Alert`] is what detection makes of one or more events that matched a rule.

mod alert;
mod document;
mod event;
mod id;
pub mod json;
mod quarantine;
pub mod string_bytes;
mod tape;
mod text;
mod view;
pub mod wire;

pub use alert::{Alert, BusPosition, Level, MatchedEvent, MatchedField};
pub use document::{Array, Document, Items, JsonRef, Members, Object};
pub use event::{
    Event, JsonText, LogSource, Record, RecordError, Source, AUDIT_SOURCE, TEXT_FIELD,
};
pub use id::{Id, IdParseError};
pub use quarantine::Quarantined;
pub use tape::{Tape, TapeBuffers};
pub use text::text;
pub use view::{AsEventRef, EventRef, RecordRef};

/// Identifies an event; derived from its content so that a replay yields the same id.
pub type EventId = Id;
/// Identifies an alert; derived from the rule and the events, so a replay raises the same alert.
pub type AlertId = Id;
