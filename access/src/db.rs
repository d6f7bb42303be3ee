//! The access database: one SQLite file in the data directory holding users, tokens,
//! sessions and the audit log. Several processes may open it at once (a running Vigil and
//! `vigil users add`); SQLite's locking keeps them consistent.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

use crate::AccessError;

/// Its file name in the data directory.
pub const ACCESS_DB: &str = "access.sqlite";

/// The schema this code writes, kept in SQLite's `user_version`. A later change to the
/// tables raises it and migrates from the number it finds. A table added later (such as
/// `saved_searches`) needs no new number: every open runs the `IF NOT EXISTS` schema, which
/// creates it in an older file, and an older Vigil ignores it.
const SCHEMA_VERSION: i64 = 1;

/// How long a write waits for another process's (the CLI's, or the server's) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every table. Times are RFC 3339 text in UTC with microseconds (see [`time_text`]), so
/// they also sort as text. Names compare without case, so `Alice` cannot sit beside `alice`
/// and be mistaken for her in the audit log.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tokens (
        -- revoked tokens stay, so that a name always means one token in the audit log
        name TEXT PRIMARY KEY COLLATE NOCASE,
        digest TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created TEXT NOT NULL,
        created_by TEXT NOT NULL,
        expires TEXT,
        revoked TEXT,
        last_used TEXT
    );
    CREATE TABLE IF NOT EXISTS sessions (
        digest TEXT PRIMARY KEY,
        user TEXT NOT NULL COLLATE NOCASE REFERENCES users (name),
        csrf TEXT NOT NULL,
        started TEXT NOT NULL,
        last_seen TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user, started);
    CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        target TEXT,
        client_address TEXT,
        reason TEXT,
        detail TEXT
    );
    CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, seq);
    CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, seq);
    CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be changed');
    END;
    CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be deleted');
    END;
    -- one row: the audit entry the forwarder has sent into the pipeline up to
    CREATE TABLE IF NOT EXISTS audit_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        forwarded_up_to INTEGER NOT NULL
    );
    -- each person's saved searches (saved_searches.rs); ids are never reused
    CREATE TABLE IF NOT EXISTS saved_searches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL COLLATE NOCASE,
        name TEXT NOT NULL COLLATE NOCASE,
        q TEXT NOT NULL,
        time_from TEXT NOT NULL,
        time_to TEXT NOT NULL,
        columns TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        UNIQUE (owner, name)
    );
";

/// The open access database. Methods for each kind of record live in their own modules.
pub struct AccessDb {
    pub(crate) path: PathBuf,
    pub(crate) conn: Mutex<Connection>,
}

impl AccessDb {
    /// Opens (creating if needed, with mode 0600) `data_dir/access.sqlite`.
    pub fn open_in(data_dir: &Path) -> Result<AccessDb, AccessError> {
        AccessDb::open(&data_dir.join(ACCESS_DB))
    }

    pub fn open(path: &Path) -> Result<AccessDb, AccessError> {
        create_private(path)?;
        let err = db_err(path);
        let conn = Connection::open(path).map_err(&err)?;
        // First, so that every statement below waits for a concurrent process rather than
        // failing at once with "database is locked".
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // WAL lets the server read while the CLI writes; FULL makes a committed audit entry
        // or revocation survive power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(&err)?;
        if version > SCHEMA_VERSION {
            return Err(AccessError::Invalid(format!(
                "{} was written by a newer Vigil (schema {version}, this one knows {SCHEMA_VERSION}); \
                 run that version or restore a backup",
                path.display()
            )));
        }
        // One transaction, so two processes opening a new file at once cannot interleave.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(&err)?;
        Ok(AccessDb {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic while it was held poisons the mutex but leaves SQLite
    /// consistent (an open transaction rolls back on drop), so the connection stays usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a transaction that takes the write lock at once. A deferred one that reads
    /// first would fail with SQLITE_BUSY, without waiting, if another process (the CLI, or
    /// the server) wrote between its read and its write.
    pub(crate) fn write_transaction<'c>(
        &self,
        conn: &'c mut Connection,
    ) -> Result<rusqlite::Transaction<'c>, AccessError> {
        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> AccessError + '_ {
        db_err(&self.path)
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> AccessError + '_ {
    move |source| AccessError::Database {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the file readable by its owner only before SQLite opens it: it holds password
/// hashes and session digests. SQLite gives its `-wal` and `-shm` files the same mode.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), AccessError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_err = |action: &'static str| {
        move |source| AccessError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map_err(io_err("read the permissions of"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the access database was readable by others; making it private (0600)"
                );
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err("make private"))?;
            }
            Ok(())
        }
        Err(e) => Err(io_err("create")(e)),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), AccessError> {
    Ok(())
}

/// The current time as the database keeps it (to the microsecond), so that a record
/// returned on creation equals the same record read back.
pub(crate) fn stored_now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// How times are stored: fixed-width RFC 3339 in UTC, so text order is time order.
pub(crate) fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_time(what: &str, text: &str) -> Result<DateTime<Utc>, AccessError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| AccessError::Corrupt(format!("bad time {text:?} in {what}: {e}")))
}

pub(crate) fn parse_optional_time(
    what: &str,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>, AccessError> {
    text.map(|text| parse_time(what, &text)).transpose()
}

/// Whether SQLite refused a row because it broke a UNIQUE or PRIMARY KEY constraint.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh database in a temporary directory, kept alive by the returned guard.
    pub(crate) fn temp_db() -> (tempfile::TempDir, AccessDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = AccessDb::open_in(dir.path()).unwrap();
        (dir, db)
    }

    #[cfg(unix)]
    #[test]
    fn a_new_database_is_private_and_an_exposed_one_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, db) = temp_db();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(db.path()), 0o600);
        assert_eq!(db.path(), dir.path().join(ACCESS_DB));
        // SQLite's side files hold the same rows until a checkpoint: as private.
        db.audit(crate::AuditRecord {
            actor: "test".into(),
            action: "sign_in".into(),
            outcome: crate::Outcome::Success,
            target: None,
            client_address: None,
            reason: None,
            detail: serde_json::Value::Null,
        })
        .unwrap();
        for side in ["access.sqlite-wal", "access.sqlite-shm"] {
            assert_eq!(mode(&dir.path().join(side)), 0o600, "{side}");
        }
        drop(db);
        let path = dir.path().join(ACCESS_DB);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AccessDb::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn opens_in_wal_with_the_schema_version_and_reopens() {
        let (dir, db) = temp_db();
        {
            let conn = db.lock();
            let journal: String = conn
                .pragma_query_value(None, "journal_mode", |row| row.get(0))
                .unwrap();
            assert_eq!(journal, "wal");
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN
                     ('users', 'tokens', 'sessions', 'audit', 'audit_cursor', 'saved_searches')",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(tables, 6);
        }
        // A second handle, as the CLI opens beside a running server.
        let second = AccessDb::open_in(dir.path()).unwrap();
        drop(second);
        drop(db);
        AccessDb::open_in(dir.path()).unwrap();
    }

    #[test]
    fn two_handles_write_at_once_without_busy_errors() {
        // The server and `vigil users add` each hold a handle on the same file.
        let (dir, db) = temp_db();
        db.add_user(
            "alice",
            crate::Role::Viewer,
            &crate::Secret::new("alice's long secret"),
        )
        .unwrap();
        let other = AccessDb::open_in(dir.path()).unwrap();
        let now = Utc::now();
        std::thread::scope(|scope| {
            for handle in [&db, &other] {
                scope.spawn(move || {
                    for _ in 0..50 {
                        // Refused while the other thread has alice disabled; never busy.
                        match handle.start_session("alice", None, now) {
                            Ok(_) | Err(AccessError::Invalid(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                        handle.disable_user("alice").unwrap();
                        handle
                            .lock()
                            .execute("UPDATE users SET disabled = 0", [])
                            .unwrap();
                    }
                });
            }
        });
    }

    #[test]
    fn a_database_from_a_newer_vigil_is_refused() {
        let (dir, db) = temp_db();
        db.lock()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(db);
        let refusal = AccessDb::open_in(dir.path()).err().unwrap().to_string();
        assert!(refusal.contains("newer Vigil"), "{refusal}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join(ACCESS_DB);
        let refusal = AccessDb::open(&missing).err().unwrap().to_string();
        assert!(refusal.contains("nope"), "{refusal}");
    }

    #[test]
    fn stored_times_sort_as_text_and_parse_back() {
        let early = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let late = early + chrono::Duration::microseconds(1);
        assert!(time_text(early) < time_text(late));
        assert_eq!(parse_time("test", &time_text(late)).unwrap(), late);
        assert!(matches!(
            parse_time("test", "yesterday"),
            Err(AccessError::Corrupt(_))
        ));
    }
}
