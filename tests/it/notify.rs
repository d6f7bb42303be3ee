//! Alerts delivered to webhooks: routing, formats, outages and a crash of Vigil itself.
//!
//! The receivers are small HTTP servers in this process, so each test sees exactly what
//! Vigil sent, and can answer with errors on purpose.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{wait_for, Vigil};
use serde_json::Value;

const TRAIL_STOPPED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

/// One request a receiver got, and the status it answered.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
    /// The body as sent, to check a signature over.
    pub(crate) raw: Vec<u8>,
    pub(crate) status: u16,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on a free loopback port. It answers every request with `status`
/// (settable while running) and records what came.
pub(crate) struct Receiver {
    pub(crate) url: String,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (status.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (answer, log) = (answer.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &answer, &log));
            }
        });
        Receiver {
            url,
            status,
            received,
        }
    }

    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The alert ids this receiver accepted (answered 2xx).
    pub(crate) fn accepted_ids(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| r.status < 300)
            .map(|r| r.header("idempotency-key").unwrap_or_default().to_owned())
            .collect()
    }
}

/// One request per connection: enough for a test, and `Connection: close` tells the client.
fn serve(stream: TcpStream, answer: &AtomicU16, log: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap();
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let status = answer.load(Ordering::SeqCst);
    log.lock().unwrap().push(Received {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body,
        status,
    });
    let reply = if status < 300 { "ok" } else { "not now" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// CloudTrail records: `stops` trails stopped (each a high alert) among routine calls.
pub(crate) fn cloudtrail(first: usize, stops: usize) -> String {
    (first..first + stops * 3)
        .map(|seq| {
            let name = if seq % 3 == 0 { "StopLogging" } else { "DescribeTrails" };
            format!(
                concat!(
                    "{{\"eventVersion\":\"1.09\",\"userIdentity\":{{\"type\":\"IAMUser\",",
                    "\"arn\":\"arn:aws:iam::123456789012:user/ops\",\"userName\":\"ops\"}},",
                    "\"eventTime\":\"2026-11-28T10:00:{:02}Z\",\"eventSource\":\"cloudtrail.amazonaws.com\",",
                    "\"eventName\":\"{}\",\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"198.51.100.7\",",
                    "\"eventID\":\"notify-{:06}\",\"eventType\":\"AwsApiCall\"}}\n"
                ),
                seq % 60,
                name,
                seq
            )
        })
        .collect()
}

pub(crate) fn write_config(dir: &Path, toml: &str) {
    std::fs::write(dir.join("vigil.toml"), toml).unwrap();
}

pub(crate) fn distinct(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[test]
fn alerts_reach_the_webhooks_that_want_them_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let oncall = Receiver::start(503);
    let chat = Receiver::start(200);
    let critical_only = Receiver::start(200);
    let broken = Receiver::start(400);
    write_config(
        dir.path(),
        &format!(
            r#"
[notify]
ui_url = "https://vigil.example.com/"

[[notify.webhooks]]
name = "oncall"
url = "{}"
min_level = "high"
headers = {{ Authorization = "Bearer hook-secret" }}

[[notify.webhooks]]
name = "chat"
url = "{}"
format = "slack"
min_level = "low"
rules = ["{TRAIL_STOPPED_RULE}"]

[[notify.webhooks]]
name = "critical-only"
url = "{}"
min_level = "critical"

[[notify.webhooks]]
name = "broken"
url = "{}"
tags = ["attack.t1562.008"]
"#,
            oncall.url, chat.url, critical_only.url, broken.url
        ),
    );
    let vigil = Vigil::start(&dir.path().join("data"));
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 5)).status(),
        202
    );

    // The on-call receiver is down at first: Vigil keeps trying, then delivers.
    wait_for(
        "retries to the on-call webhook",
        Duration::from_secs(60),
        || (oncall.received().len() >= 3).then_some(()),
    );
    oncall.set_status(200);
    let accepted = wait_for("five alerts on call", Duration::from_secs(60), || {
        let ids = oncall.accepted_ids();
        (distinct(&ids).len() >= 5).then_some(ids)
    });
    wait_for("five alerts in chat", Duration::from_secs(30), || {
        (chat.accepted_ids().len() >= 5).then_some(())
    });
    // Settle, then count: a duplicate would show now.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(oncall.accepted_ids().len(), 5, "{accepted:?}");
    // One notification per alert and receiver, each under its own key.
    assert_eq!(chat.accepted_ids().len(), 5);
    assert_eq!(distinct(&chat.accepted_ids()).len(), 5);

    let first = oncall
        .received()
        .into_iter()
        .find(|r| r.status == 200)
        .unwrap();
    assert_eq!(first.header("authorization"), Some("Bearer hook-secret"));
    assert_eq!(first.body["type"], "vigil.notification");
    assert_eq!(first.body["alerts"][0]["rule_id"], TRAIL_STOPPED_RULE);
    assert_eq!(first.body["alerts"][0]["level"], "high");
    let id = first.body["alerts"][0]["id"].as_str().unwrap();
    // The key is the notification's id, the same at every retry.
    assert_eq!(first.header("idempotency-key"), first.body["id"].as_str());
    assert_eq!(
        first.body["url"],
        format!("https://vigil.example.com/alerts/{id}")
    );
    // The alert the message names is the one the API serves.
    let alert = vigil.get_json(&format!("/api/v1/alerts/{id}"));
    assert_eq!(alert["rule_id"], TRAIL_STOPPED_RULE);

    let text = chat.received()[0].body["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("<https://vigil.example.com/alerts/"),
        "{text}"
    );
    assert!(text.contains("AWS CloudTrail Logging Stopped"), "{text}");

    // Below its level: nothing. Refusing: each alert tried once, and the rest still flowed.
    assert!(critical_only.received().is_empty());
    assert_eq!(broken.received().len(), 5);
    assert_eq!(
        vigil.metric("vigil_notifications_refused_total{receiver=\"broken\"}"),
        5.0
    );
    assert_eq!(
        vigil.metric("vigil_notifications_sent_total{receiver=\"oncall\"}"),
        5.0
    );
    assert!(vigil.metric("vigil_notification_retries_total{receiver=\"oncall\"}") >= 3.0);
}

#[test]
fn alerts_waiting_for_a_webhook_survive_a_crash_of_vigil() {
    let dir = tempfile::tempdir().unwrap();
    let oncall = Receiver::start(502);
    write_config(
        dir.path(),
        &format!(
            "[[notify.webhooks]]\nname = \"oncall\"\nurl = \"{}\"\n",
            oncall.url
        ),
    );
    let data = dir.path().join("data");
    let vigil = Vigil::start(&data);
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 4)).status(),
        202
    );
    wait_for("attempts to the webhook", Duration::from_secs(60), || {
        (!oncall.received().is_empty()).then_some(())
    });
    vigil.kill();

    oncall.set_status(200);
    let _vigil = Vigil::start(&data);
    let ids = wait_for(
        "every alert after the restart",
        Duration::from_secs(90),
        || {
            let ids = oncall.accepted_ids();
            (distinct(&ids).len() >= 4).then_some(ids)
        },
    );
    assert_eq!(distinct(&ids).len(), 4);
}

#[test]
fn the_notify_role_without_webhooks_or_with_a_bad_one_stops_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str, role: &str| {
        write_config(dir.path(), config);
        let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "--listen", "127.0.0.1:0", "--role", role])
            .args(["--data-dir", "data"])
            .current_dir(dir.path())
            .env("VIGIL_API_TOKEN", crate::common::TOKEN)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = run("", "notify");
    assert!(error.contains("[[notify.webhooks]]"), "{error}");
    let error = run(
        "[[notify.webhooks]]\nname = \"pager\"\nurl = \"ftp://example.com/hook\"\n",
        "all",
    );
    assert!(
        error.contains("pager") && error.contains("only http and https"),
        "{error}"
    );
}
