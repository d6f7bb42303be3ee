//! Snapshots of a store directory taken while another process writes it, and their restore.
//!
//! A running Vigil commits its indices and SQLite databases in its own process; a snapshot is
//! taken from outside it without pausing anything:
//!
//! - **Each tantivy index** (the alerts index and each event partition) is read at one
//!   commit: its `meta.json` is read once, and the segment files that commit names are
//!   hard-linked (or copied, across filesystems) beside a copy of those exact `meta.json`
//!   bytes. Segment files never change once written, so this is the commit as it was. Tantivy
//!   deletes files that no commit needs any more; if that happens to one mid-copy, the index
//!   is copied again from its newer `meta.json`.
//! - **SQLite databases** (the alert lifecycle, the quarantine) are copied with SQLite's
//!   online backup API, which gives one transaction-consistent image under concurrent writes.
//!
//! The indices are copied before the lifecycle database, so the database is the newer of the
//! two. The alerts index only carries a searchable copy of each alert's state, so the
//! snapshot's database marks every alert for re-indexing: the first open of a restored store
//! rewrites that copy from the database (see `Store::repair_alert_index`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::events::SCHEME_FILE;
use crate::index;
use crate::partition::PartitionKey;
use crate::{StoreError, LIFECYCLE_DB, QUARANTINE_DB};

/// Attempts at copying one index whose files keep being replaced under the copy.
const COPY_ATTEMPTS: usize = 20;

/// What [`snapshot`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotReport {
    /// Event partitions copied.
    pub partitions: usize,
    /// Files hard-linked or copied.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Files that had to be copied because a hard link was not possible.
    pub copied_not_linked: usize,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Snapshots the store in `index_dir` into `dest`, which must not exist yet. Safe while a
/// Vigil writes `index_dir`; see the module notes for what "consistent" means here.
pub fn snapshot(index_dir: &Path, dest: &Path) -> Result<SnapshotReport, StoreError> {
    if dest.exists() {
        return Err(StoreError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(ErrorKind::AlreadyExists, "the target already exists"),
        });
    }
    if !index_dir.join("alerts").join("meta.json").exists() {
        return Err(StoreError::Open {
            path: index_dir.to_path_buf(),
            source: "no Vigil store here (no alerts index)".into(),
        });
    }
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let mut report = SnapshotReport::default();

    copy_index(&index_dir.join("alerts"), &dest.join("alerts"), &mut report)?.ok_or_else(|| {
        StoreError::Open {
            path: index_dir.join("alerts"),
            source: "the alerts index disappeared during the backup".into(),
        }
    })?;

    let events = index_dir.join("events");
    let dest_events = dest.join("events");
    fs::create_dir_all(&dest_events).map_err(io_err(&dest_events))?;
    let scheme = events.join(SCHEME_FILE);
    if scheme.exists() {
        fs::copy(&scheme, dest_events.join(SCHEME_FILE)).map_err(io_err(&scheme))?;
    }
    let mut partitions: Vec<(PartitionKey, PathBuf)> = match fs::read_dir(&events) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let key = PartitionKey::from_dir_name(name.to_str()?)?;
                Some((key, entry.path()))
            })
            .collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(StoreError::Io {
                path: events,
                source,
            })
        }
    };
    partitions.sort();
    for (key, dir) in partitions {
        // A partition that retention removed meanwhile (or one created but never committed)
        // has no meta.json: it holds nothing this snapshot needs.
        let copied = copy_index(&dir, &dest_events.join(key.dir_name()), &mut report)?;
        if copied.is_some() {
            report.partitions += 1;
        }
    }

    for name in [LIFECYCLE_DB, QUARANTINE_DB] {
        let source = index_dir.join(name);
        if source.exists() {
            copy_database(&source, &dest.join(name))?;
        }
    }
    mark_alerts_for_reindex(&dest.join(LIFECYCLE_DB))?;
    Ok(report)
}

/// The files of the commit described by `meta`: every file of each segment it names (a
/// segment's files start with its id), with only the deletes file of the named opstamp.
fn commit_files(dir: &Path, meta: &[u8]) -> Result<Vec<String>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        id: dir.join("meta.json").display().to_string(),
        message,
    };
    let meta: serde_json::Value =
        serde_json::from_slice(meta).map_err(|e| corrupt(e.to_string()))?;
    let segments = meta["segments"]
        .as_array()
        .ok_or_else(|| corrupt("no segments list".into()))?;
    let mut wanted = Vec::new();
    for segment in segments {
        let id = segment["segment_id"]
            .as_str()
            .ok_or_else(|| corrupt("a segment without an id".into()))?
            .replace('-', "");
        let deletes = segment["deletes"]["opstamp"].as_u64();
        wanted.push((id, deletes));
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((segment, rest)) = name.split_once('.') else {
            continue;
        };
        let Some((_, deletes)) = wanted.iter().find(|(id, _)| id == segment) else {
            continue;
        };
        if let Some(opstamp) = rest.strip_suffix(".del") {
            if deletes.map(|d| d.to_string()).as_deref() != Some(opstamp) {
                continue;
            }
        }
        if rest.ends_with(".temp") || rest.ends_with(".lock") {
            continue;
        }
        files.push(name);
    }
    Ok(files)
}

/// Copies the last commit of the index in `src` into `dest`; `None` when `src` holds no
/// committed index (any more).
fn copy_index(
    src: &Path,
    dest: &Path,
    report: &mut SnapshotReport,
) -> Result<Option<()>, StoreError> {
    let meta_path = src.join("meta.json");
    // Read before meta.json: the marker is written only after the commit it vouches for, so
    // the commit read next is at least that one. A copy without it is rewritten when opened.
    let terms_readable = index::terms_readable(src);
    for _ in 0..COPY_ATTEMPTS {
        let meta = match fs::read(&meta_path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path: meta_path,
                    source,
                })
            }
        };
        let files = match commit_files(src, &meta) {
            Ok(files) => files,
            // Caught while the writer replaced meta.json: read it again.
            Err(StoreError::Corrupt { .. }) => continue,
            Err(e) => return Err(e),
        };
        if dest.exists() {
            fs::remove_dir_all(dest).map_err(io_err(dest))?;
        }
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        let mut attempt = SnapshotReport::default();
        let mut vanished = false;
        for name in &files {
            match link_or_copy(&src.join(name), &dest.join(name), &mut attempt) {
                Ok(()) => {}
                // Merged away and collected since meta.json was read: a newer commit exists.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    vanished = true;
                    break;
                }
                Err(source) => {
                    return Err(StoreError::Io {
                        path: src.join(name),
                        source,
                    })
                }
            }
        }
        if vanished {
            continue;
        }
        let dest_meta = dest.join("meta.json");
        fs::write(&dest_meta, &meta).map_err(io_err(&dest_meta))?;
        if terms_readable {
            index::mark_terms_readable(dest)?;
        }
        report.files += attempt.files + 1;
        report.bytes += attempt.bytes + meta.len() as u64;
        report.copied_not_linked += attempt.copied_not_linked;
        return Ok(Some(()));
    }
    Err(StoreError::Open {
        path: src.to_path_buf(),
        source: format!(
            "its files kept changing during {COPY_ATTEMPTS} attempts to copy it; try again"
        )
        .into(),
    })
}

fn link_or_copy(src: &Path, dest: &Path, report: &mut SnapshotReport) -> std::io::Result<()> {
    let size = fs::metadata(src)?.len();
    if fs::hard_link(src, dest).is_err() {
        // Another filesystem, or one without links. Opening can still find the file gone.
        fs::copy(src, dest)?;
        report.copied_not_linked += 1;
    }
    report.files += 1;
    report.bytes += size;
    Ok(())
}

/// Copies a live SQLite database with the online backup API.
fn copy_database(src: &Path, dest: &Path) -> Result<(), StoreError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Database {
            path: path.clone(),
            source,
        }
    };
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err(src))?;
    source
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err(src))?;
    let mut copy = Connection::open(dest).map_err(err(dest))?;
    {
        // Waits out a writer holding a lock, and starts over if the database changes under
        // the copy: what it ends with is one consistent image.
        let backup = rusqlite::backup::Backup::new(&source, &mut copy).map_err(err(dest))?;
        backup
            .run_to_completion(256, std::time::Duration::from_millis(10), None)
            .map_err(err(dest))?;
    }
    // A plain database file, with no -wal and -shm beside it to go missing; the store
    // switches it back to WAL when it opens it for writing.
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(err(dest))
}

/// Marks every alert of the lifecycle database at `path` for re-indexing, so that the alerts
/// index is brought in line with it when the store next opens.
fn mark_alerts_for_reindex(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let err = |source| StoreError::Database {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.execute("UPDATE alert_state SET reindex = 1", [])
        .map_err(err)?;
    Ok(())
}

/// Puts the snapshot in `snapshot` in place as the store `index_dir`, which must not exist:
/// the caller moves the old one aside and makes sure no Vigil uses it. The snapshot is copied,
/// not moved, so it stays usable.
pub fn restore(snapshot: &Path, index_dir: &Path) -> Result<SnapshotReport, StoreError> {
    if index_dir.exists() {
        return Err(StoreError::Io {
            path: index_dir.to_path_buf(),
            source: std::io::Error::new(
                ErrorKind::AlreadyExists,
                "move the current index aside first",
            ),
        });
    }
    if !snapshot.join("alerts").join("meta.json").exists() {
        return Err(StoreError::Open {
            path: snapshot.to_path_buf(),
            source: "not a store snapshot (no alerts index)".into(),
        });
    }
    let mut report = SnapshotReport::default();
    // Into a temporary name first, so an interrupted restore leaves no half store behind.
    let partial = index_dir.with_extension("restoring");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    copy_tree(snapshot, &partial, &mut report)?;
    fs::rename(&partial, index_dir).map_err(io_err(index_dir))?;
    report.partitions = fs::read_dir(index_dir.join("events"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(PartitionKey::from_dir_name)
                        .is_some()
                })
                .count()
        })
        .unwrap_or(0);
    Ok(report)
}

fn copy_tree(src: &Path, dest: &Path, report: &mut SnapshotReport) -> Result<(), StoreError> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            copy_tree(&path, &target, report)?;
        } else {
            // Copied rather than linked: the restored store will be written, and tantivy
            // writes new files rather than changing old ones, but SQLite changes its file in
            // place, which must not reach the snapshot.
            let bytes = fs::copy(&path, &target).map_err(io_err(&path))?;
            report.files += 1;
            report.bytes += bytes;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_files_keep_only_the_named_segments_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let a = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        let b = "ffeeddccbbaa99887766554433221100";
        for name in [
            format!("{a}.idx"),
            format!("{a}.store"),
            format!("{a}.3.del"),
            format!("{a}.7.del"),
            format!("{b}.idx"),
            "meta.json".to_owned(),
            ".managed.json".to_owned(),
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        let meta = serde_json::json!({
            "segments": [{
                "segment_id": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
                "max_doc": 3,
                "deletes": {"num_deleted_docs": 1, "opstamp": 7}
            }],
            "opstamp": 9
        });
        let mut files = commit_files(dir.path(), meta.to_string().as_bytes()).unwrap();
        files.sort();
        assert_eq!(
            files,
            vec![
                format!("{a}.7.del"),
                format!("{a}.idx"),
                format!("{a}.store")
            ]
        );
    }
}
