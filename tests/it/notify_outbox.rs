//! The outbox end to end: a receiver that is down delays only itself, notifications waiting
//! for a receiver survive a SIGKILL of Vigil and arrive once each, and a notification out of
//! attempts becomes a dead letter that the API lists and re-sends.
//!
//! Receivers are the loopback HTTP servers of `notify.rs`; the old `[[notify.webhooks]]`
//! make one route each that notifies per alert at once, so timings here are the outbox's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{wait_for, Vigil, TOKEN};
use crate::notify::{cloudtrail, distinct, write_config, Receiver};

/// Retries come fast here (a tenth of a second, at most half a second apart), so the tests
/// see many attempts in seconds.
const QUICK_RETRIES: &str = "[notify.outbox]\nbackoff_base_ms = 100\nbackoff_max_ms = 500\n";

fn webhook(name: &str, url: &str) -> String {
    format!("[[notify.webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nmin_level = \"high\"\n\n")
}

fn notifications(vigil: &Vigil, state: &str) -> Vec<Value> {
    vigil.get_json(&format!("/api/v1/notifications?state={state}"))["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The measured failure: with a webhook answering 503, a healthy pager received 0 of
/// 3 high alerts over 30 s. Now each receiver has its own task: the pager gets all three
/// within seconds while the other is retried on its own.
#[test]
fn a_receiver_down_never_delays_another() {
    let dir = tempfile::tempdir().unwrap();
    let down = Receiver::start(503);
    let pager = Receiver::start(200);
    write_config(
        dir.path(),
        &format!(
            "{}{}{QUICK_RETRIES}max_attempts = 1000\n",
            webhook("down", &down.url),
            webhook("pager", &pager.url)
        ),
    );
    let vigil = Vigil::start(&dir.path().join("data"));
    // The broken receiver is failing before the pages come, as in the issue.
    let posted = Instant::now();
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 3)).status(),
        202
    );
    let paged = wait_for("three pages", Duration::from_secs(20), || {
        (distinct(&pager.accepted_ids()).len() >= 3).then(|| posted.elapsed())
    });
    eprintln!(
        "the pager had 3 of 3 pages {} ms after they were posted, while the other receiver answered 503",
        paged.as_millis()
    );
    assert!(paged < Duration::from_secs(10), "{paged:?}");
    // Meanwhile the broken one was tried again and again, on its own.
    wait_for(
        "retries to the broken receiver",
        Duration::from_secs(10),
        || (down.received().len() >= 6).then_some(()),
    );
    assert_eq!(pager.accepted_ids().len(), 3, "each page once");
    assert!(down.accepted_ids().is_empty());
    assert_eq!(
        vigil.metric("vigil_notifications_sent_total{receiver=\"pager\"}"),
        3.0
    );
    assert!(vigil.metric("vigil_notification_retries_total{receiver=\"down\"}") >= 3.0);
    assert!(vigil.metric("vigil_notifications_failed_total{receiver=\"down\"}") >= 3.0);
    // Pending, with its attempts and the receiver's answer.
    let pending = notifications(&vigil, "pending");
    assert_eq!(pending.len(), 3, "{pending:?}");
    assert!(pending.iter().all(|n| n["receiver"] == "down"
        && n["attempts"].as_u64().unwrap() >= 1
        && n["last_error"].as_str().unwrap().contains("503")));
}

/// Notifications in the outbox when Vigil is killed (SIGKILL: no shutdown, no last commit)
/// while their receiver is down are each delivered once, by idempotency key, after the
/// restart and the receiver's return.
#[test]
fn notifications_waiting_for_a_receiver_arrive_once_each_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let oncall = Receiver::start(503);
    write_config(
        dir.path(),
        &format!("{}{QUICK_RETRIES}", webhook("oncall", &oncall.url)),
    );
    let data = dir.path().join("data");
    let vigil = Vigil::start(&data);
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 4)).status(),
        202
    );
    // Every notification is in the outbox and has failed at least once.
    wait_for(
        "four pending notifications",
        Duration::from_secs(20),
        || {
            let pending = notifications(&vigil, "pending");
            (pending.len() == 4 && pending.iter().all(|n| n["attempts"].as_u64() >= Some(1)))
                .then_some(())
        },
    );
    let ids: BTreeSet<String> = notifications(&vigil, "pending")
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    vigil.kill();

    oncall.set_status(200);
    let vigil = Vigil::start(&data);
    wait_for(
        "every notification after the restart",
        Duration::from_secs(20),
        || (distinct(&oncall.accepted_ids()).len() >= 4).then_some(()),
    );
    // Settle, then count: a second delivery would show now.
    std::thread::sleep(Duration::from_secs(2));
    let accepted = oncall.accepted_ids();
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    assert_eq!(distinct(&accepted), ids, "the keys are the outbox's ids");
    assert!(notifications(&vigil, "pending").is_empty());
    assert_eq!(notifications(&vigil, "sent").len(), 4);
}

/// Out of attempts, a notification is a dead letter: listed with its attempts and last
/// error, and re-sent from the API (audited) once the receiver works again.
#[test]
fn a_dead_letter_is_listed_and_re_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(503);
    write_config(
        dir.path(),
        &format!(
            "{}{QUICK_RETRIES}max_attempts = 3\n",
            webhook("hook", &hook.url)
        ),
    );
    let vigil = Vigil::start(&dir.path().join("data"));
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 1)).status(),
        202
    );
    let dead = wait_for("a dead letter", Duration::from_secs(20), || {
        notifications(&vigil, "dead").pop()
    });
    assert_eq!(dead["receiver"], "hook");
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["last_error"].as_str().unwrap().contains("503"),
        "{dead}"
    );
    assert_eq!(hook.received().len(), 3, "no attempt after the last");
    assert_eq!(
        vigil.metric("vigil_notifications_dead_lettered_total{receiver=\"hook\"}"),
        1.0
    );
    let id = dead["id"].as_str().unwrap().to_owned();
    let resend_url = vigil.url(&format!("/api/v1/notifications/{}/resend", urlencode(&id)));

    hook.set_status(200);
    let resend = || {
        vigil
            .client
            .post(&resend_url)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    assert_eq!(resend().status(), 200);
    wait_for("the re-sent notification", Duration::from_secs(10), || {
        (!hook.accepted_ids().is_empty()).then_some(())
    });
    assert_eq!(hook.accepted_ids(), std::slice::from_ref(&id));
    assert!(notifications(&vigil, "dead").is_empty());
    wait_for("the delivery recorded", Duration::from_secs(10), || {
        (notifications(&vigil, "sent").len() == 1).then_some(())
    });
    // Only a dead letter can be re-sent: the delivered one is not sent again.
    assert_eq!(resend().status(), 404);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.accepted_ids().len(), 1);

    let audit = vigil.get_json("/api/v1/audit?action=notification.resend");
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = entries
        .iter()
        .filter(|e| e["target"] == id.as_str())
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes.len(), 2, "{audit}");
    assert!(outcomes.contains(&"success") && outcomes.contains(&"failure"));
}

/// A path segment: everything but unreserved characters percent-encoded.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
