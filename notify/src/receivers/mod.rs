//! The channels notifications go out on: a signed webhook, Slack, PagerDuty and email.
//!
//! [`build`] turns `[[notify.receivers]]` (and the older `[[notify.webhooks]]`, see
//! [`legacy_receivers`]) into one [`Receiver`] each, every one checked at load: names unique,
//! URLs http(s) and past the [`guard`](crate::guard), headers valid, secrets present. A
//! receiver owns its HTTP client, built through the guard, so that one receiver's settings
//! never leak into another's requests.

mod config;
mod email;
mod pagerduty;
mod slack;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

pub use config::{
    load_secret, load_url, EmailReceiverConfig, PagerDutyReceiverConfig, ReceiverConfig, Secret,
    SlackReceiverConfig, StartTls, UrlSource, WebhookReceiverConfig, PAGERDUTY_EVENTS_URL,
};
pub use email::EmailReceiver;
pub use pagerduty::{pagerduty_event, PagerDutyReceiver};
pub use slack::{slack_blocks, SlackReceiver};
pub use webhook::{webhook_payload, WebhookReceiver};

use vigil_event::Level;

use crate::guard::Guard;
use crate::routing::RouteConfig;
use crate::{
    redacted_url, DeliveryError, MessageFormat, Notification, NotificationKind, NotifyConfig,
    NotifyError, Receiver, WebhookConfig,
};

/// Every configured receiver, ready to send: `[[notify.receivers]]` first, then one per
/// `[[notify.webhooks]]`.
pub fn build(config: &NotifyConfig) -> Result<Vec<Arc<dyn Receiver>>, NotifyError> {
    let context = Context {
        ui_url: config
            .ui_url
            .as_ref()
            .map(|url| url.trim_end_matches('/').to_owned()),
        timeout: Duration::from_millis(config.timeout_ms),
    };
    let mut receivers: Vec<Arc<dyn Receiver>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for receiver in config
        .receivers
        .iter()
        .cloned()
        .chain(legacy_receivers(config))
    {
        let name = receiver.name().to_owned();
        let invalid = |reason: String| NotifyError::Invalid {
            webhook: name.clone(),
            reason,
        };
        if name.trim().is_empty() {
            return Err(invalid("a receiver needs a name".into()));
        }
        if names.contains(&name) {
            return Err(invalid("two receivers (or webhooks) have this name".into()));
        }
        names.push(name.clone());
        let built: Arc<dyn Receiver> = match &receiver {
            ReceiverConfig::Webhook(c) => {
                Arc::new(WebhookReceiver::new(c, &context).map_err(invalid)?)
            }
            ReceiverConfig::Slack(c) => Arc::new(SlackReceiver::new(c, &context).map_err(invalid)?),
            ReceiverConfig::PagerDuty(c) => {
                Arc::new(PagerDutyReceiver::new(c, &context).map_err(invalid)?)
            }
            ReceiverConfig::Email(c) => Arc::new(EmailReceiver::new(c, &context).map_err(invalid)?),
        };
        receivers.push(built);
    }
    Ok(receivers)
}

/// The receiver each `[[notify.webhooks]]` entry becomes, under the same name: a webhook
/// receiver for `format = "json"`, a Slack one for `format = "slack"`. Its filters become a
/// route (see [`route_tree`]).
pub fn legacy_receivers(config: &NotifyConfig) -> Vec<ReceiverConfig> {
    config
        .webhooks
        .iter()
        .map(|webhook| match webhook.format {
            MessageFormat::Json => ReceiverConfig::Webhook(WebhookReceiverConfig {
                name: webhook.name.clone(),
                url: Some(webhook.url.clone()),
                url_env: None,
                url_file: None,
                headers: webhook.headers.clone(),
                headers_env: Default::default(),
                secret_env: None,
                secret_file: None,
                allow_link_local: false,
            }),
            MessageFormat::Slack => ReceiverConfig::Slack(SlackReceiverConfig {
                name: webhook.name.clone(),
                url: Some(webhook.url.clone()),
                url_env: None,
                url_file: None,
                allow_link_local: false,
            }),
        })
        .collect()
}

/// The routing tree the dispatcher runs: `[notify.route]` with one child route put first per
/// `[[notify.webhooks]]` entry ([`RouteConfig::legacy_webhook`]: its level, rules and tags as
/// matchers, its receiver of the same name, `continue = true`), so that the old webhooks keep
/// getting what they wanted beside whatever the new routes send.
pub fn route_tree(config: &NotifyConfig) -> RouteConfig {
    let mut root = config.route.clone();
    // First, and continuing: a configured route that stops matching cannot starve them.
    let legacy = config.webhooks.iter().map(|webhook: &WebhookConfig| {
        RouteConfig::legacy_webhook(
            &webhook.name,
            webhook.min_level,
            &webhook.rules,
            &webhook.tags,
        )
    });
    root.routes = legacy.chain(root.routes).collect();
    root
}

/// What every receiver is built with.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The UI's base address without a trailing slash.
    pub ui_url: Option<String>,
    pub timeout: Duration,
}

impl Context {
    /// The page of the group's newest alert, when the UI's address is configured.
    pub fn alert_page(&self, notification: &Notification) -> Option<String> {
        let base = self.ui_url.as_ref()?;
        match notification.alerts.first() {
            Some(alert) => Some(format!("{base}/alerts/{}", alert.id)),
            None => Some(format!("{base}/alerts")),
        }
    }
}

/// Checks a receiver's URL: it parses, is http or https, and passes the guard.
pub(crate) fn checked_url(url: &str, guard: &Guard) -> Result<reqwest::Url, String> {
    let shown = redacted_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {shown}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url {shown}: only http and https are supported"));
    }
    guard
        .check_url(&parsed)
        .map_err(|e| format!("url {shown}: {e}"))?;
    Ok(parsed)
}

/// A guarded HTTP client with the receivers' timeout.
pub(crate) fn client(guard: &Guard, context: &Context) -> Result<reqwest::Client, String> {
    guard
        .client_builder()
        .timeout(context.timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Posts a JSON body and says what its answer means for a retry.
pub(crate) async fn post_json(
    request: reqwest::RequestBuilder,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::Transient(crate::describe(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(DeliveryError::Transient(format!(
            "answered {status}: {body}"
        )))
    } else {
        Err(DeliveryError::Rejected {
            status: status.as_u16(),
            body,
        })
    }
}

/// The highest level among the alerts carried.
pub(crate) fn level(notification: &Notification) -> Level {
    notification
        .alerts
        .iter()
        .map(|alert| alert.level)
        .max()
        .unwrap_or(Level::Informational)
}

/// The newest alert's rule title, which names what the group is about.
pub(crate) fn title(notification: &Notification) -> &str {
    notification
        .alerts
        .first()
        .map_or("alert group", |alert| alert.rule_title.as_str())
}

/// The rule ids of the alerts carried, each once, newest first.
pub(crate) fn rule_ids(notification: &Notification) -> Vec<&str> {
    let mut rules: Vec<&str> = Vec::new();
    for alert in &notification.alerts {
        if !rules.contains(&alert.rule_id.as_str()) {
            rules.push(&alert.rule_id);
        }
    }
    rules
}

pub(crate) fn kind_word(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Firing => "firing",
        NotificationKind::Acknowledged => "acknowledged",
        NotificationKind::Resolved => "resolved",
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Control characters (line breaks included) as spaces: attacker text on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use vigil_event::{Alert, Level, LogSource, Source};

    use crate::{Notification, NotificationKind};

    pub fn alert(rule: &str, title: &str, level: Level, group: &[(&str, &str)]) -> Alert {
        let time = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        let group: BTreeMap<String, String> = group
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Alert {
            id: Alert::derive_id(rule, &[]),
            rule_id: rule.into(),
            rule_title: title.into(),
            level,
            tags: vec!["attack.t1562".into()],
            event_ids: vec![],
            time,
            detected: time,
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail-eu".into(),
            },
            logsource: LogSource {
                product: Some("aws".into()),
                service: Some("cloudtrail".into()),
                category: None,
            },
            group,
            matched: Vec::new(),
            event_position: None,
        }
    }

    pub fn notification(kind: NotificationKind, alerts: Vec<Alert>) -> Notification {
        let group = alerts.first().map(|a| a.group.clone()).unwrap_or_default();
        Notification {
            id: "n-0123456789abcdef".into(),
            receiver: "r".into(),
            group_key: "root/{user=\"alice\"}".into(),
            group,
            kind,
            total_alerts: alerts.len() as u64 + 2,
            new_alerts: 1,
            alerts,
            created: chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 31, 0).unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(receivers: serde_json::Value, webhooks: serde_json::Value) -> NotifyConfig {
        serde_json::from_value(serde_json::json!({
            "receivers": receivers,
            "webhooks": webhooks,
        }))
        .unwrap()
    }

    fn error(config: &NotifyConfig) -> String {
        match build(config) {
            Ok(_) => panic!("built"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_kind_builds_and_legacy_webhooks_become_receivers() {
        let dir = std::env::temp_dir().join(format!("vigil-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("pd-key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
        let config = config(
            serde_json::json!([
                {"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/h"},
                {"name": "chat", "kind": "slack", "url": "https://hooks.slack.com/services/x"},
                {"name": "pager", "kind": "pagerduty", "routing_key_file": key},
                {"name": "mail", "kind": "email", "host": "127.0.0.1", "port": 2525,
                 "starttls": "none", "from": "Vigil <vigil@example.com>", "to": ["a@example.com"]},
            ]),
            serde_json::json!([
                {"name": "old", "url": "http://127.0.0.1:9/old", "format": "slack",
                 "min_level": "high", "rules": ["r1"]},
            ]),
        );
        let built = build(&config).unwrap();
        let names: Vec<&str> = built.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["hook", "chat", "pager", "mail", "old"]);
        let tree = route_tree(&config);
        assert_eq!(
            tree.routes,
            [RouteConfig::legacy_webhook(
                "old",
                Level::High,
                &["r1".into()],
                &[]
            )]
        );
        assert!(tree.routes[0].continue_matching);
        assert!(matches!(
            &legacy_receivers(&config)[0],
            ReceiverConfig::Slack(s) if s.url.as_deref() == Some("http://127.0.0.1:9/old")
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unusable_receivers_are_refused_by_name_without_their_secrets() {
        let dup = config(
            serde_json::json!([{"name": "a", "kind": "webhook", "url": "http://127.0.0.1/"}]),
            serde_json::json!([{"name": "a", "url": "http://127.0.0.1/"}]),
        );
        assert!(error(&dup).contains("two receivers"), "{}", error(&dup));
        let metadata = config(
            serde_json::json!([{"name": "imds", "kind": "webhook",
                                "url": "http://169.254.169.254/latest/SECRET"}]),
            serde_json::json!([]),
        );
        let text = error(&metadata);
        assert!(
            text.contains("imds") && text.contains("link-local"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
        let allowed = config(
            serde_json::json!([{"name": "imds", "kind": "webhook", "allow_link_local": true,
                                "url": "http://169.254.169.254/latest/"}]),
            serde_json::json!([]),
        );
        assert!(build(&allowed).is_ok());
        let legacy_metadata = config(
            serde_json::json!([]),
            serde_json::json!([{"name": "old", "url": "http://[fd00:ec2::254]/"}]),
        );
        assert!(error(&legacy_metadata).contains("link-local"));
        let no_key = config(
            serde_json::json!([{"name": "pd", "kind": "pagerduty",
                                "routing_key_env": "VIGIL_N3_UNSET_KEY"}]),
            serde_json::json!([]),
        );
        assert!(
            error(&no_key).contains("VIGIL_N3_UNSET_KEY"),
            "{}",
            error(&no_key)
        );
        let bad_header = config(
            serde_json::json!([{"name": "h", "kind": "webhook", "url": "http://127.0.0.1/",
                                "headers": {"X-A": "line\nbreak"}}]),
            serde_json::json!([]),
        );
        assert!(error(&bad_header).contains("X-A"));
        let bad_mail = config(
            serde_json::json!([{"name": "m", "kind": "email", "host": "127.0.0.1",
                                "from": "not an address", "to": ["a@example.com"]}]),
            serde_json::json!([]),
        );
        assert!(error(&bad_mail).contains("from"), "{}", error(&bad_mail));
    }
}
