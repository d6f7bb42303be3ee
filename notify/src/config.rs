//! What `[notify]` in `vigil.toml` says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_event::Level;

/// The notification settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The address analysts open Vigil at, such as `https://vigil.example.com`; messages then
    /// link to the alert's page.
    pub ui_url: Option<String>,
    /// How long one delivery may take.
    pub timeout_ms: u64,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            ui_url: None,
            timeout_ms: 10_000,
            webhooks: Vec::new(),
        }
    }
}

/// One webhook and the alerts it wants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook in logs and metrics.
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: MessageFormat,
    /// Alerts below this level are not sent.
    #[serde(default = "default_min_level")]
    pub min_level: Level,
    /// Only these rules' alerts, by rule id; every rule when empty.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only alerts with one of these tags (`attack.t1562`); every alert when empty.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Sent with every request, such as `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_min_level() -> Level {
    Level::Medium
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// `{"type": "vigil.alert", "alert": {...}, "url": ...}`.
    #[default]
    Json,
    /// `{"text": ...}` with Slack's markup, which Mattermost and Teams' incoming webhooks
    /// also read.
    Slack,
}
