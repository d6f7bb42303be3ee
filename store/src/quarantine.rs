//! The quarantine: records that could not become events, kept with their source, reason and
//! raw bytes so an operator can see them, fix the sender, and replay them.
//!
//! It lives in SQLite beside the alert lifecycle rather than in Tantivy: it is small, append
//! mostly, listed newest first, and its raw bytes need not be UTF-8. Each record is keyed by
//! a hash of its content, so a bus replay inserts nothing twice. The newest
//! [`MAX_QUARANTINED`] records are kept.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use vigil_event::{Id, Quarantined, Source};

use crate::StoreError;

/// The most quarantined records kept; older ones are dropped first.
pub const MAX_QUARANTINED: i64 = 1_000_000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        received TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        source_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        position INTEGER,
        raw BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS quarantine_by_source ON quarantine (source_name, seq);
";

/// Which quarantined records to list.
#[derive(Debug, Clone, Default)]
pub struct QuarantineFilter {
    /// Only records from this source name.
    pub source: Option<String>,
    pub limit: usize,
}

pub(crate) struct QuarantineLog {
    path: PathBuf,
    read_only: bool,
    /// `None` for a read-only store opened before anything was quarantined.
    conn: Option<Mutex<Connection>>,
}

impl QuarantineLog {
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<QuarantineLog, StoreError> {
        let err = |e| StoreError::Database {
            path: path.to_path_buf(),
            source: e,
        };
        if read_only {
            let conn = if path.exists() {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                Some(Mutex::new(
                    Connection::open_with_flags(path, flags).map_err(err)?,
                ))
            } else {
                None
            };
            return Ok(QuarantineLog {
                path: path.to_owned(),
                read_only,
                conn,
            });
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(QuarantineLog {
            path: path.to_owned(),
            read_only,
            conn: Some(Mutex::new(conn)),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Adds records, ignoring those already present, in one transaction.
    pub(crate) fn add(&self, records: &[Quarantined]) -> Result<usize, StoreError> {
        let Some(conn) = self.conn.as_ref().filter(|_| !self.read_only) else {
            return Err(StoreError::ReadOnly);
        };
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction().map_err(self.err())?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO quarantine
                     (id, received, source_kind, source_name, reason, position, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(self.err())?;
            for record in records {
                let position = record.line.and_then(|p| i64::try_from(p).ok());
                added += insert
                    .execute(params![
                        content_id(record).to_string(),
                        record.received.to_rfc3339_opts(SecondsFormat::Micros, true),
                        record.source.kind,
                        record.source.name,
                        record.reason,
                        position,
                        record.raw,
                    ])
                    .map_err(self.err())?;
            }
            let newest: Option<i64> = tx
                .query_row("SELECT MAX(seq) FROM quarantine", [], |row| row.get(0))
                .optional()
                .map_err(self.err())?
                .flatten();
            if let Some(newest) = newest {
                tx.execute(
                    "DELETE FROM quarantine WHERE seq <= ?1",
                    params![newest - MAX_QUARANTINED],
                )
                .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(added)
    }

    /// The newest records first.
    pub(crate) fn list(&self, filter: &QuarantineFilter) -> Result<Vec<Quarantined>, StoreError> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut query = conn
            .prepare_cached(
                "SELECT received, source_kind, source_name, reason, position, raw
                 FROM quarantine WHERE (?1 IS NULL OR source_name = ?1)
                 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = query
            .query_map(params![filter.source, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Vec<u8>>(5)?,
                ))
            })
            .map_err(self.err())?;
        let mut records = Vec::new();
        for row in rows {
            let (received, kind, name, reason, position, raw) = row.map_err(self.err())?;
            let received = DateTime::parse_from_rfc3339(&received)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Corrupt {
                    id: "quarantine".into(),
                    message: format!("bad time {received:?}: {e}"),
                })?;
            records.push(Quarantined {
                source: Source { kind, name },
                reason,
                line: position.and_then(|p| u64::try_from(p).ok()),
                received,
                raw,
            });
        }
        Ok(records)
    }
}

/// What identifies a quarantined record across replays of the bus.
fn content_id(record: &Quarantined) -> Id {
    let position = record.line.unwrap_or(u64::MAX).to_le_bytes();
    let received = record.received.timestamp_micros().to_le_bytes();
    Id::derive(
        "vigil quarantine v1",
        &[
            record.source.kind.as_bytes(),
            record.source.name.as_bytes(),
            &position,
            &received,
            record.reason.as_bytes(),
            &record.raw,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, raw: &[u8], line: u64) -> Quarantined {
        Quarantined {
            source: Source {
                kind: "http".into(),
                name: name.into(),
            },
            reason: "not a JSON object".into(),
            line: Some(line),
            received: Utc::now(),
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn replays_add_nothing_and_listing_is_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = QuarantineLog::open(&dir.path().join("q.sqlite"), false).unwrap();
        let first = record("app", b"\xff\xfe not utf-8", 3);
        let second = record("web", b"{oops", 9);
        assert_eq!(log.add(&[first.clone(), second.clone()]).unwrap(), 2);
        assert_eq!(
            log.add(std::slice::from_ref(&first)).unwrap(),
            0,
            "a replay"
        );

        let all = log
            .list(&QuarantineFilter {
                source: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].source.name, "web");
        assert_eq!(all[1].raw, first.raw);
        assert_eq!(all[1].line, Some(3));

        let app = log
            .list(&QuarantineFilter {
                source: Some("app".into()),
                limit: 10,
            })
            .unwrap();
        assert_eq!(app.len(), 1);

        // A reader in another process sees what the writer committed.
        let reader = QuarantineLog::open(&dir.path().join("q.sqlite"), true).unwrap();
        assert_eq!(
            reader
                .list(&QuarantineFilter {
                    source: None,
                    limit: 1
                })
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(reader.add(&[first]), Err(StoreError::ReadOnly)));
    }
}
