//! Vigil's store: the Tantivy indices that make events and alerts searchable.
//!
//! Events and alerts arrive from the pipeline in batches, are written with upsert-by-id
//! semantics (a replayed batch leaves one copy of each event) and become visible to searches
//! at [`Store::commit`]. The API is synchronous and does blocking I/O; async callers run it on
//! blocking threads. A [`Store`] is `Send + Sync` and meant to be shared behind an `Arc` by the
//! indexing task and the HTTP handlers.

mod aggregate;
mod alerts;
mod error;
mod events;
mod index;
mod partition;
mod query;

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use vigil_event::{Alert, Event};

pub use aggregate::{
    interval_for, Bucket, FacetValue, Facets, Histogram, MAX_BUCKETS, MAX_FACET_VALUES,
};
pub use error::StoreError;
pub use events::PartitionStats;
pub use partition::{PartitionKey, PartitionScheme};
pub use query::{
    check_query, parse_time, SearchRequest, SearchResults, MAX_QUERY_DEPTH, MAX_QUERY_LEN,
};

/// Names of the fields queries can use.
pub mod schema {
    pub use crate::alerts::fields as alert_fields;
    pub use crate::events::fields as event_fields;
}

use alerts::AlertIndex;
use events::EventIndex;

/// How long events are kept. Whole partitions are removed, so an event may outlive
/// `max_age` by up to one partition period.
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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            partition: PartitionScheme::daily(),
            retention: Retention::default(),
            read_only: false,
            max_open_partitions: 64,
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
}

/// The event and alert indices under one directory.
pub struct Store {
    events: EventIndex,
    alerts: AlertIndex,
    options: StoreOptions,
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
        )?;
        Ok(Store {
            events,
            alerts,
            options,
        })
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
        Ok(RetentionReport {
            removed: removed.iter().map(|r| r.key).collect(),
            freed_bytes,
            remaining_bytes: total.saturating_sub(freed_bytes),
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
        self.events.plan(from, to)
    }

    /// How many partitions searches have read and how many are open.
    pub fn partition_stats(&self) -> Result<PartitionStats, StoreError> {
        self.events.stats()
    }

    /// Events by id, oldest first as asked, looking back from `until`; ids not found are
    /// left out.
    pub fn events_by_id(
        &self,
        ids: &[vigil_event::EventId],
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        self.events.by_ids(ids, until)
    }

    /// Adds events. An event whose id is already indexed replaces the old copy, so replays
    /// are idempotent. Nothing is visible to searches until [`Store::commit`].
    pub fn index_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.events.index(events)
    }

    /// Adds alerts, replacing any with the same id. Visible after [`Store::commit`].
    pub fn index_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        self.alerts.index(alerts)
    }

    /// Makes everything indexed so far durable and searchable; returns once it is both.
    ///
    /// Events are committed before alerts, so a crash in between never leaves an alert whose
    /// events are missing.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.events.commit()?;
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
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Histogram, StoreError> {
        self.events.histogram(query, from, to)
    }

    /// The `n` most frequent values of `field` among events matching `query`: a source
    /// field (`source_kind` gives the counts by source) or any path in the record.
    pub fn facets(
        &self,
        query: &str,
        field: &str,
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Facets, StoreError> {
        self.events.facets(query, field, n, from, to)
    }

    /// Alert counts per rule, most frequent first.
    pub fn alert_counts_by_rule(&self, n: usize) -> Result<Facets, StoreError> {
        self.alerts.counts_by_rule(n)
    }

    /// The newest alerts, by detection time and then by the time of their last event.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.alerts.newest(limit)
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
