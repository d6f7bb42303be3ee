//! Indexing: events and alerts from the bus into the store, committed in batches.
//!
//! Events and alerts are committed apart, each by its own indexer: the events index at
//! `index.commit_interval_ms` (its commit is the costly one), the alerts index after a batch
//! of alerts (at most once per [`ALERTS_MIN_COMMIT_GAP`]), but only once the events those
//! alerts were raised on are searchable ([`EventsIndexed`]), or after [`MAX_WAIT`], counted.
//! An analyst who opens an alert finds its events, and an alert waits for one commit of the
//! events index rather than for a commit of both.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bus::{Bus, BusError, Checkpoint, Delivery};
use vigil_event::wire::EventOnBus;
use vigil_event::{Alert, BusPosition, EventId, Quarantined};
use vigil_store::{Store, StoreError};

use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::events_indexed::{Awaited, EventsIndexed, Waited, CONFIRM_EVERY, MAX_WAIT};
use super::{decode_message, json_from_bus, retry, stopping, Shutdown};

/// The least time between two commits of the events index that alerts ask for early.
const MIN_COMMIT_GAP: Duration = Duration::from_millis(100);

/// The least time between two commits of the alerts index. Alerts are committed once their
/// events are searchable, and when detection runs behind the events indexer, as it does on
/// Kafka, that is at once: each small batch the bus handed over was committed alone, 68 to 88
/// times in `bus_throughput`'s Kafka flood of 100k records, and each commit writes, syncs and
/// later merges a segment (about 9 ms of CPU for a commit of 30 alerts). At most one commit
/// per gap halved that count and lowered Kafka's CPU an event by a tenth. An alert that comes
/// within the gap waits for it (benches/RESULTS.md).
const ALERTS_MIN_COMMIT_GAP: Duration = MIN_COMMIT_GAP;

/// How often the events indexer, with events waiting for a commit and its least gap passed,
/// looks for alerts that have started waiting for them while the bus was quiet.
const WAITING_ALERTS_POLL: Duration = Duration::from_millis(20);

/// The part an indexer plays in keeping alerts behind their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexOrder {
    /// It reports how far the events it indexed are searchable.
    ReportsProgress,
    /// Its documents wait for the events they name to be searchable.
    WaitsForEvents,
    /// Neither.
    Independent,
}

/// One kind of document the store indexes from one topic.
pub trait IndexTarget: Sized + Send + Sync + 'static {
    const GROUP: &'static str;
    /// The most documents one batch holds.
    const BATCH: usize = 2000;
    const ORDER: IndexOrder = IndexOrder::Independent;
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError>;
    /// Makes what [`IndexTarget::index`] added durable and visible, and only that.
    fn commit(store: &Store) -> Result<(), StoreError>;
    /// Counts `n` documents indexed, in the kind's own metric.
    fn count_indexed(n: u64);
    /// Where the event this document waits for sits on the events topic; see
    /// [`IndexOrder::WaitsForEvents`].
    fn event_position(&self) -> Option<BusPosition> {
        None
    }
    /// The events this document waits for.
    fn awaited_events(&self) -> &[EventId] {
        &[]
    }
    /// The document a bus message holds.
    fn decode(payload: &[u8]) -> Result<Self, String>;
}

/// Events are indexed as read off the bus: the store's read of a JSON record as it indexes it
/// is the record's one check here (see `vigil_store`'s `RecordRead::of_event`). Building an
/// [`vigil_event::Event`] first had `serde_json` walk each record once more.
impl IndexTarget for EventOnBus<'static> {
    const GROUP: &'static str = "index";
    const ORDER: IndexOrder = IndexOrder::ReportsProgress;
    fn decode(payload: &[u8]) -> Result<Self, String> {
        EventOnBus::decode(payload)
            .map(EventOnBus::into_owned)
            .map_err(|e| e.to_string())
    }
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_events_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.index_events(items)?;
        // The store counts what it did not take as sent: resends whose id another partition
        // holds, and events whose own time is absurd (flagged `time_suspect`).
        let stats = store.partition_stats()?;
        metrics::counter!("vigil_index_duplicate_ids_total").absolute(stats.duplicates_skipped);
        metrics::counter!("vigil_index_suspect_times_total").absolute(stats.suspect_times);
        metrics::counter!("vigil_index_records_as_text_total").absolute(stats.records_as_text);
        Ok(())
    }
    fn commit(store: &Store) -> Result<(), StoreError> {
        store.commit_events()
    }
}

impl IndexTarget for Quarantined {
    const GROUP: &'static str = "index-quarantine";
    fn decode(payload: &[u8]) -> Result<Self, String> {
        json_from_bus(payload)
    }
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_quarantine_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.add_quarantined(items).map(|_| ())
    }
    /// The quarantine's database commits each write as it is made.
    fn commit(_store: &Store) -> Result<(), StoreError> {
        Ok(())
    }
}

impl IndexTarget for Alert {
    const GROUP: &'static str = "index-alerts";
    /// Alert batches wait for a commit of the events index, about one a commit interval, so
    /// they are larger than event batches: a flood of alerts (the demo's attacks raise one for
    /// every three events) must not be held to one small batch an interval.
    const BATCH: usize = 10_000;
    const ORDER: IndexOrder = IndexOrder::WaitsForEvents;
    fn decode(payload: &[u8]) -> Result<Self, String> {
        json_from_bus(payload)
    }
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_alerts_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.index_alerts(items)
    }
    fn commit(store: &Store) -> Result<(), StoreError> {
        store.commit_alerts()
    }
    fn event_position(&self) -> Option<BusPosition> {
        self.event_position
    }
    fn awaited_events(&self) -> &[EventId] {
        &self.event_ids
    }
}

/// Indexes `topic` into `store`. Offsets are committed only after the store commit that made
/// the documents durable, so the offsets on the bus always trail what the index holds.
/// `events_indexed` is shared by the indexers of one store: the events indexer reports to it,
/// the alerts indexer waits on it.
pub async fn run_indexer<T: IndexTarget>(
    bus: Arc<dyn Bus>,
    topic: String,
    store: Arc<Store>,
    config: vigil_store::Config,
    events_indexed: Arc<EventsIndexed>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let stage = IndexStage::<T> {
        store,
        commit_interval: config.commit_interval(),
        commit_events: config.commit_events,
        events_indexed,
        uncommitted: Checkpoint::default(),
        last_commit: None,
        target: PhantomData,
    };
    let settings = StageSettings {
        topic,
        group: T::GROUP,
        batch: T::BATCH,
    };
    run_stage(bus, settings, stage, shutdown).await
}

/// Indexing as a [`Stage`]: documents are added as they come and made durable by a store
/// commit every `commit_events` documents or `commit_interval`, whichever comes first; alerts
/// after a batch, once [`ALERTS_MIN_COMMIT_GAP`] has passed since their last commit.
struct IndexStage<T> {
    store: Arc<Store>,
    commit_interval: Duration,
    commit_events: usize,
    events_indexed: Arc<EventsIndexed>,
    /// What was indexed since the last commit, reported once it is committed.
    uncommitted: Checkpoint,
    /// When the store last committed for this indexer. The loop's own clock restarts while
    /// nothing is pending, and the alerts indexer needs the gap to its last commit, so that
    /// an alert after a quiet spell is committed at once.
    last_commit: Option<Instant>,
    target: PhantomData<fn() -> T>,
}

impl<T: IndexTarget> IndexStage<T> {
    /// How long until the alerts indexer may commit again: [`ALERTS_MIN_COMMIT_GAP`] after
    /// its last commit.
    fn alerts_commit_due_in(&self) -> Duration {
        self.last_commit.map_or(Duration::ZERO, |last| {
            ALERTS_MIN_COMMIT_GAP.saturating_sub(last.elapsed())
        })
    }

    /// Indexes a batch of alerts as their events become searchable, as the events indexer
    /// reports or, failing a report, as the store confirms; past [`MAX_WAIT`], the rest
    /// anyway. None on shutdown.
    ///
    /// While some wait, those already searchable are indexed, so that little indexing is left
    /// once the last can be listed. Indexed only then, a batch of 10,000 waited about a second
    /// in `bus_throughput`'s flood of a million records and was then indexed for a third of
    /// one, while the alerts raised meanwhile waited on the bus: the indexer barely kept up
    /// (benches/RESULTS.md). The indexer commits them together, once the last can be listed:
    /// committing each step at once tripled the alerts index's commits in that flood. (An
    /// analyst's triage commits the alerts index too, and may list a step sooner; its alerts'
    /// events are searchable.)
    async fn index_as_searchable(&self, items: Vec<T>, shutdown: &Shutdown) -> Option<()> {
        let started = Instant::now();
        let mut awaited = Awaited::default();
        for item in &items {
            awaited.add(item.event_position(), item.awaited_events());
        }
        let events_indexed = &self.events_indexed;
        let _waiting = events_indexed.waiting_for(&awaited);
        // The store is asked every `CONFIRM_EVERY` whatever the reports release meanwhile: a
        // partition no report covers (after a restart) waits for it alone.
        let mut confirm_at = started + CONFIRM_EVERY;
        let mut waiting = items;
        let waited = loop {
            let below = events_indexed.searchable_below();
            let (ready, rest): (Vec<T>, Vec<T>) = waiting
                .into_iter()
                .partition(|item| awaited.settled(item.event_position(), &below));
            waiting = rest;
            if waiting.is_empty() {
                let waited = started.elapsed();
                self.index_items(ready, shutdown).await?;
                break waited;
            }
            if !ready.is_empty() {
                self.index_items(ready, shutdown).await?;
            }
            let left = MAX_WAIT.saturating_sub(started.elapsed());
            if left.is_zero() {
                break started.elapsed();
            }
            if Instant::now() >= confirm_at {
                self.confirm(&mut awaited, shutdown).await?;
                confirm_at = Instant::now() + CONFIRM_EVERY;
                continue;
            }
            // Woken as soon as any partition's oldest waiting alert can be listed.
            let oldest = oldest_positions(&waiting);
            let progressed = |below: &BTreeMap<u32, u64>| {
                oldest
                    .iter()
                    .any(|&position| awaited.settled(Some(position), below))
            };
            let round = confirm_at
                .saturating_duration_since(Instant::now())
                .min(left);
            if events_indexed.wait_until(progressed, round, shutdown).await == Waited::Stopped {
                return None;
            }
        };
        metrics::histogram!("vigil_index_alert_wait_seconds").record(waited.as_secs_f64());
        if !waiting.is_empty() {
            let searchable_below = events_indexed.searchable_below();
            let unconfirmed = waiting
                .iter()
                .filter(|item| !awaited.settled(item.event_position(), &searchable_below))
                .count();
            tracing::warn!(
                alerts = unconfirmed,
                waited_s = MAX_WAIT.as_secs(),
                "listing alerts whose events the events index has not confirmed searchable"
            );
            metrics::counter!("vigil_index_alerts_unconfirmed_total").increment(unconfirmed as u64);
            self.index_items(waiting, shutdown).await?;
        }
        Some(())
    }

    /// Adds `items` to the store, not yet committed. None on shutdown.
    async fn index_items(&self, items: Vec<T>, shutdown: &Shutdown) -> Option<()> {
        let items = Arc::new(items);
        retry!("indexing", shutdown, {
            let (store, items) = (self.store.clone(), items.clone());
            blocking(move || T::index(&store, &items)).await
        })
    }

    /// Commits what was indexed. None on shutdown.
    async fn commit_store(&mut self, shutdown: &Shutdown) -> Option<()> {
        let started = Instant::now();
        retry!("committing the index", shutdown, {
            let store = self.store.clone();
            blocking(move || T::commit(&store)).await
        })?;
        metrics::histogram!("vigil_index_commit_seconds", "group" => T::GROUP)
            .record(started.elapsed().as_secs_f64());
        self.last_commit = Some(Instant::now());
        Some(())
    }

    /// Looks up in the store the events that would settle what `awaited` still waits for,
    /// and notes those it finds. None on shutdown.
    async fn confirm(&self, awaited: &mut Awaited, shutdown: &Shutdown) -> Option<()> {
        let to_confirm = awaited.to_confirm(&self.events_indexed.searchable_below());
        for (partition, offset, events) in to_confirm {
            let wanted = events.len();
            let found = retry!("looking up an alert's events", shutdown, {
                let (store, events) = (self.store.clone(), events.clone());
                blocking(move || store.events_by_id(&events, chrono::Utc::now())).await
            })?;
            if found.len() < wanted {
                continue;
            }
            match partition {
                Some(partition) => self.events_indexed.confirmed(partition, offset),
                None => awaited.unplaced_confirmed(),
            }
        }
        Some(())
    }
}

impl<T: IndexTarget> Stage for IndexStage<T> {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        let items = decode::<T>(batch);
        let count = items.len() as u64;
        let indexed = if T::ORDER == IndexOrder::WaitsForEvents && !items.is_empty() {
            self.index_as_searchable(items, shutdown).await
        } else {
            self.index_items(items, shutdown).await
        };
        if indexed.is_none() {
            return Processed::Stopped;
        }
        // Counted once the whole batch is in: a batch cut short is read again.
        T::count_indexed(count);
        batch.iter().for_each(|d| self.uncommitted.advance(d));
        Processed::All
    }

    async fn make_durable(&mut self, shutdown: &Shutdown) -> bool {
        let committed = self.commit_store(shutdown).await.is_some();
        let uncommitted = std::mem::take(&mut self.uncommitted);
        if committed && T::ORDER == IndexOrder::ReportsProgress {
            self.events_indexed.committed(&uncommitted);
        }
        committed
    }

    fn commit_due(&self, pending: usize, since: Duration) -> bool {
        match T::ORDER {
            IndexOrder::WaitsForEvents => self.alerts_commit_due_in().is_zero(),
            // Early, when alerts wait for events read since the last commit; never more
            // often than a commit takes, so a flood of alerts cannot make commits back to back.
            IndexOrder::ReportsProgress
                if since >= MIN_COMMIT_GAP
                    && self.events_indexed.commit_would_release(&self.uncommitted) =>
            {
                true
            }
            _ => pending >= self.commit_events || since >= self.commit_interval,
        }
    }

    fn commit_due_in(&self, since: Duration) -> Duration {
        let interval_left = self.commit_interval.saturating_sub(since);
        match T::ORDER {
            IndexOrder::WaitsForEvents => self.alerts_commit_due_in(),
            // From the least gap on, an alert that starts waiting makes a commit due at once,
            // and nothing wakes the loop for it: it looks again every `WAITING_ALERTS_POLL`.
            IndexOrder::ReportsProgress if since < MIN_COMMIT_GAP => {
                (MIN_COMMIT_GAP - since).min(interval_left)
            }
            IndexOrder::ReportsProgress => WAITING_ALERTS_POLL.min(interval_left),
            _ => interval_left,
        }
    }
}

/// Per partition, the position of the oldest of `items` that has one.
fn oldest_positions<T: IndexTarget>(items: &[T]) -> Vec<BusPosition> {
    let mut oldest: BTreeMap<u32, u64> = BTreeMap::new();
    for position in items.iter().filter_map(IndexTarget::event_position) {
        let at = oldest.entry(position.partition).or_insert(position.offset);
        *at = (*at).min(position.offset);
    }
    oldest
        .into_iter()
        .map(|(partition, offset)| BusPosition { partition, offset })
        .collect()
}

/// Decodes what it can; detection quarantines unreadable messages, so here they are only counted.
fn decode<T: IndexTarget>(batch: &[Delivery]) -> Vec<T> {
    batch
        .iter()
        .filter_map(|delivery| decode_message(delivery, T::GROUP, T::decode))
        .collect()
}

/// Runs a store call on a blocking thread; Tantivy writes and commits block on disk.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(join) => Err(format!("store task failed: {join}")),
    }
}

/// Removes event partitions past the configured retention, every
/// `index.retention_interval_ms` (a minute by default) until shutdown. Partitions are at least
/// an hour long, so a minute's delay keeps at most a minute's worth of extra data.
///
/// Each pass also measures the store on disk (`vigil_store_bytes`, per part); the limits it
/// is kept within are exported once, at the start, beside it. Without a retention limit the
/// pass removes nothing and only measures.
pub async fn run_retention(store: Arc<Store>, mut shutdown: Shutdown) {
    export_limits(store.options());
    let interval = store.options().retention_interval;
    loop {
        let applied = {
            let store = store.clone();
            blocking(move || store.apply_retention(chrono::Utc::now())).await
        };
        match applied {
            Ok(report) => {
                if !report.removed.is_empty() {
                    tracing::info!(
                        removed = ?report.removed.iter().map(|k| k.dir_name()).collect::<Vec<_>>(),
                        freed_bytes = report.freed_bytes,
                        remaining_bytes = report.remaining_bytes,
                        "retention removed event partitions"
                    );
                    metrics::counter!("vigil_partitions_removed_total")
                        .increment(report.removed.len() as u64);
                }
                export_usage(&report.usage);
            }
            // A failed pass is retried at the next tick; nothing is lost by waiting.
            Err(error) => tracing::error!(%error, "retention failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if stopping(&shutdown) {
            return;
        }
    }
}

/// The limits the store is kept within, as gauges; a limit not configured is not exported,
/// so a ratio to it is no series rather than a division by zero.
fn export_limits(options: &vigil_store::StoreOptions) {
    if let Some(max_bytes) = options.retention.max_bytes {
        metrics::gauge!("vigil_store_retention_max_bytes").set(max_bytes as f64);
    }
    if let Some(max_age) = options.retention.max_age {
        metrics::gauge!("vigil_store_retention_max_age_seconds").set(max_age.num_seconds() as f64);
    }
    metrics::gauge!("vigil_store_quarantine_max_bytes")
        .set(options.quarantine.max_total_bytes as f64);
}

fn export_usage(usage: &vigil_store::DiskUsage) {
    for (part, bytes) in usage.parts() {
        metrics::gauge!("vigil_store_bytes", "part" => part).set(bytes as f64);
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
