//! Detection's loop: alerts replayed after a lost commit, and correlation windows that the
//! next owner of a partition resumes.

use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_detect::{parse_rules, Engine, Limits, RuleSetBuilder};
use vigil_event::Alert;

use super::*;
use crate::stages::{run_detection, DETECT_GROUP};

/// A rule for failed logins, and a correlation of three of them for one user in 5 minutes.
const RULES: &str = r#"
title: Failed login
id: 0e6f4c55-8d0c-4bde-9a53-1e0f1c1d1a01
name: test_login_failed
logsource:
    product: test
    service: app
detection:
    selection:
        action: login_failed
    condition: selection
level: low
---
title: Repeated failed logins
id: 0e6f4c55-8d0c-4bde-9a53-1e0f1c1d1a02
correlation:
    type: event_count
    rules:
        - test_login_failed
    group-by:
        - user
    timespan: 5m
    condition:
        gte: 3
level: high
"#;
const CORRELATION: &str = "0e6f4c55-8d0c-4bde-9a53-1e0f1c1d1a02";

fn engine() -> Engine {
    let mut builder = RuleSetBuilder::new();
    builder.add_parsed(parse_rules(RULES, "stage test"));
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.engine.correlations().len(), 1);
    built.engine
}

fn failed_logins(seqs: std::ops::Range<u32>) -> Vec<Event> {
    seqs.map(|seq| app_event(seq, "alice", "login_failed", i64::from(seq) * 10))
        .collect()
}

/// A bus in `dir` whose events topic holds the failed logins `seqs`.
async fn bus_with_failed_logins(
    dir: &std::path::Path,
    seqs: std::ops::Range<u32>,
) -> Arc<EmbeddedBus> {
    let bus = open_bus(dir);
    bus.publish(
        &Topics::default().events,
        event_messages(&failed_logins(seqs)),
    )
    .await
    .unwrap();
    bus
}

/// Starts detection (a new owner of the events topic's partition, with empty memory).
fn start(bus: Arc<dyn Bus>) -> (watch::Sender<bool>, JoinHandle<Result<(), BusError>>) {
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_detection(
        bus,
        Topics::default(),
        engine(),
        Limits::default(),
        shutdown,
    ));
    (stop, task)
}

/// Runs detection as the next owner of the events topic's partition until it has committed
/// up to `offset`, then stops it.
async fn own_until_committed(bus: &Arc<EmbeddedBus>, offset: u64) {
    let (stop, task) = start(hooked(bus, no_hook()));
    let events = Topics::default().events;
    until("the owner committed", || {
        committed(bus, &events, DETECT_GROUP) == offset
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_state_moves_with_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_failed_logins(dir.path(), 0..2).await;
    let topics = Topics::default();

    // The first owner sees two failed logins, commits them and goes away.
    own_until_committed(&bus, 2).await;

    // The third arrives for the next owner, which resumes the window the first one saved.
    bus.publish(&topics.events, event_messages(&failed_logins(2..3)))
        .await
        .unwrap();
    own_until_committed(&bus, 3).await;

    // Rules referred to by a correlation raise no alerts of their own: only the correlation.
    let alerts: Vec<Alert> = read_all(&bus, &topics.alerts).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule_id, CORRELATION);
    let expected: Vec<EventId> = failed_logins(0..3).iter().map(|e| e.id).collect();
    assert_eq!(alerts[0].event_ids, expected);
    // It names where the event that completed it sits, which its indexer waits for.
    assert_eq!(
        alerts[0].event_position,
        Some(vigil_event::BusPosition {
            partition: 0,
            offset: 2
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_replays_a_batch_whose_commit_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_failed_logins(dir.path(), 0..3).await;
    let topics = Topics::default();

    // The first owner publishes the alert, but dies before its state or offsets are stored.
    let (_stop, task) = start(refusing(&bus));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first: Vec<Alert> = loop {
        let alerts = read_all(&bus, &topics.alerts).await;
        if !alerts.is_empty() {
            break alerts;
        }
        assert!(tokio::time::Instant::now() < deadline, "no alert");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(committed(&bus, &topics.events, DETECT_GROUP), 0);

    // The next owner is given the same batch and raises the same alert again, same id.
    own_until_committed(&bus, 3).await;
    let alerts: Vec<Alert> = read_all(&bus, &topics.alerts).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|alert| alert.id == first[0].id && alert.rule_id == CORRELATION));
}

/// A completed correlation is cleared from its window, so its alert must be on the bus before
/// that window is saved: were the save first and the process to die before the publish, the
/// next owner would replay the event against a window that no longer holds the group, and
/// the alert would never be raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_alert_is_published_before_the_state_that_forgets_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_failed_logins(dir.path(), 0..2).await;
    let topics = Topics::default();
    own_until_committed(&bus, 2).await;
    let state_key = format!("{DETECT_GROUP}.{}.0", topics.events);
    let window_of_two = bus.load_state(&state_key).await.unwrap();
    assert!(window_of_two.is_some());

    // The third completes the correlation; this owner's publish of its alert never lands.
    bus.publish(&topics.events, event_messages(&failed_logins(2..3)))
        .await
        .unwrap();
    let held = Arc::new(Held::default());
    let (_stop, task) = start(Arc::new(HookedBus {
        inner: bus.clone(),
        on_commit: no_hook(),
        refuse_state: false,
        alerts: AlertsHook::Hold(held.clone()),
    }));
    until("the alert's publish began", || {
        held.publishing.load(Ordering::SeqCst)
    })
    .await;
    // A save that runs beside the publish begins with it; give a later one time to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !held.saved_meanwhile.load(Ordering::SeqCst),
        "a state save began while the alert it completed was not on the bus"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(
        bus.load_state(&state_key).await.unwrap(),
        window_of_two,
        "the window was saved without the alert it completed"
    );

    // The next owner replays the third against the window of two, and raises the alert.
    own_until_committed(&bus, 3).await;
    let alerts: Vec<Alert> = read_all(&bus, &topics.alerts).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule_id, CORRELATION);
}
