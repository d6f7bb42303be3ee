//! What `[[notify.receivers]]` says, and the secrets it names.
//!
//! Secrets (HMAC keys, routing keys, passwords, and the URLs of Slack's incoming webhooks,
//! whose path is the credential) come from an environment variable or a file, named by a
//! `*_env` or `*_file` field; config files are copied, committed and printed, environments and
//! secret files less so. An error names the variable or the file, never what it holds, and
//! every `Debug` here leaves secrets out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::redacted_url;

/// The events API PagerDuty's Events v2 integrations take.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One receiver, by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReceiverConfig {
    Webhook(WebhookReceiverConfig),
    Slack(SlackReceiverConfig),
    #[serde(rename = "pagerduty")]
    PagerDuty(PagerDutyReceiverConfig),
    Email(EmailReceiverConfig),
}

impl ReceiverConfig {
    pub fn name(&self) -> &str {
        match self {
            ReceiverConfig::Webhook(c) => &c.name,
            ReceiverConfig::Slack(c) => &c.name,
            ReceiverConfig::PagerDuty(c) => &c.name,
            ReceiverConfig::Email(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverConfig::Webhook(_) => "webhook",
            ReceiverConfig::Slack(_) => "slack",
            ReceiverConfig::PagerDuty(_) => "pagerduty",
            ReceiverConfig::Email(_) => "email",
        }
    }
}

/// Where a URL comes from: inline, or (when it holds a credential) an environment variable or
/// a file. Exactly one.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlSource {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
}

/// Vigil's JSON, signed. See the README for the payload.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReceiverConfig {
    pub name: String,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    /// Sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets: header name → environment variable.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// The HMAC key for `X-Vigil-Signature`; without one, requests are not signed.
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    #[serde(default)]
    pub allow_link_local: bool,
}

/// A Slack incoming webhook, sent Block Kit.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackReceiverConfig {
    pub name: String,
    /// `https://hooks.slack.com/services/...`: the path is the credential, so prefer
    /// `url_env` or `url_file`.
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    #[serde(default)]
    pub allow_link_local: bool,
}

/// A PagerDuty service's Events v2 integration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyReceiverConfig {
    pub name: String,
    /// The events endpoint; PagerDuty's unless a test or a proxy says otherwise.
    #[serde(default = "default_pagerduty_url")]
    pub url: String,
    /// The integration's routing key (32 characters), from the environment or a file.
    pub routing_key_env: Option<String>,
    pub routing_key_file: Option<String>,
    /// The payload's `source`; the newest alert's source name when unset.
    pub source: Option<String>,
    #[serde(default)]
    pub allow_link_local: bool,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// STARTTLS, or no delivery: a server that does not offer it is an error.
    #[default]
    Required,
    /// STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plain text: only for a relay on loopback or a trusted network.
    None,
}

/// Email through an SMTP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailReceiverConfig {
    pub name: String,
    /// The SMTP server's host name (checked against its certificate) or address.
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub starttls: StartTls,
    /// `Vigil <vigil@example.com>`.
    pub from: String,
    pub to: Vec<String>,
    /// The SMTP user, when the server wants one; inline or from the environment.
    pub username: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    /// A PEM file of further root certificates the server's may chain to (a private relay's
    /// CA), trusted besides the public roots.
    pub ca_file: Option<String>,
    /// Adds an HTML part (escaped) beside the plain text.
    #[serde(default)]
    pub html: bool,
    #[serde(default)]
    pub allow_link_local: bool,
}

fn default_pagerduty_url() -> String {
    PAGERDUTY_EVENTS_URL.to_owned()
}

fn default_smtp_port() -> u16 {
    587
}

fn url_for_debug(url: &Option<String>) -> Option<String> {
    url.as_deref().map(redacted_url)
}

impl std::fmt::Debug for WebhookReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiverConfig")
            .field("name", &self.name)
            .field("url", &url_for_debug(&self.url))
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("headers_env", &self.headers_env)
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("allow_link_local", &self.allow_link_local)
            .finish()
    }
}

impl std::fmt::Debug for SlackReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackReceiverConfig")
            .field("name", &self.name)
            .field("url", &url_for_debug(&self.url))
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .field("allow_link_local", &self.allow_link_local)
            .finish()
    }
}

impl std::fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSource")
            .field("url", &url_for_debug(&self.url))
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .finish()
    }
}

/// A secret read from the environment or a file. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(not shown)")
    }
}

/// Reads the secret `what` from the variable `env` or the file `file` (one of them; neither
/// gives `None`). A file's trailing newline is not part of the secret. Errors name the
/// variable or the file and say what is wrong, never the value.
pub fn load_secret(
    what: &str,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<Option<Secret>, String> {
    let value = match (env, file) {
        (Some(_), Some(_)) => {
            return Err(format!("{what}: give {what}_env or {what}_file, not both"))
        }
        (None, None) => return Ok(None),
        (Some(variable), None) => match std::env::var(variable) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!(
                    "{what}: the environment variable {variable} is not set"
                ))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!(
                    "{what}: the environment variable {variable} is not UTF-8"
                ))
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) => value.trim_end_matches(['\r', '\n']).to_owned(),
            // The io error's text is the OS's (not found, permission denied): no content.
            Err(e) => return Err(format!("{what}: cannot read the file {path}: {e}")),
        },
    };
    if value.trim().is_empty() {
        let from = env.map_or_else(
            || format!("the file {}", file.unwrap_or_default()),
            |v| format!("the environment variable {v}"),
        );
        return Err(format!("{what}: {from} is empty"));
    }
    Ok(Some(Secret(value)))
}

/// The URL from `url`, `url_env` or `url_file`: exactly one of them.
pub fn load_url(source: &UrlSource) -> Result<Secret, String> {
    let from_secret = load_secret("url", source.url_env.as_deref(), source.url_file.as_deref())?;
    match (&source.url, from_secret) {
        (Some(_), Some(_)) => Err("give url, url_env or url_file, only one".into()),
        (Some(url), None) => Ok(Secret(url.clone())),
        (None, Some(url)) => Ok(Secret(url.expose().trim().to_owned())),
        (None, None) => Err("a url is needed (url, url_env or url_file)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_errors_name_where_not_what() {
        let dir = std::env::temp_dir().join(format!("vigil-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "TOPSECRET\n").unwrap();
        let path = file.to_str().unwrap();
        let secret = load_secret("routing_key", None, Some(path))
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), "TOPSECRET");
        assert!(!format!("{secret:?}").contains("TOPSECRET"));

        let missing =
            load_secret("routing_key", Some("VIGIL_TEST_UNSET_VARIABLE_N3"), None).unwrap_err();
        assert!(
            missing.contains("VIGIL_TEST_UNSET_VARIABLE_N3"),
            "{missing}"
        );
        let absent = dir.join("absent");
        let unreadable = load_secret("password", None, absent.to_str()).unwrap_err();
        assert!(unreadable.contains("absent"), "{unreadable}");
        std::fs::write(&file, "\n").unwrap();
        let empty = load_secret("password", None, Some(path)).unwrap_err();
        assert!(
            empty.contains("is empty") && empty.contains(path),
            "{empty}"
        );
        assert!(load_secret("secret", Some("A"), Some(path)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn receiver_configs_parse_by_kind_and_hide_their_urls() {
        let config: Vec<ReceiverConfig> = serde_json::from_value(serde_json::json!([
            {"name": "hook", "kind": "webhook", "url": "https://h.example.com/x?token=SECRET",
             "headers": {"Authorization": "Bearer SECRET"}, "secret_env": "HOOK_KEY"},
            {"name": "pager", "kind": "pagerduty", "routing_key_env": "PD"},
            {"name": "mail", "kind": "email", "host": "smtp.example.com", "from": "v@example.com",
             "to": ["oncall@example.com"], "starttls": "opportunistic"},
        ]))
        .unwrap();
        assert_eq!(config[1].kind(), "pagerduty");
        let ReceiverConfig::PagerDuty(pager) = &config[1] else {
            panic!("{config:?}")
        };
        assert_eq!(pager.url, PAGERDUTY_EVENTS_URL);
        let ReceiverConfig::Email(mail) = &config[2] else {
            panic!("{config:?}")
        };
        assert_eq!((mail.port, mail.starttls), (587, StartTls::Opportunistic));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("HOOK_KEY"),
            "{debug}"
        );
        let unknown = serde_json::from_value::<ReceiverConfig>(
            serde_json::json!({"name": "x", "kind": "webhook", "url": "http://a", "secret": "s"}),
        );
        assert!(unknown.is_err(), "an inline secret field is refused");
    }
}
