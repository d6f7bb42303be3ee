use std::collections::BTreeMap;

use vigil_event::{Alert, Level, LogSource, Source};

use super::*;

fn alert(rule: &str, key: &str) -> Alert {
    let now = Utc::now();
    Alert {
        id: Alert::derive_id(rule, &[vigil_event::Id::derive("test", &[key.as_bytes()])]),
        rule_id: rule.into(),
        rule_title: "t".into(),
        level: Level::High,
        tags: vec![],
        event_ids: vec![],
        time: now,
        detected: now,
        source: Source {
            kind: "cloudtrail".into(),
            name: "cloudtrail".into(),
        },
        logsource: LogSource::default(),
        group: BTreeMap::new(),
        matched: Vec::new(),
        event_position: None,
    }
}

fn notification(id: &str, receiver: &str, alerts: Vec<Alert>) -> Notification {
    Notification {
        id: id.into(),
        receiver: receiver.into(),
        group_key: "g".into(),
        group: BTreeMap::new(),
        kind: NotificationKind::Firing,
        total_alerts: alerts.len() as u64,
        new_alerts: alerts.len() as u64,
        alerts,
        created: Utc::now(),
    }
}

fn config(max_attempts: u32) -> OutboxConfig {
    OutboxConfig {
        max_attempts,
        backoff_base_ms: 1_000,
        backoff_max_ms: 60_000,
        ..OutboxConfig::default()
    }
}

fn open(dir: &Path, max_attempts: u32) -> Outbox {
    Outbox::open_in(dir, config(max_attempts)).unwrap()
}

#[test]
fn enqueue_is_idempotent_by_id_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let a = alert("r1", "a");
    {
        let outbox = open(dir.path(), 3);
        let first = notification("n1", "pager", vec![a.clone()]);
        assert_eq!(
            outbox.enqueue(std::slice::from_ref(&first), now).unwrap(),
            1
        );
        // The same id again, even with other contents: a no-op.
        let mut again = first.clone();
        again.new_alerts = 99;
        assert_eq!(outbox.enqueue(&[again, first], now).unwrap(), 0);
    }
    let outbox = open(dir.path(), 3);
    let due = outbox.next_due("pager", now, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notification.new_alerts, 1);
    assert_eq!(due[0].state, DeliveryState::Pending);
    assert!(outbox.next_due("chat", now, 10).unwrap().is_empty());
    let for_alert = outbox.deliveries_for_alert(&a.id.to_string()).unwrap();
    assert_eq!(for_alert.len(), 1);
    assert_eq!(for_alert[0].id, "n1");
    // Sent: no longer due, and a second delivery of it is not recorded.
    assert!(outbox.mark_sent("n1", now).unwrap().is_some());
    assert!(outbox.mark_sent("n1", now).unwrap().is_none());
    assert!(outbox.next_due("pager", now, 10).unwrap().is_empty());
    drop(outbox);
    let outbox = open(dir.path(), 3);
    assert_eq!(
        outbox.get("n1").unwrap().unwrap().state,
        DeliveryState::Sent
    );
    // Re-emitted after delivery (a crash before the dispatcher heard): still not resent.
    assert_eq!(
        outbox
            .enqueue(&[notification("n1", "pager", vec![])], now)
            .unwrap(),
        0
    );
    assert!(outbox.next_due("pager", now, 10).unwrap().is_empty());
}

#[test]
fn retries_back_off_within_bounds_then_go_dead_and_resend_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path(), 4);
    let start = Utc::now();
    outbox
        .enqueue(&[notification("n1", "pager", vec![])], start)
        .unwrap();
    let mut now = start;
    for attempt in 1..=3u32 {
        let Some(AfterFailure::Retry { at, attempts }) =
            outbox.mark_retry("n1", "answered 503", now).unwrap()
        else {
            panic!("attempt {attempt} was not retried");
        };
        assert_eq!(attempts, attempt);
        let step = outbox.config().policy().step(attempt);
        let wait = (at - now).to_std().unwrap();
        assert!(
            wait >= step / 2 && wait <= step,
            "{attempt}: {wait:?} not in {step:?}"
        );
        assert!(
            outbox.next_due("pager", now, 10).unwrap().is_empty(),
            "due before its backoff"
        );
        let due_at = outbox.next_due_at("pager").unwrap().unwrap();
        assert_eq!(due_at.timestamp_millis(), at.timestamp_millis());
        now = at;
        assert_eq!(outbox.next_due("pager", now, 10).unwrap().len(), 1);
    }
    let long = "x".repeat(10_000);
    assert_eq!(
        outbox.mark_retry("n1", &long, now).unwrap(),
        Some(AfterFailure::Dead { attempts: 4 })
    );
    assert!(outbox.next_due("pager", now, 10).unwrap().is_empty());
    let dead = outbox.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 4);
    assert!(dead[0].last_error.as_ref().unwrap().chars().count() <= MAX_ERROR_CHARS + 1);
    // A dead letter takes no more failures.
    assert_eq!(outbox.mark_retry("n1", "late", now).unwrap(), None);

    // Resend: pending, due now, attempts from zero; only a dead letter can be re-sent.
    let resent = outbox.resend("n1", now).unwrap().unwrap();
    assert_eq!((resent.state, resent.attempts), (DeliveryState::Pending, 0));
    assert!(outbox.resend("n1", now).unwrap().is_none());
    assert!(outbox.resend("unknown", now).unwrap().is_none());
    assert_eq!(outbox.next_due("pager", now, 10).unwrap().len(), 1);
    assert!(outbox.dead_letters(10).unwrap().is_empty());
}

#[test]
fn a_refusal_is_dead_at_once_and_old_rows_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path(), 12);
    let now = Utc::now();
    let a = alert("r1", "a");
    outbox
        .enqueue(
            &[
                notification("refused", "pager", vec![a.clone()]),
                notification("sent", "chat", vec![a.clone()]),
                notification("waiting", "chat", vec![]),
            ],
            now,
        )
        .unwrap();
    assert!(outbox
        .mark_dead("refused", "refused with 400: no", now)
        .unwrap());
    assert!(!outbox.mark_dead("refused", "again", now).unwrap());
    assert_eq!(outbox.get("refused").unwrap().unwrap().attempts, 1);
    outbox.mark_sent("sent", now).unwrap();
    assert_eq!(
        outbox.pending_by_receiver().unwrap(),
        [("chat".to_owned(), 1)]
    );
    let counts = outbox.counts().unwrap();
    assert_eq!(counts.get(&DeliveryState::Pending), Some(&1));
    assert_eq!(counts.get(&DeliveryState::Dead), Some(&1));
    assert_eq!(counts.get(&DeliveryState::Sent), Some(&1));

    // Within their keeping time nothing goes; past it, sent and dead rows go, pending stay.
    assert_eq!(outbox.prune(now + chrono::Duration::hours(1)).unwrap(), 0);
    assert_eq!(outbox.prune(now + chrono::Duration::days(31)).unwrap(), 2);
    assert_eq!(
        outbox
            .list(DeliveryState::Pending, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        ["waiting"]
    );
    assert!(outbox
        .deliveries_for_alert(&a.id.to_string())
        .unwrap()
        .is_empty());
}

#[test]
fn bad_settings_are_refused() {
    assert!(config(0).check().is_err());
    let mut backwards = config(3);
    backwards.backoff_max_ms = 10;
    assert!(backwards.check().is_err());
    assert!(OutboxConfig::default().check().is_ok());
}
