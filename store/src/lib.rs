//! Vigil's store: the Tantivy indices that make events and alerts searchable.
//!
//! Events and alerts arrive from the pipeline in batches, are written with upsert-by-id
//! semantics (a replayed batch leaves one copy of each event) and become visible to searches
//! at [`Store::commit`]. The API is synchronous and does blocking I/O; async callers run it on
//! blocking threads. A [`Store`] is `Send + Sync` and meant to be shared behind an `Arc` by the
//! indexing task and the HTTP handlers.

mod aggregate;
mod alerts;
pub mod backup;
mod config;
mod error;
mod events;
mod index;
mod merge_priority;
mod partition;
mod quarantine;
mod query;
mod record;
mod rule_hits;
mod tail;
mod triage;
mod triage_db;
mod word_tokenizer;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use vigil_event::{Alert, AsEventRef, Event, Quarantined};

pub use aggregate::{
    interval_for, Bucket, FacetSample, FacetValue, Facets, Histogram, SampleAbove, MAX_BUCKETS,
    MAX_FACET_VALUES,
};
pub use alerts::AlertFilter;
pub use config::{Config, ConfigError};
pub use error::StoreError;
pub use events::{EventsInOrder, PartitionInfo, PartitionStats, MAX_IN_ORDER_PAGE};
pub use partition::{
    PartitionKey, PartitionScheme, TimeSpan, DEFAULT_FUTURE_SKEW_SECONDS, EARLIEST_PLAUSIBLE_TIME,
};
pub use quarantine::{
    QuarantineFilter, QuarantineLimits, QuarantinePage, QuarantineRecord, DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_TOTAL_BYTES, DEFAULT_PAGE_BYTES, MAX_QUARANTINED, MAX_REASON_BYTES,
};
pub use query::{
    check_query, parse_time, SearchRequest, SearchResults, Visibility, MAX_QUERY_DEPTH,
    MAX_QUERY_LEN,
};
pub use rule_hits::RuleHits;
pub use tail::{Arrived, KEPT_ARRIVALS};
pub use triage::{
    apply_change, AlertChange, AlertState, AlertStatus, CloseReason, HistoryEntry,
    MAX_ASSIGNEE_BYTES, MAX_NOTE_BYTES,
};

/// Names of the fields queries can use.
pub mod schema {
    pub use crate::alerts::fields as alert_fields;
    pub use crate::events::fields as event_fields;
}

use alerts::AlertIndex;
use events::EventIndex;
use quarantine::QuarantineLog;
use triage_db::TriageDb;

/// An alert with its lifecycle state, as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    #[serde(flatten)]
    pub state: AlertState,
}

/// One alert with its state, notes and full history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub view: AlertView,
    /// The notes, oldest first (also in the history, as changes of `note`).
    pub notes: Vec<Note>,
    pub history: Vec<HistoryEntry>,
}

/// A note left on an alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub at: DateTime<Utc>,
    pub author: String,
    pub text: String,
}

/// The file holding the alert lifecycle, beside the indices.
const LIFECYCLE_DB: &str = "alerts.sqlite";
/// The file holding quarantined records, beside the indices.
const QUARANTINE_DB: &str = "quarantine.sqlite";

/// How long events are kept. Whole partitions are removed, so an event may outlive
/// `max_age` by up to one partition period. Partitions are cut by arrival, so an event is kept
/// for `max_age` after Vigil received it, whatever time its record states: an alert raised
/// on an event dated long ago keeps that event as long as any other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove partitions whose whole period ended longer ago than this.
    pub max_age: Option<Duration>,
    /// Then remove the oldest partitions until the events take at most this many bytes.
    pub max_bytes: Option<u64>,
}

/// How a [`Store`] is laid out and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The period of the event partitions. It is recorded on first use; opening with another
    /// period fails rather than misreading the partitions.
    pub partition: PartitionScheme,
    pub retention: Retention,
    /// Open for searching only: no writer, no directory lock, so it can sit beside a running
    /// Vigil that writes the same directory (tantivy's meta lock keeps a reader's files from
    /// being collected while it opens them).
    pub read_only: bool,
    /// Most event partitions kept open for searching at once.
    pub max_open_partitions: usize,
    /// How much of each quarantined record, and of all of them, is kept.
    pub quarantine: QuarantineLimits,
    /// How far past its arrival an event's own time may lie before it is flagged
    /// `time_suspect` and indexed at its arrival instead (see [`TimeSpan`] and the notes in
    /// the partition module).
    pub future_skew: Duration,
    /// How often the retention stage applies [`StoreOptions::retention`].
    pub retention_interval: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            partition: PartitionScheme::daily(),
            retention: Retention::default(),
            read_only: false,
            max_open_partitions: 64,
            quarantine: QuarantineLimits::default(),
            future_skew: Duration::seconds(DEFAULT_FUTURE_SKEW_SECONDS),
            retention_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// What [`Store::apply_retention`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// The partitions removed, oldest first.
    pub removed: Vec<PartitionKey>,
    pub freed_bytes: u64,
    /// What the remaining partitions take on disk.
    pub remaining_bytes: u64,
    /// What each part of the store takes on disk after the pass.
    pub usage: DiskUsage,
}

/// What each part of a [`Store`] takes on disk, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// The event partitions: what `index.retention_max_bytes` limits.
    pub events: u64,
    /// The alerts index.
    pub alerts: u64,
    /// The alert lifecycle database (states, notes, history).
    pub lifecycle: u64,
    /// The quarantine database. Its records are limited by `index.quarantine_max_bytes`, as
    /// counted by `vigil_quarantine_bytes`; the file also holds their index and free pages.
    pub quarantine: u64,
}

impl DiskUsage {
    /// Each part with its name, as the `part` label of `vigil_store_bytes`.
    pub fn parts(&self) -> [(&'static str, u64); 4] {
        [
            ("events", self.events),
            ("alerts", self.alerts),
            ("lifecycle", self.lifecycle),
            ("quarantine", self.quarantine),
        ]
    }
}

/// The size of a SQLite database with its write-ahead log and shared-memory file.
fn database_size(path: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) => total += meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path: file, source }),
        }
    }
    Ok(total)
}

/// The event and alert indices under one directory.
pub struct Store {
    events: EventIndex,
    alerts: AlertIndex,
    triage: TriageDb,
    quarantine: QuarantineLog,
    /// Serializes everything that writes alert documents: indexing reads the lifecycle state
    /// and then writes the document, and a change landing in between would be overwritten
    /// by the stale state.
    alert_writes: std::sync::Mutex<()>,
    options: StoreOptions,
    /// The directory the store was opened in.
    dir: PathBuf,
    /// The ids of the latest committed events, in commit order, for live tails.
    arrivals: tail::ArrivalLog,
}

impl Store {
    /// Opens or creates the indices under `dir` with the default options (daily partitions,
    /// no retention).
    ///
    /// Only one writing `Store` may have a directory open at a time; a second open fails
    /// while the first is alive.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens or creates the indices under `dir` (`dir/events`, one subdirectory per
    /// partition, and `dir/alerts`).
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let read_only = options.read_only;
        // Alerts first: their writer's directory lock is what refuses a second writing store
        // before it touches the event partitions.
        let alerts = AlertIndex::open(&dir.join("alerts"), read_only)?;
        let events = EventIndex::open(
            &dir.join("events"),
            options.partition,
            read_only,
            options.max_open_partitions,
        )?
        .with_future_skew(options.future_skew);
        let triage = TriageDb::open(&dir.join(LIFECYCLE_DB), read_only)?;
        let quarantine =
            QuarantineLog::open(&dir.join(QUARANTINE_DB), read_only, options.quarantine)?;
        let store = Store {
            events,
            alerts,
            triage,
            quarantine,
            alert_writes: std::sync::Mutex::new(()),
            arrivals: tail::ArrivalLog::new(),
            options,
            dir: dir.to_path_buf(),
        };
        if !read_only {
            if store.alerts.needs_rewrite() {
                store.rewrite_alert_index()?;
            }
            store.repair_alert_index()?;
        }
        Ok(store)
    }

    /// Rewrites an alerts index written with term dictionaries this Vigil cannot read (see
    /// `index::TERMS_FILE`), taking each alert's state from the lifecycle database.
    fn rewrite_alert_index(&self) -> Result<(), StoreError> {
        let _writes = index::lock(&self.alert_writes);
        let now = Utc::now();
        let rewritten = self.alerts.rewrite(|alert| {
            let id = alert.id.to_string();
            let mut states = self.triage.states(std::slice::from_ref(&id), now)?;
            states.remove(&id).ok_or_else(|| StoreError::Corrupt {
                id,
                message: "the lifecycle database gave no state".into(),
            })
        })?;
        tracing::info!(
            alerts = rewritten,
            "rewrote the alerts index's term dictionaries"
        );
        Ok(())
    }

    /// Re-indexes alerts whose change was saved but whose index copy may not have been
    /// committed before a crash.
    fn repair_alert_index(&self) -> Result<(), StoreError> {
        let pending = self.triage.pending_reindex()?;
        if pending.is_empty() {
            return Ok(());
        }
        let _writes = index::lock(&self.alert_writes);
        let mut alerts = Vec::new();
        for id in &pending {
            if let Some(alert) = self.alerts.get(id)? {
                alerts.push(alert);
            }
        }
        let ids: Vec<String> = alerts.iter().map(|a| a.id.to_string()).collect();
        let states = self.triage.states(&ids, Utc::now())?;
        let pairs: Vec<(&Alert, &AlertState)> = alerts
            .iter()
            .zip(ids.iter().map(|id| &states[id]))
            .collect();
        self.alerts.index(&pairs)?;
        self.alerts.commit()?;
        self.triage.reindexed(&pending)
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Removes event partitions past the configured retention, by age and then by total size.
    /// The partition holding `now` and the newest one are never removed: they are being
    /// written.
    pub fn apply_retention(&self, now: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        let sizes = self.events.sizes()?;
        let retention = self.options.retention;
        let expired =
            self.events
                .scheme()
                .expired(&sizes, now, retention.max_age, retention.max_bytes);
        let removed = self.events.remove_partitions(&expired)?;
        let freed_bytes = removed.iter().map(|r| r.bytes).sum();
        let total: u64 = sizes.iter().map(|(_, size)| size).sum();
        let remaining_bytes = total.saturating_sub(freed_bytes);
        Ok(RetentionReport {
            removed: removed.iter().map(|r| r.key).collect(),
            freed_bytes,
            remaining_bytes,
            // The partitions were measured above; the rest is measured here.
            usage: self.usage_besides_events(remaining_bytes)?,
        })
    }

    /// What each part of the store takes on disk now.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let partitions = self.events.sizes()?.iter().map(|(_, size)| size).sum();
        self.usage_besides_events(partitions)
    }

    fn usage_besides_events(&self, partitions: u64) -> Result<DiskUsage, StoreError> {
        Ok(DiskUsage {
            events: partitions,
            alerts: events::dir_size(&self.dir.join("alerts"))?,
            lifecycle: database_size(&self.dir.join(LIFECYCLE_DB))?,
            quarantine: database_size(&self.dir.join(QUARANTINE_DB))?,
        })
    }

    /// The event partitions that exist, oldest first.
    pub fn partitions(&self) -> Result<Vec<PartitionKey>, StoreError> {
        self.events.partitions()
    }

    /// The partitions a search over `from..to` reads, newest first.
    pub fn partitions_for(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<PartitionKey>, StoreError> {
        Ok(self
            .events
            .plan(from, to)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// Each event partition's span of event times, events and size on disk, oldest first.
    pub fn partition_infos(&self) -> Result<Vec<events::PartitionInfo>, StoreError> {
        self.events.infos()
    }

    /// How many partitions searches have read and how many are open.
    pub fn partition_stats(&self) -> Result<PartitionStats, StoreError> {
        self.events.stats()
    }

    /// Events by id, in the order asked; ids not found are left out. Any partition may hold
    /// them (events are stored by arrival); those whose events reach `until` are read first.
    pub fn events_by_id(
        &self,
        ids: &[vigil_event::EventId],
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.events.by_ids(ids, until)
    }

    /// Adds events. An event whose id is already indexed replaces the old copy, so replays
    /// are idempotent. Nothing is visible to searches until [`Store::commit`].
    pub fn index_events(&self, events: &[impl AsEventRef]) -> Result<(), StoreError> {
        self.events.index(events)?;
        self.arrivals
            .stage(events.iter().map(|event| *event.as_event_ref().id));
        Ok(())
    }

    /// Adds alerts, replacing any with the same id. Visible after [`Store::commit`].
    ///
    /// A new alert starts open. A replayed one (same rule, same events, so the same id) keeps
    /// the lifecycle state analysts gave it.
    pub fn index_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        let _writes = index::lock(&self.alert_writes);
        let ids: Vec<String> = alerts.iter().map(|a| a.id.to_string()).collect();
        let registered = self.triage.register(&ids, Utc::now())?;
        let pairs: Vec<(&Alert, &AlertState)> = alerts
            .iter()
            .zip(&ids)
            .filter_map(|(alert, id)| registered.states.get(id).map(|state| (alert, state)))
            .collect();
        self.alerts.add(&pairs, &registered.new)
    }

    /// Alerts matching `filter` with their state, newest first.
    pub fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let alerts = self.alerts.list(filter)?;
        self.with_states(alerts)
    }

    /// How many alerts match `filter`, whatever its limit.
    pub fn count_alerts(&self, filter: &AlertFilter) -> Result<usize, StoreError> {
        self.alerts.count(filter)
    }

    fn with_states(&self, alerts: Vec<Alert>) -> Result<Vec<AlertView>, StoreError> {
        let ids: Vec<String> = alerts.iter().map(|a| a.id.to_string()).collect();
        let mut states = self.triage.states(&ids, Utc::now())?;
        Ok(alerts
            .into_iter()
            .zip(ids)
            .map(|(alert, id)| AlertView {
                state: states.remove(&id).expect("states() covers every id"),
                alert,
            })
            .collect())
    }

    /// One alert with its notes and history; [`StoreError::NotFound`] when unknown.
    pub fn alert(&self, id: &str) -> Result<AlertDetail, StoreError> {
        let alert = self
            .alerts
            .get(id)?
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
        let view = self
            .with_states(vec![alert])?
            .pop()
            .expect("one alert in, one out");
        let history = self.triage.history(id)?;
        let notes = history
            .iter()
            .filter(|h| h.field == "note")
            .map(|h| Note {
                at: h.at,
                author: h.actor.clone(),
                text: h.new.clone().unwrap_or_default(),
            })
            .collect();
        Ok(AlertDetail {
            view,
            notes,
            history,
        })
    }

    /// Changes an alert's lifecycle on behalf of `actor`, and makes the new state searchable
    /// before returning. An invalid change is [`StoreError::InvalidChange`] and changes
    /// nothing.
    pub fn update_alert(
        &self,
        id: &str,
        change: &AlertChange,
        actor: &str,
    ) -> Result<AlertDetail, StoreError> {
        let _writes = index::lock(&self.alert_writes);
        let alert = self
            .alerts
            .get(id)?
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
        let state = self.triage.change(id, change, actor, Utc::now())?;
        self.alerts.index(&[(&alert, &state)])?;
        // Committing here also makes durable any alerts the indexer added since its last
        // commit; that only makes them durable sooner than the bus offsets say.
        self.alerts.commit()?;
        self.triage.reindexed(&[id.to_owned()])?;
        drop(_writes);
        self.alert(id)
    }

    /// Makes the same change to many alerts on behalf of `actor`, as [`Store::update_alert`]
    /// does to one, but commits the alerts index once for them all: a commit per alert
    /// makes a bulk triage of a thousand alerts take most of a minute. Gives each alert's
    /// outcome in order: an invalid change or an unknown alert is that alert's error and
    /// changes nothing of it; any other error stops the batch, keeping the changes before it.
    pub fn update_alerts(
        &self,
        ids: &[String],
        change: &AlertChange,
        actor: &str,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let _writes = index::lock(&self.alert_writes);
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut changed: Vec<String> = Vec::new();
        let mut failure = None;
        for id in ids {
            let step = self.alerts.get(id).and_then(|alert| {
                let alert = alert.ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
                let state = self.triage.change(id, change, actor, Utc::now())?;
                self.alerts.index(&[(&alert, &state)])
            });
            match step {
                Ok(()) => {
                    changed.push(id.clone());
                    outcomes.push(Ok(()));
                }
                Err(error @ (StoreError::InvalidChange(_) | StoreError::NotFound { .. })) => {
                    outcomes.push(Err(error));
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        // Saved changes whose index copy is not committed are re-indexed on the next open.
        self.alerts.commit()?;
        self.triage.reindexed(&changed)?;
        match failure {
            Some(error) => Err(error),
            None => Ok(outcomes),
        }
    }

    /// The events of an alert, oldest first; events already removed by retention are
    /// missing.
    pub fn alert_events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        let alert = self
            .alerts
            .get(id)?
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
        self.events.by_ids(&alert.event_ids, alert.time)
    }

    /// Makes everything indexed so far durable and searchable; returns once it is both.
    ///
    /// Events are committed before alerts, so a crash in between never leaves an alert whose
    /// events are missing.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.commit_events()?;
        self.commit_alerts()
    }

    /// Makes the events indexed so far durable and searchable, and only them.
    ///
    /// The pipeline commits events and alerts apart, each at its own pace: committing the
    /// events index is the costly part, and an alert should not wait for a commit of events
    /// it does not refer to. Whoever commits alerts alone keeps the order [`Store::commit`]
    /// keeps (an alert never searchable before its events); the pipeline's alerts indexer
    /// waits for the events indexer's progress on the bus for that.
    pub fn commit_events(&self) -> Result<(), StoreError> {
        // Taken first: what was staged by now was indexed before this commit (see tail.rs).
        let staged = self.arrivals.take_staged();
        if let Err(error) = self.events.commit() {
            self.arrivals.restage(staged);
            return Err(error);
        }
        self.arrivals.committed(staged);
        Ok(())
    }

    /// Makes the alerts indexed so far durable and listed, and only them; see
    /// [`Store::commit_events`] for the order this leaves to the caller.
    pub fn commit_alerts(&self) -> Result<(), StoreError> {
        self.alerts.commit()
    }

    /// Searches events; hits are the newest matching events, newest first.
    ///
    /// A query with bad syntax gives [`StoreError::Query`].
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        self.events.search(request)
    }

    /// How many events matching `query` fall in each interval of the time range; the
    /// interval is chosen for the range ([`interval_for`]). Without a range, the histogram
    /// spans the matching events.
    pub fn histogram(
        &self,
        query: &str,
        visibility: &Visibility,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Histogram, StoreError> {
        self.events.histogram(query, visibility, from, to)
    }

    /// The `n` most frequent values of `field` among events matching `query`: a source
    /// field (`source_kind` gives the counts by source) or any path in the record.
    pub fn facets(
        &self,
        query: &str,
        visibility: &Visibility,
        field: &str,
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Facets, StoreError> {
        self.events.facets(query, visibility, field, n, from, to)
    }

    /// [`Store::facets`] for each of `fields`, counted in one pass over the matching events
    /// rather than one pass per field, as a page with a sidebar of fields asks for. Each
    /// field gets its values or its own error; a bad query fails them all. With
    /// `sample_above`, when more events match than its limit, an even sample of about that
    /// many is counted and each facet's `sample` says so.
    #[allow(clippy::too_many_arguments)]
    pub fn facets_of_fields(
        &self,
        query: &str,
        visibility: &Visibility,
        fields: &[String],
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        sample_above: Option<SampleAbove>,
    ) -> Result<Vec<Result<Facets, StoreError>>, StoreError> {
        self.events
            .facets_of_fields(query, visibility, fields, n, from, to, sample_above)
    }

    /// How many events matching `query` arrived (were received by Vigil) in each interval
    /// of `from..to`. Unlike [`Store::histogram`], senders cannot move events in it by
    /// dating them: what rates and silences are read from.
    pub fn arrival_histogram(
        &self,
        query: &str,
        visibility: &Visibility,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Histogram, StoreError> {
        self.events.arrival_histogram(query, visibility, from, to)
    }

    /// How many events matching `query` that arrived in `from..to` arrived more than
    /// `lateness` after their own time (partitions written before arrivals were kept add
    /// nothing).
    pub fn late_arrivals(
        &self,
        query: &str,
        visibility: &Visibility,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        lateness: Duration,
    ) -> Result<u64, StoreError> {
        self.events
            .late_arrivals(query, visibility, from, to, lateness)
    }

    /// The event matching `query` that arrived last, whatever its own time.
    pub fn last_arrived(
        &self,
        query: &str,
        visibility: &Visibility,
    ) -> Result<Option<Event>, StoreError> {
        self.events.last_arrived(query, visibility)
    }

    /// Alert counts per rule, most frequent first.
    pub fn alert_counts_by_rule(&self, n: usize) -> Result<Facets, StoreError> {
        self.alerts.counts_by_rule(n)
    }

    /// The newest alerts, by detection time and then by the time of their last event.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alerts.newest(limit)
    }

    /// Keeps records that could not become events; those already kept are skipped, so a bus
    /// replay adds nothing. Durable when it returns. Gives how many were new.
    pub fn add_quarantined(&self, records: &[Quarantined]) -> Result<usize, StoreError> {
        self.quarantine.add(records)
    }

    /// One page of quarantined records, newest first, each record's raw bytes cut to what
    /// the quarantine keeps of it (see [`QuarantineLimits`]).
    pub fn quarantined(&self, filter: &QuarantineFilter) -> Result<QuarantinePage, StoreError> {
        self.quarantine.list(filter)
    }

    /// The number of events searchable now (replaced copies not counted).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        self.events.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<StoreError>();
    }
}
