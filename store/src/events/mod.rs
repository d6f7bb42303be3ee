//! The events index: one tantivy index per partition of arrival time (see
//! [`crate::partition`]).
//!
//! Writers are opened for the partitions events arrive in and closed once a commit finds
//! them idle, so a steady stream keeps one or two open. Readers are opened when a search's
//! time range first touches a partition (by the span of event times it holds, see
//! [`crate::spans`]) and kept in a small least-recently-used cache. Spans of partitions may
//! overlap (a backfill arrives today with last month's times), so a search merges each
//! partition's newest hits, reading them newest first and skipping those whose span cannot
//! improve a full page.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::indexer::UserOperation;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{
    Field, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
    STORED, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, IndexReader, IndexWriter, Order, Searcher, TantivyDocument, Term};

use vigil_event::{Event, EventId};

use crate::aggregate;
use crate::idfilter::IdFilter;
use crate::index::{self, lock};
use crate::partition::{self, PartitionKey, PartitionScheme, TimeSpan};
use crate::query::eventid::EventIdQuery;
use crate::query::translate::{EventIdFields, QueryFields, Translator, WholeWords};
use crate::query::{self, Cursor, SearchRequest, SearchResults};
use crate::record::RecordValue;
use crate::spans;
use crate::StoreError;

/// Field names of the events index. Queries name them directly (`source_kind:cloudtrail`), so
/// they are part of the search language and change only with it.
pub mod fields {
    pub const ID: &str = "id";
    pub const TIME: &str = "time";
    pub const SOURCE_KIND: &str = "source_kind";
    pub const SOURCE_NAME: &str = "source_name";
    pub const PRODUCT: &str = "product";
    pub const SERVICE: &str = "service";
    pub const CATEGORY: &str = "category";
    pub const RECORD: &str = "record";
    pub const TEXT: &str = "text";
    pub const DOC: &str = "doc";
    /// Orders events with the same time; see [`super::tiebreak`].
    pub const TIEBREAK: &str = "tiebreak";
    /// `true` on events whose own time is implausible (see [`crate::partition::place`]);
    /// absent on the others.
    pub const TIME_SUSPECT: &str = "time_suspect";
}

/// Indexing is the hot path, so the writer of the current partition gets two threads (one
/// per core here).
const WRITER_THREADS: usize = 2;
/// Shared by the writer's threads. Each thread flushes a segment when its share fills, and
/// small segments are merged again and again: at 50 MB, merging took a sixth of the indexing
/// CPU and per-core throughput fell as the partition grew. 400 MB gave 1.5x the events per
/// CPU second on the store benchmark (benches/store_throughput.rs).
const WRITER_MEMORY: usize = 400_000_000;
/// Older partitions take events that arrived in an earlier period, one thread's worth: a
/// backlog on the bus indexed after the period turned, or a replay of the bus. Those can be
/// most events for a while, and each flush of a small segment has a fixed cost per record
/// path (a term dictionary and a column for each): at 20 MB the store benchmark indexed 1.4x
/// fewer events per CPU second when partitions followed event times and its events spanned
/// the last day. The budget is only taken as events arrive, so a writer with a trickle of
/// late events stays small.
const LATE_WRITER_MEMORY: usize = 200_000_000;
/// Documents are handed to a writer's threads a few at a time. One at a time, the indexing
/// loop waited on the writer's full queue once per document, and the spinning and parking
/// took about a seventh of its time. Tantivy queues up to 10,000 hand-offs, each holding its
/// documents in memory, so this stays small.
const DOCS_PER_HANDOFF: usize = 4;
/// Most partitions written at once. Partitions follow arrival, so a stream writes one, two
/// when a period turns; a backlog on the bus that arrived over more periods commits and
/// closes the least recently used writer to open another, which only makes those events
/// durable early. Event times, which senders choose, never open a writer.
const MAX_OPEN_WRITERS: usize = 4;
/// Written beside the partitions: the period they were cut with, and since when by arrival
/// (see `check_scheme`). Cutting daily partitions as hourly ones would mix periods within a
/// partition, and retention removes whole partitions by their period.
pub(crate) const SCHEME_FILE: &str = "partitioning.json";

#[derive(Clone, Copy)]
struct EventFields {
    id: Field,
    time: Field,
    source_kind: Field,
    source_name: Field,
    product: Field,
    service: Field,
    category: Field,
    record: Field,
    text: Field,
    doc: Field,
    tiebreak: Field,
    /// Only in partitions of [`Layout::SuspectTimes`] and later.
    time_suspect: Field,
}

/// The layouts of event partitions, oldest first. Partitions are written once and kept, so a
/// partition cut by an earlier Vigil keeps its layout, and each new layout keeps the fields,
/// their order and their types, changing only how they are indexed. Queries are translated
/// for each layout they meet (see [`LayoutQueries`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    /// Time and tiebreak were also indexed as terms.
    First,
    /// Time and tiebreak are columns only: range queries read a fast field's column whether
    /// or not it is indexed, so the terms were never read, and they cost two unique terms
    /// per event in every term dictionary.
    ColumnsOnly,
    /// As `ColumnsOnly`, with record and text words cut by [`index::WORDS_TOKENIZER`]: a
    /// UUID is one word rather than five. The parts of UUIDs were nine in ten of the distinct
    /// record words of the store benchmark's partitions.
    Words,
    /// As `Words`, with the id stored but not indexed, and the tiebreak (its first eight
    /// bytes) indexed in its place; ids are found as [`EventIdQuery`] explains.
    IdsByTiebreak,
    /// As `IdsByTiebreak`, with record and text words cut by
    /// [`index::VALUE_WORDS_TOKENIZER`]: an RFC 3339 time and an IPv4 address are one word
    /// each, as a UUID is. Cut apart, they gave four to six words each, nearly all of them
    /// words every event has; whole, the store benchmark needed 1.02x to 1.05x less CPU per
    /// event (three runs beside the build before).
    WholeValues,
    /// As `WholeValues`, with a `time_suspect` keyword after the other fields, set on events
    /// whose own time is implausible; partitions are cut by arrival from this layout on
    /// (partitions of earlier layouts were cut by event time, and may still be written when
    /// their period is the current one).
    SuspectTimes,
}

impl Layout {
    /// Every layout this store reads, the one new partitions get first.
    const READABLE: [Layout; 6] = [
        Layout::SuspectTimes,
        Layout::WholeValues,
        Layout::IdsByTiebreak,
        Layout::Words,
        Layout::ColumnsOnly,
        Layout::First,
    ];
    const CURRENT: Layout = Layout::READABLE[0];

    /// This layout's place in [`Layout::READABLE`], and in tables that follow it.
    fn slot(self) -> usize {
        Layout::READABLE
            .iter()
            .position(|layout| *layout == self)
            .expect("every layout is readable")
    }

    /// How record and text values are cut into words when indexed. [`Layout::analyzer`] must
    /// cut a query the same way, so the two choose side by side.
    fn text_indexing(self) -> TextFieldIndexing {
        match self {
            Layout::First | Layout::ColumnsOnly => index::text_indexing(),
            Layout::Words | Layout::IdsByTiebreak => index::words_indexing(),
            Layout::WholeValues | Layout::SuspectTimes => index::value_words_indexing(),
        }
    }

    /// The words of record and text values: how the index cut them, and so how a query must.
    fn analyzer(self) -> TextAnalyzer {
        match self {
            Layout::First | Layout::ColumnsOnly => index::text_analyzer(),
            Layout::Words | Layout::IdsByTiebreak => index::words_analyzer(),
            Layout::WholeValues | Layout::SuspectTimes => index::value_words_analyzer(),
        }
    }

    /// The id has no term; the tiebreak's term and the stored id find it.
    fn ids_by_tiebreak(self) -> bool {
        matches!(
            self,
            Layout::IdsByTiebreak | Layout::WholeValues | Layout::SuspectTimes
        )
    }

    /// Whether the layout has the `time_suspect` field.
    fn flags_suspect_times(self) -> bool {
        matches!(self, Layout::SuspectTimes)
    }

    /// Which values [`Layout::analyzer`] keeps as one word.
    fn whole_words(self) -> WholeWords {
        match self {
            Layout::First | Layout::ColumnsOnly => WholeWords::None,
            Layout::Words | Layout::IdsByTiebreak => WholeWords::Uuids,
            Layout::WholeValues | Layout::SuspectTimes => WholeWords::UuidsTimesAndAddresses,
        }
    }

    /// A query for exactly these events in a partition of this layout.
    fn ids_query<'a>(
        self,
        fields: &EventFields,
        ids: impl IntoIterator<Item = &'a EventId>,
    ) -> Box<dyn Query> {
        if self.ids_by_tiebreak() {
            Box::new(EventIdQuery::ids(fields.tiebreak, fields.id, ids))
        } else {
            let terms = ids
                .into_iter()
                .map(|id| Term::from_field_text(fields.id, &id.to_string()));
            Box::new(tantivy::query::TermSetQuery::new(terms))
        }
    }
}

/// The schemas of every readable layout, the current one first.
fn readable_schemas() -> Vec<Schema> {
    Layout::READABLE
        .iter()
        .map(|layout| schema(*layout).0)
        .collect()
}

fn schema(layout: Layout) -> (Schema, EventFields) {
    let mut builder = Schema::builder();
    let keyword = index::keyword;
    // The record's words are lowercased and split like prose: `eventName:consolelogin` and
    // `userAgent:curl` match, and phrases (`"10.0.0.1"`) match runs of words.
    let text_indexing = layout.text_indexing();
    let record_options = JsonObjectOptions::default()
        .set_indexing_options(text_indexing.clone())
        // Kubernetes annotation keys such as `authorization.k8s.io/decision` hold dots; expanding
        // them lets the same dotted path reach a nested object or a dotted key.
        .set_expand_dots_enabled()
        // The raw values as columns: numeric ranges, `field:*` and facets read them instead
        // of walking the term dictionary.
        .set_fast("raw");
    let (time, tiebreak) = match layout {
        Layout::First => (
            index::timestamp(),
            NumericOptions::default().set_indexed().set_fast(),
        ),
        Layout::ColumnsOnly | Layout::Words => (
            index::fast_timestamp(),
            NumericOptions::default().set_fast(),
        ),
        Layout::IdsByTiebreak | Layout::WholeValues | Layout::SuspectTimes => (
            index::fast_timestamp(),
            NumericOptions::default().set_indexed().set_fast(),
        ),
    };
    let id: TextOptions = if layout.ids_by_tiebreak() {
        STORED.into()
    } else {
        STRING | STORED
    };
    let fields = EventFields {
        id: builder.add_text_field(fields::ID, id),
        time: builder.add_date_field(fields::TIME, time),
        source_kind: builder.add_text_field(fields::SOURCE_KIND, keyword()),
        source_name: builder.add_text_field(fields::SOURCE_NAME, keyword()),
        product: builder.add_text_field(fields::PRODUCT, keyword()),
        service: builder.add_text_field(fields::SERVICE, keyword()),
        category: builder.add_text_field(fields::CATEGORY, keyword()),
        record: builder.add_json_field(fields::RECORD, record_options),
        text: builder.add_text_field(
            fields::TEXT,
            TextOptions::default().set_indexing_options(text_indexing),
        ),
        doc: builder.add_text_field(fields::DOC, STORED),
        tiebreak: builder.add_u64_field(fields::TIEBREAK, tiebreak),
        // Every layout has the fields above, in that order. Only the fields of the current
        // layout are written, and this stands in for a field that older layouts lack.
        time_suspect: Field::from_field_id(u32::MAX),
    };
    let fields = if layout.flags_suspect_times() {
        EventFields {
            time_suspect: builder.add_text_field(fields::TIME_SUSPECT, index::keyword()),
            ..fields
        }
    } else {
        fields
    };
    (builder.build(), fields)
}

/// One partition's reader (which keeps its index open).
pub(crate) struct Partition {
    reader: IndexReader,
    layout: Layout,
}

/// A request's query translated for each layout its partitions have, since each cuts words
/// its own way. Only those are translated: compiling a wildcard's automaton takes
/// milliseconds, which a leading wildcard's search time showed three times over.
struct LayoutQueries {
    /// In [`Layout::READABLE`] order; `None` for layouts not searched.
    queries: Vec<Option<Box<dyn Query>>>,
}

impl LayoutQueries {
    fn get(&self, layout: Layout) -> &dyn Query {
        self.queries[layout.slot()]
            .as_deref()
            .expect("the query is translated for every layout searched")
    }

    /// Each query with `more` as a further condition.
    fn and(&self, more: &dyn Query) -> LayoutQueries {
        LayoutQueries {
            queries: self
                .queries
                .iter()
                .map(|query| {
                    query.as_ref().map(|query| {
                        Box::new(BooleanQuery::new(vec![
                            (Occur::Must, query.box_clone()),
                            (Occur::Must, more.box_clone()),
                        ])) as Box<dyn Query>
                    })
                })
                .collect(),
        }
    }
}

struct PartitionWriter {
    writer: IndexWriter<TantivyDocument>,
    partition: Arc<Partition>,
    /// The ids added since the last commit, which its reader does not see yet: another
    /// partition's event with one of these ids is a second copy.
    pending: HashSet<EventId>,
    /// Written since the last commit.
    dirty: bool,
    last_use: u64,
}

/// The span of event times of a partition a writing store knows of.
#[derive(Clone, Copy, Default)]
struct KnownSpan {
    /// What the partition holds, committed or not; `None` while it holds nothing.
    span: Option<TimeSpan>,
    /// What its span file says; a commit first rewrites the file when `span` is wider.
    recorded: Option<TimeSpan>,
}

/// Partitions opened for reading, least recently used evicted first.
struct ReaderCache {
    open: HashMap<PartitionKey, (Arc<Partition>, u64)>,
    clock: u64,
}

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
}

/// An event ready to be written: where, at which time, and its document.
struct Placed {
    key: PartitionKey,
    id: EventId,
    /// The time it is indexed at (see [`partition::place`]).
    time: DateTime<Utc>,
    suspect: bool,
    doc: TantivyDocument,
}

/// What [`EventIndex::remove_partitions`] freed.
pub(crate) struct Removed {
    pub(crate) key: PartitionKey,
    pub(crate) bytes: u64,
}

/// The second sort key after time, taken from the id: hits with equal times then come in a
/// fixed order, which a cursor needs to resume exactly where a page ended.
pub(crate) fn tiebreak(id: &EventId) -> u64 {
    let bytes = id.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(first)
}

/// The layout a partition was written with, if this store reads it.
fn layout_of(written: &Schema) -> Option<Layout> {
    Layout::READABLE
        .into_iter()
        .find(|layout| schema(*layout).0 == *written)
}

fn query_fields(layout: Layout) -> Result<QueryFields, StoreError> {
    let schema = schema(layout).0;
    let field = |name: &str| schema.get_field(name).map_err(StoreError::Index);
    let mut keywords = vec![
        fields::SOURCE_KIND,
        fields::SOURCE_NAME,
        fields::PRODUCT,
        fields::SERVICE,
        fields::CATEGORY,
    ];
    let event_ids = if layout.ids_by_tiebreak() {
        Some(EventIdFields {
            name: fields::ID,
            tiebreak: field(fields::TIEBREAK)?,
            id: field(fields::ID)?,
        })
    } else {
        keywords.insert(0, fields::ID);
        None
    };
    if layout.flags_suspect_times() {
        keywords.push(fields::TIME_SUSPECT);
    }
    Ok(QueryFields {
        record: field(fields::RECORD)?,
        record_name: fields::RECORD,
        text: field(fields::TEXT)?,
        text_name: fields::TEXT,
        bare_terms_in_record: true,
        time: field(fields::TIME)?,
        time_name: fields::TIME,
        keywords: keywords
            .into_iter()
            .map(|name| Ok((name, field(name)?)))
            .collect::<Result<_, StoreError>>()?,
        hidden: vec![fields::DOC, fields::TIEBREAK],
        analyzer: layout.analyzer(),
        whole_words: layout.whole_words(),
        event_ids,
    })
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

    /// The span of an existing partition, for a writing store: its span file, or else its
    /// time columns, then recorded in a span file so the next open need not read them.
    fn open_span(&self, key: PartitionKey) -> Result<KnownSpan, StoreError> {
        let dir = self.partition_dir(key);
        if let Some(recorded) = spans::read(&dir) {
            return Ok(KnownSpan {
                span: Some(recorded),
                recorded: Some(recorded),
            });
        }
        let read = self
            .partition(key)
            .and_then(|partition| spans::from_columns(&partition.reader.searcher()));
        match read {
            Ok(span) => {
                if let Some(span) = &span {
                    spans::write(&dir, span)?;
                }
                Ok(KnownSpan {
                    span,
                    recorded: span,
                })
            }
            Err(error) => {
                // Searches still try it, and say their results are incomplete when it fails.
                tracing::error!(partition = %key.dir_name(), %error, "cannot read a partition");
                Ok(KnownSpan {
                    span: Some(TimeSpan::everything()),
                    recorded: None,
                })
            }
        }
    }

    /// The span of a partition as a read-only store sees it: its span file, or else its time
    /// columns. A partition that cannot be read gets an open span, so that a search tries it
    /// and reports its results as incomplete rather than skipping it unseen.
    fn read_span(&self, key: PartitionKey) -> Option<TimeSpan> {
        if let Some(recorded) = spans::read(&self.partition_dir(key)) {
            return Some(recorded);
        }
        match self.partition(key) {
            Ok(partition) => spans::from_columns(&partition.reader.searcher())
                .unwrap_or(Some(TimeSpan::everything())),
            Err(_) => Some(TimeSpan::everything()),
        }
    }

    /// Rewrites a partition written with term dictionaries this Vigil cannot read (see
    /// [`index::TERMS_FILE`]) from its stored events, keeping its layout. Returns how many
    /// events it rewrote.
    fn rewrite_partition(&self, key: PartitionKey) -> Result<u64, StoreError> {
        let dir = self.partition_dir(key);
        let index = index::open_index(&dir, &self.schemas, false)?;
        let mut writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY)
            .map_err(|e| StoreError::Open {
                path: dir.clone(),
                source: Box::new(e),
            })?;
        let searcher = index::reader(&index, false)?.searcher();
        let rewritten = index::rewrite_documents(&writer, &searcher, |doc| {
            // Kept as it was indexed: partitions of these layouts were cut by event time.
            let event = self.stored_event(doc)?;
            self.document(&event, event.time)
        })?;
        writer.commit()?;
        writer.wait_merging_threads()?;
        index::mark_terms_readable(&dir)?;
        Ok(rewritten)
    }

    pub(crate) fn scheme(&self) -> PartitionScheme {
        self.scheme
    }

    /// The partition directories under the index directory.
    fn list_partitions(&self) -> Result<BTreeSet<PartitionKey>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut keys = BTreeSet::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(PartitionKey::from_dir_name) else {
                continue;
            };
            // A partition directory without meta.json was created but never written (or a
            // removal was interrupted); it holds nothing to search.
            if entry.path().join("meta.json").exists() {
                keys.insert(key);
            }
        }
        Ok(keys)
    }

    pub(crate) fn partitions(&self) -> Result<Vec<PartitionKey>, StoreError> {
        if self.read_only {
            return Ok(self.list_partitions()?.into_iter().collect());
        }
        Ok(lock(&self.known).keys().copied().collect())
    }

    /// The partitions with the span of event times each holds (`None`: nothing yet).
    fn spanned(&self) -> Result<Vec<(PartitionKey, Option<TimeSpan>)>, StoreError> {
        if self.read_only {
            return Ok(self
                .list_partitions()?
                .into_iter()
                .map(|key| (key, self.read_span(key)))
                .collect());
        }
        Ok(lock(&self.known)
            .iter()
            .map(|(key, known)| (*key, known.span))
            .collect())
    }

    fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.dir.join(key.dir_name())
    }

    /// The partition's reader, opened on first use and cached.
    fn partition(&self, key: PartitionKey) -> Result<Arc<Partition>, StoreError> {
        let mut cache = lock(&self.readers);
        cache.clock += 1;
        let now = cache.clock;
        if let Some((partition, used)) = cache.open.get_mut(&key) {
            *used = now;
            return Ok(partition.clone());
        }
        let dir = self.partition_dir(key);
        let index = index::open_index(&dir, &self.schemas, false)?;
        // A writing store rewrote every such partition when it opened.
        if !index::terms_readable(&dir) {
            return Err(StoreError::NeedsRewrite { path: dir });
        }
        let reader = index::reader(&index, self.read_only)?;
        let partition = Arc::new(Partition {
            reader,
            layout: self.layout(key, &index)?,
        });
        self.readers_opened.fetch_add(1, Ordering::Relaxed);
        if cache.open.len() >= self.max_open_readers {
            // A partition with an open writer may be evicted too: the writer keeps its own
            // handle and puts it back at its next commit.
            if let Some(oldest) = cache
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key)
            {
                cache.open.remove(&oldest);
            }
        }
        cache.open.insert(key, (partition.clone(), now));
        Ok(partition)
    }

    /// The writer of `key`'s partition, creating the partition when it is new.
    fn writer<'w>(
        &self,
        writers: &'w mut BTreeMap<PartitionKey, PartitionWriter>,
        key: PartitionKey,
    ) -> Result<&'w mut PartitionWriter, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let tick = self.write_clock.fetch_add(1, Ordering::Relaxed);
        if !writers.contains_key(&key) {
            if writers.len() >= MAX_OPEN_WRITERS {
                let victim = writers
                    .iter()
                    .min_by_key(|(_, w)| w.last_use)
                    .map(|(key, _)| *key);
                if let Some(victim) = victim.and_then(|v| writers.remove(&v).map(|w| (v, w))) {
                    self.close_writer(victim.0, victim.1)?;
                }
            }
            let dir = self.partition_dir(key);
            let index = index::open_index(&dir, &self.schemas, true)?;
            let current = key >= self.scheme.key(Utc::now());
            let (threads, memory) = if current {
                (WRITER_THREADS, WRITER_MEMORY)
            } else {
                (1, LATE_WRITER_MEMORY)
            };
            // The directory lock taken here is what stops two processes writing a partition.
            let writer = index
                .writer_with_num_threads(threads, memory)
                .map_err(|e| StoreError::Open {
                    path: dir.clone(),
                    source: Box::new(e),
                })?;
            let reader = index::reader(&index, false)?;
            let layout = self.layout(key, &index)?;
            // The span file may be missing or (restored beside newer data) narrower than what
            // the partition holds; the columns say what it holds before more is added.
            if let Some(held) = spans::from_columns(&reader.searcher())? {
                let mut known = lock(&self.known);
                let entry = known.entry(key).or_default();
                entry.span = Some(entry.span.map_or(held, |span| span.union(held)));
            }
            let partition = Arc::new(Partition { reader, layout });
            writers.insert(
                key,
                PartitionWriter {
                    writer,
                    partition,
                    pending: HashSet::new(),
                    dirty: false,
                    last_use: tick,
                },
            );
        }
        let writer = writers.get_mut(&key).expect("inserted above");
        writer.last_use = tick;
        Ok(writer)
    }

    fn layout(&self, key: PartitionKey, index: &tantivy::Index) -> Result<Layout, StoreError> {
        // `open_index` has checked the schema against the readable ones already.
        layout_of(&index.schema()).ok_or_else(|| StoreError::Open {
            path: self.partition_dir(key),
            source: "the index was written with a different schema".into(),
        })
    }

    /// The ids a partition holds, read from its committed segments' term dictionaries. Only a
    /// writing store builds these, and it is the only writer, so no commit it does not know of
    /// can land after this read.
    fn id_filter(&self, searcher: &Searcher, layout: Layout) -> Result<IdFilter, StoreError> {
        let segments = searcher.segment_readers();
        let docs: u64 = segments.iter().map(|s| u64::from(s.max_doc())).sum();
        // Sized for what the partition holds: every partition has a filter, and most are no
        // longer written. One that grows adds a layer (see idfilter.rs).
        let mut filter = IdFilter::with_capacity(usize::try_from(docs).unwrap_or(usize::MAX));
        let indexed = if layout.ids_by_tiebreak() {
            self.fields.tiebreak
        } else {
            self.fields.id
        };
        for segment in segments {
            let inverted = segment.inverted_index(indexed)?;
            let mut terms = inverted.terms().stream().map_err(|source| StoreError::Io {
                path: self.dir.clone(),
                source,
            })?;
            while terms.advance() {
                let key = terms.key();
                if layout.ids_by_tiebreak() {
                    // A u64 term's key is its value, big-endian.
                    if let Ok(bytes) = <[u8; 8]>::try_from(key) {
                        filter.insert_tiebreak(u64::from_be_bytes(bytes));
                    }
                } else if let Some(id) = std::str::from_utf8(key)
                    .ok()
                    .and_then(|text| text.parse::<EventId>().ok())
                {
                    // Ids are written by `document` as their 32 hex digits; anything else
                    // cannot be asked for by a new event either.
                    filter.insert(&id);
                }
            }
        }
        Ok(filter)
    }

    /// Commits a writer's pending changes and closes it.
    fn close_writer(
        &self,
        key: PartitionKey,
        mut writer: PartitionWriter,
    ) -> Result<(), StoreError> {
        if writer.dirty {
            self.commit_writer(key, &mut writer)?;
        }
        Ok(())
    }

    fn commit_writer(
        &self,
        key: PartitionKey,
        writer: &mut PartitionWriter,
    ) -> Result<(), StoreError> {
        // The span file must cover what the commit makes durable before the commit does, or
        // a crash in between would hide those events from searches over their times.
        let (span, recorded) = {
            let known = lock(&self.known);
            let entry = known.get(&key).copied().unwrap_or_default();
            (entry.span, entry.recorded)
        };
        if let Some(span) = span {
            if !recorded.is_some_and(|recorded| recorded.covers(&span)) {
                spans::write(&self.partition_dir(key), &span)?;
                lock(&self.known).entry(key).or_default().recorded = Some(span);
            }
        }
        writer.writer.commit()?;
        writer.partition.reader.reload()?;
        writer.dirty = false;
        writer.pending.clear();
        lock(&self.known).entry(key).or_default();
        // Searches read through the cache; the writer's handle is the one that sees its
        // commits, so it replaces whatever the cache holds.
        let mut cache = lock(&self.readers);
        cache.clock += 1;
        let now = cache.clock;
        cache.open.insert(key, (writer.partition.clone(), now));
        Ok(())
    }

    pub(crate) fn index(&self, events: &[Event]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let now = Utc::now();
        // Documents are built before taking the writers so that serialization does not hold
        // them.
        let mut placed = Vec::with_capacity(events.len());
        for event in events {
            let placement = partition::place(event.time, event.received, now, self.future_skew);
            placed.push(Placed {
                key: self.scheme.key(placement.arrival),
                id: event.id,
                time: placement.indexed_time,
                suspect: placement.time_suspect,
                doc: self.document(event, placement.indexed_time)?,
            });
        }
        let mut writers = lock(&self.writers);
        let first = self.first_copies(&writers, &placed)?;
        let mut by_partition: BTreeMap<PartitionKey, Vec<Placed>> = BTreeMap::new();
        let mut duplicates = 0;
        for (event, first) in placed.into_iter().zip(first) {
            if first {
                by_partition.entry(event.key).or_default().push(event);
            } else {
                duplicates += 1;
            }
        }
        if duplicates > 0 {
            self.duplicates_skipped
                .fetch_add(duplicates, Ordering::Relaxed);
        }
        let mut handoff = Vec::with_capacity(2 * DOCS_PER_HANDOFF);
        for (key, docs) in by_partition {
            let held = docs
                .iter()
                .map(|event| TimeSpan::of(event.time))
                .reduce(TimeSpan::union);
            if let Some(held) = held {
                let mut known = lock(&self.known);
                let entry = known.entry(key).or_default();
                entry.span = Some(entry.span.map_or(held, |span| span.union(held)));
            }
            let writer = self.writer(&mut writers, key)?;
            let flags_suspect = writer.partition.layout.flags_suspect_times();
            let mut filters = lock(&self.id_filters);
            let ids = filters
                .get_mut(&key)
                .expect("first_copies gives every partition written a filter");
            for event in docs {
                let mut doc = event.doc;
                if event.suspect {
                    self.suspect_times.fetch_add(1, Ordering::Relaxed);
                    if flags_suspect {
                        doc.add_text(self.fields.time_suspect, "true");
                    }
                }
                // Deleting first makes a replay an upsert; tantivy orders the delete after
                // any earlier add of the same id, committed or not, and before this add.
                // An id the partition certainly does not hold needs no delete, and that is
                // almost every id: see idfilter.rs.
                if ids.may_contain(&event.id) {
                    self.delete(writer, &event.id, &mut handoff)?;
                } else {
                    ids.insert(&event.id);
                }
                writer.pending.insert(event.id);
                handoff.push(UserOperation::Add(doc));
                writer.dirty = true;
                if handoff.len() >= DOCS_PER_HANDOFF {
                    writer.writer.run(handoff.drain(..))?;
                }
            }
            // Handed off before another partition's writer is opened, which may close this one.
            writer.writer.run(handoff.drain(..))?;
        }
        Ok(())
    }

    /// Which of `placed` are the first copy of their id: false for an event whose id another
    /// partition already holds (committed, or added since its last commit), or that an
    /// earlier event of the batch bound for another partition has. Within one partition a
    /// second copy replaces the first, as a replay of the bus does; across partitions the
    /// copy stored first stays, so a resend can neither move an event nor give its id two
    /// documents.
    ///
    /// Each partition's id filter rules out almost every id at the cost of a few memory
    /// reads; the rest are looked up in that partition, all of a batch in one query.
    fn first_copies(
        &self,
        writers: &BTreeMap<PartitionKey, PartitionWriter>,
        placed: &[Placed],
    ) -> Result<Vec<bool>, StoreError> {
        let mut filters = lock(&self.id_filters);
        let mut keys: BTreeSet<PartitionKey> = lock(&self.known).keys().copied().collect();
        let existing = keys.clone();
        keys.extend(placed.iter().map(|event| event.key));
        for key in keys {
            if let std::collections::hash_map::Entry::Vacant(vacant) = filters.entry(key) {
                vacant.insert(if existing.contains(&key) {
                    self.build_filter(key, writers)
                } else {
                    IdFilter::with_capacity(0)
                });
            }
        }
        let mut first = vec![true; placed.len()];
        let mut bound_for: HashMap<EventId, PartitionKey> = HashMap::new();
        let mut candidates: BTreeMap<PartitionKey, Vec<usize>> = BTreeMap::new();
        for (n, event) in placed.iter().enumerate() {
            match bound_for.get(&event.id) {
                Some(key) if *key != event.key => {
                    first[n] = false;
                    continue;
                }
                Some(_) => {}
                None => {
                    bound_for.insert(event.id, event.key);
                }
            }
            for (key, filter) in filters.iter() {
                if *key != event.key && filter.may_contain(&event.id) {
                    candidates.entry(*key).or_default().push(n);
                }
            }
        }
        drop(filters);
        for (key, events) in candidates {
            let ids: Vec<EventId> = events.iter().map(|n| placed[*n].id).collect();
            let held = self.held_ids(key, writers, &ids)?;
            for n in events {
                if held.contains(&placed[n].id) {
                    first[n] = false;
                }
            }
        }
        Ok(first)
    }

    /// A filter of the ids an existing partition holds, from its committed terms. Every add
    /// goes through [`EventIndex::first_copies`], which gives the partition its filter first,
    /// so no uncommitted id can be missing from it.
    fn build_filter(
        &self,
        key: PartitionKey,
        writers: &BTreeMap<PartitionKey, PartitionWriter>,
    ) -> IdFilter {
        let partition = match writers.get(&key) {
            Some(writer) => Ok(writer.partition.clone()),
            None => self.partition(key),
        };
        let built = partition
            .and_then(|partition| self.id_filter(&partition.reader.searcher(), partition.layout));
        match built {
            Ok(filter) => filter,
            Err(error) => {
                // Ids a partition cannot be read for cannot be found in it either; the
                // partition's other readers report it.
                tracing::error!(partition = %key.dir_name(), %error, "cannot read a partition's ids");
                IdFilter::with_capacity(0)
            }
        }
    }

    /// Which of `ids` the partition holds, committed or added since its last commit.
    fn held_ids(
        &self,
        key: PartitionKey,
        writers: &BTreeMap<PartitionKey, PartitionWriter>,
        ids: &[EventId],
    ) -> Result<HashSet<EventId>, StoreError> {
        let mut held = HashSet::new();
        let partition = match writers.get(&key) {
            Some(writer) => {
                held.extend(ids.iter().filter(|id| writer.pending.contains(id)).copied());
                writer.partition.clone()
            }
            None => self.partition(key)?,
        };
        let searcher = partition.reader.searcher();
        let query = partition.layout.ids_query(&self.fields, ids);
        let top = searcher
            .search(&query, &TopDocs::with_limit(ids.len()).order_by_score())
            .map_err(query::search_error)?;
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc
                .get_first(self.fields.id)
                .and_then(|v| v.as_str())
                .and_then(|text| text.parse::<EventId>().ok())
            {
                held.insert(id);
            }
        }
        Ok(held)
    }

    /// Deletes any copy of `id` a partition holds, in order after the operations queued in
    /// `handoff` for its writer.
    fn delete(
        &self,
        writer: &mut PartitionWriter,
        id: &EventId,
        handoff: &mut Vec<UserOperation>,
    ) -> Result<(), StoreError> {
        writer.dirty = true;
        let layout = writer.partition.layout;
        if layout.ids_by_tiebreak() {
            // Only a term can be queued with documents; a query is its own operation, so
            // what was queued goes first.
            if !handoff.is_empty() {
                writer.writer.run(handoff.drain(..))?;
            }
            writer
                .writer
                .delete_query(layout.ids_query(&self.fields, [id]))?;
        } else {
            handoff.push(UserOperation::Delete(Term::from_field_text(
                self.fields.id,
                &id.to_string(),
            )));
        }
        Ok(())
    }

    /// The document of `event`, indexed at `time`: its own time, or its arrival when that is
    /// suspect (see [`partition::place`]).
    fn document(&self, event: &Event, time: DateTime<Utc>) -> Result<TantivyDocument, StoreError> {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, event.id.to_string());
        doc.add_u64(f.tiebreak, tiebreak(&event.id));
        doc.add_date(f.time, index::to_tantivy(&time));
        doc.add_text(f.source_kind, &event.source.kind);
        doc.add_text(f.source_name, &event.source.name);
        let logsource = &event.logsource;
        for (field, value) in [
            (f.product, &logsource.product),
            (f.service, &logsource.service),
            (f.category, &logsource.category),
        ] {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        match RecordValue::of_event(event) {
            Some(record) => doc.add_field_value(f.record, &record),
            // A record that is not a JSON object can still arrive off the bus; it stays
            // findable by its words rather than failing the whole batch. Bare terms search
            // this field as well as the record's words.
            None => doc.add_text(f.text, event.record.as_str()),
        }
        // Sized for the record, which is most of it, so the buffer is not regrown.
        let mut stored = Vec::with_capacity(event.record.as_str().len() + 512);
        serde_json::to_writer(&mut stored, event).map_err(StoreError::Serialize)?;
        let stored = String::from_utf8(stored).expect("serde_json writes UTF-8");
        doc.add_text(f.doc, stored);
        Ok(doc)
    }

    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let mut writers = lock(&self.writers);
        let current = self.scheme.key(Utc::now());
        let mut idle = Vec::new();
        for (key, writer) in writers.iter_mut() {
            if writer.dirty {
                self.commit_writer(*key, writer)?;
            } else if *key != current {
                idle.push(*key);
            }
        }
        // Writers untouched for a whole commit interval are for periods that have gone
        // quiet; closing them frees their threads and memory.
        for key in idle {
            writers.remove(&key);
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> Result<PartitionStats, StoreError> {
        Ok(PartitionStats {
            partitions: self.partitions()?.len(),
            readers_opened: self.readers_opened.load(Ordering::Relaxed),
            partitions_searched: self.partitions_searched.load(Ordering::Relaxed),
            open_readers: lock(&self.readers).open.len(),
            open_writers: lock(&self.writers).len(),
            duplicates_skipped: self.duplicates_skipped.load(Ordering::Relaxed),
            suspect_times: self.suspect_times.load(Ordering::Relaxed),
        })
    }

    /// The partitions that may hold events in a time range, with the span each holds, newest
    /// first by the latest event each may hold.
    pub(crate) fn plan(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<(PartitionKey, TimeSpan)>, StoreError> {
        Ok(self.scheme.touched(&self.spanned()?, from, to))
    }

    /// Searchers over the partitions a range touches, newest first, with their layouts.
    fn searchers(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Searcher, Layout)>, StoreError> {
        self.plan(from, to)?
            .into_iter()
            .map(|(key, _)| {
                self.partitions_searched.fetch_add(1, Ordering::Relaxed);
                let partition = self.partition(key)?;
                Ok((partition.reader.searcher(), partition.layout))
            })
            .collect()
    }

    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .searchers(None, None)?
            .iter()
            .map(|(searcher, _)| searcher.num_docs())
            .sum())
    }

    /// Sizes of the partitions on disk.
    pub(crate) fn sizes(&self) -> Result<Vec<(PartitionKey, u64)>, StoreError> {
        self.partitions()?
            .into_iter()
            .map(|key| Ok((key, dir_size(&self.partition_dir(key))?)))
            .collect()
    }

    /// Deletes whole partitions: their writers (and anything uncommitted in them), their
    /// cached readers and their files. Searches already running keep their open files.
    pub(crate) fn remove_partitions(
        &self,
        keys: &[PartitionKey],
    ) -> Result<Vec<Removed>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let mut writers = lock(&self.writers);
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            writers.remove(key);
            lock(&self.id_filters).remove(key);
            lock(&self.readers).open.remove(key);
            lock(&self.known).remove(key);
            let dir = self.partition_dir(*key);
            let bytes = dir_size(&dir)?;
            // meta.json goes first: if the removal stops half way, what is left is no longer
            // taken for a partition.
            match std::fs::remove_file(dir.join("meta.json")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path: dir, source }),
            }
            std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            removed.push(Removed { key: *key, bytes });
        }
        Ok(removed)
    }

    /// Events by id, looking back from `until` (inclusive) one partition at a time and
    /// stopping once all are found. An alert's events all happened at or before its time.
    pub(crate) fn by_ids(
        &self,
        ids: &[EventId],
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let wanted: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
        let mut found: BTreeMap<String, Event> = BTreeMap::new();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // An id may be in any partition: events are stored by arrival, and a suspect time is
        // indexed at its arrival, so neither `until` nor the spans can rule one out. The
        // partitions whose span reaches `until` come first, as an alert's events arrived
        // shortly before it was raised; the id filters, where built, skip the rest.
        let mut plan = self.plan(None, None)?;
        plan.sort_by_key(|(key, span)| (span.min > until, std::cmp::Reverse(*key)));
        let filtered: HashMap<PartitionKey, bool> = {
            let filters = lock(&self.id_filters);
            plan.iter()
                .filter_map(|(key, _)| {
                    let filter = filters.get(key)?;
                    Some((*key, ids.iter().any(|id| filter.may_contain(id))))
                })
                .collect()
        };
        for (key, _) in plan {
            if filtered.get(&key) == Some(&false) {
                continue;
            }
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let partition = self.partition(key)?;
            let query = partition.layout.ids_query(&self.fields, ids);
            let searcher = partition.reader.searcher();
            let top = searcher
                .search(&query, &TopDocs::with_limit(wanted.len()).order_by_score())
                .map_err(query::search_error)?;
            for (_, address) in top {
                let doc: TantivyDocument = searcher.doc(address)?;
                let event = self.stored_event(&doc)?;
                found.entry(event.id.to_string()).or_insert(event);
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        // In the order asked for, which for an alert is oldest first.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(&id.to_string()).cloned())
            .collect())
    }

    /// The query for a request, its text and its time range, for each of `layouts`. The
    /// current layout is always translated, so that a query that cannot be translated fails
    /// whether or not any partition is searched.
    fn request_query(
        &self,
        text: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        layouts: impl IntoIterator<Item = Layout>,
    ) -> Result<LayoutQueries, StoreError> {
        let ast = query::parse(text)?;
        let mut queries: Vec<Option<Box<dyn Query>>> =
            Layout::READABLE.iter().map(|_| None).collect();
        for layout in std::iter::once(Layout::CURRENT).chain(layouts) {
            let slot = &mut queries[layout.slot()];
            if slot.is_none() {
                let matches =
                    Translator::new(&self.query_fields[layout.slot()], now).query(&ast)?;
                *slot = Some(self.in_range(matches, from, to));
            }
        }
        Ok(LayoutQueries { queries })
    }

    fn in_range(
        &self,
        matches: Box<dyn Query>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Box<dyn Query> {
        let mut clauses = vec![(Occur::Must, matches)];
        if from.is_some() || to.is_some() {
            let time =
                |t: &DateTime<Utc>| Term::from_field_date(self.fields.time, index::to_tantivy(t));
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    from.as_ref()
                        .map_or(Bound::Unbounded, |t| Bound::Included(time(t))),
                    to.as_ref()
                        .map_or(Bound::Unbounded, |t| Bound::Excluded(time(t))),
                )),
            ));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// Events strictly after `cursor` in newest-first order.
    fn after_cursor(&self, cursor: Cursor) -> Box<dyn Query> {
        let time = |nanos| {
            Term::from_field_date(
                self.fields.time,
                tantivy::DateTime::from_timestamp_nanos(nanos),
            )
        };
        let older = RangeQuery::new(Bound::Unbounded, Bound::Excluded(time(cursor.time_nanos)));
        let same_time = RangeQuery::new(
            Bound::Included(time(cursor.time_nanos)),
            Bound::Included(time(cursor.time_nanos)),
        );
        let lower_tiebreak = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(self.fields.tiebreak, cursor.tiebreak)),
        );
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, Box::new(older) as Box<dyn Query>),
            (
                Occur::Should,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(same_time) as Box<dyn Query>),
                    (Occur::Must, Box::new(lower_tiebreak)),
                ])),
            ),
        ]))
    }

    pub(crate) fn histogram(
        &self,
        text: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Histogram, StoreError> {
        let searchers = self.searchers(from, to)?;
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let queries = self.request_query(text, from, to, Utc::now(), layouts)?;
        aggregate::histogram(&with_queries(&searchers, &queries), fields::TIME, from, to)
    }

    pub(crate) fn facets(
        &self,
        text: &str,
        field: &str,
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Facets, StoreError> {
        let column = facet_column(field)?;
        let searchers = self.searchers(from, to)?;
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let queries = self.request_query(text, from, to, Utc::now(), layouts)?;
        aggregate::facets(&with_queries(&searchers, &queries), &column, field, n)
    }

    pub(crate) fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        let cursor = request.cursor.as_deref().map(Cursor::decode).transpose()?;
        // A partition that cannot be opened (damaged, or removed by retention just now)
        // should not hide the others; the total says it is incomplete instead.
        let partitions: Vec<(TimeSpan, Option<Arc<Partition>>)> = self
            .plan(request.from, request.to)?
            .into_iter()
            .map(|(key, span)| (span, self.partition(key).ok()))
            .collect();
        let layouts = partitions
            .iter()
            .flat_map(|(_, p)| p.as_ref().map(|p| p.layout));
        let queries = self.request_query(
            &request.query,
            request.from,
            request.to,
            Utc::now(),
            layouts,
        )?;
        let page_queries = cursor.map(|cursor| queries.and(self.after_cursor(cursor).as_ref()));
        let mut total = 0;
        let mut total_is_lower_bound = false;
        // Newest first, at most `limit`.
        let mut page: Vec<(Cursor, Event)> = Vec::new();
        let order = |c: &Cursor| (c.time_nanos, c.tiebreak);
        let nanos = |t: &DateTime<Utc>| index::to_tantivy(t).into_timestamp_nanos();
        for (span, partition) in partitions {
            let Some(partition) = partition else {
                total_is_lower_bound = true;
                continue;
            };
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let searcher = partition.reader.searcher();
            let query = queries.get(partition.layout);
            total += searcher
                .search(query, &Count)
                .map_err(query::search_error)? as u64;
            // Spans may overlap (events arrive out of time), so each partition's newest hits
            // are merged into the page. A partition whose every event is newer than the
            // cursor holds nothing past it; one whose every event is older than a full
            // page's oldest hit cannot change the page. Partitions come newest first by
            // their latest event, so in a stream the rest are skipped once a page is full.
            let past_cursor = cursor.is_some_and(|c| nanos(&span.min) > c.time_nanos);
            let full = page.len() >= request.limit;
            let cannot_improve = full
                && page
                    .last()
                    .is_some_and(|(c, _)| c.time_nanos > nanos(&span.max));
            if request.limit == 0 || past_cursor || cannot_improve {
                continue;
            }
            let page_query = page_queries
                .as_ref()
                .map_or(query, |q| q.get(partition.layout));
            for (key, address) in self.page(&searcher, page_query, request.limit)? {
                if page.len() >= request.limit
                    && page
                        .last()
                        .is_some_and(|(last, _)| order(&key) <= order(last))
                {
                    // Its hits come newest first, so none of the rest makes the page either.
                    break;
                }
                let doc: TantivyDocument = searcher.doc(address)?;
                let at = page.partition_point(|(other, _)| order(other) > order(&key));
                page.insert(at, (key, self.stored_event(&doc)?));
                page.truncate(request.limit);
            }
        }
        let next_cursor = match page.last() {
            Some((key, _)) if page.len() == request.limit => Some(key.encode()),
            _ => None,
        };
        Ok(SearchResults {
            total,
            total_is_lower_bound,
            hits: page.into_iter().map(|(_, event)| event).collect(),
            next_cursor,
        })
    }

    /// The newest `limit` matches with the sort keys a cursor is made of.
    fn page(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        limit: usize,
    ) -> Result<Vec<(Cursor, DocAddress)>, StoreError> {
        // Capping at the number of documents keeps a huge limit from sizing a huge heap.
        let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let newest = TopDocs::with_limit(limit).order_by((
            (
                SortByStaticFastValue::<tantivy::DateTime>::for_field(fields::TIME),
                Order::Desc,
            ),
            (
                SortByStaticFastValue::<u64>::for_field(fields::TIEBREAK),
                Order::Desc,
            ),
        ));
        let top = searcher
            .search(query, &newest)
            .map_err(query::search_error)?;
        Ok(top
            .into_iter()
            .map(|((time, tiebreak), address)| {
                let cursor = Cursor {
                    time_nanos: time.map_or(i64::MIN, |t| t.into_timestamp_nanos()),
                    tiebreak: tiebreak.unwrap_or(0),
                };
                (cursor, address)
            })
            .collect())
    }

    fn stored_event(&self, doc: &TantivyDocument) -> Result<Event, StoreError> {
        let id = || {
            doc.get_first(self.fields.id)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_owned()
        };
        let json = doc
            .get_first(self.fields.doc)
            .and_then(|v| v.as_str())
            .ok_or_else(|| StoreError::Corrupt {
                id: id(),
                message: "no stored event".into(),
            })?;
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            id: id(),
            message: e.to_string(),
        })
    }
}

/// Each searcher with the query for its partition's layout.
fn with_queries<'q>(
    searchers: &'q [(Searcher, Layout)],
    queries: &'q LayoutQueries,
) -> Vec<(&'q Searcher, &'q dyn Query)> {
    searchers
        .iter()
        .map(|(searcher, layout)| (searcher, queries.get(*layout)))
        .collect()
}

/// The fast column behind a facet: a keyword field, or a path inside the record.
fn facet_column(field: &str) -> Result<String, StoreError> {
    let keywords = [
        fields::SOURCE_KIND,
        fields::SOURCE_NAME,
        fields::PRODUCT,
        fields::SERVICE,
        fields::CATEGORY,
    ];
    if keywords.contains(&field) {
        return Ok(field.to_owned());
    }
    let not_a_facet = [
        fields::ID,
        fields::TIME,
        fields::TEXT,
        fields::DOC,
        fields::TIEBREAK,
        fields::RECORD,
    ];
    if not_a_facet.contains(&field) {
        return Err(StoreError::query(format!(
            "`{field}` has no values to count; use a source field or a path in the record"
        )));
    }
    let path = field
        .strip_prefix(fields::RECORD)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(field);
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(StoreError::query(format!(
            "`{field}` is not a valid field path"
        )));
    }
    Ok(format!("{}.{path}", fields::RECORD))
}

/// Checks the period the partitions were cut with against the configured one, recording it
/// on first use. A read-only store takes whatever period is recorded: it only reads, and
/// its opener (`vigil search`) may not know the writer's configuration.
///
/// The file also says what the partitions are cut by: `"by": "arrival"`, with the period
/// from which on they were (`arrival_since`). A file without it is from a Vigil that cut
/// them by event time; a writing store adds it. Nothing depends on it: every partition is
/// searched by the span of event times it holds, whichever way it was cut.
fn check_scheme(
    dir: &Path,
    scheme: PartitionScheme,
    read_only: bool,
) -> Result<PartitionScheme, StoreError> {
    let path = dir.join(SCHEME_FILE);
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let configured = scheme.period().num_seconds();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    id: SCHEME_FILE.into(),
                    message: e.to_string(),
                })?;
            let cut_by_arrival = stored["by"] == "arrival";
            let stored = stored["period_seconds"].as_i64().unwrap_or(0);
            if read_only {
                return PartitionScheme::new(chrono::Duration::seconds(stored));
            }
            if stored != configured {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source: format!(
                        "the events are partitioned by periods of {stored} s, but {configured} s \
                         is configured; set the period back, or move the index aside and \
                         replay the bus"
                    )
                    .into(),
                });
            }
            if !cut_by_arrival {
                record_scheme(dir, scheme)?;
            }
            Ok(scheme)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if read_only {
                return Ok(scheme);
            }
            record_scheme(dir, scheme)?;
            Ok(scheme)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes the partitioning file (see [`check_scheme`]), replacing any in one rename.
fn record_scheme(dir: &Path, scheme: PartitionScheme) -> Result<(), StoreError> {
    let path = dir.join(SCHEME_FILE);
    let temporary = dir.join(format!("{SCHEME_FILE}.new"));
    let since = scheme.key(Utc::now()).start.to_rfc3339();
    let text = serde_json::json!({
        "period_seconds": scheme.period().num_seconds(),
        "by": "arrival",
        "arrival_since": since,
    })
    .to_string();
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|source| StoreError::Io { path, source })
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => total += dir_size(&entry.path())?,
            Ok(meta) => total += meta.len(),
            // A segment file merged away between listing and stat takes no space.
            Err(_) => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Duration, TimeZone};
    use serde_json::json;
    use vigil_event::{LogSource, Record, Source};

    use super::*;

    const REQUEST_ID: &str = "648f0f94-0271-4c20-91ac-8d2e43787313";

    fn login(n: u32) -> Event {
        login_on(20, n)
    }

    fn login_on(day: u32, n: u32) -> Event {
        let time = Utc.with_ymd_and_hms(2026, 11, day, 9, 0, n).unwrap();
        let record = json!({
            "eventName": "ConsoleLogin",
            "n": n,
            "requestID": REQUEST_ID,
            "eventTime": format!("2026-11-{day}T09:00:{n:02}Z"),
            "sourceIPAddress": "203.0.113.66",
        });
        Event {
            id: EventId::derive("layout test", &[&n.to_le_bytes()]),
            time,
            received: time + Duration::seconds(1),
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail".into(),
            },
            logsource: LogSource::default(),
            record: Record::json(&record.to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    /// The layout of each partition, newest first.
    fn layouts(index: &EventIndex) -> Vec<Layout> {
        index
            .plan(None, None)
            .unwrap()
            .into_iter()
            .map(|(key, _)| index.partition(key).unwrap().layout)
            .collect()
    }

    fn ns(results: &SearchResults) -> Vec<i64> {
        results
            .hits
            .iter()
            .map(|e| e.document().unwrap()["n"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn partitions_of_the_first_layout_are_searched_paged_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            // New partitions get the first schema listed: here, the first layout.
            index.schemas.reverse();
            index.index(&[login(1), login(2)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        let key = scheme.key(login(1).time);
        let written = index::open_index(&index.partition_dir(key), &index.schemas, false)
            .unwrap()
            .schema();
        assert!(written == schema(Layout::First).0 && written != schema(Layout::CURRENT).0);

        // A late event lands in the old partition, in its layout.
        index.index(&[login(3)]).unwrap();
        index.commit().unwrap();
        let from = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 2).unwrap();
        let request = SearchRequest {
            query: "eventName:consolelogin".into(),
            from: Some(from),
            to: None,
            limit: 1,
            cursor: None,
        };
        let first = index.search(&request).unwrap();
        assert_eq!(ns(&first), [3]);
        // Its words were cut as they were then: a UUID is five words there.
        let parts = SearchRequest {
            query: "requestID:648f0f94".into(),
            limit: 10,
            ..request.clone()
        };
        assert_eq!(ns(&index.search(&parts).unwrap()), [3, 2]);
        let after = |page: &SearchResults| {
            index
                .search(&SearchRequest {
                    cursor: page.next_cursor.clone(),
                    ..request.clone()
                })
                .unwrap()
        };
        let second = after(&first);
        assert_eq!(ns(&second), [2]);
        assert_eq!(ns(&after(&second)), Vec::<i64>::new());
    }

    /// Each partition is searched with the query cut the way its layout cut the words.
    #[test]
    fn one_query_reaches_partitions_of_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        for (layout, day) in [
            (Layout::First, 20),
            (Layout::ColumnsOnly, 21),
            (Layout::Words, 22),
            (Layout::IdsByTiebreak, 23),
            (Layout::WholeValues, 24),
        ] {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            index.schemas.retain(|s| *s == schema(layout).0);
            index.index(&[login_on(day, day)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        index.index(&[login_on(25, 25)]).unwrap();
        index.commit().unwrap();
        assert_eq!(layouts(&index), Layout::READABLE, "newest first");

        let days = |query: &str| -> Vec<u32> {
            let request = SearchRequest {
                query: query.into(),
                from: None,
                to: None,
                limit: 10,
                cursor: None,
            };
            let results = index.search(&request).unwrap();
            assert_eq!(results.total, results.hits.len() as u64, "{query}");
            results.hits.iter().map(|e| e.time.day()).collect()
        };
        for query in [
            format!("requestID:{REQUEST_ID}"),
            format!("requestID:{}", REQUEST_ID.to_uppercase()),
            REQUEST_ID.to_owned(),
            "requestID:648f0f94*".into(),
            "requestID:*8d2e43787313".into(),
            "requestID:648f0f94-0271*".into(),
            "*-4c20-91ac-*".into(),
            "sourceIPAddress:203.0.113.66".into(),
            "203.0.113.66".into(),
            "\"203.0.113.66\"".into(),
            "sourceIPAddress:203.0.113.*".into(),
            "sourceIPAddress:*.113.66".into(),
            "*.0.113.6?".into(),
            "eventTime:2026-11-2*".into(),
            "eventTime:2026-11-2?T09*".into(),
        ] {
            assert_eq!(days(&query), [25, 24, 23, 22, 21, 20], "{query}");
        }
        // Only where a UUID was cut into words is a part of one a word.
        assert_eq!(days("requestID:648f0f94"), [21, 20]);
        assert_eq!(days("requestID:/648f0f94-.*/"), [25, 24, 23, 22]);
        // So too for times and addresses.
        assert_eq!(days("sourceIPAddress:113"), [23, 22, 21, 20]);
        assert_eq!(days("sourceIPAddress:/203\\.0\\..*/"), [25, 24]);
        assert_eq!(days("eventTime:\"2026-11-25T09:00:25Z\""), [25]);
        assert_eq!(days("eventTime:\"2026-11-24T09:00:24Z\""), [24]);
        assert_eq!(days("eventTime:\"2026-11-23T09:00:23Z\""), [23]);

        // Ids, whether indexed as terms or found through their tiebreak.
        let events: Vec<Event> = (20..=25).map(|day| login_on(day, day)).collect();
        for event in &events {
            let id = event.id.to_string();
            let day = event.time.day();
            assert_eq!(days(&format!("id:{id}")), [day]);
            assert_eq!(days(&format!("id:{}", id.to_uppercase())), [day]);
            assert_eq!(days(&format!("id:{}*", &id[..8])), [day]);
            assert_eq!(days(&format!("id:{}*", &id[..20])), [day]);
        }
        assert_eq!(days("id:*"), [25, 24, 23, 22, 21, 20]);
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let until = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        assert_eq!(index.by_ids(&ids, until).unwrap(), events);

        let histogram = index
            .histogram(&format!("requestID:{REQUEST_ID}"), None, None)
            .unwrap();
        let counted: u64 = histogram.buckets.iter().map(|b| b.count).sum();
        assert_eq!(counted, 6);
        let facets = index
            .facets(
                &format!("{REQUEST_ID} eventName:consolelogin"),
                "eventName",
                5,
                None,
                None,
            )
            .unwrap();
        assert_eq!(facets.values.len(), 1);
        assert_eq!(facets.values[0].count, 6);
    }

    /// An event resent on another day arrives in another partition, while its id is stored
    /// in a partition of an older layout, whose ids are terms rather than tiebreaks: the copy
    /// stored first stays and the resend adds nothing. (Before partitions were cut by arrival,
    /// a timeless resend replaced its copy; keeping the first is what stops a resend from
    /// rewriting an event, and needs no writer on the old partition.)
    #[test]
    fn a_resend_on_another_day_keeps_its_copy_in_an_older_layout() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        let timeless = |day: u32| {
            let mut event = login_on(day, 7);
            event.received = event.time;
            event
        };
        {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            index.schemas.retain(|s| *s == schema(Layout::Words).0);
            index.index(&[timeless(20)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        index.index(&[login_on(21, 8)]).unwrap();
        index.index(&[timeless(21)]).unwrap();
        index.commit().unwrap();
        assert_eq!(layouts(&index), [Layout::CURRENT, Layout::Words]);
        let request = SearchRequest {
            query: String::new(),
            from: None,
            to: None,
            limit: 10,
            cursor: None,
        };
        let found: Vec<(u32, i64)> = index
            .search(&request)
            .unwrap()
            .hits
            .iter()
            .map(|e| (e.time.day(), e.document().unwrap()["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            found,
            [(21, 8), (20, 7)],
            "one copy of the resent event, the first, and the other event"
        );
        assert_eq!(index.stats().unwrap().duplicates_skipped, 1);
    }

    #[test]
    fn a_query_that_cannot_be_translated_fails_without_partitions_too() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), PartitionScheme::default(), false, 8).unwrap();
        let request = SearchRequest {
            query: "verb:/(unclosed/".into(),
            from: None,
            to: None,
            limit: 10,
            cursor: None,
        };
        assert!(matches!(
            index.search(&request),
            Err(StoreError::Query { .. })
        ));
        assert!(index.histogram("verb:/(unclosed/", None, None).is_err());
    }
}
