//! The routing tree's timing and filters end to end: alerts of one group arrive as one
//! notification after `group_wait`, the group repeats after `repeat_interval` (and not
//! sooner), a silence keeps its alerts out until it is expired, an inhibition rule mutes a
//! lesser alert while a greater one fires, and every request is signed.
//!
//! The receiver is the loopback HTTP server of `notify.rs`, configured as a
//! `[[notify.receivers]]` webhook with `secret_env`; each test checks every request it got
//! with `vigil_notify::signature::verify` over the raw body.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vigil_notify::signature::{self, SignatureError};

use crate::common::{wait_for, Vigil, TOKEN};
use crate::notify::{cloudtrail, write_config, Received, Receiver};

const TRAIL_STOPPED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";
/// Medium: GetSecretValue with IAM user keys.
const SECRET_READ_RULE: &str = "62bc6556-e7aa-497a-930b-c767280d6aa5";

const SECRET_ENV: &str = "VIGIL_TEST_GROUPS_HMAC";
const SECRET: &str = "whsec-groups-0123456789";

/// A signed webhook receiver `hook` and a root route named `main` to it, with `route`'s
/// settings, then `extra` (more tables).
fn config(receiver: &Receiver, route: &str, extra: &str) -> String {
    format!(
        "[[notify.receivers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n\
         secret_env = \"{SECRET_ENV}\"\n\n\
         [notify.route]\nname = \"main\"\nreceivers = [\"hook\"]\n{route}\n{extra}",
        receiver.url
    )
}

fn start(dir: &tempfile::TempDir, toml: &str) -> Vigil {
    write_config(dir.path(), toml);
    Vigil::start_with_env(&dir.path().join("data"), &[(SECRET_ENV, SECRET)])
}

/// Waits (polling finely, as the timing of repeats is under test) until `receiver` has
/// `count` requests, and gives when it saw them.
fn wait_for_requests(receiver: &Receiver, count: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if receiver.received().len() >= count {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {count} notifications; got {:?}",
            bodies(&receiver.received())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What came, for failure messages (the raw bytes would print one per line).
fn bodies(received: &[Received]) -> Vec<&Value> {
    received.iter().map(|r| &r.body).collect()
}

/// How many milliseconds `later`'s `created` (RFC 3339, UTC) is after `earlier`'s, by the
/// time of day: the two are seconds apart, so a midnight between them is the only wrap.
fn created_ms_apart(earlier: &Value, later: &Value) -> i64 {
    let ms_of_day = |body: &Value| -> i64 {
        let created = body["created"].as_str().unwrap();
        let time = created
            .split_once('T')
            .and_then(|(_, time)| time.strip_suffix('Z'))
            .unwrap_or_else(|| panic!("created {created:?} is not UTC RFC 3339"));
        let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
        let parts: Vec<i64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
        let millis: i64 = format!("{fraction:0<3}")[..3].parse().unwrap();
        ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1_000 + millis
    };
    (ms_of_day(later) - ms_of_day(earlier)).rem_euclid(86_400_000)
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(seconds).unwrap()
}

/// Every request carries a signature of its raw body under the receiver's secret, and an
/// `Idempotency-Key` that is the notification's id.
fn assert_all_signed(received: &[Received]) {
    assert!(!received.is_empty());
    for request in received {
        let header = request
            .header(signature::HEADER)
            .unwrap_or_else(|| panic!("an unsigned request: {:?}", request.body));
        assert_eq!(
            signature::verify(
                SECRET.as_bytes(),
                header,
                &request.raw,
                unix_now(),
                signature::DEFAULT_TOLERANCE
            ),
            Ok(()),
            "{header} over {}",
            String::from_utf8_lossy(&request.raw)
        );
        assert_eq!(
            request.header("idempotency-key"),
            request.body["id"].as_str()
        );
    }
}

/// CloudTrail records of `GetSecretValue` with IAM user keys: each a medium alert.
fn secret_reads(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|seq| {
            format!(
                concat!(
                    "{{\"eventVersion\":\"1.09\",\"userIdentity\":{{\"type\":\"IAMUser\",",
                    "\"userName\":\"ci-deploy\",\"accessKeyId\":\"AKIAEXAMPLEKEY000001\"}},",
                    "\"eventTime\":\"2026-11-28T10:55:{:02}Z\",",
                    "\"eventSource\":\"secretsmanager.amazonaws.com\",\"eventName\":\"GetSecretValue\",",
                    "\"awsRegion\":\"us-east-1\",\"requestParameters\":{{\"secretId\":\"prod/db\"}},",
                    "\"eventID\":\"secret-read-{:06}\",\"eventType\":\"AwsApiCall\"}}\n"
                ),
                seq % 60,
                seq
            )
        })
        .collect()
}

/// Three alerts of one rule posted together are one notification after `group_wait`; the
/// group, still open, is told again after `repeat_interval` under the same group key and a
/// new id, not sooner. Both are signed, and a changed body no longer verifies.
#[test]
fn one_rule_s_alerts_are_one_notification_repeated_after_repeat_interval() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let vigil = start(
        &dir,
        &config(
            &hook,
            "group_by = [\"rule_id\"]\ngroup_wait = \"1s\"\ngroup_interval = \"1m\"\n\
             repeat_interval = \"2s\"\n",
            "",
        ),
    );
    let posted = Instant::now();
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 3)).status(),
        202
    );
    let first_at = wait_for_requests(&hook, 1, Duration::from_secs(15));
    // group_wait held the first alert until the others had joined it.
    assert!(
        first_at - posted >= Duration::from_secs(1),
        "{:?}",
        first_at - posted
    );
    let first = hook.received()[0].clone();
    assert_eq!(first.body["kind"], "firing", "{}", first.body);
    assert_eq!(first.body["total_alerts"], 3, "{}", first.body);
    assert_eq!(first.body["new_alerts"], 3);
    assert_eq!(
        first.body["group"],
        json!({ "rule_id": TRAIL_STOPPED_RULE })
    );
    let alerts = first.body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3);
    assert!(alerts.iter().all(|a| a["rule_id"] == TRAIL_STOPPED_RULE));

    // Nothing more well before repeat_interval is over (the 0.8 s spare is for delivery).
    std::thread::sleep(Duration::from_millis(1_200).saturating_sub(first_at.elapsed()));
    assert_eq!(hook.received().len(), 1, "{:?}", bodies(&hook.received()));
    let second_at = wait_for_requests(&hook, 2, Duration::from_secs(7));
    let gap = second_at - first_at;
    assert!(
        gap >= Duration::from_millis(1_200) && gap < Duration::from_millis(5_500),
        "{gap:?}"
    );
    let second = hook.received()[1].clone();
    assert_eq!(second.body["kind"], "firing");
    assert_eq!(second.body["group_key"], first.body["group_key"]);
    assert_ne!(second.body["id"], first.body["id"]);
    assert_eq!(second.body["total_alerts"], 3);
    assert_eq!(second.body["new_alerts"], 0, "a repeat tells nothing new");
    // By Vigil's own clock (`created`, when each was made), exactly: not before 2 s, and at
    // a dispatch tick (every second) after, give or take a tick late under load.
    let made_apart = created_ms_apart(&first.body, &second.body);
    eprintln!(
        "the repeat came {} ms after the first, made {made_apart} ms after it",
        gap.as_millis()
    );
    assert!((2_000..4_500).contains(&made_apart), "{made_apart} ms");

    assert_all_signed(&hook.received());
    // The signature covers the body: one changed word, or another secret, and it fails.
    let header = first.header(signature::HEADER).unwrap();
    let body = String::from_utf8(first.raw.clone()).unwrap();
    let tampered = body.replacen("\"firing\"", "\"resolved\"", 1);
    assert_ne!(tampered, body);
    assert_eq!(
        signature::verify(
            SECRET.as_bytes(),
            header,
            tampered.as_bytes(),
            unix_now(),
            signature::DEFAULT_TOLERANCE
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        signature::verify(
            b"another secret",
            header,
            &first.raw,
            unix_now(),
            signature::DEFAULT_TOLERANCE
        ),
        Err(SignatureError::Mismatch)
    );
}

/// An alert a silence matches is raised but notified to nobody; once the silence is expired
/// the next alert of the rule is notified, alone.
#[test]
fn a_silenced_alert_is_not_notified_and_one_after_the_silence_ends_is() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let vigil = start(
        &dir,
        &config(
            &hook,
            "group_by = [\"rule_id\"]\ngroup_wait = \"1s\"\nrepeat_interval = \"1h\"\n",
            "",
        ),
    );
    let created = vigil
        .client
        .post(vigil.url("/api/v1/silences"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "matchers": { "rule_id": TRAIL_STOPPED_RULE },
            "comment": "trail maintenance",
            "duration": "10m",
        }))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let silence: Value = created.json().unwrap();
    let id = silence["silence"]["id"].as_i64().unwrap();

    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 1)).status(),
        202
    );
    wait_for("the alert silenced", Duration::from_secs(15), || {
        (vigil.metric("vigil_notifications_silenced_total{route=\"main\"}") >= 1.0).then_some(())
    });
    // Past group_wait and a dispatch tick: had it joined a group, it would be here now.
    std::thread::sleep(Duration::from_millis(2_000));
    assert!(hook.received().is_empty(), "{:?}", bodies(&hook.received()));
    assert_eq!(
        vigil.metric("vigil_notifications_grouped_total{route=\"main\"}"),
        0.0
    );

    let expired = vigil
        .client
        .post(vigil.url(&format!("/api/v1/silences/{id}/expire")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(expired.status(), 200);
    let listed = vigil.get_json("/api/v1/silences");
    assert_eq!(listed["silences"][0]["id"], id);
    assert_eq!(listed["silences"][0]["active"], false, "{listed}");

    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(3, 1)).status(),
        202
    );
    wait_for_requests(&hook, 1, Duration::from_secs(15));
    let told = hook.received()[0].clone();
    assert_eq!(told.body["group"]["rule_id"], TRAIL_STOPPED_RULE);
    // Only the alert after the silence: the silenced one joined no group.
    assert_eq!(told.body["total_alerts"], 1, "{}", told.body);
    assert_eq!(told.body["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        vigil.metric("vigil_notifications_silenced_total{route=\"main\"}"),
        1.0
    );
    assert_all_signed(&hook.received());
}

/// While a high alert's group fires, a medium alert from the same source is not notified;
/// the same medium alert from another source (which `equal` tells apart) is.
#[test]
fn a_firing_high_alert_inhibits_a_medium_one_from_the_same_source() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let vigil = start(
        &dir,
        &config(
            &hook,
            "group_by = [\"rule_id\", \"source\"]\ngroup_wait = \"1s\"\nrepeat_interval = \"1h\"\n",
            "[[notify.inhibit]]\nsource = { level = \"high\" }\ntarget = { level = \"medium\" }\n\
             equal = [\"source\"]\n\n\
             [ingest]\npresets = { \"trail-eu\" = \"cloudtrail\" }\n",
        ),
    );
    // The source group fires first.
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 1)).status(),
        202
    );
    wait_for_requests(&hook, 1, Duration::from_secs(15));
    assert_eq!(
        hook.received()[0].body["group"],
        json!({ "rule_id": TRAIL_STOPPED_RULE, "source": "cloudtrail" })
    );

    assert_eq!(
        vigil.post_ndjson("cloudtrail", secret_reads(0, 1)).status(),
        202
    );
    assert_eq!(
        vigil.post_ndjson("trail-eu", secret_reads(1, 1)).status(),
        202
    );
    wait_for("the alert inhibited", Duration::from_secs(15), || {
        (vigil.metric("vigil_notifications_inhibited_total{route=\"main\"}") >= 1.0).then_some(())
    });
    // The other source's medium alert is told; the inhibited one would have come with it.
    wait_for_requests(&hook, 2, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(1_500));
    let received = hook.received();
    let groups: Vec<&Value> = received.iter().map(|r| &r.body["group"]).collect();
    assert_eq!(
        groups,
        [
            &json!({ "rule_id": TRAIL_STOPPED_RULE, "source": "cloudtrail" }),
            &json!({ "rule_id": SECRET_READ_RULE, "source": "trail-eu" }),
        ],
        "{:?}",
        bodies(&received)
    );
    assert_eq!(received[1].body["level"], "medium");
    assert_eq!(
        vigil.metric("vigil_notifications_inhibited_total{route=\"main\"}"),
        1.0
    );
    assert_all_signed(&received);
}
