//! The webhook and Slack receivers against an HTTP receiver that checks what a real one would.

use std::time::Duration;

use axum::http::StatusCode;
use vigil_event::Level;
use vigil_notify::signature::{self, SignatureError, DEFAULT_TOLERANCE};
use vigil_notify::{DeliveryError, NotificationKind};

use crate::common::{alert, build, notification, secret_file, HttpReceiver};

/// The README's receiver-side check, word for word.
const README_VERIFY: &str = r#"
import hashlib, hmac, time

def verify(secret: bytes, header: str, body: bytes, tolerance: int = 300) -> bool:
    """True when X-Vigil-Signature `header` signs the raw request `body` and is recent."""
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    t = next((value for key, value in fields if key == "t"), "")
    signatures = [value for key, value in fields if key == "v1"]
    if not t.isdigit() or abs(time.time() - int(t)) > tolerance:
        return False
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)
"#;

#[tokio::test]
async fn a_webhook_is_signed_keyed_and_verifiable_by_its_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec-0f1e2d3c4b5a";
    let receiver = HttpReceiver::answering(StatusCode::NO_CONTENT).await;
    std::env::set_var("VIGIL_IT_HOOK_TOKEN", "Bearer t0ken");
    let receivers = build(serde_json::json!({
        "ui_url": "https://vigil.example.com/",
        "receivers": [{
            "name": "soar", "kind": "webhook", "url": receiver.url("/hook"),
            "headers": {"X-Team": "blue"},
            "headers_env": {"Authorization": "VIGIL_IT_HOOK_TOKEN"},
            "secret_file": secret_file(&dir, "hook-secret", secret),
        }],
    }));
    let alerts = vec![alert(
        "aws-root-login",
        "Root login",
        Level::High,
        &[("user", "alice")],
    )];
    let sent = notification("n-42", NotificationKind::Firing, alerts.clone());
    let before = chrono::Utc::now().timestamp();
    receivers[0].send(&sent).await.unwrap();
    let recorded = receiver.recorded();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.header("Idempotency-Key"), Some("n-42"));
    assert_eq!(request.header("X-Team"), Some("blue"));
    assert_eq!(request.header("Authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("Content-Type"), Some("application/json"));

    // What the README's receiver does: check the signature over the raw body, then its age.
    let header = request.header("X-Vigil-Signature").expect("a signature");
    let t: i64 = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((before..=before + 5).contains(&t), "{header}");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        signature::verify(
            secret.as_bytes(),
            header,
            &request.body,
            now,
            DEFAULT_TOLERANCE
        ),
        Ok(())
    );
    let mut tampered = request.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        signature::verify(secret.as_bytes(), header, &tampered, now, DEFAULT_TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    // A capture replayed ten minutes later is refused by its age.
    assert!(matches!(
        signature::verify(
            secret.as_bytes(),
            header,
            &request.body,
            now + 600,
            DEFAULT_TOLERANCE
        ),
        Err(SignatureError::Stale { .. })
    ));

    // And what the README's Python does, over the same request.
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, &request.body).unwrap();
    let check = format!(
        "{README_VERIFY}\nimport sys\nbody = open(sys.argv[1], 'rb').read()\n\
         print(verify(sys.argv[2].encode(), sys.argv[3], body), \
         verify(sys.argv[2].encode(), sys.argv[3], body + b' '))"
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &check])
        .arg(&body_file)
        .args([secret, header])
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "True False",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let body = request.json();
    assert_eq!(body["type"], "vigil.notification");
    assert_eq!(body["id"], "n-42");
    assert_eq!(body["kind"], "firing");
    assert_eq!(body["level"], "high");
    assert_eq!(body["group"]["user"], "alice");
    assert_eq!(body["alerts"][0]["rule_id"], "aws-root-login");
    assert_eq!(
        body["url"],
        format!("https://vigil.example.com/alerts/{}", alerts[0].id)
    );
}

#[tokio::test]
async fn answers_say_whether_a_retry_can_help() {
    for (status, transient) in [
        (StatusCode::SERVICE_UNAVAILABLE, true),
        (StatusCode::TOO_MANY_REQUESTS, true),
        (StatusCode::BAD_REQUEST, false),
        (StatusCode::UNAUTHORIZED, false),
    ] {
        let receiver = HttpReceiver::answering(status).await;
        let receivers = build(serde_json::json!({
            "receivers": [{"name": "hook", "kind": "webhook", "url": receiver.url("/h")}],
        }));
        let sent = notification("n-1", NotificationKind::Resolved, vec![]);
        let error = receivers[0].send(&sent).await.unwrap_err();
        assert_eq!(
            matches!(error, DeliveryError::Transient(_)),
            transient,
            "{status}: {error:?}"
        );
        // Unsigned without a secret.
        assert!(receiver.recorded()[0].header("X-Vigil-Signature").is_none());
    }
}

#[tokio::test]
async fn slack_gets_block_kit_and_legacy_webhooks_still_deliver() {
    let slack = HttpReceiver::answering(StatusCode::OK).await;
    let old_json = HttpReceiver::answering(StatusCode::OK).await;
    let dir = tempfile::tempdir().unwrap();
    let receivers = build(serde_json::json!({
        "ui_url": "https://vigil.example.com",
        "receivers": [{"name": "chat", "kind": "slack",
                       "url_file": secret_file(&dir, "slack-url", &slack.url("/services/T/B/x"))}],
        "webhooks": [{"name": "old", "url": old_json.url("/old"), "min_level": "high"}],
    }));
    let hostile = "<!channel> pwned";
    let sent = notification(
        "n-7",
        NotificationKind::Firing,
        vec![alert(
            "r1",
            hostile,
            Level::Critical,
            &[("user", "<@U0ADMIN>")],
        )],
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        for receiver in &receivers {
            receiver.send(&sent).await.unwrap();
        }
    })
    .await
    .unwrap();
    let message = slack.recorded()[0].json();
    assert_eq!(message["blocks"][0]["type"], "header");
    let text = message.to_string();
    assert!(
        !text.contains("<!channel>") && !text.contains("<@U0ADMIN>"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt; pwned"), "{text}");
    assert_eq!(receivers[1].name(), "old");
    let old = old_json.recorded()[0].json();
    assert_eq!(old["id"], "n-7");
    assert_eq!(
        old_json.recorded()[0].header("Idempotency-Key"),
        Some("n-7")
    );
}
