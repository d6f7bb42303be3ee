//! The `[bus]` section of Vigil's configuration: which backend joins the stages, and the names
//! of the topics they exchange messages on. The Kafka backend's own settings, `[bus.kafka]`,
//! belong to that backend's crate.

use serde::{Deserialize, Serialize};

/// Whether `name` is non-empty and holds only letters, digits, '.', '_' and '-': what topic,
/// group and state names may hold on either backend, which also keeps them plain file names
/// (save "." and "..") for the embedded one.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What joins the stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An append-only log in the data directory; one process.
    #[default]
    Embedded,
    /// A Kafka cluster (AWS MSK in production); stages may run in many processes.
    Kafka,
}

/// The names of the topics Vigil's stages exchange messages on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Normalised events, keyed by source so that each source's order holds.
    pub events: String,
    /// Alerts raised by detection.
    pub alerts: String,
    /// Records that could not be turned into events, with the reason.
    pub quarantine: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            events: "vigil.events".into(),
            alerts: "vigil.alerts".into(),
            quarantine: "vigil.quarantine".into(),
        }
    }
}
