//! The loop's order, with stages of the tests' own and with the indexer over a real store.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use vigil_bus::Topics;
use vigil_event::wire::EventOnBus;
use vigil_store::Store;

use super::*;
use crate::stages::{run_indexer, run_stage, Processed, Shutdown, Stage, StageSettings};

const TOPIC: &str = "test.topic";
const GROUP: &str = "test-stage";

/// Records what it processes; its output becomes durable only in `make_durable`, which
/// `hang` makes wait forever, as a process that dies there would.
struct Recorder {
    seen: Seen,
    /// The offset after the last one made durable.
    durable: Arc<AtomicU64>,
    processed: u64,
    hang: bool,
    commit_every: usize,
    /// Also due once this long has passed since the last commit.
    commit_after: Option<Duration>,
}

impl Recorder {
    fn new(seen: &Seen, durable: &Arc<AtomicU64>) -> Self {
        Recorder {
            seen: seen.clone(),
            durable: durable.clone(),
            processed: 0,
            hang: false,
            commit_every: 1,
            commit_after: None,
        }
    }
}

impl Stage for Recorder {
    async fn process(&mut self, batch: &[Delivery], _shutdown: &Shutdown) -> Processed {
        let mut seen = self.seen.0.lock().unwrap();
        for delivery in batch {
            seen.push(delivery.offset);
            self.processed = delivery.offset + 1;
        }
        Processed::All
    }

    async fn make_durable(&mut self, _shutdown: &Shutdown) -> bool {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.durable.store(self.processed, Ordering::SeqCst);
        true
    }

    fn commit_due(&self, pending: usize, since: Duration) -> bool {
        pending >= self.commit_every || self.commit_after.is_some_and(|after| since >= after)
    }

    fn commit_due_in(&self, since: Duration) -> Duration {
        self.commit_after
            .map_or(Duration::MAX, |after| after.saturating_sub(since))
    }
}

fn settings(batch: usize) -> StageSettings {
    StageSettings {
        topic: TOPIC.into(),
        group: GROUP,
        batch,
    }
}

fn numbered(range: std::ops::Range<u32>) -> Vec<Message> {
    range
        .map(|n| Message::new("k", n.to_string().into_bytes()))
        .collect()
}

#[tokio::test]
async fn a_crash_between_process_and_commit_replays_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_bus(dir.path());
    bus.publish(TOPIC, numbered(0..10)).await.unwrap();

    // The first owner processes the batch and dies while making its output durable.
    let (first_seen, durable) = (Seen::default(), Arc::new(AtomicU64::new(0)));
    let mut dying = Recorder::new(&first_seen, &durable);
    dying.hang = true;
    let (_stop, shutdown) = watch::channel(false);
    let first = tokio::spawn(run_stage(
        hooked(&bus, no_hook()),
        settings(100),
        dying,
        shutdown.clone(),
    ));
    until("the first owner processed the batch", || {
        first_seen.offsets().len() == 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(committed(&bus, TOPIC, GROUP), 0, "committed before durable");

    // The next owner is given the same batch again, and commits it once it is durable.
    let second_seen = Seen::default();
    let (stop, shutdown) = watch::channel(false);
    let second = tokio::spawn(run_stage(
        hooked(&bus, no_hook()),
        settings(100),
        Recorder::new(&second_seen, &durable),
        shutdown,
    ));
    until("the batch was committed", || {
        committed(&bus, TOPIC, GROUP) == 10
    })
    .await;
    stop.send(true).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(second_seen.offsets(), (0..10).collect::<Vec<u64>>());
    assert_eq!(durable.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_commit_never_runs_ahead_of_durable_output() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_bus(dir.path());
    let durable = Arc::new(AtomicU64::new(0));
    let ahead = Arc::new(Mutex::new(Vec::new()));
    let hook: CommitHook = {
        let (durable, ahead) = (durable.clone(), ahead.clone());
        Arc::new(move |checkpoint: &Checkpoint| {
            let durable = durable.load(Ordering::SeqCst);
            for (_, next) in checkpoint.partitions() {
                if next > durable {
                    ahead.lock().unwrap().push((next, durable));
                }
            }
            Ok(())
        })
    };
    let seen = Seen::default();
    let mut stage = Recorder::new(&seen, &durable);
    // Durable every 25 messages at most, in batches of 10: the offsets must wait for it.
    stage.commit_every = 25;
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_stage(hooked(&bus, hook), settings(10), stage, shutdown));
    for start in (0..100).step_by(20) {
        bus.publish(TOPIC, numbered(start..start + 20))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    until("half was committed", || committed(&bus, TOPIC, GROUP) >= 50).await;
    // Shutdown makes the rest durable, then commits it.
    until("all was read", || seen.offsets().len() == 100).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(committed(&bus, TOPIC, GROUP), 100);
    assert_eq!(*ahead.lock().unwrap(), Vec::<(u64, u64)>::new());
}

/// A commit that falls due while the stage waits for more is made when it falls due, not
/// once a poll that finds nothing gives up. On tokio's paused clock, so the times are exact.
#[tokio::test(start_paused = true)]
async fn a_commit_due_in_time_does_not_wait_out_an_empty_poll() {
    const COMMIT_AFTER: Duration = Duration::from_millis(40);
    let dir = tempfile::tempdir().unwrap();
    let bus = open_bus(dir.path());
    bus.publish(TOPIC, numbered(0..10)).await.unwrap();
    let commits = Arc::new(Mutex::new(Vec::new()));
    let hook: CommitHook = {
        let commits = commits.clone();
        Arc::new(move |checkpoint: &Checkpoint| {
            let next: Vec<u64> = checkpoint.partitions().map(|(_, next)| next).collect();
            commits
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now(), next));
            Ok(())
        })
    };
    let (seen, durable) = (Seen::default(), Arc::new(AtomicU64::new(0)));
    let mut stage = Recorder::new(&seen, &durable);
    stage.commit_every = usize::MAX;
    stage.commit_after = Some(COMMIT_AFTER);
    let (stop, shutdown) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let task = tokio::spawn(run_stage(
        hooked(&bus, hook),
        settings(100),
        stage,
        shutdown,
    ));
    until("the batch was committed", || {
        !commits.lock().unwrap().is_empty()
    })
    .await;
    let (at, next) = commits.lock().unwrap()[0].clone();
    assert_eq!(next, vec![10]);
    let after = at - started;
    assert!(
        after >= COMMIT_AFTER && after < crate::stages::POLL_WAIT,
        "committed {after:?} after the start, due after {COMMIT_AFTER:?}"
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(durable.load(Ordering::SeqCst), 10);
}

/// The indexer's output is durable once the store commits: every offset commit must find the
/// events before it searchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_commits_offsets_only_after_the_store_commit() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_bus(dir.path());
    let store = Arc::new(Store::open(&dir.path().join("index")).unwrap());
    let topic = Topics::default().events;
    let ahead = Arc::new(Mutex::new(Vec::new()));
    let hook: CommitHook = {
        let (store, ahead) = (store.clone(), ahead.clone());
        Arc::new(move |checkpoint: &Checkpoint| {
            let searchable = store.event_count().unwrap();
            for (_, next) in checkpoint.partitions() {
                if next > searchable {
                    ahead.lock().unwrap().push((next, searchable));
                }
            }
            Ok(())
        })
    };
    // Commits once 150 events wait, and at the interval: the last, partial round then.
    let config = vigil_store::Config {
        commit_events: 150,
        commit_interval_ms: 200,
        ..vigil_store::Config::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run_indexer::<EventOnBus<'static>>(
        hooked(&bus, hook),
        topic.clone(),
        store.clone(),
        config,
        Arc::default(),
        shutdown,
    ));
    for start in (0..500u32).step_by(100) {
        let events: Vec<Event> = (start..start + 100)
            .map(|seq| app_event(seq, "alice", "view", i64::from(seq)))
            .collect();
        bus.publish(&topic, event_messages(&events)).await.unwrap();
    }
    // Stopping once all but the last round were committed raced the indexer's read of that
    // round, which shutdown does not wait for.
    until("the indexer committed every event", || {
        committed(&bus, &topic, "index") == 500
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(committed(&bus, &topic, "index"), 500);
    assert_eq!(store.event_count().unwrap(), 500);
    assert_eq!(*ahead.lock().unwrap(), Vec::<(u64, u64)>::new());
}
