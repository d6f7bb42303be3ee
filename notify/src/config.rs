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
    /// `[[notify.receivers]]`: webhook, slack, pagerduty and email (notify/src/receivers/).
    pub receivers: Vec<crate::receivers::ReceiverConfig>,
    /// The routing tree (notify/src/routing.rs).
    pub route: crate::routing::RouteConfig,
    /// Inhibition rules (notify/src/silences.rs).
    pub inhibit: Vec<crate::silences::InhibitConfig>,
    /// `[notify.outbox]`: retries, dead letters and keeping (notify/src/outbox.rs).
    pub outbox: crate::outbox::OutboxConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            ui_url: None,
            timeout_ms: 10_000,
            webhooks: Vec::new(),
            receivers: Vec::new(),
            route: crate::routing::RouteConfig::default(),
            inhibit: Vec::new(),
            outbox: crate::outbox::OutboxConfig::default(),
        }
    }
}

/// One webhook and the alerts it wants. Its `Debug` output leaves out the URL's path and
/// query and the header values, which hold its secrets.
#[derive(Clone, Serialize, Deserialize)]
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

impl WebhookConfig {
    /// The URL as far as it is safe to print; see [`redacted_url`].
    pub fn url_for_display(&self) -> String {
        redacted_url(&self.url)
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url_for_display())
            .field("format", &self.format)
            .field("min_level", &self.min_level)
            .field("rules", &self.rules)
            .field("tags", &self.tags)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A webhook URL as far as it is safe to print in an error or a log: its scheme and host
/// (with the port), never the user info, path, query or fragment, where webhook secrets live
/// (`https://hooks.slack.com/services/T0/B0/SECRET`). Works on text that is not a valid URL
/// too, since that is when it is printed.
pub fn redacted_url(url: &str) -> String {
    const HIDDEN: &str = "(URL not shown)";
    let Some((scheme, rest)) = url.split_once("://") else {
        return HIDDEN.to_owned();
    };
    let scheme_is_plain = scheme.len() <= 16
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_is_plain {
        return HIDDEN.to_owned();
    }
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    // `user:password@host`: the user info is a secret too.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host_is_plain = host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    let host = if host_is_plain {
        host
    } else {
        "(host not shown)"
    };
    let elided = if rest.len() > authority.len() {
        "/…"
    } else {
        ""
    };
    format!("{scheme}://{host}{elided}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        let shown = |url: &str| redacted_url(url);
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown("https://user:SECRET@example.com:8443?token=SECRET"),
            "https://example.com:8443/…"
        );
        assert_eq!(shown("http://example.com"), "http://example.com");
        // Not URLs at all: nothing of them is shown.
        assert_eq!(shown("hooks.slack.com/services/SECRET"), "(URL not shown)");
        assert_eq!(shown("ht tp://x/SECRET"), "(URL not shown)");
        assert_eq!(
            shown("https://exa mple.com SECRET/x"),
            "https://(host not shown)/…"
        );
        assert_eq!(shown("https://SECRET@"), "https://");
    }

    #[test]
    fn debug_output_leaves_secrets_out() {
        let webhook = WebhookConfig {
            name: "slack".into(),
            url: "https://hooks.slack.com/services/T0/B0/SECRET".into(),
            format: MessageFormat::Slack,
            min_level: Level::High,
            rules: Vec::new(),
            tags: Vec::new(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer SECRET".into())]),
        };
        let debug = format!("{webhook:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(
            debug.contains("hooks.slack.com") && debug.contains("Authorization"),
            "{debug}"
        );
    }
}
