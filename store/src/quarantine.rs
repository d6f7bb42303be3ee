//! The quarantine: records that could not become events, kept with their source, reason and
//! raw bytes so an operator can see them and fix the sender.
//!
//! It lives in SQLite beside the alert lifecycle rather than in Tantivy: it is small, append
//! mostly, listed newest first, and its raw bytes need not be UTF-8. Each record is keyed by
//! a hash of its content, so a bus replay inserts nothing twice.
//!
//! Whoever we watch decides how large a rejected record is, so nothing here grows with it:
//! - each record keeps the first [`QuarantineLimits::max_record_bytes`] of its raw bytes, with
//!   the full length and a blake3 hash of all of them (what a sender's copy can be checked
//!   against), and the first [`MAX_REASON_BYTES`] of its reason;
//! - all records together take at most [`QuarantineLimits::max_total_bytes`], and at most
//!   [`MAX_QUARANTINED`] are kept; the oldest go first, counted in
//!   `vigil_quarantine_evicted_total`;
//! - a listing is a page of at most [`QuarantineFilter::max_page_bytes`] of raw bytes and
//!   reasons, continued with a cursor.
//!
//! Databases written before records were bounded are cut down to the same bounds when a
//! writing store opens them, and still read as they are by a read-only one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use vigil_event::{Id, Quarantined, Source};

use crate::StoreError;

/// The most quarantined records kept; older ones are dropped first.
pub const MAX_QUARANTINED: i64 = 1_000_000;
/// The default of [`QuarantineLimits::max_record_bytes`].
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;
/// The default of [`QuarantineLimits::max_total_bytes`].
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// The most bytes of a reason kept. Reasons are ours, but some quote what they reject.
pub const MAX_REASON_BYTES: usize = 4096;
/// The default of [`QuarantineFilter::max_page_bytes`].
pub const DEFAULT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// What a record takes besides its raw prefix and reason (id, times, names, hash, row), as
/// counted against the total.
const ROW_OVERHEAD_BYTES: u64 = 256;

/// How much the quarantine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineLimits {
    /// Bytes kept of each record's raw bytes; the rest are dropped, their length and hash kept.
    pub max_record_bytes: usize,
    /// Bytes all records may take together; the oldest are evicted to stay below.
    pub max_total_bytes: u64,
}

impl Default for QuarantineLimits {
    fn default() -> Self {
        QuarantineLimits {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        received TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        source_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        position INTEGER,
        raw BLOB NOT NULL,
        raw_len INTEGER,
        raw_blake3 TEXT,
        stored_bytes INTEGER
    );
    CREATE INDEX IF NOT EXISTS quarantine_by_source ON quarantine (source_name, seq);
";

/// Columns added when records became bounded; a table from before lacks them until a writing
/// store opens it. NULL in them marks a row written before.
const BOUNDED_COLUMNS: [(&str, &str); 3] = [
    ("raw_len", "INTEGER"),
    ("raw_blake3", "TEXT"),
    ("stored_bytes", "INTEGER"),
];

/// Which quarantined records to list.
#[derive(Debug, Clone)]
pub struct QuarantineFilter {
    /// Only records from this source name.
    pub source: Option<String>,
    /// The most records in the page.
    pub limit: usize,
    /// Continue where a previous page stopped: its [`QuarantinePage::next_cursor`].
    pub cursor: Option<String>,
    /// The most raw bytes and reason bytes the page carries in all. A page stops early, with
    /// a cursor, rather than go past it; a single record shows at most this much of its raw
    /// bytes, and at most [`QuarantineLimits::max_record_bytes`].
    pub max_page_bytes: usize,
}

impl Default for QuarantineFilter {
    fn default() -> Self {
        QuarantineFilter {
            source: None,
            limit: 100,
            cursor: None,
            max_page_bytes: DEFAULT_PAGE_BYTES,
        }
    }
}

/// A quarantined record as kept: `record.raw` holds the first bytes of the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineRecord {
    #[serde(flatten)]
    pub record: Quarantined,
    /// The length of the whole record as received.
    pub raw_len: u64,
    /// Whether `raw` holds less than the whole record.
    pub raw_truncated: bool,
    /// The blake3 hash of the whole record, in hex. Absent only for a long record written
    /// before hashes were kept, read from a database no writing store has opened since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_blake3: Option<String>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinePage {
    pub records: Vec<QuarantineRecord>,
    /// Where the next page starts, when there may be more.
    pub next_cursor: Option<String>,
}

pub(crate) struct QuarantineLog {
    path: PathBuf,
    read_only: bool,
    limits: QuarantineLimits,
    /// `None` for a read-only store opened before anything was quarantined.
    conn: Option<Mutex<Connection>>,
    /// Whether the table has the columns of bounded records (a read-only store may find an
    /// older table).
    bounded_columns: bool,
    /// What the records take, as counted against `limits.max_total_bytes`; kept by the writer.
    total_bytes: AtomicU64,
}

impl QuarantineLog {
    pub(crate) fn open(
        path: &Path,
        read_only: bool,
        limits: QuarantineLimits,
    ) -> Result<QuarantineLog, StoreError> {
        let err = |e| StoreError::Database {
            path: path.to_path_buf(),
            source: e,
        };
        if read_only {
            let conn = if path.exists() {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                Some(Connection::open_with_flags(path, flags).map_err(err)?)
            } else {
                None
            };
            let bounded_columns = match &conn {
                Some(conn) => missing_columns(conn).map_err(err)?.is_empty(),
                None => true,
            };
            return Ok(QuarantineLog {
                path: path.to_owned(),
                read_only,
                limits,
                conn: conn.map(Mutex::new),
                bounded_columns,
                total_bytes: AtomicU64::new(0),
            });
        }
        let mut conn = Connection::open(path).map_err(err)?;
        // Only takes effect on a new database: it lets evictions hand space back to the file
        // system. An older database gets it when it is migrated below.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // The write-ahead log is cut back to this after a checkpoint, so that one large
        // batch does not leave a large file behind.
        conn.pragma_update(None, "journal_size_limit", 8 * 1024 * 1024)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        for (column, kind) in missing_columns(&conn).map_err(err)? {
            conn.execute_batch(&format!(
                "ALTER TABLE quarantine ADD COLUMN {column} {kind}"
            ))
            .map_err(err)?;
        }
        bound_earlier_rows(&mut conn, limits.max_record_bytes).map_err(err)?;
        let total: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(stored_bytes), 0) FROM quarantine",
                [],
                |row| row.get(0),
            )
            .map_err(err)?;
        let log = QuarantineLog {
            path: path.to_owned(),
            read_only,
            limits,
            conn: Some(Mutex::new(conn)),
            bounded_columns: true,
            total_bytes: AtomicU64::new(u64::try_from(total).unwrap_or(0)),
        };
        // A lowered limit applies at once, not at the next rejected record.
        log.add(&[])?;
        Ok(log)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Adds records, ignoring those already present, and evicts the oldest past the limits,
    /// in one transaction. Gives how many were new.
    pub(crate) fn add(&self, records: &[Quarantined]) -> Result<usize, StoreError> {
        let Some(conn) = self.conn.as_ref().filter(|_| !self.read_only) else {
            return Err(StoreError::ReadOnly);
        };
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = self.total_bytes.load(Ordering::Relaxed);
        let tx = conn.transaction().map_err(self.err())?;
        let mut added = 0;
        let eviction;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO quarantine
                     (id, received, source_kind, source_name, reason, position, raw,
                      raw_len, raw_blake3, stored_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(self.err())?;
            for record in records {
                let bounded = Bounded::new(
                    &record.raw,
                    &record.reason,
                    &record.source,
                    self.limits.max_record_bytes,
                );
                let position = record.line.and_then(|p| i64::try_from(p).ok());
                let inserted = insert
                    .execute(params![
                        // The id covers the whole record, so replays match whatever is kept.
                        content_id(record).to_string(),
                        record.received.to_rfc3339_opts(SecondsFormat::Micros, true),
                        record.source.kind,
                        record.source.name,
                        bounded.reason,
                        position,
                        bounded.raw,
                        bounded.raw_len,
                        bounded.raw_blake3,
                        bounded.stored_bytes,
                    ])
                    .map_err(self.err())?;
                if inserted > 0 {
                    added += inserted;
                    total += bounded.stored_bytes as u64;
                }
            }
            eviction = evict(&tx, total, self.limits.max_total_bytes).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        total -= eviction.bytes;
        self.total_bytes.store(total, Ordering::Relaxed);
        metrics::gauge!("vigil_quarantine_bytes").set(total as f64);
        if eviction.records > 0 {
            metrics::counter!("vigil_quarantine_evicted_total").increment(eviction.records);
            tracing::info!(
                records = eviction.records,
                bytes = eviction.bytes,
                "evicted the oldest quarantined records to stay within the quarantine's limits"
            );
            // Gives the freed pages back to the file system, so the file follows the bound.
            conn.execute_batch("PRAGMA incremental_vacuum")
                .map_err(self.err())?;
        }
        Ok(added)
    }

    /// A page of records, newest first.
    pub(crate) fn list(&self, filter: &QuarantineFilter) -> Result<QuarantinePage, StoreError> {
        let mut page = QuarantinePage {
            records: Vec::new(),
            next_cursor: None,
        };
        let Some(conn) = &self.conn else {
            return Ok(page);
        };
        let before = match filter.cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                StoreError::query(format!(
                    "cursor: {cursor:?} is not a cursor this listing gave"
                ))
            })?),
        };
        let budget = filter.max_page_bytes.max(1);
        let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        // Rows from before the bounds may hold a whole huge record, so even their length
        // comes from SQLite rather than from reading them.
        let (raw_len, raw_blake3) = if self.bounded_columns {
            ("COALESCE(raw_len, length(raw))", "raw_blake3")
        } else {
            ("length(raw)", "NULL")
        };
        let sql = format!(
            "SELECT seq, received, source_kind, source_name, reason, position,
                    substr(raw, 1, ?4), {raw_len}, {raw_blake3}
             FROM quarantine
             WHERE (?1 IS NULL OR source_name = ?1) AND (?2 IS NULL OR seq < ?2)
             ORDER BY seq DESC LIMIT ?3"
        );
        let mut query = conn.prepare_cached(&sql).map_err(self.err())?;
        let limit = filter.limit.max(1);
        // One more than the page holds, to tell whether another page follows.
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        // What one record shows: no more than is kept of new records, and than a page holds.
        let inline =
            i64::try_from(budget.min(self.limits.max_record_bytes.max(1))).unwrap_or(i64::MAX);
        let mut rows = query
            .query(params![filter.source, before, fetch, inline])
            .map_err(self.err())?;
        let mut used = 0usize;
        let mut last_seq = None;
        while let Some(row) = rows.next().map_err(self.err())? {
            let seq: i64 = row.get(0).map_err(self.err())?;
            let mut reason: String = row.get(4).map_err(self.err())?;
            truncate_str(&mut reason, MAX_REASON_BYTES);
            let raw: Vec<u8> = row.get(6).map_err(self.err())?;
            let size = raw.len() + reason.len();
            let full = page.records.len() == limit;
            if full || (!page.records.is_empty() && used + size > budget) {
                page.next_cursor = last_seq.map(|seq: i64| seq.to_string());
                break;
            }
            used += size;
            let received: String = row.get(1).map_err(self.err())?;
            let received = DateTime::parse_from_rfc3339(&received)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Corrupt {
                    id: "quarantine".into(),
                    message: format!("bad time {received:?}: {e}"),
                })?;
            let raw_len: i64 = row.get(7).map_err(self.err())?;
            let raw_len = u64::try_from(raw_len).unwrap_or(0);
            let raw_truncated = (raw.len() as u64) < raw_len;
            let raw_blake3 = match row.get::<_, Option<String>>(8).map_err(self.err())? {
                Some(hash) => Some(hash),
                // An older row read whole: its hash is that of what we hold.
                None if !raw_truncated => Some(blake3::hash(&raw).to_hex().to_string()),
                None => None,
            };
            let position: Option<i64> = row.get(5).map_err(self.err())?;
            page.records.push(QuarantineRecord {
                record: Quarantined {
                    source: Source {
                        kind: row.get(2).map_err(self.err())?,
                        name: row.get(3).map_err(self.err())?,
                    },
                    reason,
                    line: position.and_then(|p| u64::try_from(p).ok()),
                    received,
                    raw,
                },
                raw_len,
                raw_truncated,
                raw_blake3,
            });
            last_seq = Some(seq);
        }
        Ok(page)
    }
}

/// A record cut down to what the quarantine keeps of it.
struct Bounded<'a> {
    raw: &'a [u8],
    raw_len: i64,
    raw_blake3: String,
    reason: &'a str,
    stored_bytes: i64,
}

impl<'a> Bounded<'a> {
    fn new(raw: &'a [u8], reason: &'a str, source: &Source, max_raw: usize) -> Self {
        let reason = &reason[..floor_char_boundary(reason, MAX_REASON_BYTES)];
        let kept = &raw[..raw.len().min(max_raw)];
        let stored = kept.len() + reason.len() + source.kind.len() + source.name.len();
        Bounded {
            raw: kept,
            raw_len: i64::try_from(raw.len()).unwrap_or(i64::MAX),
            raw_blake3: blake3::hash(raw).to_hex().to_string(),
            reason,
            stored_bytes: i64::try_from(stored as u64 + ROW_OVERHEAD_BYTES).unwrap_or(i64::MAX),
        }
    }
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

fn truncate_str(text: &mut String, max: usize) {
    let end = floor_char_boundary(text, max);
    text.truncate(end);
}

/// The columns of [`BOUNDED_COLUMNS`] the table lacks.
fn missing_columns(conn: &Connection) -> rusqlite::Result<Vec<(&'static str, &'static str)>> {
    let mut query = conn.prepare("SELECT name FROM pragma_table_info('quarantine')")?;
    let present: Vec<String> = query
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if present.is_empty() {
        // No table yet: the schema creates it whole.
        return Ok(Vec::new());
    }
    Ok(BOUNDED_COLUMNS
        .into_iter()
        .filter(|(name, _)| !present.iter().any(|p| p == name))
        .collect())
}

/// Cuts rows written before records were bounded down to the bounds, one row in memory at a
/// time, and then compacts the file once if that freed anything.
fn bound_earlier_rows(conn: &mut Connection, max_raw: usize) -> rusqlite::Result<()> {
    let seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM quarantine WHERE stored_bytes IS NULL ORDER BY seq")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if seqs.is_empty() {
        return Ok(());
    }
    let mut cut = 0u64;
    let tx = conn.transaction()?;
    for seq in &seqs {
        let (raw, reason, kind, name): (Vec<u8>, String, String, String) = tx.query_row(
            "SELECT raw, reason, source_kind, source_name FROM quarantine WHERE seq = ?1",
            params![seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?;
        let source = Source { kind, name };
        let bounded = Bounded::new(&raw, &reason, &source, max_raw);
        cut += (raw.len() - bounded.raw.len()) as u64;
        tx.execute(
            "UPDATE quarantine SET raw = ?2, reason = ?3, raw_len = ?4, raw_blake3 = ?5,
                 stored_bytes = ?6 WHERE seq = ?1",
            params![
                seq,
                bounded.raw,
                bounded.reason,
                bounded.raw_len,
                bounded.raw_blake3,
                bounded.stored_bytes
            ],
        )?;
    }
    tx.commit()?;
    tracing::info!(
        records = seqs.len(),
        cut_bytes = cut,
        "bounded the quarantined records written before quarantine limits"
    );
    if cut > 0 {
        // Hands the space back, and turns on incremental vacuuming for the evictions to come.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch("VACUUM")?;
        // In WAL mode the file shrinks only once the log is written back.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// What [`evict`] removed.
struct Eviction {
    records: u64,
    bytes: u64,
}

/// Removes the oldest records until at most [`MAX_QUARANTINED`] remain and they take at most
/// `max_total` bytes, given that they take `total` now.
fn evict(tx: &Connection, total: u64, max_total: u64) -> rusqlite::Result<Eviction> {
    let mut eviction = Eviction {
        records: 0,
        bytes: 0,
    };
    let newest: Option<i64> = tx
        .query_row("SELECT MAX(seq) FROM quarantine", [], |row| row.get(0))
        .optional()?
        .flatten();
    let Some(newest) = newest else {
        return Ok(eviction);
    };
    let mut cutoff = newest - MAX_QUARANTINED;
    let (count, bytes): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(stored_bytes), 0) FROM quarantine WHERE seq <= ?1",
        params![cutoff],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    eviction.records += count as u64;
    eviction.bytes += bytes as u64;
    let remaining = total.saturating_sub(eviction.bytes);
    if remaining > max_total {
        let mut excess = remaining - max_total;
        let mut oldest = tx.prepare_cached(
            "SELECT seq, COALESCE(stored_bytes, 0) FROM quarantine WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = oldest.query(params![cutoff])?;
        while let Some(row) = rows.next()? {
            let size = row.get::<_, i64>(1)? as u64;
            cutoff = row.get(0)?;
            eviction.records += 1;
            eviction.bytes += size;
            excess = excess.saturating_sub(size);
            if excess == 0 {
                break;
            }
        }
    }
    if eviction.records > 0 {
        tx.execute("DELETE FROM quarantine WHERE seq <= ?1", params![cutoff])?;
    }
    Ok(eviction)
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

    fn all(log: &QuarantineLog, limit: usize) -> Vec<Quarantined> {
        let filter = QuarantineFilter {
            limit,
            ..QuarantineFilter::default()
        };
        let page = log.list(&filter).unwrap();
        page.records.into_iter().map(|r| r.record).collect()
    }

    #[test]
    fn replays_add_nothing_and_listing_is_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let log = QuarantineLog::open(&path, false, QuarantineLimits::default()).unwrap();
        let first = record("app", b"\xff\xfe not utf-8", 3);
        let second = record("web", b"{oops", 9);
        assert_eq!(log.add(&[first.clone(), second.clone()]).unwrap(), 2);
        assert_eq!(
            log.add(std::slice::from_ref(&first)).unwrap(),
            0,
            "a replay"
        );

        let listed = all(&log, 10);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].source.name, "web");
        assert_eq!(listed[1].raw, first.raw);
        assert_eq!(listed[1].line, Some(3));

        let app = log
            .list(&QuarantineFilter {
                source: Some("app".into()),
                ..QuarantineFilter::default()
            })
            .unwrap();
        assert_eq!(app.records.len(), 1);

        // A reader in another process sees what the writer committed.
        let reader = QuarantineLog::open(&path, true, QuarantineLimits::default()).unwrap();
        assert_eq!(all(&reader, 1).len(), 1);
        assert!(matches!(reader.add(&[first]), Err(StoreError::ReadOnly)));
    }
}
