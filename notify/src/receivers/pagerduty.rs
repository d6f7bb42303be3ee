//! The PagerDuty receiver: Events v2 (`POST /v2/enqueue`).
//!
//! A group firing triggers an incident, acknowledging every alert of it in Vigil acknowledges
//! the incident, and closing them resolves it. The `dedup_key` is the group key, so every
//! notification about one group lands on one incident. PagerDuty answers 202 when it takes an
//! event, 400 when the event is malformed (retrying would not help), and 429 or 5xx when it
//! is busy.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vigil_event::Level;

use super::config::{load_secret, PagerDutyReceiverConfig, Secret};
use super::{checked_url, client, level, post_json, rule_ids, title, truncate, Context};
use crate::guard::Guard;
use crate::{Notification, NotificationKind, Receiver, SendFuture};

/// PagerDuty's limit on `dedup_key`.
const MAX_DEDUP_KEY: usize = 255;
/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY: usize = 1024;
/// A bound for the payload's shorter fields (`source`, `component`, `group`, `class`), which
/// carry attacker-chosen titles.
const MAX_FIELD: usize = 255;

/// Sends Events v2 events to one PagerDuty integration.
pub struct PagerDutyReceiver {
    name: String,
    url: reqwest::Url,
    routing_key: Secret,
    source: Option<String>,
    client: reqwest::Client,
    context: Context,
}

impl std::fmt::Debug for PagerDutyReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyReceiver")
            .field("name", &self.name)
            .field("url", &crate::config::redacted_url(self.url.as_str()))
            .field("routing_key", &self.routing_key)
            .finish()
    }
}

impl PagerDutyReceiver {
    pub(crate) fn new(config: &PagerDutyReceiverConfig, context: &Context) -> Result<Self, String> {
        let guard = Guard::new(config.allow_link_local);
        let routing_key = load_secret(
            "routing_key",
            config.routing_key_env.as_deref(),
            config.routing_key_file.as_deref(),
        )?
        .ok_or("a routing key is needed (routing_key_env or routing_key_file)")?;
        Ok(PagerDutyReceiver {
            name: config.name.clone(),
            url: checked_url(&config.url, &guard)?,
            routing_key,
            source: config.source.clone(),
            client: client(&guard, context)?,
            context: context.clone(),
        })
    }
}

/// PagerDuty's severity for a Vigil level.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "error",
        Level::Medium => "warning",
        Level::Low | Level::Informational => "info",
    }
}

/// The group key, or its SHA-256 when it is over PagerDuty's 255 characters.
pub fn dedup_key(group_key: &str) -> String {
    if group_key.len() <= MAX_DEDUP_KEY {
        return group_key.to_owned();
    }
    let digest = Sha256::digest(group_key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("vigil-sha256:{hex}")
}

/// The Events v2 event for `notification`. Acknowledge and resolve events carry only the
/// routing and dedup keys, which is all PagerDuty reads of them.
pub fn pagerduty_event(
    notification: &Notification,
    routing_key: &str,
    source: Option<&str>,
    alert_page: Option<&str>,
) -> Value {
    let action = match notification.kind {
        NotificationKind::Firing => "trigger",
        NotificationKind::Acknowledged => "acknowledge",
        NotificationKind::Resolved => "resolve",
    };
    let mut event = Map::new();
    event.insert("routing_key".into(), json!(routing_key));
    event.insert("event_action".into(), json!(action));
    event.insert(
        "dedup_key".into(),
        json!(dedup_key(&notification.group_key)),
    );
    if notification.kind != NotificationKind::Firing {
        return Value::Object(event);
    }
    let newest = notification.alerts.first();
    let level = level(notification);
    let group: Vec<String> = notification
        .group
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut summary = format!(
        "[{}] {}",
        level.as_str().to_uppercase(),
        title(notification)
    );
    if !group.is_empty() {
        summary.push_str(&format!(" ({})", group.join(", ")));
    }
    summary.push_str(&format!(
        ": {} alerts, {} new",
        notification.total_alerts, notification.new_alerts
    ));
    let source = source
        .map(str::to_owned)
        .or_else(|| newest.map(|alert| alert.source.name.clone()))
        .filter(|source| !source.trim().is_empty())
        .unwrap_or_else(|| "vigil".to_owned());
    let component = newest.and_then(|alert| {
        alert
            .logsource
            .service
            .clone()
            .or_else(|| alert.logsource.product.clone())
    });
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|alert| {
            json!({
                "id": alert.id,
                "rule_id": alert.rule_id,
                "level": alert.level.as_str(),
                "time": alert.time,
                "group": alert.group,
            })
        })
        .collect();
    let mut payload = json!({
        "summary": truncate(&summary, MAX_SUMMARY),
        "source": truncate(&source, MAX_FIELD),
        "severity": severity(level),
        "timestamp": newest.map_or(notification.created, |alert| alert.time).to_rfc3339(),
        "group": truncate(&rule_ids(notification).join(","), MAX_FIELD),
        "class": truncate(title(notification), MAX_FIELD),
        "custom_details": {
            "notification_id": notification.id,
            "group_key": notification.group_key,
            "group": notification.group,
            "total_alerts": notification.total_alerts,
            "new_alerts": notification.new_alerts,
            "tags": newest.map(|alert| alert.tags.clone()).unwrap_or_default(),
            "alerts": alerts,
        },
    });
    if let Some(component) = component {
        payload["component"] = json!(truncate(&component, MAX_FIELD));
    }
    event.insert("payload".into(), payload);
    event.insert("client".into(), json!("Vigil"));
    if let Some(page) = alert_page {
        event.insert("client_url".into(), json!(page));
        event.insert(
            "links".into(),
            json!([{"href": page, "text": "Open the alert in Vigil"}]),
        );
    }
    Value::Object(event)
}

impl Receiver for PagerDutyReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let page = self.context.alert_page(notification);
            let event = pagerduty_event(
                notification,
                self.routing_key.expose(),
                self.source.as_deref(),
                page.as_deref(),
            );
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let request = self.client.post(self.url.clone());
            post_json(request, body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{alert, notification};
    use super::*;

    #[test]
    fn kinds_map_to_actions_and_levels_to_severities() {
        let alerts = vec![
            alert("r1", "Trail stopped", Level::Medium, &[("user", "alice")]),
            alert("r2", "Root login", Level::High, &[("user", "alice")]),
        ];
        let firing = pagerduty_event(
            &notification(NotificationKind::Firing, alerts.clone()),
            "KEY",
            None,
            Some("https://vigil.example.com/alerts/1"),
        );
        assert_eq!(firing["event_action"], "trigger");
        assert_eq!(firing["dedup_key"], "root/{user=\"alice\"}");
        assert_eq!(firing["payload"]["severity"], "error");
        assert_eq!(firing["payload"]["source"], "trail-eu");
        assert_eq!(firing["payload"]["component"], "cloudtrail");
        assert_eq!(firing["payload"]["group"], "r1,r2");
        assert_eq!(
            firing["links"][0]["href"],
            "https://vigil.example.com/alerts/1"
        );
        assert_eq!(
            firing["payload"]["summary"],
            "[HIGH] Trail stopped (user=alice): 4 alerts, 1 new"
        );
        for (kind, action) in [
            (NotificationKind::Acknowledged, "acknowledge"),
            (NotificationKind::Resolved, "resolve"),
        ] {
            let event = pagerduty_event(&notification(kind, alerts.clone()), "KEY", None, None);
            assert_eq!(event["event_action"], action);
            assert_eq!(event["dedup_key"], firing["dedup_key"]);
            assert!(event.get("payload").is_none(), "{event}");
        }
        assert_eq!(
            Level::ALL.map(severity),
            ["info", "info", "warning", "error", "critical"]
        );
    }

    #[test]
    fn long_keys_and_summaries_fit_pagerdutys_limits() {
        let long = "v".repeat(3000);
        let mut n = notification(
            NotificationKind::Firing,
            vec![alert("r1", &long, Level::Low, &[])],
        );
        n.group_key = long.clone();
        let event = pagerduty_event(&n, "KEY", Some("edge-1"), None);
        let key = event["dedup_key"].as_str().unwrap();
        assert!(
            key.len() <= MAX_DEDUP_KEY && key.starts_with("vigil-sha256:"),
            "{key}"
        );
        assert_eq!(key, dedup_key(&long), "stable");
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), MAX_SUMMARY);
        assert_eq!(event["payload"]["source"], "edge-1");
    }
}
