//! Notifications: Vigil's alerts delivered to the channels on-call engineers watch.
//!
//! A [`Notifier`] holds the configured webhooks. Each webhook routes by level, rule and tag,
//! and speaks either Vigil's JSON or the `{"text": ...}` shape Slack, Mattermost and similar
//! incoming webhooks accept. Delivery is one HTTP POST; the caller (the binary's notify
//! stage) decides what to retry, so this crate owns no bus and no state.
//!
//! Errors say whether trying again can help: a timeout, a refused connection, 429 or a 5xx
//! is [`DeliveryError::Transient`]; any other refusal is [`DeliveryError::Rejected`], which
//! retrying would only repeat.

mod config;
pub mod db;
mod dispatcher;
mod grouping;
pub mod guard;
mod message;
mod notification;
pub mod outbox;
pub mod receivers;
pub mod routing;
pub mod signature;
pub mod silences;

use std::time::Duration;

pub use dispatcher::{Accepted, DispatchError, Dispatcher};
pub use config::{redacted_url, MessageFormat, NotifyConfig, WebhookConfig};
pub use message::{json_message, slack_message};
pub use outbox::{AfterFailure, Delivery, DeliveryState, Outbox, OutboxConfig, OutboxError};
pub use notification::{
    AlertState, AlertStates, Notification, NotificationKind, Receiver, SendFuture,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use vigil_event::Alert;

/// A webhook configuration Vigil cannot use.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook {webhook:?}: {reason}")]
    Invalid { webhook: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver may take it later: no answer, a timeout, 429 or a server error.
    #[error("{0}")]
    Transient(String),
    /// The receiver refused it, and would refuse it again.
    #[error("refused with {status}: {body}")]
    Rejected { status: u16, body: String },
}

/// One configured webhook, ready to send.
#[derive(Debug)]
pub struct Webhook {
    config: WebhookConfig,
    headers: HeaderMap,
}

impl Webhook {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether this webhook wants `alert`: at or above its level, and of its rules and tags
    /// when it names any.
    pub fn wants(&self, alert: &Alert) -> bool {
        let config = &self.config;
        alert.level >= config.min_level
            && (config.rules.is_empty() || config.rules.contains(&alert.rule_id))
            && (config.tags.is_empty()
                || config.tags.iter().any(|wanted| {
                    alert
                        .tags
                        .iter()
                        .any(|tag| tag.eq_ignore_ascii_case(wanted))
                }))
    }
}

/// Sends alerts to the configured webhooks.
#[derive(Debug)]
pub struct Notifier {
    webhooks: Vec<Webhook>,
    client: reqwest::Client,
    ui_url: Option<String>,
}

impl Notifier {
    /// Checks every webhook (names unique, URLs http or https, headers valid) and builds the
    /// client.
    pub fn new(config: &NotifyConfig) -> Result<Self, NotifyError> {
        let mut webhooks: Vec<Webhook> = Vec::with_capacity(config.webhooks.len());
        for webhook in &config.webhooks {
            let invalid = |reason: String| NotifyError::Invalid {
                webhook: webhook.name.clone(),
                reason,
            };
            if webhook.name.trim().is_empty() {
                return Err(invalid("a webhook needs a name".into()));
            }
            if webhooks.iter().any(|w| w.name() == webhook.name) {
                return Err(invalid("two webhooks have this name".into()));
            }
            let url = reqwest::Url::parse(&webhook.url)
                .map_err(|e| invalid(format!("url {}: {e}", webhook.url_for_display())))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!(
                    "url {}: only http and https are supported",
                    webhook.url_for_display()
                )));
            }
            let mut headers = HeaderMap::new();
            for (name, value) in &webhook.headers {
                let mut value = HeaderValue::try_from(value.as_str())
                    .map_err(|e| invalid(format!("header {name}: {e}")))?;
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|e| invalid(format!("header name {name:?}: {e}")))?;
                // Header values carry credentials; keep them out of debug output.
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            webhooks.push(Webhook {
                config: webhook.clone(),
                headers,
            });
        }
        install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the alert (and its headers) somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Notifier {
            webhooks,
            client,
            ui_url: config
                .ui_url
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_owned()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty()
    }

    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// The webhooks that want `alert`.
    pub fn routes<'a>(&'a self, alert: &'a Alert) -> impl Iterator<Item = &'a Webhook> + 'a {
        self.webhooks.iter().filter(move |w| w.wants(alert))
    }

    /// Where the alert's page is, when the UI's address is configured.
    pub fn alert_url(&self, alert: &Alert) -> Option<String> {
        self.ui_url
            .as_ref()
            .map(|base| format!("{base}/alerts/{}", alert.id))
    }

    /// Posts `alert` to `webhook` once. The alert id goes in `Idempotency-Key`, so a receiver
    /// can drop the copy a replay sends.
    pub async fn deliver(&self, webhook: &Webhook, alert: &Alert) -> Result<(), DeliveryError> {
        let url = self.alert_url(alert);
        let body = match webhook.config.format {
            MessageFormat::Json => json_message(alert, url.as_deref()),
            MessageFormat::Slack => slack_message(alert, url.as_deref()),
        };
        let response = self
            .client
            .post(&webhook.config.url)
            .headers(webhook.headers.clone())
            .header("Idempotency-Key", alert.id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| DeliveryError::Transient(describe(&e)))?;
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
}

/// Chooses ring as the process's TLS crypto provider, unless one is chosen already.
///
/// reqwest is built with rustls and no provider of its own (its default would compile
/// aws-lc, a large C library), so every reqwest client in the process, the CLI's and the
/// tests' included, needs this called before it is built.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// reqwest's error with its causes, without the URL (which may hold a secret token, as
/// Slack's do).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    std::iter::successors(std::error::Error::source(error), |e| e.source())
        .fold(what.to_owned(), |text, cause| format!("{text}: {cause}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_event::{Level, LogSource, Source};

    use super::*;

    fn webhook(name: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: "http://127.0.0.1:9/hook".into(),
            format: MessageFormat::Json,
            min_level: Level::Medium,
            rules: vec![],
            tags: vec![],
            headers: BTreeMap::new(),
        }
    }

    fn notifier(webhooks: Vec<WebhookConfig>) -> Result<Notifier, NotifyError> {
        Notifier::new(&NotifyConfig {
            webhooks,
            ..NotifyConfig::default()
        })
    }

    fn alert(level: Level, rule: &str, tags: &[&str]) -> Alert {
        let now = chrono::Utc::now();
        Alert {
            id: Alert::derive_id(rule, &[]),
            rule_id: rule.into(),
            rule_title: "t".into(),
            level,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            event_ids: vec![],
            time: now,
            detected: now,
            source: Source {
                kind: "cloudtrail".into(),
                name: "cloudtrail".into(),
            },
            logsource: LogSource::default(),
            group: BTreeMap::new(),
            matched: Vec::new(),
        }
    }

    #[test]
    fn routes_by_level_rule_and_tag() {
        let mut by_rule = webhook("by-rule");
        by_rule.rules = vec!["r1".into()];
        let mut by_tag = webhook("by-tag");
        by_tag.tags = vec!["attack.T1562".into()];
        by_tag.min_level = Level::Low;
        let notifier = notifier(vec![webhook("all"), by_rule, by_tag]).unwrap();
        let names = |alert: &Alert| -> Vec<String> {
            notifier
                .routes(alert)
                .map(|w| w.name().to_owned())
                .collect()
        };
        assert_eq!(
            names(&alert(Level::High, "r1", &["attack.t1562"])),
            ["all", "by-rule", "by-tag"]
        );
        assert_eq!(names(&alert(Level::High, "r2", &[])), ["all"]);
        assert_eq!(
            names(&alert(Level::Low, "r1", &["attack.t1562"])),
            ["by-tag"]
        );
        assert!(names(&alert(Level::Informational, "r1", &[])).is_empty());
    }

    #[test]
    fn unusable_webhooks_are_refused_by_name() {
        let error = notifier(vec![webhook("a"), webhook("a")]).unwrap_err();
        assert!(error.to_string().contains("two webhooks"), "{error}");
        let mut ftp = webhook("ftp");
        ftp.url = "ftp://example.com/x".into();
        let error = notifier(vec![ftp]).unwrap_err().to_string();
        assert!(
            error.contains("\"ftp\"") && error.contains("http and https"),
            "{error}"
        );
        let mut header = webhook("bad-header");
        header
            .headers
            .insert("Authorization".into(), "line\nbreak".into());
        let error = notifier(vec![header]).unwrap_err().to_string();
        assert!(
            error.contains("bad-header") && error.contains("Authorization"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_worth_retrying_and_says_so_without_the_url() {
        let mut hook = webhook("closed");
        hook.url = "http://127.0.0.1:9/secret-token".into();
        let notifier = notifier(vec![hook]).unwrap();
        let webhook = &notifier.webhooks()[0];
        let error = notifier
            .deliver(webhook, &alert(Level::High, "r1", &[]))
            .await
            .unwrap_err();
        assert!(matches!(error, DeliveryError::Transient(_)), "{error:?}");
        assert!(!error.to_string().contains("secret-token"), "{error}");
    }
}
