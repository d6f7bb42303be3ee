//! Vigil's sources: everything that turns delivered records into events on the bus.
//!
//! A source names a kind of log and how to read it ([`SourceSpec`]). The [`Ingestor`] turns the
//! raw lines a source delivers into [`vigil_event::Event`]s, publishes them durably and
//! quarantines what it cannot read, with the reason. Push endpoints (the HTTP NDJSON
//! endpoint in [`http`]) are thin layers over it.

mod checkpoint;
pub mod cloudwatch;
mod config;
pub mod http;
mod ingestor;
pub mod kubernetes;
mod metric_label;
mod normalise;
pub mod parse;
mod recognise;
mod source;
pub mod tail;
mod time_format;

pub use checkpoint::CheckpointError;
pub use config::{IngestConfig, IngestConfigError, SourcesConfig, SourcesConfigError};
pub use ingestor::{
    IncomingRecord, IngestError, IngestLimits, IngestReport, Ingestor, QuarantineKind, Rejection,
    DEFAULT_MAX_LINE_BYTES,
};
pub use metric_label::{source_label, MAX_SOURCE_LABELS};
pub use normalise::{check_json_record, normalise_line, parse_json_record};
pub use recognise::{recognise_record, RecordShape};
pub use source::{RecordFormat, SourceCatalog, SourceSpec};
