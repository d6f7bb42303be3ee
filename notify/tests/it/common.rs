//! An HTTP receiver on loopback that records what it is sent, and notifications to send it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::TimeZone;
use vigil_event::{Alert, Level, LogSource, Source};
use vigil_notify::{Notification, NotificationKind, NotifyConfig, Receiver};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Decides the answer to one request.
pub type Answer = Arc<dyn Fn(&Recorded) -> Response + Send + Sync>;

/// A receiver on an ephemeral loopback port; dropped with the test's runtime.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl HttpReceiver {
    pub async fn start(answer: Answer) -> HttpReceiver {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorded = requests.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            let answer = answer.clone();
            async move {
                let request = Recorded { headers, body };
                let response = answer(&request);
                recorded.lock().unwrap().push(request);
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpReceiver { addr, requests }
    }

    /// A receiver that answers every request with `status`.
    pub async fn answering(status: StatusCode) -> HttpReceiver {
        HttpReceiver::start(Arc::new(move |_| status.into_response())).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn alert(rule: &str, title: &str, level: Level, group: &[(&str, &str)]) -> Alert {
    let time = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
    Alert {
        id: Alert::derive_id(rule, &[]),
        rule_id: rule.into(),
        rule_title: title.into(),
        level,
        tags: vec!["attack.t1078".into()],
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
        group: group
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        matched: Vec::new(),
        event_position: None,
    }
}

pub fn notification(id: &str, kind: NotificationKind, alerts: Vec<Alert>) -> Notification {
    let group: BTreeMap<String, String> =
        alerts.first().map(|a| a.group.clone()).unwrap_or_default();
    Notification {
        id: id.into(),
        receiver: "test".into(),
        group_key: "{}/{user=\"alice\"}".into(),
        group,
        kind,
        total_alerts: alerts.len() as u64,
        new_alerts: 1,
        alerts,
        created: chrono::Utc::now(),
    }
}

/// The receivers `[notify]` builds, from its TOML-shaped JSON.
pub fn build(notify: serde_json::Value) -> Vec<Arc<dyn Receiver>> {
    let config: NotifyConfig = serde_json::from_value(notify).expect("a notify config");
    vigil_notify::receivers::build(&config).expect("receivers")
}

/// A file holding `secret` in a temporary directory, kept while the directory lives.
pub fn secret_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}
