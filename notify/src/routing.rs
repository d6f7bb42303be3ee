//! The routing tree of `[notify.route]`: which receivers an alert goes to, how its
//! notifications are grouped and how often they repeat. Modelled on Alertmanager's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One route of `[notify.route]`, as written. Unset settings are inherited from the parent;
/// the root's unset settings take the defaults (30 s, 5 min, 4 h).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in metrics and logs; its position in the tree (`root.1.0`) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Alert field → pattern; every one must match. The root matches every alert.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, MatchValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// After this route matched, also try its next siblings.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// A matcher's pattern: one value, or a list of which any may match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    One(String),
    Any(Vec<String>),
}
