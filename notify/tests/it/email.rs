//! The email receiver delivering to Python's aiosmtpd on loopback, started by the test. The
//! server parses each message with Python's own email package and writes what it found (the
//! envelope, the headers, the subject, the body) as JSON, an independent reading of what
//! lettre sent. scripts/test installs aiosmtpd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil_event::Level;
use vigil_notify::NotificationKind;

use crate::common::{alert, build, notification};

const SERVER: &str = r#"
import asyncio, email, email.policy, json, os, sys, time
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]
tls = {}
if len(sys.argv) > 3:
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    tls = {"tls_context": context, "require_starttls": True}

class Recorder:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        found = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "header_names": [name.lower() for name in message.keys()],
            "subject": str(message["subject"]),
            "from": str(message["from"]),
            "to": str(message["to"]),
            "message_id": str(message["message-id"]),
            "body": body.get_content() if body is not None else None,
            "html": message.get_body(("html",)) is not None,
            "tls": session.ssl is not None,
        }
        path = os.path.join(out, "%d.json" % len(os.listdir(out)))
        with open(path + ".tmp", "w") as f:
            json.dump(found, f)
        os.rename(path + ".tmp", path)
        return "250 OK"

controller = Controller(Recorder(), hostname="127.0.0.1", port=port, **tls)
controller.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
"#;

/// aiosmtpd on a loopback port, stopped when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        SmtpServer::start_with(&[])
    }

    /// With `tls` (the certificate's and its key's PEM files), STARTTLS is offered and
    /// required before a message is taken.
    fn start_with(tls: &[&Path]) -> SmtpServer {
        let out = tempfile::tempdir().unwrap();
        // A free port: bound and released, then given to aiosmtpd.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .arg(out.path())
            .args(tls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut ready = String::new();
        let stdout = child.stdout.as_mut().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "aiosmtpd did not start (scripts/test installs it: python3 -m pip install aiosmtpd)"
        );
        SmtpServer { child, port, out }
    }

    fn messages(&self) -> Vec<Value> {
        read_messages(self.out.path())
    }

    fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_messages(dir: &Path) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_email_arrives_with_its_subject_on_one_line_and_no_injected_headers() {
    let server = SmtpServer::start();
    let receivers = build(json!({
        "ui_url": "https://vigil.example.com",
        "receivers": [{"name": "mail", "kind": "email", "host": "127.0.0.1", "port": server.port,
                       "starttls": "none", "from": "Vigil <vigil@example.com>",
                       "to": ["On call <oncall@example.com>"], "html": true}],
    }));
    let hostile = "Trail stopped\r\nBcc: victim@example.com\r\nX-Evil: 1\r\n\r\nfake body";
    let alerts = vec![alert(
        "aws-stop-logging",
        hostile,
        Level::High,
        &[("user", "mallory\nX-Injected: yes")],
    )];
    let sent = notification("n-mail-1", NotificationKind::Firing, alerts.clone());
    receivers[0].send(&sent).await.unwrap();

    let messages = server.wait_for(1);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["mail_from"], "vigil@example.com");
    assert_eq!(message["rcpt_tos"], json!(["oncall@example.com"]));
    assert_eq!(message["from"], "Vigil <vigil@example.com>");
    assert_eq!(message["to"], "On call <oncall@example.com>");
    let names = message["header_names"].as_array().unwrap();
    for injected in ["bcc", "x-evil", "x-injected"] {
        assert!(!names.contains(&json!(injected)), "{injected} in {names:?}");
    }
    let subject = message["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[Vigil] FIRING high: Trail stopped  Bcc: victim@example.com"),
        "{subject:?}"
    );
    assert!(!subject.contains(['\r', '\n']), "{subject:?}");
    assert!(
        message["message_id"]
            .as_str()
            .unwrap()
            .contains("n-mail-1@vigil"),
        "{message}"
    );
    let body = message["body"].as_str().unwrap();
    assert!(body.contains("Rules: aws-stop-logging"), "{body}");
    assert!(
        body.contains("Group: user = mallory X-Injected: yes"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "Open: https://vigil.example.com/alerts/{}",
            alerts[0].id
        )),
        "{body}"
    );
    assert_eq!(message["html"], true);
}

#[tokio::test]
async fn required_starttls_refuses_a_server_without_it() {
    let server = SmtpServer::start();
    let receivers = build(json!({
        "receivers": [{"name": "mail", "kind": "email", "host": "127.0.0.1", "port": server.port,
                       "from": "vigil@example.com", "to": ["oncall@example.com"]}],
    }));
    let sent = notification("n-mail-2", NotificationKind::Resolved, vec![]);
    let error = receivers[0].send(&sent).await.unwrap_err();
    assert!(error.to_string().to_lowercase().contains("tls"), "{error}");
    assert!(server.messages().is_empty(), "sent in plain text");
}

#[tokio::test]
async fn starttls_upgrades_the_connection_to_a_server_whose_certificate_it_checks() {
    let certs = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let server = SmtpServer::start_with(&[&cert, &key]);
    let mail = |ca_file: Option<&Path>| {
        build(json!({
            "receivers": [{"name": "mail", "kind": "email", "host": "localhost",
                           "port": server.port, "starttls": "required", "ca_file": ca_file,
                           "from": "vigil@example.com", "to": ["oncall@example.com"]}],
        }))
    };
    let sent = notification("n-tls", NotificationKind::Firing, vec![]);
    // The certificate is nobody's public CA's: without ca_file it is refused.
    let error = mail(None)[0].send(&sent).await.unwrap_err();
    assert!(server.messages().is_empty(), "sent despite {error}");
    mail(Some(&cert))[0].send(&sent).await.unwrap();
    let messages = server.wait_for(1);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], true, "{messages:?}");
}
