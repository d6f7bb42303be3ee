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

use chrono::{DateTime, Utc};
use vigil_event::{Alert, Event};

pub use aggregate::{
    interval_for, Bucket, FacetValue, Facets, Histogram, MAX_BUCKETS, MAX_FACET_VALUES,
};
pub use error::StoreError;
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

/// The event and alert indices under one directory.
pub struct Store {
    events: EventIndex,
    alerts: AlertIndex,
}

impl Store {
    /// Opens or creates the indices under `dir` (`dir/events` and `dir/alerts`).
    ///
    /// Only one `Store` may have a directory open at a time; a second open fails while the
    /// first is alive.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            events: EventIndex::open(&dir.join("events"))?,
            alerts: AlertIndex::open(&dir.join("alerts"))?,
        })
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
        Ok(self.events.count())
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
