//! Snapshots of a store directory taken while another process writes it, and their restore.
//!
//! A running Vigil commits its indices and SQLite databases in its own process; a snapshot is
//! taken from outside it without pausing anything:
//!
//! - **Each tantivy index** (the alerts index and each event partition) is read at one
//!   commit: its `meta.json` is read once, and the segment files that commit names are
//!   copied beside a copy of those exact `meta.json` bytes. Segment files never change once
//!   written, so this is the commit as it was. Tantivy deletes files that no commit needs any
//!   more; if that happens to one mid-copy, the index is copied again from its newer
//!   `meta.json`.
//! - **Copies, never links.** A hard link would make the backup the same file as the live
//!   one: whatever damages one (a bad disk block, a bug or a person writing to it) damages
//!   both. Files are copied byte by byte through a buffer, not with `copy_file_range`, which
//!   some filesystems answer with a reflink sharing the same blocks. Every file and directory
//!   is fsynced before the backup is declared complete.
//! - **SQLite databases** (the alert lifecycle, the quarantine) are copied with SQLite's
//!   online backup API, which gives one transaction-consistent image under concurrent writes.
//!
//! The indices are copied before the lifecycle database, so the database is the newer of the
//! two. The alerts index only carries a searchable copy of each alert's state, so the
//! snapshot's database marks every alert for re-indexing: the first open of a restored store
//! rewrites that copy from the database (see `Store::repair_alert_index`).
//!
//! A restore reads a directory that anyone with write access to the backups may have
//! changed, so it takes only regular files and directories from it: a symbolic link (to a
//! file outside, say) or a device or pipe makes it refuse the whole backup. Everything is
//! fsynced before the restored store is renamed into place, and the rename itself after.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::events::SCHEME_FILE;
use crate::index;
use crate::partition::PartitionKey;
use crate::{StoreError, LIFECYCLE_DB, QUARANTINE_DB};

/// Attempts at copying one index whose files keep being replaced under the copy.
const COPY_ATTEMPTS: usize = 20;
/// The buffer files are copied through.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// What [`snapshot`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotReport {
    /// Event partitions copied.
    pub partitions: usize,
    /// Files copied.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
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
        let bytes = copy_file(&scheme, &dest_events.join(SCHEME_FILE)).map_err(io_err(&scheme))?;
        report.files += 1;
        report.bytes += bytes;
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
    for name in [LIFECYCLE_DB, QUARANTINE_DB] {
        let copy = dest.join(name);
        if copy.exists() {
            sync_file(&copy)?;
        }
    }
    sync_dir(&dest_events)?;
    sync_dir(dest)?;
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
            match copy_file(&src.join(name), &dest.join(name)) {
                Ok(bytes) => {
                    attempt.files += 1;
                    attempt.bytes += bytes;
                }
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
        write_synced(&dest_meta, &meta).map_err(io_err(&dest_meta))?;
        if terms_readable {
            index::mark_terms_readable(dest)?;
        }
        sync_tree_files(dest)?;
        report.files += attempt.files + 1;
        report.bytes += attempt.bytes + meta.len() as u64;
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

/// Copies `src` into a new file `dest` and fsyncs it; gives the bytes copied. The copy owns
/// its blocks: a plain read and write loop, since `copy_file_range` may reflink, and a link
/// of any kind would share the live file's fate.
fn copy_file(src: &Path, dest: &Path) -> std::io::Result<u64> {
    let mut from = File::open(src)?;
    copy_open_file(&mut from, dest)
}

fn copy_open_file(from: &mut File, dest: &Path) -> std::io::Result<u64> {
    let mut to = OpenOptions::new().write(true).create_new(true).open(dest)?;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut copied = 0u64;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..read])?;
        copied += read as u64;
    }
    to.sync_all()?;
    Ok(copied)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(io_err(path))
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err(path))
}

/// Fsyncs every file directly in `dir` and `dir` itself. The copies are synced as they are
/// written; this catches what the index module wrote (the terms marker).
fn sync_tree_files(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_file() {
            sync_file(&entry.path())?;
        }
    }
    sync_dir(dir)
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
/// not moved, so it stays usable. A snapshot holding anything but regular files and
/// directories (a symbolic link above all) is refused before anything is copied.
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
    check_plain_tree(snapshot)?;
    if !snapshot.join("alerts").join("meta.json").is_file() {
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
    if let Err(error) = copy_tree(snapshot, &partial, &mut report) {
        let _ = fs::remove_dir_all(&partial);
        return Err(error);
    }
    // Everything under `partial` is synced by now; its own entry, and then the rename, go
    // through the parent directory.
    let parent = match index_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(parent)?;
    fs::rename(&partial, index_dir).map_err(io_err(index_dir))?;
    sync_dir(parent)?;
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

/// Why `path`, in a snapshot, is refused: it is not a regular file or directory.
fn not_plain(path: &Path, what: &str) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        source: format!(
            "{what} in the backup; a backup holds only regular files and directories, and \
             restore never follows a link out of it, so the backup is refused"
        )
        .into(),
    }
}

/// What `metadata` (not followed through links) says `path` is, when it is not a regular
/// file or a directory.
fn refused_kind(metadata: &fs::Metadata) -> Option<&'static str> {
    let kind = metadata.file_type();
    if kind.is_symlink() {
        Some("a symbolic link")
    } else if kind.is_dir() || kind.is_file() {
        None
    } else {
        Some("a special file (device, pipe or socket)")
    }
}

/// Fails unless everything under `dir`, `dir` included, is a regular file or a directory.
fn check_plain_tree(dir: &Path) -> Result<(), StoreError> {
    let metadata = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if let Some(what) = refused_kind(&metadata) {
        return Err(not_plain(dir, what));
    }
    if !metadata.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        check_plain_tree(&entry.path())?;
    }
    Ok(())
}

/// Copies the tree under `src` into `dest`, fsyncing each file and directory. It checks each
/// entry again as it copies, without following links, and makes sure the file it opened is
/// the one it checked, so a link swapped in after [`check_plain_tree`] is refused too.
fn copy_tree(src: &Path, dest: &Path, report: &mut SnapshotReport) -> Result<(), StoreError> {
    fs::create_dir(dest).map_err(io_err(dest))?;
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        let metadata = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if let Some(what) = refused_kind(&metadata) {
            return Err(not_plain(&path, what));
        }
        if metadata.is_dir() {
            copy_tree(&path, &target, report)?;
            continue;
        }
        // Copied rather than linked: the restored store will be written, and tantivy
        // writes new files rather than changing old ones, but SQLite changes its file in
        // place, which must not reach the snapshot.
        let mut file = File::open(&path).map_err(io_err(&path))?;
        let opened = file.metadata().map_err(io_err(&path))?;
        if (opened.dev(), opened.ino()) != (metadata.dev(), metadata.ino()) || !opened.is_file() {
            return Err(not_plain(
                &path,
                "a file replaced while it was being restored",
            ));
        }
        let bytes = copy_open_file(&mut file, &target).map_err(io_err(&target))?;
        report.files += 1;
        report.bytes += bytes;
    }
    sync_dir(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};
    use chrono::Utc;
    use vigil_event::{Event, EventId, LogSource, Quarantined, Record, Source};

    fn event(n: u32) -> Event {
        let record = serde_json::json!({"eventName": "GetObject", "n": n});
        let now = Utc::now();
        Event {
            id: EventId::derive("backup test", &[&n.to_le_bytes()]),
            time: now,
            received: now,
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail".into(),
            },
            logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
            record: Record::json(&record.to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    /// A live store with events, an alerts index and a quarantined record.
    fn live_store(dir: &Path) -> Store {
        let store = Store::open(dir).unwrap();
        store
            .index_events(&(0..20).map(event).collect::<Vec<_>>())
            .unwrap();
        store.commit().unwrap();
        store
            .add_quarantined(&[Quarantined {
                source: Source {
                    kind: "http".into(),
                    name: "app".into(),
                },
                reason: "not JSON".into(),
                line: Some(1),
                received: Utc::now(),
                raw: b"{oops".to_vec(),
            }])
            .unwrap();
        store
    }

    /// Every regular file under `dir`, by its path relative to `dir`.
    fn files(dir: &Path) -> Vec<(PathBuf, fs::Metadata)> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            for entry in fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                let metadata = fs::symlink_metadata(&path).unwrap();
                if metadata.is_dir() {
                    pending.push(path);
                } else {
                    found.push((path.strip_prefix(dir).unwrap().to_path_buf(), metadata));
                }
            }
        }
        found
    }

    fn event_count(index_dir: &Path) -> u64 {
        let options = StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        };
        Store::open_with(index_dir, options)
            .unwrap()
            .event_count()
            .unwrap()
    }

    #[test]
    fn a_snapshot_copies_every_file_and_links_none() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("index");
        let _store = live_store(&live);
        let backup = dir.path().join("backup");
        let report = snapshot(&live, &backup).unwrap();

        let live_files = files(&live);
        let copies = files(&backup);
        assert!(report.files > 0 && report.files <= copies.len());
        let mut shared_names = 0;
        for (name, copy) in &copies {
            assert_eq!(copy.nlink(), 1, "{} has other links", name.display());
            assert!(copy.is_file(), "{}", name.display());
            if let Some((_, original)) = live_files.iter().find(|(n, _)| n == name) {
                shared_names += 1;
                assert_ne!(
                    (copy.dev(), copy.ino()),
                    (original.dev(), original.ino()),
                    "{} is the live file",
                    name.display()
                );
            }
        }
        // The segment files of the alerts index and the partition, at least.
        assert!(shared_names >= 5, "{shared_names} files in common");
        assert_eq!(event_count(&backup), 20);
    }

    #[test]
    fn restore_refuses_a_backup_holding_a_symbolic_link_and_takes_it_without() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("index");
        let _store = live_store(&live);
        let backup = dir.path().join("backup");
        snapshot(&live, &backup).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "outside the backup").unwrap();
        let outside_dir = dir.path().join("elsewhere");
        fs::create_dir(&outside_dir).unwrap();

        for (link, target) in [
            (backup.join("alerts").join("stolen"), &secret),
            (backup.join("events").join("linked-dir"), &outside_dir),
        ] {
            std::os::unix::fs::symlink(target, &link).unwrap();
            let restored = dir.path().join("restored");
            fs::create_dir_all(&restored).unwrap();
            let index_dir = restored.join("index");
            let error = restore(&backup, &index_dir).unwrap_err().to_string();
            assert!(error.contains("symbolic link"), "{error}");
            assert!(error.contains(&link.display().to_string()), "{error}");
            assert!(!index_dir.exists());
            assert!(!index_dir.with_extension("restoring").exists());
            fs::remove_file(&link).unwrap();
        }

        // A backup that is itself a link inside the backup directory is refused as well.
        let linked_backup = dir.path().join("linked-backup");
        std::os::unix::fs::symlink(&backup, &linked_backup).unwrap();
        let error = restore(&linked_backup, &dir.path().join("other"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("symbolic link"), "{error}");

        let index_dir = dir.path().join("restored").join("index");
        let report = restore(&backup, &index_dir).unwrap();
        assert_eq!(report.files, files(&backup).len());
        assert_eq!(event_count(&index_dir), 20);
        for (name, copy) in files(&index_dir) {
            assert_eq!(copy.nlink(), 1, "{}", name.display());
        }
    }

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
