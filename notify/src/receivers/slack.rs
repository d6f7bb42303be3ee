//! The Slack receiver: an incoming webhook sent Block Kit, with a `text` fallback for
//! notifications and clients that do not show blocks.
//!
//! Rule titles, sources and group values come from events an attacker may write. In Slack's
//! markup `<...>` makes a link or a mention (`<!channel>`), so `&`, `<` and `>` are escaped in
//! every text field, and values shown in code spans lose their backticks and line breaks.
//! Block Kit's length limits are kept (a header's 150 characters, a field's 2000), since Slack
//! refuses the whole message over any of them.

use serde_json::{json, Value};

use super::config::{load_url, SlackReceiverConfig, UrlSource};
use super::{checked_url, client, kind_word, level, post_json, rule_ids, title, truncate, Context};
use crate::guard::Guard;
use crate::message::{escape, escape_code};
use crate::{Notification, NotificationKind, Receiver, SendFuture};

/// Posts each notification to a Slack incoming webhook.
pub struct SlackReceiver {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    context: Context,
}

impl std::fmt::Debug for SlackReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackReceiver")
            .field("name", &self.name)
            .field("url", &crate::config::redacted_url(self.url.as_str()))
            .finish()
    }
}

impl SlackReceiver {
    pub(crate) fn new(config: &SlackReceiverConfig, context: &Context) -> Result<Self, String> {
        let guard = Guard::new(config.allow_link_local);
        let url = load_url(&UrlSource {
            url: config.url.clone(),
            url_env: config.url_env.clone(),
            url_file: config.url_file.clone(),
        })?;
        Ok(SlackReceiver {
            name: config.name.clone(),
            url: checked_url(url.expose(), &guard)?,
            client: client(&guard, context)?,
            context: context.clone(),
        })
    }
}

/// A mrkdwn field of a section: a bold label over its value.
fn field(label: &str, value: String) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), 2000)})
}

/// The Block Kit message for `notification`.
pub fn slack_blocks(notification: &Notification, alert_page: Option<&str>) -> Value {
    let level = level(notification).as_str().to_uppercase();
    let what = match notification.kind {
        NotificationKind::Firing => "Firing",
        NotificationKind::Acknowledged => "Acknowledged",
        NotificationKind::Resolved => "Resolved",
    };
    let title = escape(title(notification));
    let header = truncate(&format!("[{level}] {what}: {title}"), 150);
    let counts = format!(
        "{} in the group, {} new",
        notification.total_alerts, notification.new_alerts
    );
    let rules: Vec<String> = rule_ids(notification)
        .iter()
        .map(|rule| format!("`{}`", escape_code(rule)))
        .collect();
    let group: Vec<String> = notification
        .group
        .iter()
        .map(|(name, value)| format!("{}=`{}`", escape_code(name), escape_code(value)))
        .collect();
    let mut fields = vec![
        field("Level", level.clone()),
        field("Status", kind_word(notification.kind).to_owned()),
        field(
            "Rule",
            if rules.is_empty() {
                "-".into()
            } else {
                rules.join(", ")
            },
        ),
        field("Alerts", counts.clone()),
    ];
    if !group.is_empty() {
        fields.push(field("Group", group.join("\n")));
    }
    if let Some(alert) = notification.alerts.first() {
        fields.push(field(
            "Source",
            format!(
                "{} ({})",
                escape_code(&alert.source.name),
                escape_code(&alert.source.kind)
            ),
        ));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": false}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(page) = alert_page {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in Vigil"},
                "url": page,
                "action_id": "open_alert",
            }],
        }));
    }
    let headline = match alert_page {
        // The URL is ours (the configured base and a hex id); the title inside is escaped.
        Some(page) => format!("<{page}|{title}>"),
        None => title,
    };
    let text = truncate(&format!("*[{level}] {what}:* {headline} ({counts})"), 3000);
    json!({ "text": text, "blocks": blocks })
}

impl Receiver for SlackReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let page = self.context.alert_page(notification);
            let body = serde_json::to_vec(&slack_blocks(notification, page.as_deref()))
                .unwrap_or_default();
            // Slack's incoming webhooks take no idempotency key; the header costs nothing
            // and serves the Slack-compatible receivers that read it.
            let request = self
                .client
                .post(self.url.clone())
                .header("Idempotency-Key", notification.id.as_str());
            post_json(request, body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use vigil_event::Level;

    use super::super::test_support::{alert, notification};
    use super::*;

    #[test]
    fn hostile_text_stays_text_in_every_block() {
        let hostile = "<!channel> <https://evil.example|click> & `x`\n*[CRITICAL]* fake";
        let alerts = vec![alert(
            "rule-<!here>",
            hostile,
            Level::High,
            &[("user<@U1>", hostile)],
        )];
        let message = slack_blocks(
            &notification(NotificationKind::Firing, alerts),
            Some("https://vigil.example.com/alerts/ab"),
        );
        let rendered = message.to_string();
        for mention in ["<!channel>", "<!here>", "<@U1>", "<https://evil"] {
            assert!(!rendered.contains(mention), "{mention} in {rendered}");
        }
        let header = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            header.starts_with("[HIGH] Firing: &lt;!channel&gt;"),
            "{header}"
        );
        assert!(header.chars().count() <= 150);
        let fields = message["blocks"][1]["fields"].as_array().unwrap();
        let group = fields
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .find(|t| t.starts_with("*Group*"))
            .unwrap();
        // One line: a value's newline cannot fake a further field.
        assert_eq!(group.lines().count(), 2, "{group}");
        assert!(group.contains("&amp; 'x' *[CRITICAL]* fake`"), "{group}");
        let button = &message["blocks"][2]["elements"][0];
        assert_eq!(button["url"], "https://vigil.example.com/alerts/ab");
        let text = message["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "*[HIGH] Firing:* <https://vigil.example.com/alerts/ab|&lt;!channel&gt;"
            ),
            "{text}"
        );
    }

    #[test]
    fn counts_and_no_button_without_a_ui_address() {
        let alerts = vec![alert("r1", "Trail stopped", Level::Critical, &[])];
        let message = slack_blocks(&notification(NotificationKind::Resolved, alerts), None);
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2, "{message}");
        let fields = message["blocks"][1]["fields"].to_string();
        assert!(fields.contains("3 in the group, 1 new"), "{fields}");
        assert!(
            fields.contains("resolved") && fields.contains("`r1`"),
            "{fields}"
        );
        assert_eq!(
            message["text"],
            "*[CRITICAL] Resolved:* Trail stopped (3 in the group, 1 new)"
        );
    }
}
