//! Writing events: each is placed in the partition of its arrival, kept once per id across
//! partitions, and handed to that partition's writer; a commit makes them durable and
//! searchable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tantivy::collector::TopDocs;
use tantivy::indexer::UserOperation;
use tantivy::schema::Value;
use tantivy::{IndexWriter, Searcher, TantivyDocument, Term};

use vigil_event::{AsEventRef, EventId, EventRef, RecordRef};

use super::fields::tiebreak;
use super::idfilter::IdFilter;
use super::layout::Layout;
use super::partitions::Partition;
use super::spans;
use super::EventIndex;
use crate::index::{self, lock};
use crate::partition::{self, PartitionKey, TimeSpan};
use crate::query;
use crate::record::RecordRead;
use crate::StoreError;

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

pub(super) struct PartitionWriter {
    writer: IndexWriter<TantivyDocument>,
    partition: Arc<Partition>,
    /// The ids added since the last commit, which its reader does not see yet: another
    /// partition's event with one of these ids is a second copy.
    pending: HashSet<EventId>,
    /// Written since the last commit.
    dirty: bool,
    last_use: u64,
}

/// An event ready to be written: where, at which time, and its document.
struct Placed {
    key: PartitionKey,
    id: EventId,
    /// The time it is indexed at (see [`partition::place`]).
    time: DateTime<Utc>,
    /// When it arrived, as the partition is chosen by.
    arrival: DateTime<Utc>,
    suspect: bool,
    /// Its JSON record was no JSON object, so it is kept as text (see [`RecordRead`]).
    as_text: bool,
    doc: TantivyDocument,
}

impl EventIndex {
    /// Rewrites a partition written with term dictionaries this Vigil cannot read (see
    /// [`index::TERMS_FILE`]) from its stored events, keeping its layout. Returns how many
    /// events it rewrote.
    pub(super) fn rewrite_partition(&self, key: PartitionKey) -> Result<u64, StoreError> {
        let dir = self.partition_dir(key);
        let index = index::open_index(&dir, &self.schemas, false)?;
        let mut writer = index::open_writer(&index, &dir, WRITER_THREADS, WRITER_MEMORY)?;
        let searcher = index::reader(&index, false)?.searcher();
        let rewritten = index::rewrite_documents(&writer, &searcher, |doc| {
            // Kept as it was indexed: partitions of these layouts were cut by event time.
            let event = self.stored_event(doc)?;
            Ok(self.document(&event.as_event_ref(), event.time).0)
        })?;
        writer.commit()?;
        writer.wait_merging_threads()?;
        index::mark_terms_readable(&dir)?;
        Ok(rewritten)
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
            let writer = index::open_writer(&index, &dir, threads, memory)?;
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

    pub(super) fn commit_writer(
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

    pub(crate) fn index(&self, events: &[impl AsEventRef]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let now = Utc::now();
        // Documents are built before taking the writers so that serialization does not hold
        // them.
        let mut placed = Vec::with_capacity(events.len());
        for event in events {
            let event = event.as_event_ref();
            let placement = partition::place(*event.time, *event.received, now, self.future_skew);
            let (doc, as_text) = self.document(&event, placement.indexed_time);
            placed.push(Placed {
                key: self.scheme.key(placement.arrival),
                id: *event.id,
                time: placement.indexed_time,
                arrival: placement.arrival,
                suspect: placement.time_suspect,
                as_text,
                doc,
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
            let has_arrivals = writer.partition.layout.has_arrivals();
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
                if event.as_text {
                    tracing::warn!(id = %event.id, "an event's JSON record is no JSON object; indexed and kept as text");
                    self.records_as_text.fetch_add(1, Ordering::Relaxed);
                }
                if has_arrivals {
                    doc.add_date(self.fields.received, index::to_tantivy(&event.arrival));
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
    /// suspect (see [`partition::place`]); and whether its JSON record was kept as text.
    pub(super) fn document(
        &self,
        event: &EventRef<'_>,
        time: DateTime<Utc>,
    ) -> (TantivyDocument, bool) {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, event.id.to_string());
        doc.add_u64(f.tiebreak, tiebreak(event.id));
        doc.add_date(f.time, index::to_tantivy(&time));
        doc.add_text(f.source_kind, &event.source.kind);
        doc.add_text(f.source_name, &event.source.name);
        let logsource = event.logsource;
        for (field, value) in [
            (f.product, &logsource.product),
            (f.service, &logsource.service),
            (f.category, &logsource.category),
        ] {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        let record = RecordRead::of_event(event);
        let kept = match record.value() {
            Some(value) => {
                doc.add_field_value(f.record, value);
                match event.record {
                    // Read as an object just now, so it is written into the stored event as
                    // JSON without another read.
                    RecordRef::UncheckedJson(text) => RecordRef::Json(text),
                    checked => checked,
                }
            }
            // Findable by its words rather than failing the whole batch (bare terms search
            // this field as well as the record's words), and stored as the text it is, since
            // as JSON the stored event might no longer read back.
            None => {
                doc.add_text(f.text, event.record.as_str());
                RecordRef::Text(event.record.as_str())
            }
        };
        let as_text =
            matches!(kept, RecordRef::Text(_)) && !matches!(event.record, RecordRef::Text(_));
        let kept = EventRef {
            record: kept,
            ..*event
        };
        // Sized for the record, which is most of it, so the buffer is not regrown.
        let mut stored = Vec::with_capacity(event.record.as_str().len() + 512);
        kept.write_json(&mut stored);
        let stored = String::from_utf8(stored).expect("an event is written as UTF-8");
        doc.add_text(f.doc, stored);
        (doc, as_text)
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
}
