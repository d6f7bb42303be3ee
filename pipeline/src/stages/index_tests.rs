//! The indexers against an embedded bus and a store on disk.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::sync::watch;
use vigil_bus::{EmbeddedBus, EmbeddedBusOptions, Message, Topics};
use vigil_event::{AlertId, Event, EventId, LogSource, Record, Source};

use super::*;

fn event(seq: u32) -> Event {
    let time = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
        + chrono::Duration::seconds(i64::from(seq % 3600));
    Event {
        id: EventId::derive("replay test", &[&seq.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&format!(
            r#"{{"eventName":"GetObject","eventID":"replay-{seq}"}}"#
        ))
        .unwrap(),
        fields: Default::default(),
    }
}

/// Indexes the topic until the group has committed its 1000 messages, then stops.
async fn index_everything(bus: Arc<EmbeddedBus>, store: Arc<Store>, topic: &str) {
    let config = vigil_store::Config {
        commit_interval_ms: 50,
        ..vigil_store::Config::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_indexer::<EventOnBus<'static>>(
        bus.clone(),
        topic.to_owned(),
        store,
        config,
        Arc::default(),
        shutdown,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Done when the offset the indexer commits (after its store commit) covers all.
        let committed = std::fs::read_to_string(bus_offsets(&bus, topic))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if committed == 1000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "indexing stalled at {committed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

fn bus_offsets(bus: &EmbeddedBus, topic: &str) -> std::path::PathBuf {
    bus.root()
        .join(topic)
        .join("offsets")
        .join(<EventOnBus<'static> as IndexTarget>::GROUP)
}

fn alert_on(seq: u32, position: Option<BusPosition>) -> Alert {
    let event = event(seq);
    Alert {
        id: Alert::derive_id("rule", &[event.id]),
        rule_id: "rule".into(),
        rule_title: "Rule".into(),
        level: vigil_event::Level::High,
        tags: Vec::new(),
        event_ids: vec![event.id],
        time: event.time,
        detected: event.time,
        source: event.source,
        logsource: event.logsource,
        group: Default::default(),
        matched: Vec::new(),
        event_position: position,
    }
}

/// `offset` in the one partition of the embedded bus, where offsets count from 0.
fn at(offset: u64) -> Option<BusPosition> {
    Some(BusPosition {
        partition: 0,
        offset,
    })
}

/// An embedded bus and a store in a directory of their own.
struct Fixture {
    _dir: tempfile::TempDir,
    bus: Arc<EmbeddedBus>,
    topics: Topics,
    store: Arc<Store>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bus = EmbeddedBus::open(dir.path().join("bus"), EmbeddedBusOptions::default());
        let store = Store::open(&dir.path().join("index")).unwrap();
        Fixture {
            bus: Arc::new(bus.unwrap()),
            topics: Topics::default(),
            store: Arc::new(store),
            _dir: dir,
        }
    }

    /// Publishes events `0..count`, so event `n` is at offset `n`.
    async fn publish_events(&self, count: u32) {
        let events = (0..count)
            .map(|seq| Message::new("trail", event(seq).to_bus()))
            .collect();
        self.bus.publish(&self.topics.events, events).await.unwrap();
    }

    async fn publish_alerts(&self, alerts: &[Alert]) {
        let messages = alerts
            .iter()
            .map(|alert| Message::new("rule", serde_json::to_vec(alert).unwrap()))
            .collect();
        self.bus
            .publish(&self.topics.alerts, messages)
            .await
            .unwrap();
    }

    /// Starts indexing `topic` as documents of kind `T`.
    fn spawn<T: IndexTarget>(
        &self,
        topic: &str,
        config: &vigil_store::Config,
        events_indexed: &Arc<EventsIndexed>,
        shutdown: &Shutdown,
    ) -> tokio::task::JoinHandle<Result<(), BusError>> {
        tokio::spawn(run_indexer::<T>(
            self.bus.clone(),
            topic.to_owned(),
            self.store.clone(),
            config.clone(),
            events_indexed.clone(),
            shutdown.clone(),
        ))
    }

    fn listed(&self) -> Vec<vigil_store::AlertView> {
        let filter = vigil_store::AlertFilter {
            limit: 10,
            ..Default::default()
        };
        self.store.list_alerts(&filter).unwrap()
    }
}

/// An indexer of `T` over the fixture's store, committing every `interval_ms`.
fn stage<T: IndexTarget>(fixture: &Fixture, interval_ms: u64) -> IndexStage<T> {
    IndexStage {
        store: fixture.store.clone(),
        commit_interval: Duration::from_millis(interval_ms),
        commit_events: 20_000,
        events_indexed: Arc::default(),
        uncommitted: Checkpoint::default(),
        last_commit: None,
        target: PhantomData,
    }
}

/// While documents wait for a commit, the loop polls no longer than until one can fall
/// due: the events indexer's least gap, then (alerts may start waiting at any moment) a
/// short look again, never past its interval, however short that is set; the alerts
/// indexer, until its least gap since its own last commit has passed. The wait is
/// zero exactly when a commit is due: never while none is, which would spin.
#[test]
fn an_indexer_waits_for_more_no_longer_than_until_a_commit_can_fall_due() {
    let fixture = Fixture::new();
    let ms = Duration::from_millis;
    let events = stage::<EventOnBus<'static>>(&fixture, 250);
    assert_eq!(events.commit_due_in(ms(30)), MIN_COMMIT_GAP - ms(30));
    assert_eq!(events.commit_due_in(ms(150)), WAITING_ALERTS_POLL);
    assert_eq!(events.commit_due_in(ms(240)), ms(10));
    assert_eq!(events.commit_due_in(ms(300)), Duration::ZERO);
    let hurried = stage::<EventOnBus<'static>>(&fixture, 50);
    assert_eq!(hurried.commit_due_in(ms(10)), ms(40));
    let quarantine = stage::<Quarantined>(&fixture, 250);
    assert_eq!(quarantine.commit_due_in(ms(30)), ms(220));
    // The alerts indexer counts from its own last commit, whatever the loop's clock says.
    let mut alerts = stage::<Alert>(&fixture, 250);
    assert_eq!(alerts.commit_due_in(ms(30)), Duration::ZERO);
    assert!(alerts.commit_due(1, ms(30)));
    alerts.last_commit = Some(Instant::now() - ms(30));
    let due_in = alerts.commit_due_in(ms(300));
    assert!(
        due_in > Duration::ZERO && due_in <= ALERTS_MIN_COMMIT_GAP - ms(30),
        "{due_in:?}"
    );
    assert!(!alerts.commit_due(1, ms(300)));
    alerts.last_commit = Some(Instant::now() - ALERTS_MIN_COMMIT_GAP);
    assert_eq!(alerts.commit_due_in(ms(0)), Duration::ZERO);
    assert!(alerts.commit_due(1, ms(0)));
    alerts.last_commit = None;
    for since in (0..400).step_by(5).map(ms) {
        let waits = [
            (events.commit_due_in(since), events.commit_due(1, since)),
            (hurried.commit_due_in(since), hurried.commit_due(1, since)),
            (
                quarantine.commit_due_in(since),
                quarantine.commit_due(1, since),
            ),
            (alerts.commit_due_in(since), alerts.commit_due(1, since)),
        ];
        for (due_in, due) in waits {
            assert_eq!(due_in.is_zero(), due, "waits {due_in:?} at {since:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_listed_only_once_its_events_are_searchable() {
    let fixture = Fixture::new();
    fixture.publish_events(300).await;
    let alerts = [
        alert_on(3, at(3)),
        alert_on(299, at(299)),
        alert_on(150, None),
    ];
    fixture.publish_alerts(&alerts).await;
    let config = vigil_store::Config {
        commit_interval_ms: 50,
        ..vigil_store::Config::default()
    };
    let events_indexed = Arc::new(EventsIndexed::default());
    let (stop, shutdown) = watch::channel(false);

    // With no events searchable, the alerts wait.
    let alerts_task =
        fixture.spawn::<Alert>(&fixture.topics.alerts, &config, &events_indexed, &shutdown);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = fixture.listed();
    assert!(listed.is_empty(), "listed before any event: {listed:?}");

    // Once they are, the alerts are listed, never ahead of their events.
    let events_task = fixture.spawn::<EventOnBus<'static>>(
        &fixture.topics.events,
        &config,
        &events_indexed,
        &shutdown,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now_listed = fixture.listed();
        for view in &now_listed {
            let found = fixture
                .store
                .alert_events(&view.alert.id.to_string())
                .unwrap();
            assert_eq!(
                found.len(),
                1,
                "{} listed before its event",
                view.alert.event_ids[0]
            );
        }
        if now_listed.len() == alerts.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listed {} of the alerts",
            now_listed.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    alerts_task.await.unwrap().unwrap();
    events_task.await.unwrap().unwrap();
}

/// Alerts that record each call to index them, so a test sees what was indexed when.
struct RecordedAlert(Alert);

/// The alert ids of each call that indexed [`RecordedAlert`]s, in order, for every test.
static INDEX_CALLS: std::sync::Mutex<Vec<Vec<AlertId>>> = std::sync::Mutex::new(Vec::new());

/// The calls that indexed any of `alerts`, with only those of their ids.
fn index_calls_of(alerts: &[&Alert]) -> Vec<Vec<AlertId>> {
    INDEX_CALLS
        .lock()
        .unwrap()
        .iter()
        .map(|call| {
            call.iter()
                .copied()
                .filter(|id| alerts.iter().any(|alert| alert.id == *id))
                .collect::<Vec<_>>()
        })
        .filter(|call| !call.is_empty())
        .collect()
}

impl IndexTarget for RecordedAlert {
    const GROUP: &'static str = "index-recorded-alerts";
    const ORDER: IndexOrder = IndexOrder::WaitsForEvents;
    fn decode(payload: &[u8]) -> Result<Self, String> {
        json_from_bus(payload).map(RecordedAlert)
    }
    fn count_indexed(_: u64) {}
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        let alerts: Vec<Alert> = items.iter().map(|item| item.0.clone()).collect();
        store.index_alerts(&alerts)?;
        INDEX_CALLS
            .lock()
            .unwrap()
            .push(alerts.iter().map(|alert| alert.id).collect());
        Ok(())
    }
    fn commit(store: &Store) -> Result<(), StoreError> {
        store.commit_alerts()
    }
    fn event_position(&self) -> Option<BusPosition> {
        self.0.event_position
    }
    fn awaited_events(&self) -> &[EventId] {
        &self.0.event_ids
    }
}

/// A batch is indexed as its alerts' events become searchable, so that what is left to
/// index once its newest can be listed is only what that last step released; and the
/// indexer lists what it indexed together, once the last can be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_alerts_is_indexed_as_its_events_become_searchable() {
    let fixture = Fixture::new();
    let store = &fixture.store;
    let (early, late) = (alert_on(3, at(3)), alert_on(299, at(299)));
    fixture.publish_alerts(&[early.clone(), late.clone()]).await;
    store
        .index_events(&(0..=100).map(event).collect::<Vec<_>>())
        .unwrap();
    store.commit_events().unwrap();
    let events_indexed = Arc::new(EventsIndexed::default());
    events_indexed.confirmed(0, 100);
    let (stop, shutdown) = watch::channel(false);
    let config = vigil_store::Config::default();
    let task =
        fixture.spawn::<RecordedAlert>(&fixture.topics.alerts, &config, &events_indexed, &shutdown);
    let calls = || index_calls_of(&[&early, &late]);

    let started = tokio::time::Instant::now();
    while calls().is_empty() {
        assert!(
            started.elapsed() < MAX_WAIT / 2,
            "the alert whose event is searchable was not indexed while the other waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past a look in the store, which does not find the late alert's event.
    tokio::time::sleep(CONFIRM_EVERY + Duration::from_millis(200)).await;
    assert_eq!(calls(), [vec![early.id]]);
    let listed = fixture.listed();
    assert!(
        listed.is_empty(),
        "listed before the batch could be: {listed:?}"
    );

    // Only the report can release the late alert: its event is not in the store, and the
    // longest wait is past the test's. The report wakes the wait: the next look in the store
    // is most of a second away.
    events_indexed.confirmed(0, 299);
    let reported = tokio::time::Instant::now();
    while fixture.listed().len() < 2 {
        assert!(
            reported.elapsed() < CONFIRM_EVERY / 2,
            "the batch was not listed soon after the report that released it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls(), [vec![early.id], vec![late.id]]);
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

/// Reports that release a batch step by step do not hold back the look in the store that
/// settles a partition no report covers, as after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_releasing_a_batch_in_steps_do_not_hold_back_the_look_in_the_store() {
    let fixture = Fixture::new();
    let store = &fixture.store;
    let reported: Vec<Alert> = (1..=40)
        .map(|n| alert_on(n * 5, at(u64::from(n) * 5)))
        .collect();
    let other_partition = Some(BusPosition {
        partition: 1,
        offset: 7,
    });
    let unreported = alert_on(1000, other_partition);
    let mut batch = reported.clone();
    batch.push(unreported.clone());
    fixture.publish_alerts(&batch).await;
    store.index_events(&[event(1000)]).unwrap();
    store.commit_events().unwrap();
    let events_indexed = Arc::new(EventsIndexed::default());
    let (stop, shutdown) = watch::channel(false);
    let config = vigil_store::Config::default();
    let task =
        fixture.spawn::<RecordedAlert>(&fixture.topics.alerts, &config, &events_indexed, &shutdown);
    // One more of the reported alerts released every 100 ms, for 4 s.
    let reporter = {
        let events_indexed = events_indexed.clone();
        tokio::spawn(async move {
            for n in 1..=40u64 {
                events_indexed.confirmed(0, n * 5);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    while index_calls_of(&[&unreported]).is_empty() {
        assert!(
            started.elapsed() < 2 * CONFIRM_EVERY + Duration::from_millis(500),
            "the alert only the store can confirm waited for the reports to run out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reporter.await.unwrap();
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_alerts_make_the_events_index_commit_before_its_interval() {
    let fixture = Fixture::new();
    fixture.publish_events(100).await;
    let alert = alert_on(60, at(60));
    fixture.publish_alerts(std::slice::from_ref(&alert)).await;
    // Left to its interval, the events index would not commit for a minute.
    let config = vigil_store::Config {
        commit_interval_ms: 60_000,
        ..vigil_store::Config::default()
    };
    let events_indexed = Arc::new(EventsIndexed::default());
    let (stop, shutdown) = watch::channel(false);
    let tasks = [
        fixture.spawn::<EventOnBus<'static>>(
            &fixture.topics.events,
            &config,
            &events_indexed,
            &shutdown,
        ),
        fixture.spawn::<Alert>(&fixture.topics.alerts, &config, &events_indexed, &shutdown),
    ];
    let started = tokio::time::Instant::now();
    loop {
        if !fixture.listed().is_empty() {
            let events = fixture.store.alert_events(&alert.id.to_string()).unwrap();
            assert_eq!(events.len(), 1);
            break;
        }
        assert!(started.elapsed() < MAX_WAIT / 2, "the alert was not listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_whose_events_were_indexed_before_a_restart_are_confirmed_in_the_store() {
    let fixture = Fixture::new();
    // The events were indexed and committed by the process before; this one's events
    // indexer has read nothing new, so it reports nothing.
    let store = &fixture.store;
    store
        .index_events(&(0..50).map(event).collect::<Vec<_>>())
        .unwrap();
    store.commit_events().unwrap();
    let alerts = [alert_on(7, at(7)), alert_on(49, at(49)), alert_on(20, None)];
    fixture.publish_alerts(&alerts).await;
    let (stop, shutdown) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let config = vigil_store::Config::default();
    let task = fixture.spawn::<Alert>(&fixture.topics.alerts, &config, &Arc::default(), &shutdown);
    loop {
        let listed = fixture.listed();
        if listed.len() == alerts.len() {
            break;
        }
        // Well before the longest wait: found in the store, not given up on.
        assert!(
            started.elapsed() < MAX_WAIT / 2,
            "listed {} of the alerts",
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexing_the_same_bus_segment_twice_adds_no_duplicates() {
    let fixture = Fixture::new();
    fixture.publish_events(1000).await;
    let (bus, store, topic) = (&fixture.bus, &fixture.store, &fixture.topics.events);

    index_everything(bus.clone(), store.clone(), topic).await;
    assert_eq!(store.event_count().unwrap(), 1000);

    // Rewind the group to the start of the segment, as a crash before the offset commit
    // or an operator's replay would, and index it all again.
    std::fs::write(bus_offsets(bus, topic), "0\n").unwrap();
    index_everything(bus.clone(), store.clone(), topic).await;
    assert_eq!(store.event_count().unwrap(), 1000);
    let hits = store
        .search(&vigil_store::SearchRequest::new("eventID:replay-7", 10))
        .unwrap();
    assert_eq!(hits.total, 1);
}

/// Only a forged or damaged message holds such a record (ingest refuses them), and
/// detection need not parse a record no rule's literal is in: the indexer keeps the
/// event, as text, rather than skipping the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framed_event_whose_json_record_is_not_json_is_indexed_as_text() {
    let fixture = Fixture::new();
    fixture.publish_events(999).await;
    let forged = event(999);
    let mut message = forged.to_bus();
    message.truncate(message.len() - forged.record.as_str().len());
    message.extend_from_slice(br#"{"eventName":"DeleteTrail","eventID":"forged"#);
    let (bus, store, topic) = (&fixture.bus, &fixture.store, &fixture.topics.events);
    bus.publish(topic, vec![Message::new("trail", message)])
        .await
        .unwrap();

    index_everything(bus.clone(), store.clone(), topic).await;
    assert_eq!(store.event_count().unwrap(), 1000);
    let hits = store
        .search(&vigil_store::SearchRequest::new("DeleteTrail", 10))
        .unwrap()
        .hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, forged.id);
    assert!(!hits[0].record.is_json());
    assert_eq!(store.partition_stats().unwrap().records_as_text, 1);
}
