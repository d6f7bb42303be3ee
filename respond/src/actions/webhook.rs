//! `webhook`: templated JSON to a remediation service (one that isolates a Kubernetes pod,
//! disables an account in the identity provider...).
//!
//! ```yaml
//! - action: webhook
//!   url: https://remediate.internal/pods/isolate
//!   headers: { X-Team: secops }
//!   body:
//!     alert: "{{alert.id}}"
//!     pod: "{{event.kubernetes.pod.name}}"
//!     reason: "Vigil: {{alert.rule_title}}"
//! ```
//!
//! The body is a JSON value and placeholders are replaced inside its *strings*, after parsing:
//! a field's value always lands as (part of) a JSON string, so an attacker-written event field
//! cannot add keys or change the document's shape. The URL goes through notify's guard: it may
//! not reach link-local or cloud-metadata addresses, at load and again at every connection.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use vigil_event::{Alert, Event};
use vigil_notify::guard::Guard;

use super::{documents, lookup, Action, ActionError, Executed, Params, PlannedAction};
use crate::RespondConfig;

pub(super) const WEBHOOK: &str = "webhook";

/// A remediation call should answer quickly; the run retries it otherwise.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub(super) struct Webhook {
    url: reqwest::Url,
    headers: BTreeMap<String, String>,
    body: Value,
    client: reqwest::Client,
}

impl Webhook {
    pub(super) fn new(mut params: Params<'_>, config: &RespondConfig) -> Result<Self, String> {
        let url = params.string("url")?.ok_or("`url` is required")?;
        let url = reqwest::Url::parse(&url).map_err(|e| format!("`url`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("`url` must be http or https".into());
        }
        let headers: BTreeMap<String, String> = match params.value("headers") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(value) => serde_json::from_value(value)
                .map_err(|_| "`headers` must map header names to strings".to_owned())?,
        };
        for (name, value) in &headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name:?} is not valid"))?;
        }
        let body = params.value("body").unwrap_or_else(
            || json!({ "alert_id": "{{alert.id}}", "rule_id": "{{alert.rule_id}}" }),
        );
        params.finish()?;
        // A guarded client; the guard for an action is the config's (one switch for all).
        let guard = Guard::new(config.allow_link_local);
        guard.check_url(&url).map_err(|e| e.to_string())?;
        let client = guard
            .client_builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Webhook {
            url,
            headers,
            body,
            client,
        })
    }
}

#[async_trait::async_trait]
impl Action for Webhook {
    fn name(&self) -> &'static str {
        WEBHOOK
    }

    fn plan(&self, alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError> {
        let alert_doc = match serde_json::to_value(alert) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let events = documents(events);
        let body = render(&self.body, &alert_doc, events.first())?;
        Ok(PlannedAction {
            action: WEBHOOK.into(),
            summary: format!("POST a JSON request to {}", self.url),
            params: json!({ "url": self.url.as_str(), "headers": self.headers, "body": body }),
        })
    }

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError> {
        let body = plan.params.get("body").cloned().unwrap_or(Value::Null);
        let mut request = self.client.post(self.url.clone()).json(&body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ActionError::Transient(format!("POST {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Executed {
                result: json!({ "status": status.as_u16() }),
                undo: None,
            });
        }
        let text = format!("POST {} answered {status}", self.url);
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(ActionError::Transient(text))
        } else {
            Err(ActionError::Rejected(text))
        }
    }
}

/// The template with `{{alert.X}}` and `{{event.X}}` replaced inside every string. A missing
/// field is a planning error: a remediation call without its subject would be a wrong call.
fn render(
    template: &Value,
    alert: &Map<String, Value>,
    event: Option<&Map<String, Value>>,
) -> Result<Value, ActionError> {
    Ok(match template {
        Value::String(text) => Value::String(substitute(text, alert, event)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render(item, alert, event))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| Ok((key.clone(), render(value, alert, event)?)))
                .collect::<Result<_, ActionError>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute(
    text: &str,
    alert: &Map<String, Value>,
    event: Option<&Map<String, Value>>,
) -> Result<String, ActionError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| ActionError::Plan(format!("unclosed {{{{ in {text:?}")))?;
        let path = after[..end].trim();
        let value = if let Some(path) = path.strip_prefix("alert.") {
            lookup(alert, path)
        } else if let Some(path) = path.strip_prefix("event.") {
            event.and_then(|doc| lookup(doc, path))
        } else {
            return Err(ActionError::Plan(format!(
                "{{{{{path}}}}}: placeholders start with alert. or event."
            )));
        };
        match value {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {
                return Err(ActionError::Plan(format!(
                    "{{{{{path}}}}} is not in the alert or its newest event"
                )))
            }
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_stay_inside_json_strings() {
        let alert = json!({ "id": "a1", "tags": ["x"] });
        let event = json!({ "user": "\"}, \"admin\": true, \"x\": {\"", "n": 5 });
        let template = json!({ "who": "{{event.user}}", "alert": "id={{alert.id}} n={{event.n}}", "tags": "{{alert.tags}}" });
        let body = render(&template, alert.as_object().unwrap(), event.as_object()).unwrap();
        assert_eq!(body["who"], event["user"]);
        assert_eq!(body["alert"], "id=a1 n=5");
        assert_eq!(body["tags"], "[\"x\"]");
        assert_eq!(body.as_object().unwrap().len(), 3);
        let missing = render(
            &json!("{{event.nope}}"),
            alert.as_object().unwrap(),
            event.as_object(),
        );
        assert!(matches!(missing, Err(ActionError::Plan(_))));
    }

    /// A one-request HTTP receiver on loopback: gives its URL and, once called, the body.
    fn receiver(status: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/isolate", listener.local_addr().unwrap());
        let (sender, bodies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer).unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let reply = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        stream.write_all(reply.as_bytes()).unwrap();
                        sender.send(body.to_owned()).unwrap();
                        return;
                    }
                }
            }
        });
        (url, bodies)
    }

    fn hostile_alert() -> (Alert, Vec<Event>) {
        let time = chrono::Utc::now();
        let record = json!({ "pod": "web-1\", \"namespace\": \"kube-system" });
        let event = Event {
            id: vigil_event::EventId::derive("webhook test", &[b"1"]),
            time,
            received: time,
            source: vigil_event::Source {
                kind: "k8s".into(),
                name: "audit".into(),
            },
            logsource: Default::default(),
            record: vigil_event::Record::json(&record.to_string()).unwrap(),
            fields: Default::default(),
        };
        let alert = Alert {
            id: Alert::derive_id("pod-exec", &[event.id]),
            rule_id: "pod-exec".into(),
            rule_title: "Exec into a pod".into(),
            level: vigil_event::Level::High,
            tags: vec![],
            event_ids: vec![event.id],
            time,
            detected: time,
            source: event.source.clone(),
            logsource: Default::default(),
            group: Default::default(),
            matched: vec![],
            event_position: None,
        };
        (alert, vec![event])
    }

    #[tokio::test]
    async fn the_planned_body_is_posted_with_attacker_text_inside_its_strings() {
        let (url, bodies) = receiver("200 OK");
        let values: BTreeMap<String, Value> = [
            ("url".to_owned(), json!(url)),
            ("headers".to_owned(), json!({ "X-Team": "secops" })),
            (
                "body".to_owned(),
                json!({ "pod": "{{event.pod}}", "alert": "{{alert.id}}", "namespace": "default" }),
            ),
        ]
        .into();
        let webhook = Webhook::new(Params::new(&values), &RespondConfig::default()).unwrap();
        let (alert, events) = hostile_alert();
        let plan = webhook.plan(&alert, &events).unwrap();
        let executed = webhook.execute(&plan).await.unwrap();
        assert_eq!(executed.result["status"], 200);
        let body: Value = serde_json::from_str(&bodies.recv().unwrap()).unwrap();
        assert_eq!(body["pod"], "web-1\", \"namespace\": \"kube-system");
        assert_eq!(body["namespace"], "default");
        assert_eq!(body["alert"], alert.id.to_string());
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_a_server_error_is() {
        for (status, transient) in [
            ("400 Bad Request", false),
            ("503 Service Unavailable", true),
        ] {
            let (url, _bodies) = receiver(status);
            let values: BTreeMap<String, Value> = [("url".to_owned(), json!(url))].into();
            let webhook = Webhook::new(Params::new(&values), &RespondConfig::default()).unwrap();
            let (alert, events) = hostile_alert();
            let plan = webhook.plan(&alert, &events).unwrap();
            let error = webhook.execute(&plan).await.unwrap_err();
            assert_eq!(error.is_transient(), transient, "{status}: {error}");
        }
    }

    #[test]
    fn metadata_urls_are_refused() {
        let values: BTreeMap<String, Value> = [(
            "url".to_owned(),
            json!("http://169.254.169.254/latest/meta-data/"),
        )]
        .into();
        let error = Webhook::new(Params::new(&values), &RespondConfig::default())
            .err()
            .unwrap();
        assert!(error.contains("link-local"), "{error}");
    }
}
