//! `vigil backup DIR` and `vigil restore DIR`: a consistent copy of the store, taken while
//! Vigil runs, and putting it back. The design is in store/BACKUP.md.
//!
//! A backup holds `index/` (the event partitions, the alerts index, the lifecycle and
//! quarantine databases) and, in `backup.json`, the bus offsets the indexers had committed
//! when it began. Offsets are read first: an indexer commits its offsets only after the store
//! commit that made those messages durable, so every index copied afterwards holds at least
//! what the offsets say. Restoring sets the indexers back to those offsets when the data
//! directory still has its bus, which then replays everything indexed after the backup;
//! upsert by id absorbs the overlap.
//!
//! A backup also holds `access.sqlite` (users, tokens, sessions and the audit log), copied
//! with SQLite's online backup API as the store copies its databases. Each backup and restore
//! is itself audited (`backup.create`, `backup.restore`, by `cli:<user>`): a backup in the
//! data directory it copied, a restore in the data directory it restored, after restoring.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};
use vigil_event::wire::EventOnBus;
use vigil_event::{Alert, Quarantined};
use vigil_store::{Store, StoreOptions};

use vigil_access::{AccessDb, AccessError, ACCESS_DB};
use vigil_pipeline::stages::IndexTarget;

use super::users::cli_actor;

/// Written last into a backup directory: a backup without it is incomplete.
const MANIFEST: &str = "backup.json";
const FORMAT: u32 = 1;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup; it must not exist yet.
    pub dir: PathBuf,
    /// The data directory of the Vigil to back up (it may be running) [default: ./vigil-data].
    #[arg(long, env = "VIGIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `vigil backup`.
    pub dir: PathBuf,
    /// The data directory to restore into; Vigil must not be running on it. Its current
    /// index is moved aside, not deleted [default: ./vigil-data].
    #[arg(long, env = "VIGIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// What `backup.json` records.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    vigil_version: String,
    created: DateTime<Utc>,
    /// The data directory backed up, for the operator's information.
    data_dir: PathBuf,
    /// Committed offsets of the embedded bus's consumer groups, by topic then group, read
    /// before the indices were copied.
    offsets: BTreeMap<String, BTreeMap<String, u64>>,
    events: u64,
    partitions: usize,
    files: usize,
    bytes: u64,
    /// Whether the backup holds the access database; backups from before it do not.
    #[serde(default)]
    access: bool,
}

/// The consumer groups whose output is the store, and so whose offsets a restore rewinds.
fn store_groups() -> [&'static str; 3] {
    [
        <EventOnBus<'static> as IndexTarget>::GROUP,
        <Alert as IndexTarget>::GROUP,
        <Quarantined as IndexTarget>::GROUP,
    ]
}

fn data_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(|| PathBuf::from("vigil-data"))
}

pub fn backup(args: BackupArgs) -> Result<()> {
    let data_dir = data_dir(&args.data_dir);
    let result = take_backup(&args, &data_dir);
    // Only a Vigil data directory gets an entry: a mistyped path is not made into one.
    if data_dir.join("index").is_dir() {
        let audited = AccessDb::open_in(&data_dir)
            .and_then(|db| audit(&db, "backup.create", &args.dir, &result));
        report_audit(audited, &result)?;
    }
    result
}

/// Appends a `backup.create` or `backup.restore` entry naming `target` and the outcome.
fn audit(
    db: &AccessDb,
    action: &str,
    target: &Path,
    result: &Result<()>,
) -> Result<(), AccessError> {
    let (outcome, reason) = match result {
        Ok(()) => (vigil_access::Outcome::Success, None),
        Err(error) => (vigil_access::Outcome::Failure, Some(format!("{error:#}"))),
    };
    db.audit(vigil_access::AuditRecord {
        actor: cli_actor(),
        action: action.to_owned(),
        outcome,
        target: Some(target.display().to_string()),
        client_address: None,
        reason,
        detail: serde_json::Value::Null,
    })
    .map(|_| ())
}

/// A failure to audit fails a command that otherwise succeeded; after a failure, the first
/// error is the one to report, so the audit's is only printed.
fn report_audit(audited: Result<(), AccessError>, result: &Result<()>) -> Result<()> {
    match (audited, result) {
        (Ok(()), _) => Ok(()),
        (Err(error), Ok(())) => {
            Err(anyhow::Error::new(error).context("done, but it could not be audited"))
        }
        (Err(error), Err(_)) => {
            eprintln!("warning: the failure could not be audited: {error}");
            Ok(())
        }
    }
}

fn take_backup(args: &BackupArgs, data_dir: &Path) -> Result<()> {
    let index_dir = data_dir.join("index");
    if !index_dir.is_dir() {
        bail!("no index in {}; pass --data-dir", data_dir.display());
    }
    if args.dir.exists() {
        bail!(
            "{} already exists; a backup goes into a new directory",
            args.dir.display()
        );
    }
    // Offsets first: see the module notes.
    let offsets = vigil_bus::committed_offsets(&data_dir.join("bus"))
        .context("cannot read the bus offsets")?;
    let created = Utc::now();
    let snapshot_dir = args.dir.join("index");
    let report = vigil_store::backup::snapshot(&index_dir, &snapshot_dir)
        .with_context(|| format!("cannot back up {}", index_dir.display()))?;
    // The copy must open as a store; counting its events proves it does.
    let events = Store::open_with(
        &snapshot_dir,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .and_then(|store| store.event_count())
    .context("the backup does not open as a store")?;
    let live_access = data_dir.join(ACCESS_DB);
    let access = live_access.is_file();
    if access {
        let copy = args.dir.join(ACCESS_DB);
        copy_database(&live_access, &copy)
            .with_context(|| format!("cannot back up {}", live_access.display()))?;
        File::open(&copy)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("cannot sync {}", copy.display()))?;
        sync_dir(&args.dir)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        vigil_version: env!("CARGO_PKG_VERSION").to_owned(),
        created,
        data_dir: data_dir.to_path_buf(),
        offsets,
        events,
        partitions: report.partitions,
        files: report.files,
        bytes: report.bytes,
        access,
    };
    let path = args.dir.join(MANIFEST);
    vigil_durable::write_json(&path, &manifest)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Backed up {} events in {} partitions, the alerts and their triage{} to {} \
         ({} files copied, {:.1} MB)",
        events,
        report.partitions,
        if access {
            ", the users, tokens and audit log"
        } else {
            ""
        },
        args.dir.display(),
        report.files,
        report.bytes as f64 / 1e6,
    );
    if same_filesystem(&index_dir, &args.dir) {
        eprintln!(
            "warning: the backup in {} is on the same filesystem as {}. Its files are copies, \
             so it survives deleted or damaged files, but not the loss of that filesystem or \
             its disk: keep a copy of it elsewhere.",
            args.dir.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Whether `a` and `b` are on one filesystem (one device), so one failure can take both.
fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Copies a live SQLite database with the online backup API: one transaction-consistent
/// image while Vigil writes, stored as a plain (non-WAL) file.
fn copy_database(src: &Path, dest: &Path) -> Result<()> {
    use rusqlite::{Connection, OpenFlags};
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut copy = Connection::open(dest)?;
    {
        // Waits out a writer holding a lock, and starts over if the database changes under
        // the copy.
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)?;
        backup.run_to_completion(256, std::time::Duration::from_millis(10), None)?;
    }
    // No -wal or -shm beside the copy to go missing; the access database switches it back
    // to WAL when it opens it.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

pub fn restore(args: RestoreArgs) -> Result<()> {
    let data_dir = data_dir(&args.data_dir);
    let result = restore_backup(&args, &data_dir);
    // After the restore, so the entry lands in the access database now in place (the
    // restored one, when the backup held one).
    if data_dir.join("index").is_dir() || data_dir.join(ACCESS_DB).is_file() {
        let audited = AccessDb::open_in(&data_dir)
            .and_then(|db| audit(&db, "backup.restore", &args.dir, &result));
        report_audit(audited, &result)?;
    }
    result
}

fn restore_backup(args: &RestoreArgs, data_dir: &Path) -> Result<()> {
    let manifest_path = args.dir.join(MANIFEST);
    // Nothing inside a backup is followed out of it (the store's restore checks the rest).
    if fs::symlink_metadata(&manifest_path).is_ok_and(|m| !m.is_file()) {
        bail!(
            "{} is not a regular file (a symbolic link?); a backup holds only regular files \
             and directories, so this one is refused",
            manifest_path.display()
        );
    }
    let text = fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{} is not a complete backup (no {MANIFEST})",
            args.dir.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "the backup has format {}; this Vigil reads format {FORMAT}",
            manifest.format
        );
    }
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;

    let index_dir = data_dir.join("index");
    if index_dir.exists() {
        let aside = data_dir.join(format!(
            "index.before-restore-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        fs::rename(&index_dir, &aside)
            .with_context(|| format!("cannot move {} aside", index_dir.display()))?;
        sync_dir(data_dir)?;
        println!("The previous index is kept in {}", aside.display());
    }
    vigil_store::backup::restore(&args.dir.join("index"), &index_dir)
        .with_context(|| format!("cannot restore into {}", index_dir.display()))?;
    if manifest.access {
        restore_access(&args.dir, data_dir)?;
    } else {
        println!(
            "The backup holds no users, tokens or audit log (it predates them); those of {} \
             stay as they are",
            data_dir.display()
        );
    }

    let bus = data_dir.join("bus");
    if bus.is_dir() {
        for (topic, groups) in &manifest.offsets {
            for (group, &offset) in groups {
                if !store_groups().contains(&group.as_str()) {
                    continue;
                }
                match vigil_bus::rewind_committed(&bus, topic, group, offset)? {
                    Some(from) if from > offset => println!(
                        "warning: {topic} no longer holds offsets {offset}..{from}; what it \
                         held there is missing from the index unless its sources resend it"
                    ),
                    Some(from) => {
                        println!("{topic}: {group} replays from offset {from} on the next start")
                    }
                    None => {}
                }
            }
        }
    } else {
        println!(
            "No bus in {}: events after the backup ({}) are not restored unless their \
             sources send them again.",
            data_dir.display(),
            manifest.created.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    println!(
        "Restored {} events in {} partitions and the alert triage from {} into {}",
        manifest.events,
        manifest.partitions,
        args.dir.display(),
        data_dir.display()
    );
    Ok(())
}

/// Puts the backup's access database in place, the data directory's own moved aside (with
/// its -wal and -shm, which may hold its last commits).
fn restore_access(backup_dir: &Path, data_dir: &Path) -> Result<()> {
    let copy = backup_dir.join(ACCESS_DB);
    // As for the manifest: nothing inside a backup is followed out of it.
    if !fs::symlink_metadata(&copy).is_ok_and(|m| m.is_file()) {
        bail!(
            "{} is missing or not a regular file (a symbolic link?); the backup is refused",
            copy.display()
        );
    }
    let live = data_dir.join(ACCESS_DB);
    if live.exists() {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        for suffix in ["", "-wal", "-shm"] {
            let from = data_dir.join(format!("{ACCESS_DB}{suffix}"));
            if from.exists() {
                let aside = data_dir.join(format!("{ACCESS_DB}.before-restore-{stamp}{suffix}"));
                fs::rename(&from, &aside)
                    .with_context(|| format!("cannot move {} aside", from.display()))?;
            }
        }
        sync_dir(data_dir)?;
        println!(
            "The previous users, tokens and audit log are kept in {}.before-restore-{stamp}",
            live.display()
        );
    }
    copy_database(&copy, &live).with_context(|| format!("cannot restore {}", live.display()))?;
    File::open(&live)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", live.display()))?;
    sync_dir(data_dir)?;
    // Proves the copy opens as an access database (and brings it back to WAL).
    AccessDb::open(&live).context("the restored access database does not open")?;
    Ok(())
}

/// The lock `vigil run` takes on its data directory: a restore needs it stopped.
fn lock_data_dir(data_dir: &Path) -> Result<File> {
    let path = data_dir.join("lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "Vigil is running on {}; stop it before restoring",
            data_dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_groups_are_the_indexers() {
        assert_eq!(
            store_groups(),
            ["index", "index-alerts", "index-quarantine"]
        );
    }
}
