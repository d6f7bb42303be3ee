use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AlertId, EventId, LogSource, Source};

/// A Sigma rule's severity level, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown level {s:?}; expected one of informational, low, medium, high, critical"))
    }
}

/// What detection raised when events matched a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub rule_id: String,
    pub rule_title: String,
    pub level: Level,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The events that made the rule match, oldest first.
    pub event_ids: Vec<EventId>,
    /// The time of the last event that made the rule match.
    pub time: DateTime<Utc>,
    /// When Vigil raised the alert.
    pub detected: DateTime<Utc>,
    pub source: Source,
    #[serde(default)]
    pub logsource: LogSource,
    /// For a correlation, the group-by fields and the values this alert is about.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, String>,
}

impl Alert {
    /// The stable id of the alert that `rule_id` raises over `event_ids`.
    pub fn derive_id(rule_id: &str, event_ids: &[EventId]) -> AlertId {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(event_ids.len() + 1);
        parts.push(rule_id.as_bytes());
        parts.extend(event_ids.iter().map(|id| id.as_bytes().as_slice()));
        AlertId::derive("vigil alert v1", &parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::Critical > Level::High);
        assert_eq!("HIGH".parse::<Level>().unwrap(), Level::High);
        assert!("severe".parse::<Level>().is_err());
    }

    #[test]
    fn alert_id_depends_on_rule_and_events() {
        let e1 = EventId::derive("e", &[b"1"]);
        let e2 = EventId::derive("e", &[b"2"]);
        assert_eq!(Alert::derive_id("r", &[e1]), Alert::derive_id("r", &[e1]));
        assert_ne!(Alert::derive_id("r", &[e1]), Alert::derive_id("r", &[e2]));
        assert_ne!(Alert::derive_id("r", &[e1]), Alert::derive_id("q", &[e1]));
    }
}
