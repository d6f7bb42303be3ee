//! The email receiver: SMTP through lettre, with STARTTLS by default.
//!
//! The server's name is resolved through the [guard](crate::guard) at each send and lettre
//! connects to the address it allows; TLS still checks the certificate against the configured
//! name. Rule titles and group values are attacker text: in the subject every control
//! character becomes a space, so a CR/LF cannot start a header of its own (lettre encodes what
//! is left), and in the body they stay on their lines.

use std::fmt::Write as _;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{load_secret, EmailReceiverConfig, Secret, StartTls};
use super::{kind_word, level, one_line, rule_ids, title, truncate, Context};
use crate::guard::Guard;
use crate::{DeliveryError, Notification, Receiver, SendFuture};

/// Sends each notification as one email to the configured recipients.
pub struct EmailReceiver {
    name: String,
    host: String,
    port: u16,
    starttls: StartTls,
    from: Mailbox,
    to: Vec<Mailbox>,
    credentials: Option<(String, Secret)>,
    html: bool,
    /// Root certificates from `ca_file`, as PEM.
    extra_roots: Option<Vec<u8>>,
    guard: Guard,
    context: Context,
}

impl std::fmt::Debug for EmailReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailReceiver")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("authenticates", &self.credentials.is_some())
            .finish()
    }
}

impl EmailReceiver {
    pub(crate) fn new(config: &EmailReceiverConfig, context: &Context) -> Result<Self, String> {
        let guard = Guard::new(config.allow_link_local);
        if config.host.trim().is_empty() {
            return Err("host: the SMTP server is needed".into());
        }
        guard
            .check_host(&config.host)
            .map_err(|e| format!("host: {e}"))?;
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("from {:?}: {e}", config.from))?;
        if config.to.is_empty() {
            return Err("to: at least one recipient is needed".into());
        }
        let to = config
            .to
            .iter()
            .map(|to| to.parse().map_err(|e| format!("to {to:?}: {e}")))
            .collect::<Result<Vec<Mailbox>, String>>()?;
        let username = match (&config.username, &config.username_env) {
            (Some(_), Some(_)) => return Err("give username or username_env, not both".into()),
            (Some(user), None) => Some(user.clone()),
            (None, Some(_)) => load_secret("username", config.username_env.as_deref(), None)?
                .map(|user| user.expose().to_owned()),
            (None, None) => None,
        };
        let password = load_secret(
            "password",
            config.password_env.as_deref(),
            config.password_file.as_deref(),
        )?;
        let credentials = match (username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => return Err("username and password go together".into()),
        };
        if credentials.is_some() && config.starttls == StartTls::None {
            return Err("starttls = \"none\" would send the password in plain text".into());
        }
        let extra_roots = match &config.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file: cannot read the file {path}: {e}"))?;
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("ca_file {path}: not a PEM certificate: {e}"))?;
                Some(pem)
            }
        };
        Ok(EmailReceiver {
            name: config.name.clone(),
            host: config.host.clone(),
            port: config.port,
            starttls: config.starttls,
            from,
            to,
            credentials,
            html: config.html,
            extra_roots,
            guard,
            context: context.clone(),
        })
    }

    fn message(&self, notification: &Notification) -> Result<Message, DeliveryError> {
        let page = self.context.alert_page(notification);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(notification))
            // The notification id makes the Message-ID, so a resend is recognisably the same.
            .message_id(Some(format!(
                "<{}@vigil>",
                message_id_part(&notification.id)
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let text = plain_body(notification, page.as_deref());
        let built = if self.html {
            builder.multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text.clone()))
                    .singlepart(SinglePart::html(html_body(&text))),
            )
        } else {
            builder.header(ContentType::TEXT_PLAIN).body(text)
        };
        built.map_err(|e| DeliveryError::Rejected {
            status: 0,
            body: format!("cannot build the message: {e}"),
        })
    }

    async fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        let addresses = self
            .guard
            .resolve(&self.host, self.port)
            .await
            .map_err(|e| DeliveryError::Transient(e.to_string()))?;
        let address = addresses[0].ip().to_string();
        let tls_parameters = || {
            let mut builder = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.extra_roots {
                // Read and checked at load; a failure here is not worth retrying either.
                let certificate = Certificate::from_pem(pem)
                    .map_err(|e| DeliveryError::Transient(format!("ca_file: {e}")))?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build()
                .map_err(|e| DeliveryError::Transient(format!("TLS: {e}")))
        };
        let tls = match self.starttls {
            StartTls::Required => Tls::Required(tls_parameters()?),
            StartTls::Opportunistic => Tls::Opportunistic(tls_parameters()?),
            StartTls::Implicit => Tls::Wrapper(tls_parameters()?),
            StartTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.context.timeout));
        if let Some((user, password)) = &self.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(builder.build())
    }
}

/// `[Vigil] FIRING high: <title> (3 alerts)`, on one line.
pub fn subject(notification: &Notification) -> String {
    let subject = format!(
        "[Vigil] {} {}: {} ({} alerts)",
        kind_word(notification.kind).to_uppercase(),
        level(notification).as_str(),
        one_line(title(notification)),
        notification.total_alerts,
    );
    truncate(&subject, 200)
}

/// Letters, digits and `-._` of the id, for the Message-ID's left part.
fn message_id_part(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(128)
        .collect()
}

/// The plain-text body: what happened, the group, a link, then each alert carried.
pub fn plain_body(notification: &Notification, alert_page: Option<&str>) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "{} ({}): {}",
        kind_word(notification.kind).to_uppercase(),
        level(notification).as_str(),
        one_line(title(notification))
    );
    let _ = writeln!(body);
    let _ = writeln!(
        body,
        "Rules: {}",
        one_line(&rule_ids(notification).join(", "))
    );
    for (name, value) in &notification.group {
        let _ = writeln!(body, "Group: {} = {}", one_line(name), one_line(value));
    }
    let _ = writeln!(
        body,
        "Alerts: {} in the group, {} new",
        notification.total_alerts, notification.new_alerts
    );
    if let Some(page) = alert_page {
        let _ = writeln!(body, "Open: {page}");
    }
    let _ = writeln!(body);
    for alert in &notification.alerts {
        let _ = writeln!(
            body,
            "- {} [{}] {} (rule {}, source {}, alert {})",
            alert.time.format("%Y-%m-%d %H:%M:%S UTC"),
            alert.level.as_str(),
            one_line(&alert.rule_title),
            one_line(&alert.rule_id),
            one_line(&alert.source.name),
            alert.id,
        );
    }
    let carried = notification.alerts.len() as u64;
    if notification.total_alerts > carried {
        let _ = writeln!(body, "  and {} more", notification.total_alerts - carried);
    }
    let _ = writeln!(body);
    let _ = writeln!(body, "Notification {}", one_line(&notification.id));
    body
}

/// The plain text as HTML, escaped, in a `<pre>`.
fn html_body(text: &str) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body><pre>");
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
    html.push_str("</pre></body></html>");
    html
}

impl Receiver for EmailReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(notification)?;
            let transport = self.transport().await?;
            match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(DeliveryError::Rejected {
                    status: e.status().map_or(0, u16::from),
                    body: truncate(&e.to_string(), 200),
                }),
                Err(e) => Err(DeliveryError::Transient(truncate(&e.to_string(), 200))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use vigil_event::Level;

    use super::super::test_support::{alert, notification};
    use super::*;
    use crate::NotificationKind;

    #[test]
    fn subjects_stay_on_one_line_and_bodies_carry_the_group() {
        let hostile = "Trail\r\nBcc: victim@example.com\r\n\r\nfake body";
        let n = notification(
            NotificationKind::Firing,
            vec![alert(
                "r1",
                hostile,
                Level::High,
                &[("user", "alice\r\nX-Evil: 1")],
            )],
        );
        let subject = subject(&n);
        assert!(!subject.contains(['\r', '\n']), "{subject:?}");
        assert!(
            subject.starts_with("[Vigil] FIRING high: Trail  Bcc:"),
            "{subject}"
        );
        let body = plain_body(&n, Some("https://vigil.example.com/alerts/x"));
        assert!(body.contains("Group: user = alice  X-Evil: 1\n"), "{body}");
        assert!(
            body.contains("Open: https://vigil.example.com/alerts/x"),
            "{body}"
        );
        assert!(body.contains("and 2 more"), "{body}");
        assert_eq!(
            html_body("<b>&"),
            "<!DOCTYPE html><html><body><pre>&lt;b&gt;&amp;</pre></body></html>"
        );
    }
}
