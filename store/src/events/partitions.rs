//! The partition directories of the events index: listing them and the span of event times
//! each holds, their readers (a small least-recently-used cache), their sizes and removal,
//! and the file that records how they are cut.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tantivy::IndexReader;

use super::layout::{layout_of, Layout};
use super::spans;
use super::EventIndex;
use crate::index::{self, lock};
use crate::partition::{PartitionKey, PartitionScheme, TimeSpan};
use crate::StoreError;

/// Written beside the partitions: the period they were cut with, and since when by arrival
/// (see `check_scheme`). Cutting daily partitions as hourly ones would mix periods within a
/// partition, and retention removes whole partitions by their period.
pub(crate) const SCHEME_FILE: &str = "partitioning.json";

/// One partition's reader (which keeps its index open).
pub(crate) struct Partition {
    pub(super) reader: IndexReader,
    pub(super) layout: Layout,
}

/// One event partition as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    pub key: PartitionKey,
    /// The event times it holds; `None` while it holds nothing.
    pub span: Option<TimeSpan>,
    /// Events searchable in it now.
    pub events: u64,
    /// What it takes on disk.
    pub bytes: u64,
}

/// The span of event times of a partition a writing store knows of.
#[derive(Clone, Copy, Default)]
pub(super) struct KnownSpan {
    /// What the partition holds, committed or not; `None` while it holds nothing.
    pub(super) span: Option<TimeSpan>,
    /// What its span file says; a commit first rewrites the file when `span` is wider.
    pub(super) recorded: Option<TimeSpan>,
}

/// Partitions opened for reading, least recently used evicted first.
pub(super) struct ReaderCache {
    pub(super) open: HashMap<PartitionKey, (Arc<Partition>, u64)>,
    pub(super) clock: u64,
}

/// What [`EventIndex::remove_partitions`] freed.
pub(crate) struct Removed {
    pub(crate) key: PartitionKey,
    pub(crate) bytes: u64,
}

impl EventIndex {
    /// The span of an existing partition, for a writing store: its span file, or else its
    /// time columns, then recorded in a span file so the next open need not read them.
    pub(super) fn open_span(&self, key: PartitionKey) -> Result<KnownSpan, StoreError> {
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

    /// The partition directories under the index directory.
    pub(super) fn list_partitions(&self) -> Result<BTreeSet<PartitionKey>, StoreError> {
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

    pub(super) fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.dir.join(key.dir_name())
    }

    /// The partition's reader, opened on first use and cached.
    pub(super) fn partition(&self, key: PartitionKey) -> Result<Arc<Partition>, StoreError> {
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

    pub(super) fn layout(
        &self,
        key: PartitionKey,
        index: &tantivy::Index,
    ) -> Result<Layout, StoreError> {
        // `open_index` has checked the schema against the readable ones already.
        layout_of(&index.schema()).ok_or_else(|| StoreError::Open {
            path: self.partition_dir(key),
            source: "the index was written with a different schema".into(),
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

    /// Each partition with the span of event times it holds, its searchable events and its
    /// size on disk, oldest first: what an operator's health page shows.
    pub(crate) fn infos(&self) -> Result<Vec<PartitionInfo>, StoreError> {
        self.spanned()?
            .into_iter()
            .map(|(key, span)| {
                Ok(PartitionInfo {
                    key,
                    span,
                    events: self.partition(key)?.reader.searcher().num_docs(),
                    bytes: dir_size(&self.partition_dir(key))?,
                })
            })
            .collect()
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
}

/// Checks the period the partitions were cut with against the configured one, recording it
/// on first use. A read-only store takes whatever period is recorded: it only reads, and
/// its opener (`vigil search`) may not know the writer's configuration.
///
/// The file also says what the partitions are cut by: `"by": "arrival"`, with the period
/// from which on they were (`arrival_since`). A file without it is from a Vigil that cut
/// them by event time; a writing store adds it. Nothing depends on it: every partition is
/// searched by the span of event times it holds, whichever way it was cut.
pub(super) fn check_scheme(
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
pub(crate) fn dir_size(dir: &Path) -> Result<u64, StoreError> {
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
