//! `<data_dir>/notify.sqlite`: the dispatcher's groups and silences and the outbox live in
//! one file, so that an alert's group, its notification and its delivery survive a crash
//! together. Each module creates its own tables through [`open`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// The file's name under the data directory.
pub const NOTIFY_DB: &str = "notify.sqlite";

/// How long a statement waits for another connection's write lock (the UI's silences, the
/// outbox's delivery tasks) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why notify.sqlite could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `data_dir/notify.sqlite`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(NOTIFY_DB)
}

/// Opens (creating if needed, readable by its owner only) the database at `path`: WAL so
/// that the UI reads while the pipeline writes, `synchronous = FULL` so that a committed
/// group or outbox row survives power loss, and a busy timeout so that connections of
/// other modules and processes wait for each other rather than fail.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    create_private(path)?;
    let err = |source| DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    // First, so that the pragmas below wait for a concurrent opener too.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    Ok(conn)
}

/// Creates the file with mode 0600 before SQLite opens it (alert contents and silence
/// authors are in it); SQLite gives its `-wal` and `-shm` files the same mode.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io_err = |action: &'static str| {
        move |source| DbError::Io {
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
                    "the notify database was readable by others; making it private (0600)"
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
fn create_private(_path: &Path) -> Result<(), DbError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_private_in_wal_and_reopens() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let conn = open(&path).unwrap();
        let journal: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let synchronous: i64 = conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "FULL");
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7);")
            .unwrap();
        drop(conn);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let conn = open(&path).unwrap();
        let x: i64 = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
