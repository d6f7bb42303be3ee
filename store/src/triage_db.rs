//! The alert lifecycle kept in SQLite: each alert's triage state (see [`crate::triage`]), its
//! notes and its history.
//!
//! Alerts themselves are immutable detections and live in the alerts index; what analysts
//! change about them is mutable, needs transactions and a history, and so lives here. The
//! alerts index carries a copy of the status and assignee so that they can be searched; this
//! database is the truth, and a change marks its alert for re-indexing in the same
//! transaction, so a crash between the two is repaired when the store next opens.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use crate::index::lock;
use crate::triage::{
    apply_change, AlertChange, AlertState, AlertStatus, CloseReason, HistoryEntry,
};
use crate::StoreError;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// The triage database.
pub(crate) struct TriageDb {
    /// `None` for a read-only store opened before any alert was triaged: nothing to read.
    conn: Option<Mutex<Connection>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS alert_state (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        reason TEXT,
        assignee TEXT,
        updated TEXT NOT NULL,
        -- set with each change, cleared once the alerts index holds it
        reindex INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS alert_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        field TEXT NOT NULL,
        old TEXT,
        new TEXT
    );
    CREATE INDEX IF NOT EXISTS alert_history_by_alert ON alert_history (alert_id, seq);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Database {
        path: path.to_path_buf(),
        source: e,
    }
}

fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(id: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            id: id.to_owned(),
            message: format!("bad time {text:?} in the lifecycle database: {e}"),
        })
}

/// What [`TriageDb::register`] found.
#[derive(Debug)]
pub(crate) struct Registered {
    /// Every alert's state.
    pub(crate) states: HashMap<String, AlertState>,
    /// The alerts registered for the first time: none of them can be in the alerts index
    /// yet, since an alert is registered before it is indexed.
    pub(crate) new: HashSet<String>,
}

impl TriageDb {
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<TriageDb, StoreError> {
        let err = db_err(path);
        if read_only {
            if !path.exists() {
                return Ok(TriageDb { conn: None });
            }
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(&err)?;
            return Ok(TriageDb {
                conn: Some(Mutex::new(conn)),
            });
        }
        let conn = Connection::open(path).map_err(&err)?;
        // WAL lets a read-only process (`vigil search`) read while Vigil writes; FULL makes
        // a committed change survive power loss, which triage decisions deserve.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&err)?;
        conn.execute_batch(SCHEMA).map_err(&err)?;
        Ok(TriageDb {
            conn: Some(Mutex::new(conn)),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError {
        |e| StoreError::Database {
            path: "alerts.sqlite".into(),
            source: e,
        }
    }

    /// Records alerts seen for the first time as open, leaving known ones as they are (a
    /// replayed alert keeps its triage), and gives every one's state and which were new.
    pub(crate) fn register(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Registered, StoreError> {
        let Some(conn) = &self.conn else {
            return Err(StoreError::ReadOnly);
        };
        let mut conn = lock(conn);
        let tx = conn.transaction().map_err(self.err())?;
        let mut new = HashSet::new();
        let mut known = Vec::new();
        let written = time_text(now);
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alert_state (id, status, updated) VALUES (?1, 'open', ?2)",
                )
                .map_err(self.err())?;
            for id in ids {
                if insert.execute(params![id, written]).map_err(self.err())? == 1 {
                    new.insert(id.clone());
                } else if !new.contains(id) {
                    known.push(id.clone());
                }
            }
        }
        // Only the alerts seen before this batch are read back: a new alert's state (a repeat
        // of its id in the batch included) is what was just written, its time read from the
        // text written, as a read would. Most alerts are new, and reading each back cost a
        // second lookup of its row.
        let mut states = read_states(&tx, &known)?;
        if let Some(first) = new.iter().next() {
            let first_seen = AlertState::new(parse_time(first, &written)?);
            for id in &new {
                states.insert(id.clone(), first_seen.clone());
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(Registered { states, new })
    }

    /// The states of `ids`; alerts never registered (or a read-only store with no database
    /// yet) read as open.
    pub(crate) fn states(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, AlertState>, StoreError> {
        let mut states = match &self.conn {
            // One transaction for all of them: a page of alerts shows their states at one
            // moment, and each row read alone was a transaction of its own, taking and
            // releasing the database's read lock.
            Some(conn) => {
                let mut conn = lock(conn);
                let tx = conn.transaction().map_err(self.err())?;
                let states = read_states(&tx, ids)?;
                tx.commit().map_err(self.err())?;
                states
            }
            None => HashMap::new(),
        };
        for id in ids {
            states
                .entry(id.clone())
                .or_insert_with(|| AlertState::new(now));
        }
        Ok(states)
    }

    /// Applies a change in one transaction and marks the alert for re-indexing.
    pub(crate) fn change(
        &self,
        id: &str,
        change: &AlertChange,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<AlertState, StoreError> {
        let Some(conn) = &self.conn else {
            return Err(StoreError::ReadOnly);
        };
        let mut conn = lock(conn);
        let tx = conn.transaction().map_err(self.err())?;
        let ids = [id.to_owned()];
        let state = read_states(&tx, &ids)?
            .remove(id)
            .unwrap_or_else(|| AlertState::new(now));
        let (next, history) = apply_change(&state, change, actor, now)?;
        tx.execute(
            "INSERT INTO alert_state (id, status, reason, assignee, updated, reindex)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT (id) DO UPDATE SET status = ?2, reason = ?3, assignee = ?4,
                 updated = ?5, reindex = 1",
            params![
                id,
                next.status.as_str(),
                next.reason.map(|r| r.as_str()),
                next.assignee,
                time_text(next.updated)
            ],
        )
        .map_err(self.err())?;
        for entry in &history {
            tx.execute(
                "INSERT INTO alert_history (alert_id, at, actor, field, old, new)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    time_text(entry.at),
                    entry.actor,
                    entry.field,
                    entry.old,
                    entry.new
                ],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(next)
    }

    /// The alert's history, oldest first.
    pub(crate) fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let conn = lock(conn);
        let mut query = conn
            .prepare_cached(
                "SELECT at, actor, field, old, new FROM alert_history
                 WHERE alert_id = ?1 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = query
            .query_map(params![id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(self.err())?;
        let mut history = Vec::new();
        for row in rows {
            let (at, actor, field, old, new) = row.map_err(self.err())?;
            history.push(HistoryEntry {
                at: parse_time(id, &at)?,
                actor,
                field,
                old,
                new,
            });
        }
        Ok(history)
    }

    /// Alerts changed here whose index copy may be stale.
    pub(crate) fn pending_reindex(&self) -> Result<Vec<String>, StoreError> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let conn = lock(conn);
        let mut query = conn
            .prepare("SELECT id FROM alert_state WHERE reindex = 1")
            .map_err(self.err())?;
        let ids = query
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(ids)
    }

    /// Marks alerts as re-indexed, once the alerts index has committed them.
    pub(crate) fn reindexed(&self, ids: &[String]) -> Result<(), StoreError> {
        let Some(conn) = &self.conn else {
            return Err(StoreError::ReadOnly);
        };
        let mut conn = lock(conn);
        let tx = conn.transaction().map_err(self.err())?;
        for id in ids {
            tx.execute(
                "UPDATE alert_state SET reindex = 0 WHERE id = ?1",
                params![id],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }
}

fn read_states(
    conn: &Connection,
    ids: &[String],
) -> Result<HashMap<String, AlertState>, StoreError> {
    let err = |e| StoreError::Database {
        path: "alerts.sqlite".into(),
        source: e,
    };
    let mut query = conn
        .prepare_cached("SELECT status, reason, assignee, updated FROM alert_state WHERE id = ?1")
        .map_err(err)?;
    let mut states = HashMap::with_capacity(ids.len());
    for id in ids {
        let row = query
            .query_row(params![id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .optional()
            .map_err(err)?;
        let Some((status, reason, assignee, updated)) = row else {
            continue;
        };
        let corrupt = |what: &str, value: &str| StoreError::Corrupt {
            id: id.clone(),
            message: format!("unknown {what} {value:?} in the lifecycle database"),
        };
        let status = AlertStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?;
        let reason = reason
            .map(|r| CloseReason::parse(&r).ok_or_else(|| corrupt("reason", &r)))
            .transpose()?;
        states.insert(
            id.clone(),
            AlertState {
                status,
                reason,
                assignee,
                updated: parse_time(id, &updated)?,
            },
        );
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_database_keeps_state_across_registrations_and_reopens() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("alerts.sqlite");
        let lifecycle = TriageDb::open(&path, false).unwrap();
        let ids = ["a".to_owned(), "b".to_owned()];
        let first = lifecycle.register(&ids, now()).unwrap();
        assert!(first.states.values().all(|s| s.status == AlertStatus::Open));
        assert_eq!(first.new, HashSet::from(ids.clone()));
        let ack = AlertChange {
            status: Some(AlertStatus::Acknowledged),
            ..AlertChange::default()
        };
        lifecycle.change("a", &ack, "api", now()).unwrap();
        assert_eq!(lifecycle.pending_reindex().unwrap(), ["a"]);
        let registered = lifecycle.register(&ids, now()).unwrap();
        assert!(registered.new.is_empty(), "{:?}", registered.new);
        let states = registered.states;
        assert_eq!(
            states["a"].status,
            AlertStatus::Acknowledged,
            "replay keeps it"
        );
        drop(lifecycle);
        let reader = TriageDb::open(&path, true).unwrap();
        assert_eq!(
            reader.states(&ids, now()).unwrap()["a"].status,
            AlertStatus::Acknowledged
        );
        assert_eq!(reader.history("a").unwrap().len(), 1);
        assert!(reader.change("b", &ack, "api", now()).is_err());
    }

    #[test]
    fn registering_gives_the_states_the_database_then_reads() {
        let dir = tempfile::TempDir::new().unwrap();
        let lifecycle = TriageDb::open(&dir.path().join("alerts.sqlite"), false).unwrap();
        let ack = AlertChange {
            status: Some(AlertStatus::Acknowledged),
            ..AlertChange::default()
        };
        lifecycle.register(&["old".to_owned()], now()).unwrap();
        lifecycle.change("old", &ack, "api", now()).unwrap();
        // Nanoseconds the database does not keep, and an id twice in one batch.
        let later = now() + chrono::Duration::nanoseconds(1_234_567_891);
        let ids = ["new", "old", "new", "other"].map(str::to_owned);
        let registered = lifecycle.register(&ids, later).unwrap();
        assert_eq!(
            registered.new,
            HashSet::from(["new".to_owned(), "other".to_owned()])
        );
        assert_eq!(registered.states, lifecycle.states(&ids, later).unwrap());
        assert_eq!(registered.states["old"].status, AlertStatus::Acknowledged);
        assert_eq!(
            registered.states["new"].updated,
            now() + chrono::Duration::microseconds(1_234_567)
        );
    }
}
