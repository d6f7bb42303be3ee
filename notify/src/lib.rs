//! Notifications: Vigil's alerts delivered to the channels on-call engineers watch.
//!
//! The [`Dispatcher`] routes each alert down the tree of `[notify.route]`, drops what a
//! silence or an inhibition rule covers, and gathers the rest into groups, which it turns into
//! [`Notification`]s when their timers say so. The [`Outbox`] keeps each notification until
//! its receiver took it; the receivers ([`receivers`]: webhook, Slack, PagerDuty, email) each
//! speak one channel behind the [`Receiver`] trait. State lives in `notify.sqlite`; the binary's
//! notify stage drives it, so this crate owns no bus.
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

pub use config::{redacted_url, MessageFormat, NotifyConfig, WebhookConfig};
pub use dispatcher::{Accepted, DispatchError, Dispatcher};
pub use notification::{
    AlertState, AlertStates, Notification, NotificationKind, Receiver, SendFuture,
};
pub use outbox::{AfterFailure, Delivery, DeliveryState, Outbox, OutboxConfig, OutboxError};

/// A `[notify]` configuration Vigil cannot use.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook {webhook:?}: {reason}")]
    Invalid { webhook: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{0}")]
    Config(String),
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

/// Checks all of `[notify]` without opening or sending anything: every receiver (names,
/// URLs past the guard, headers, secrets present), the routing tree and the inhibition rules,
/// that each route names receivers that exist (a route to a missing receiver would hold its
/// pages in the outbox for ever), and the outbox's settings.
pub fn check(config: &NotifyConfig) -> Result<(), NotifyError> {
    let receivers = receivers::build(config)?;
    let tree = routing::RouteTree::new(&receivers::route_tree(config))
        .map_err(|error| NotifyError::Config(error.to_string()))?;
    silences::InhibitRule::compile(&config.inhibit)
        .map_err(|error| NotifyError::Config(error.to_string()))?;
    let missing: Vec<String> = tree
        .receiver_names()
        .into_iter()
        .filter(|name| !receivers.iter().any(|receiver| receiver.name() == name))
        .collect();
    // The root route with no receivers and nothing configured is the default: nothing to send.
    if !missing.is_empty() {
        return Err(NotifyError::Config(format!(
            "notify.route names receivers that are not configured in [[notify.receivers]] or \
             [[notify.webhooks]]: {}",
            missing.join(", ")
        )));
    }
    config.outbox.check().map_err(NotifyError::Config)
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
    use figment::providers::{Format, Toml};

    use super::*;

    fn notify(toml_text: &str) -> NotifyConfig {
        figment::Figment::from(Toml::string(toml_text))
            .extract()
            .expect("the test's TOML")
    }

    #[test]
    fn a_route_to_a_receiver_nobody_configured_is_refused_before_start() {
        let receivers = r#"
            [[receivers]]
            name = "chat"
            kind = "webhook"
            url = "http://127.0.0.1:9/hook"
        "#;
        let good = notify(&format!("{receivers}\n[route]\nreceivers = [\"chat\"]\n"));
        check(&good).expect("a route to a configured receiver");
        let bad = notify(&format!(
            "{receivers}\n[route]\nreceivers = [\"chat\"]\n[[route.routes]]\nreceivers = [\"pager\"]\n"
        ));
        let error = check(&bad).unwrap_err().to_string();
        assert!(
            error.contains("pager") && !error.contains("chat,"),
            "{error}"
        );
    }
}
