//! Silences (made by analysts, stored in notify.sqlite) and inhibition rules (from config).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::routing::MatchValue;

/// One `[[notify.inhibit]]`: while a group with an alert matching `source` is firing,
/// alerts matching `target` whose `equal` fields have the same values are not notified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source: BTreeMap<String, MatchValue>,
    pub target: BTreeMap<String, MatchValue>,
    #[serde(default)]
    pub equal: Vec<String>,
}
