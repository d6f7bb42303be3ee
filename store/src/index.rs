//! What the event and alert indices share: opening a directory, the writer and reader pair,
//! tokenizers, time conversion, reading back a stored document and the newest-first order.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::fastfield::FastValue;
use tantivy::query::Query;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, Order, ReloadPolicy, Searcher,
    TantivyDocument,
};

use crate::merge_priority;
use crate::word_tokenizer::{WordTokenizer, MAX_WORD_BYTES};
use crate::StoreError;

/// Tokenizer for keyword fields: the whole value is one token, lowercased, so that
/// `source_kind:CloudTrail` finds `cloudtrail` while `kubernetes-audit` stays one term.
pub(crate) const KEYWORD_TOKENIZER: &str = "vigil_keyword";

/// Tokenizer for prose and record values: tantivy's default (split on non-alphanumerics,
/// lowercase) but keeping words up to 255 bytes rather than 40, so that SHA-256 hashes and
/// other long indicators stay searchable.
pub(crate) const TEXT_TOKENIZER: &str = "vigil_text";

/// Tokenizer for record words in partitions of two earlier layouts: as [`TEXT_TOKENIZER`], but
/// a UUID is one word (see [`crate::word_tokenizer`]). A tokenizer's name is part of an index's schema,
/// so partitions cut with the other keep it, and queries cut their words per partition.
pub(crate) const WORDS_TOKENIZER: &str = "vigil_words";

/// Tokenizer for record words in partitions of the current layout: as [`WORDS_TOKENIZER`],
/// but an RFC 3339 time or an IPv4 address is one word too (see [`crate::word_tokenizer`]).
pub(crate) const VALUE_WORDS_TOKENIZER: &str = "vigil_value_words";

/// The analyzer behind [`TEXT_TOKENIZER`]; queries split their words with it too, so that a
/// term is cut exactly as the indexed text was.
pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .build()
}

/// The analyzer behind [`WORDS_TOKENIZER`].
pub(crate) fn words_analyzer() -> TextAnalyzer {
    TextAnalyzer::from(WordTokenizer::default())
}

/// The analyzer behind [`VALUE_WORDS_TOKENIZER`].
pub(crate) fn value_words_analyzer() -> TextAnalyzer {
    TextAnalyzer::from(WordTokenizer::whole_values())
}

/// A full-text field, with positions for phrase queries.
pub(crate) fn text_indexing() -> TextFieldIndexing {
    TextFieldIndexing::default()
        .set_tokenizer(TEXT_TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
}

/// A full-text field cut by [`WORDS_TOKENIZER`], with positions for phrase queries.
pub(crate) fn words_indexing() -> TextFieldIndexing {
    text_indexing().set_tokenizer(WORDS_TOKENIZER)
}

/// A full-text field cut by [`VALUE_WORDS_TOKENIZER`], with positions for phrase queries.
pub(crate) fn value_words_indexing() -> TextFieldIndexing {
    text_indexing().set_tokenizer(VALUE_WORDS_TOKENIZER)
}

/// A keyword field: exact, case-insensitive match on the whole value. It is also a fast
/// field holding the value as sent, for facets.
pub(crate) fn keyword() -> TextOptions {
    TextOptions::default().set_fast("raw").set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    )
}

/// A timestamp used for ordering; microseconds so events within one second keep their order.
pub(crate) fn timestamp() -> DateOptions {
    DateOptions::default()
        .set_indexed()
        .set_fast()
        .set_precision(DateTimePrecision::Microseconds)
}

/// A timestamp read only through its column: range queries on a fast field read the column
/// whether or not the field is indexed, so indexing it would only add a term per document.
pub(crate) fn fast_timestamp() -> DateOptions {
    DateOptions::default()
        .set_fast()
        .set_precision(DateTimePrecision::Microseconds)
}

/// Converts to tantivy's nanosecond timestamp, clamping rather than overflowing: record times
/// come from untrusted input and chrono reaches far beyond the i64 nanosecond range. A clamped
/// time only affects ordering; the exact time is kept in the stored document.
pub(crate) fn to_tantivy(time: &DateTime<Utc>) -> tantivy::DateTime {
    let nanos = time
        .timestamp_nanos_opt()
        .unwrap_or(if time.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        });
    tantivy::DateTime::from_timestamp_nanos(nanos)
}

/// Written into an index directory whose term dictionaries are all sorted string tables.
///
/// Vigil builds tantivy with sorted-string-table term dictionaries (its `quickwit` feature)
/// rather than FSTs: building an FST's nodes took about a tenth of the CPU of indexing, and
/// the store benchmark needed 1.11x to 1.21x less CPU without them (three runs beside the FST
/// build), while its leading-wildcard query, which walks the dictionary, went from about 4 to
/// about 12 ms at a million events. A tantivy build reads only the one format, so indices
/// written before the switch (which have no such file) are rewritten from their stored
/// documents when a writing store first opens them ([`rewrite_documents`]); a read-only open
/// refuses them with [`StoreError::NeedsRewrite`].
pub(crate) const TERMS_FILE: &str = "vigil-terms";
const TERMS_FORMAT: &str = "sstable\n";

/// Whether the index in `dir` was written with the term dictionary format this Vigil reads.
pub(crate) fn terms_readable(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(TERMS_FILE)).is_ok_and(|found| found == TERMS_FORMAT)
}

/// Records that every segment of the index in `dir` has readable term dictionaries; only
/// called once that is committed, so a crash before leaves the index to be rewritten again.
pub(crate) fn mark_terms_readable(dir: &Path) -> Result<(), StoreError> {
    std::fs::write(dir.join(TERMS_FILE), TERMS_FORMAT).map_err(|source| StoreError::Io {
        path: dir.join(TERMS_FILE),
        source,
    })
}

/// Replaces every segment of an index with its live documents as `rebuild` makes them from
/// their stored copies. The documents are read through `searcher`, which keeps the old
/// segments open; nothing changes on disk until the caller commits `writer`, which swaps
/// all the segments in one step, so a crash before leaves the index as it was.
pub(crate) fn rewrite_documents(
    writer: &IndexWriter<TantivyDocument>,
    searcher: &Searcher,
    mut rebuild: impl FnMut(&TantivyDocument) -> Result<TantivyDocument, StoreError>,
) -> Result<u64, StoreError> {
    writer.delete_all_documents()?;
    let mut rewritten = 0;
    for segment in searcher.segment_readers() {
        // Documents are read in order, so one cached block is all a pass needs.
        let store = segment
            .get_store_reader(1)
            .map_err(tantivy::TantivyError::from)?;
        for doc in store.iter::<TantivyDocument>(segment.alive_bitset()) {
            writer.add_document(rebuild(&doc?)?)?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// What a document of either index keeps as JSON in its `stored` field (the event or the
/// alert itself), read back; `what` and the document's `id` name it in the error when the
/// copy is missing or unreadable.
pub(crate) fn stored_json<T: DeserializeOwned>(
    doc: &TantivyDocument,
    id: Field,
    stored: Field,
    what: &str,
) -> Result<T, StoreError> {
    let id = || {
        doc.get_first(id)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let json = doc
        .get_first(stored)
        .and_then(|v| v.as_str())
        .ok_or_else(|| StoreError::Corrupt {
            id: id(),
            message: format!("no stored {what}"),
        })?;
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        id: id(),
        message: e.to_string(),
    })
}

/// The values a document has of the two fast fields [`greatest_by`] sorts by, if any.
pub(crate) type SortValues<A, B> = (Option<A>, Option<B>);

/// The `limit` matches of `query` with the greatest values of the fast field `first`, and of
/// `second` among equal ones, greatest first, with both values. The limit is capped at the
/// number of documents, so that a huge one does not size a huge heap.
pub(crate) fn greatest_by<A: FastValue, B: FastValue>(
    searcher: &Searcher,
    query: &dyn Query,
    limit: usize,
    first: &str,
    second: &str,
) -> tantivy::Result<Vec<(SortValues<A, B>, DocAddress)>> {
    let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
    if limit == 0 {
        return Ok(Vec::new());
    }
    let greatest = TopDocs::with_limit(limit).order_by((
        (SortByStaticFastValue::<A>::for_field(first), Order::Desc),
        (SortByStaticFastValue::<B>::for_field(second), Order::Desc),
    ));
    searcher.search(query, &greatest)
}

/// Opens the tantivy index in `dir` with its tokenizers registered. When `create` is set the
/// directory and index are created if absent; otherwise a missing index is an error, which is
/// what a read-only open wants rather than leaving empty directories behind.
///
/// `schemas` are the layouts this Vigil reads, newest first; a new index gets the first.
/// Fails when an index with another schema is there: silently reindexing or mixing schemas
/// would lose or misfile data.
pub(crate) fn open_index(
    dir: &Path,
    schemas: &[Schema],
    create: bool,
) -> Result<Index, StoreError> {
    let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
        path: dir.to_path_buf(),
        source,
    };
    if create {
        std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
    }
    let directory = MmapDirectory::open(dir).map_err(|e| open_err(Box::new(e)))?;
    let exists = Index::exists(&directory).map_err(|e| open_err(Box::new(e)))?;
    let index = if create && !exists {
        let index = Index::create(directory, schemas[0].clone(), index_settings())
            .map_err(|e| open_err(Box::new(e)))?;
        mark_terms_readable(dir)?;
        index
    } else {
        Index::open(directory).map_err(|e| open_err(Box::new(e)))?
    };
    if !schemas.contains(&index.schema()) {
        return Err(open_err(
            "the index was written with a different schema".into(),
        ));
    }
    // Tokenizers are not persisted with the index, so they are registered on every open.
    index.tokenizers().register(
        KEYWORD_TOKENIZER,
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
    index.tokenizers().register(TEXT_TOKENIZER, text_analyzer());
    index
        .tokenizers()
        .register(WORDS_TOKENIZER, words_analyzer());
    index
        .tokenizers()
        .register(VALUE_WORDS_TOKENIZER, value_words_analyzer());
    Ok(index)
}

/// Settings of a new index. Documents are compressed into the doc store on the indexing
/// thread that wrote them: the writer already runs a thread per core, and a compressor
/// thread beside each one only added a hand-off per block. The store benchmark used 1.04x
/// less CPU per event so (benches/store_throughput.rs, builds run side by side).
fn index_settings() -> IndexSettings {
    IndexSettings {
        docstore_compress_dedicated_thread: false,
        ..IndexSettings::default()
    }
}

/// A reader for `index`. A writing store reloads by hand right after its own commits, so
/// searches see exactly what was committed; a read-only store follows another process's
/// commits by watching `meta.json`.
pub(crate) fn reader(index: &Index, read_only: bool) -> Result<IndexReader, StoreError> {
    let policy = if read_only {
        ReloadPolicy::OnCommitWithDelay
    } else {
        ReloadPolicy::Manual
    };
    Ok(index.reader_builder().reload_policy(policy).try_into()?)
}

/// A writer on `index` (in `dir`) with `threads` indexing threads of `memory_budget` bytes each,
/// whose merges run below the caller's CPU priority ([`merge_priority`]).
pub(crate) fn open_writer(
    index: &Index,
    dir: &Path,
    threads: usize,
    memory_budget: usize,
) -> Result<IndexWriter<TantivyDocument>, StoreError> {
    let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
        path: dir.to_path_buf(),
        source,
    };
    merge_priority::below_priority(|| index.writer_with_num_threads(threads, memory_budget))
        .map_err(|e| open_err(Box::new(e)))?
        .map_err(|e| open_err(Box::new(e)))
}

/// One tantivy index with its single writer (absent when read-only) and its reader.
pub(crate) struct IndexHandle {
    writer: Option<Mutex<IndexWriter<TantivyDocument>>>,
    pub(crate) reader: IndexReader,
}

impl IndexHandle {
    /// Opens the index in `dir`, creating it (and the directory) when absent unless
    /// `read_only`.
    pub(crate) fn open(
        dir: &Path,
        schema: Schema,
        threads: usize,
        memory_budget: usize,
        read_only: bool,
    ) -> Result<IndexHandle, StoreError> {
        let index = open_index(dir, &[schema], !read_only)?;
        let writer = if read_only {
            None
        } else {
            // The directory lock taken here is what stops two processes writing the same index.
            Some(Mutex::new(open_writer(
                &index,
                dir,
                threads,
                memory_budget,
            )?))
        };
        let reader = reader(&index, read_only)?;
        Ok(IndexHandle { writer, reader })
    }

    /// The writer, recovered even if a thread panicked while holding it: every change goes
    /// through tantivy's own operation log, so a panic can at worst leave an uncommitted
    /// partial batch, which the next replay of that batch overwrites by id.
    pub(crate) fn writer(
        &self,
    ) -> Result<MutexGuard<'_, IndexWriter<TantivyDocument>>, StoreError> {
        let writer = self.writer.as_ref().ok_or(StoreError::ReadOnly)?;
        Ok(writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Commits and makes the commit visible to new searches.
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.writer()?.commit()?;
        self.reader.reload()?;
        Ok(())
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (caches and maps
/// that are only ever updated by whole entries).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tantivy::query::AllQuery;
    use tantivy::schema::{NumericOptions, STORED, STRING};

    use super::*;

    #[cfg(target_os = "linux")]
    mod merge_threads {
        use std::time::{Duration, Instant};

        use rustix::process::{getpriority_process, Pid};
        use tantivy::schema::TEXT;

        use super::*;

        /// The ids and priorities of this process's threads whose names start with `prefix`.
        fn threads_named(prefix: &str) -> Vec<(i32, i32)> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                    let id: i32 = entry.file_name().to_str()?.parse().ok()?;
                    let nice = getpriority_process(Some(Pid::from_raw(id)?)).ok()?;
                    name.starts_with(prefix).then_some((id, nice))
                })
                .collect()
        }

        /// Waits until a thread named `prefix…` that was not among `before` runs at `nice`: a
        /// new thread names itself once it runs, a moment after it is spawned.
        fn until_a_new_thread_runs_at(prefix: &str, before: &[(i32, i32)], nice: i32) -> bool {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                let new_at_nice = threads_named(prefix)
                    .iter()
                    .any(|&(id, at)| at == nice && before.iter().all(|&(old, _)| old != id));
                if new_at_nice {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        }

        /// A writer opened through the store merges below the pipeline's priority, and indexes at
        /// it once it has committed. The names are tantivy's own (`merge_thread_N`,
        /// `thrd-tantivy-indexN`). Other tests run in this process too: their writers may add
        /// merge threads at the lower priority only if they also open through the store, but any
        /// commit of theirs adds indexing threads at the pipeline's, so the second check can pass
        /// for them; the first cannot, unless writers are lowered.
        #[test]
        fn a_store_writer_merges_below_the_pipeline_and_indexes_at_its_priority() {
            let own = merge_priority::current_priority().unwrap().unwrap();
            let dir = tempfile::TempDir::new().unwrap();
            let mut schema = Schema::builder();
            let text = schema.add_text_field("text", TEXT);
            let index = open_index(dir.path(), &[schema.build()], true).unwrap();
            let before = threads_named("merge_thread_");
            let mut writer = open_writer(&index, dir.path(), 1, 15_000_000).unwrap();
            let lowered = merge_priority::lowered(own);
            assert!(
                until_a_new_thread_runs_at("merge_thread_", &before, lowered),
                "no new merge thread at nice {lowered}: {:?}",
                threads_named("merge_thread_")
            );
            let before = threads_named("thrd-tantivy-in");
            let mut doc = TantivyDocument::default();
            doc.add_text(text, "one");
            writer.add_document(doc).unwrap();
            writer.commit().unwrap();
            assert!(
                until_a_new_thread_runs_at("thrd-tantivy-in", &before, own),
                "no new indexing thread at nice {own}: {:?}",
                threads_named("thrd-tantivy-in")
            );
        }
    }

    #[test]
    fn a_missing_or_unreadable_stored_copy_is_corrupt_and_names_its_document() {
        let mut builder = Schema::builder();
        let id = builder.add_text_field("id", STRING | STORED);
        let stored = builder.add_text_field("doc", STORED);
        let corrupt = |doc: &TantivyDocument| match stored_json::<serde_json::Value>(
            doc, id, stored, "event",
        ) {
            Err(StoreError::Corrupt { id, message }) => (id, message),
            other => panic!("not corrupt: {other:?}"),
        };
        let mut doc = TantivyDocument::new();
        doc.add_text(id, "e1");
        assert_eq!(corrupt(&doc), ("e1".into(), "no stored event".into()));
        doc.add_text(stored, "{\"n\": ");
        let (named, message) = corrupt(&doc);
        assert_eq!(named, "e1");
        assert!(message.contains("EOF"), "{message}");
        let mut good = TantivyDocument::new();
        good.add_text(stored, "{\"n\": 1}");
        let read: serde_json::Value = stored_json(&good, id, stored, "event").unwrap();
        assert_eq!(read, json!({ "n": 1 }));
    }

    #[test]
    fn greatest_by_orders_by_the_first_field_then_the_second() {
        let mut builder = Schema::builder();
        let fast = || NumericOptions::default().set_fast();
        let first = builder.add_u64_field("first", fast());
        let second = builder.add_u64_field("second", fast());
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter<TantivyDocument> = index.writer(15_000_000).unwrap();
        for (a, b) in [(1, 9), (3, 1), (3, 2), (2, 5)] {
            let mut doc = TantivyDocument::new();
            doc.add_u64(first, a);
            doc.add_u64(second, b);
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let top = |limit| -> Vec<(Option<u64>, Option<u64>)> {
            greatest_by::<u64, u64>(&searcher, &AllQuery, limit, "first", "second")
                .unwrap()
                .into_iter()
                .map(|(values, _)| values)
                .collect()
        };
        assert_eq!(
            top(3),
            [(Some(3), Some(2)), (Some(3), Some(1)), (Some(2), Some(5))]
        );
        assert_eq!(top(usize::MAX).len(), 4, "a huge limit is capped");
        assert!(top(0).is_empty());
    }
}
