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
    /// Per event, the fields and values that made the rule match it, as the detection engine
    /// reported them. Alerts raised before the engine reported them have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<MatchedEvent>,
    /// Where the event that raised the alert (for a correlation, the one that completed it)
    /// sits on the events topic. The indexer lists an alert only once the events index has
    /// committed that far, so that an alert's events are searchable by the time it is.
    /// Alerts not raised from the bus (or before this was recorded) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_position: Option<BusPosition>,
}

/// A message's place on a bus topic: its partition, and its offset in that partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusPosition {
    pub partition: u32,
    pub offset: u64,
}

/// The fields of one event that made a rule match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedEvent {
    pub event_id: EventId,
    pub fields: Vec<MatchedField>,
}

/// One field of an event and the value in it that a rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedField {
    /// The field's dotted path, as the rule names it (after field mapping); for a keyword, the
    /// path of the string the keyword was found in.
    pub field: String,
    /// The event's value: strings as they are, other values as JSON. The engine cuts long
    /// values, ending them with `…`.
    pub value: String,
    /// Whether a keyword search (over every string of the event) found it, rather than a
    /// search naming the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyword: bool,
}

impl Alert {
    /// The stable id of the alert that `rule_id` raises over `event_ids`.
    pub fn derive_id(rule_id: &str, event_ids: &[EventId]) -> AlertId {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(event_ids.len() + 1);
        parts.push(rule_id.as_bytes());
        parts.extend(event_ids.iter().map(|id| id.as_bytes().as_slice()));
        AlertId::derive("vigil alert v1", &parts)
    }

    /// Records what made the rule match the event `event_id`; nothing when `fields` is empty.
    pub fn add_matched(&mut self, event_id: EventId, fields: Vec<MatchedField>) {
        if !fields.is_empty() {
            self.matched.push(MatchedEvent { event_id, fields });
        }
    }

    /// The matched fields reported for the event `event_id`.
    pub fn matched_fields(&self, event_id: &EventId) -> &[MatchedField] {
        self.matched
            .iter()
            .find(|matched| matched.event_id == *event_id)
            .map_or(&[], |matched| matched.fields.as_slice())
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

    fn sample(matched: Vec<MatchedEvent>) -> Alert {
        let event = EventId::derive("e", &[b"1"]);
        let time: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        Alert {
            id: Alert::derive_id("r", &[event]),
            rule_id: "r".into(),
            rule_title: "R".into(),
            level: Level::High,
            tags: vec!["attack.t1078".into()],
            event_ids: vec![event],
            time,
            detected: time,
            source: Source {
                kind: "cloudtrail".into(),
                name: "prod".into(),
            },
            logsource: LogSource::default(),
            group: BTreeMap::new(),
            matched,
            event_position: None,
        }
    }

    #[test]
    fn matched_fields_round_trip_and_are_left_out_when_empty() {
        let mut alert = sample(Vec::new());
        let json = serde_json::to_string(&alert).unwrap();
        assert!(!json.contains("matched"), "{json}");
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), alert);

        let event = alert.event_ids[0];
        alert.add_matched(event, Vec::new());
        assert!(alert.matched.is_empty());
        let fields = vec![
            MatchedField {
                field: "eventName".into(),
                value: "StopLogging".into(),
                keyword: false,
            },
            MatchedField {
                field: "requestParameters.name".into(),
                value: "<script>evil</script>".into(),
                keyword: true,
            },
        ];
        alert.add_matched(event, fields.clone());
        let json = serde_json::to_string(&alert).unwrap();
        // `keyword` is written only when true.
        assert_eq!(json.matches("\"keyword\"").count(), 1, "{json}");
        let back: Alert = serde_json::from_str(&json).unwrap();
        assert_eq!(back, alert);
        assert_eq!(back.matched_fields(&event), fields.as_slice());
        assert!(back
            .matched_fields(&EventId::derive("e", &[b"2"]))
            .is_empty());
    }

    #[test]
    fn an_alert_stored_before_matched_fields_still_reads() {
        let old = r#"{"id":"IDX","rule_id":"r","rule_title":"R","level":"low","event_ids":[],"time":"2026-01-02T03:04:05Z","detected":"2026-01-02T03:04:05Z","source":{"kind":"k","name":"n"}}"#
            .replace("IDX", &Alert::derive_id("r", &[]).to_string());
        let alert: Alert = serde_json::from_str(&old).unwrap();
        assert!(alert.matched.is_empty());
    }
}
