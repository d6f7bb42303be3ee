//! The events index: one tantivy index per partition of arrival time (see
//! [`crate::partition`]).
//!
//! Writers are opened for the partitions events arrive in and closed once a commit finds
//! them idle, so a steady stream keeps one or two open. Readers are opened when a search's
//! time range first touches a partition (by the span of event times it holds, see
//! [`spans`]) and kept in a small least-recently-used cache. Spans of partitions may
//! overlap (a backfill arrives today with last month's times), so a search merges each
//! partition's newest hits, reading them newest first and skipping those whose span cannot
//! improve a full page.
//!
//! Its parts, one job each:
//! - [`fields`]: the field names queries use, and the tiebreak an id gives;
//! - `layout`: the on-disk layouts partitions were written with, and what each changes;
//! - `partitions`: the partition directories, their readers and spans, their removal, and the
//!   file recording how they are cut;
//! - `write`: placing events in partitions, once per id, and committing them;
//! - `search`: searches, histograms, facets and events by id, across partitions;
//! - `in_order`: the events of a time range oldest first, a page at a time, for backtests;
//! - `arrivals`: matches counted by when they arrived, which senders cannot choose;
//! - `spans` and `idfilter`: the span of event times and the id filter each partition has.

mod among;
mod arrivals;
pub mod fields;
mod idfilter;
mod in_order;
mod layout;
mod partitions;
mod sample;
mod search;
mod spans;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tantivy::schema::Schema;

use crate::index::{self, lock};
use crate::partition::{self, PartitionKey, PartitionScheme};
use crate::query::translate::QueryFields;
use crate::StoreError;
use idfilter::IdFilter;
pub use in_order::{EventsInOrder, MAX_IN_ORDER_PAGE};
use layout::{query_fields, readable_schemas, schema, EventFields, Layout};
pub use partitions::PartitionInfo;
use partitions::{check_scheme, KnownSpan, ReaderCache};
pub(crate) use partitions::{dir_size, SCHEME_FILE};
use write::PartitionWriter;

/// Counters that show how much work searches did; tests use them to check partition pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Partitions that exist now.
    pub partitions: usize,
    /// Partition readers opened since the store was opened.
    pub readers_opened: u64,
    /// Partitions read by searches, histograms and facets since the store was opened.
    pub partitions_searched: u64,
    /// Partition readers open now.
    pub open_readers: usize,
    /// Partition writers open now.
    pub open_writers: usize,
    /// Events not written because another partition already held their id (a resend that
    /// arrived in another period), since the store was opened.
    pub duplicates_skipped: u64,
    /// Events indexed with `time_suspect` since the store was opened.
    pub suspect_times: u64,
    /// Events whose JSON record was no JSON object (a forged or damaged bus message; ingest
    /// refuses such records), indexed and kept as text records, since the store was opened.
    pub records_as_text: u64,
}

pub(crate) struct EventIndex {
    dir: PathBuf,
    scheme: PartitionScheme,
    read_only: bool,
    max_open_readers: usize,
    /// The schemas partitions may have, the one new partitions get first.
    schemas: Vec<Schema>,
    fields: EventFields,
    /// In [`Layout::READABLE`] order.
    query_fields: Vec<QueryFields>,
    /// Partitions known to exist, with their spans. A writing store is the only one creating
    /// or removing them, so it keeps this up to date; a read-only store lists the directory
    /// and reads the span files for each search, since the writer lives in another process.
    known: Mutex<BTreeMap<PartitionKey, KnownSpan>>,
    readers: Mutex<ReaderCache>,
    writers: Mutex<BTreeMap<PartitionKey, PartitionWriter>>,
    /// The ids each partition may hold, committed or not (a writing store only): an id in
    /// none of them is new everywhere, which is almost every id. Built from a partition's
    /// terms when first needed, then kept up to date by indexing. Taken after `writers`.
    id_filters: Mutex<HashMap<PartitionKey, IdFilter>>,
    /// How far past its arrival an event's own time may lie before it is suspect.
    future_skew: chrono::Duration,
    write_clock: AtomicU64,
    readers_opened: AtomicU64,
    partitions_searched: AtomicU64,
    duplicates_skipped: AtomicU64,
    suspect_times: AtomicU64,
    records_as_text: AtomicU64,
}

impl EventIndex {
    pub(crate) fn open(
        dir: &Path,
        scheme: PartitionScheme,
        read_only: bool,
        max_open_readers: usize,
    ) -> Result<EventIndex, StoreError> {
        let (_, fields) = schema(Layout::CURRENT);
        let schemas = readable_schemas();
        let query_fields = Layout::READABLE
            .into_iter()
            .map(query_fields)
            .collect::<Result<_, _>>()?;
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if dir.join("meta.json").exists() {
            return Err(StoreError::Open {
                path: dir.to_path_buf(),
                source: "this is an unpartitioned events index from an earlier Vigil; move it \
                         aside and replay the bus to rebuild it"
                    .into(),
            });
        }
        if !read_only {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let scheme = check_scheme(dir, scheme, read_only)?;
        let index = EventIndex {
            dir: dir.to_path_buf(),
            scheme,
            read_only,
            max_open_readers: max_open_readers.max(1),
            schemas,
            fields,
            query_fields,
            known: Mutex::new(BTreeMap::new()),
            readers: Mutex::new(ReaderCache {
                open: HashMap::new(),
                clock: 0,
            }),
            writers: Mutex::new(BTreeMap::new()),
            id_filters: Mutex::new(HashMap::new()),
            future_skew: chrono::Duration::seconds(partition::DEFAULT_FUTURE_SKEW_SECONDS),
            write_clock: AtomicU64::new(0),
            readers_opened: AtomicU64::new(0),
            partitions_searched: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            suspect_times: AtomicU64::new(0),
            records_as_text: AtomicU64::new(0),
        };
        let partitions = index.list_partitions()?;
        if !read_only {
            for key in &partitions {
                if !index::terms_readable(&index.partition_dir(*key)) {
                    let rewritten = index.rewrite_partition(*key)?;
                    tracing::info!(
                        partition = %key.dir_name(),
                        events = rewritten,
                        "rewrote a partition's term dictionaries"
                    );
                }
            }
        }
        let mut known = BTreeMap::new();
        if !read_only {
            for key in partitions {
                known.insert(key, index.open_span(key)?);
            }
        }
        *lock(&index.known) = known;
        Ok(index)
    }

    /// Sets how far past its arrival an event's own time may lie before it is suspect.
    pub(crate) fn with_future_skew(mut self, skew: chrono::Duration) -> EventIndex {
        self.future_skew = skew.max(chrono::Duration::zero());
        self
    }

    pub(crate) fn scheme(&self) -> PartitionScheme {
        self.scheme
    }

    pub(crate) fn stats(&self) -> Result<PartitionStats, StoreError> {
        // One lock at a time: inside the struct expression both guards would live to its end,
        // holding `readers` while waiting for `writers`, the reverse of a commit's order.
        let open_readers = lock(&self.readers).open.len();
        let open_writers = lock(&self.writers).len();
        Ok(PartitionStats {
            partitions: self.partitions()?.len(),
            readers_opened: self.readers_opened.load(Ordering::Relaxed),
            partitions_searched: self.partitions_searched.load(Ordering::Relaxed),
            open_readers,
            open_writers,
            duplicates_skipped: self.duplicates_skipped.load(Ordering::Relaxed),
            suspect_times: self.suspect_times.load(Ordering::Relaxed),
            records_as_text: self.records_as_text.load(Ordering::Relaxed),
        })
    }
}
