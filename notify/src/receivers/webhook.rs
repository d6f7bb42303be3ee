//! The webhook receiver: Vigil's JSON, signed with HMAC-SHA256 (see [`crate::signature`]).

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::config::{load_secret, load_url, Secret, UrlSource, WebhookReceiverConfig};
use super::{checked_url, client, kind_word, level, post_json, title, Context};
use crate::guard::Guard;
use crate::{signature, Notification, Receiver, SendFuture};

/// Posts each notification as JSON to one URL.
pub struct WebhookReceiver {
    name: String,
    url: reqwest::Url,
    headers: HeaderMap,
    secret: Option<Secret>,
    client: reqwest::Client,
    context: Context,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("name", &self.name)
            .field("url", &crate::config::redacted_url(self.url.as_str()))
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl WebhookReceiver {
    pub(crate) fn new(config: &WebhookReceiverConfig, context: &Context) -> Result<Self, String> {
        let guard = Guard::new(config.allow_link_local);
        let url = load_url(&UrlSource {
            url: config.url.clone(),
            url_env: config.url_env.clone(),
            url_file: config.url_file.clone(),
        })?;
        let url = checked_url(url.expose(), &guard)?;
        let mut headers = HeaderMap::new();
        let from_env = config.headers_env.iter().map(|(name, variable)| {
            load_secret(&format!("header {name}"), Some(variable), None).map(|secret| {
                (
                    name,
                    secret.map(|s| s.expose().to_owned()).unwrap_or_default(),
                )
            })
        });
        let inline = config
            .headers
            .iter()
            .map(|(name, value)| Ok((name, value.clone())));
        for header in inline.chain(from_env) {
            let (name, value) = header?;
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| format!("header {name}: not a valid header value"))?;
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            // Header values carry credentials; keep them out of debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let secret = load_secret(
            "secret",
            config.secret_env.as_deref(),
            config.secret_file.as_deref(),
        )?;
        Ok(WebhookReceiver {
            name: config.name.clone(),
            url,
            headers,
            secret,
            client: client(&guard, context)?,
            context: context.clone(),
        })
    }
}

/// The JSON a webhook receives; the README documents it.
pub fn webhook_payload(notification: &Notification, alert_page: Option<&str>) -> Value {
    json!({
        "type": "vigil.notification",
        "version": 1,
        "id": notification.id,
        "receiver": notification.receiver,
        "kind": kind_word(notification.kind),
        "level": level(notification).as_str(),
        "title": title(notification),
        "group_key": notification.group_key,
        "group": notification.group,
        "total_alerts": notification.total_alerts,
        "new_alerts": notification.new_alerts,
        "created": notification.created,
        "url": alert_page,
        "alerts": notification.alerts,
    })
}

impl Receiver for WebhookReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let page = self.context.alert_page(notification);
            let body = serde_json::to_vec(&webhook_payload(notification, page.as_deref()))
                .unwrap_or_default();
            let mut request = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header("Idempotency-Key", notification.id.as_str());
            if let Some(secret) = &self.secret {
                // Signed at each attempt, so a retry hours later is not refused as stale.
                let now = chrono::Utc::now().timestamp();
                let value = signature::sign(secret.expose().as_bytes(), now, &body);
                request = request.header(signature::HEADER, value);
            }
            post_json(request, body).await
        })
    }
}
