//! The access database: one SQLite file in the data directory holding users, tokens,
//! sessions and the audit log. Several processes may open it at once (a running Vigil and
//! `vigil users add`); SQLite's locking keeps them consistent.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

use crate::AccessError;

/// Its file name in the data directory.
pub const ACCESS_DB: &str = "access.sqlite";

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
        let _ = path;
        todo!("H1")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
