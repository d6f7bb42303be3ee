//! The outbox: every notification is written here, durably, before any receiver is tried,
//! and stays until it is delivered or given up on.
//!
//! One row per [`Notification::id`]: enqueueing an id the outbox already holds does nothing,
//! so the dispatcher may re-emit after a crash. Each receiver's delivery task takes its own
//! due rows ([`Outbox::next_due`]), so a receiver that is down only delays itself. A failure
//! that may pass is retried with exponential backoff and jitter up to `max_attempts`; after
//! that, or at once when the receiver refused the notification, the row is a dead letter,
//! listed for an analyst who can send it again ([`Outbox::resend`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use vigil_retry::BackoffPolicy;

use crate::db::{self, DbError};
use crate::{Notification, NotificationKind};

/// The longest error text kept per row: receivers' answers are attacker-influenced and
/// unbounded.
const MAX_ERROR_CHARS: usize = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    receiver TEXT NOT NULL,
    kind TEXT NOT NULL,
    group_key TEXT NOT NULL,
    notification TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    enqueued INTEGER NOT NULL,
    sent_at INTEGER,
    dead_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (receiver, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, enqueued);
CREATE TABLE IF NOT EXISTS outbox_alerts (
    alert_id TEXT NOT NULL,
    notification_id TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    PRIMARY KEY (alert_id, notification_id)
);
CREATE INDEX IF NOT EXISTS outbox_alerts_notification ON outbox_alerts (notification_id);
";

/// `[notify.outbox]`: how long and how often a failing delivery is retried, and how long
/// delivered rows are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Attempts before a notification becomes a dead letter. With the default backoff, 12
    /// attempts span about an hour.
    pub max_attempts: u32,
    /// The first retry comes after about twice this, then each wait doubles.
    pub backoff_base_ms: u64,
    /// No wait between attempts is longer than this.
    pub backoff_max_ms: u64,
    /// Delivered notifications are kept this long for the alert's page, then pruned.
    pub keep_sent_hours: u64,
    /// Dead letters nobody re-sent are pruned after this long.
    pub keep_dead_hours: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_attempts: 12,
            backoff_base_ms: 2_000,
            backoff_max_ms: 15 * 60 * 1000,
            keep_sent_hours: 7 * 24,
            keep_dead_hours: 30 * 24,
        }
    }
}

impl OutboxConfig {
    /// The first mistake in these settings, if any.
    pub fn check(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("notify.outbox.max_attempts must be at least 1".into());
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return Err(
                "notify.outbox.backoff_base_ms must be above 0 and at most backoff_max_ms".into(),
            );
        }
        Ok(())
    }

    fn policy(&self) -> BackoffPolicy {
        BackoffPolicy::new(
            Duration::from_millis(self.backoff_base_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }
}

/// Why the outbox could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Open(#[from] DbError),
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: notification {id} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Where one notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: due at `next_attempt_at`.
    Pending,
    Sent,
    /// Given up on: refused, or out of attempts. Re-sendable.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Dead => "dead",
        }
    }

    /// `pending`, `sent` or `dead`; anything else is `None`.
    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "sent" => Some(DeliveryState::Sent),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: String,
    pub receiver: String,
    pub kind: NotificationKind,
    pub group_key: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub enqueued: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    pub notification: Notification,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Tried again at this time.
    Retry { at: DateTime<Utc>, attempts: u32 },
    /// Out of attempts: a dead letter now.
    Dead { attempts: u32 },
}

/// The durable outbox in `notify.sqlite`.
pub struct Outbox {
    path: PathBuf,
    conn: Mutex<Connection>,
    config: OutboxConfig,
    /// One wake-up per receiver, so an enqueue or a resend starts delivery at once instead
    /// of at the task's next poll.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish()
    }
}

impl Outbox {
    /// Opens (creating if needed) the outbox of `data_dir/notify.sqlite`.
    pub fn open_in(data_dir: &Path, config: OutboxConfig) -> Result<Outbox, OutboxError> {
        Outbox::open(&db::path_in(data_dir), config)
    }

    pub fn open(path: &Path, config: OutboxConfig) -> Result<Outbox, OutboxError> {
        let conn = db::open(path)?;
        let outbox = Outbox {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            config,
            wakers: Mutex::new(HashMap::new()),
        };
        outbox.lock().execute_batch(SCHEMA).map_err(outbox.err())?;
        Ok(outbox)
    }

    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// What wakes `receiver`'s delivery task when a notification for it is enqueued or
    /// re-sent.
    pub fn waker(&self, receiver: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.entry(receiver.to_owned()).or_default().clone()
    }

    fn wake(&self, receiver: &str) {
        self.waker(receiver).notify_one();
    }

    /// Writes `notifications` in one transaction, each due at once; an id already held is
    /// left as it is. Durable when this returns. Gives how many were new.
    pub fn enqueue(
        &self,
        notifications: &[Notification],
        now: DateTime<Utc>,
    ) -> Result<usize, OutboxError> {
        let mut added = 0;
        let mut receivers: Vec<&str> = Vec::new();
        {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(self.err())?;
            for notification in notifications {
                let json =
                    serde_json::to_string(notification).map_err(|source| OutboxError::Corrupt {
                        path: self.path.clone(),
                        id: notification.id.clone(),
                        source,
                    })?;
                let inserted = tx
                    .execute(
                        "INSERT OR IGNORE INTO outbox (id, receiver, kind, group_key, notification, \
                         state, attempts, next_attempt_at, enqueued) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                        params![
                            notification.id,
                            notification.receiver,
                            kind_str(notification.kind),
                            notification.group_key,
                            json,
                            millis(now),
                        ],
                    )
                    .map_err(self.err())?;
                if inserted == 0 {
                    continue;
                }
                added += 1;
                for alert in &notification.alerts {
                    tx.execute(
                        "INSERT OR IGNORE INTO outbox_alerts (alert_id, notification_id) VALUES (?1, ?2)",
                        params![alert.id.to_string(), notification.id],
                    )
                    .map_err(self.err())?;
                }
                if !receivers.contains(&notification.receiver.as_str()) {
                    receivers.push(&notification.receiver);
                }
            }
            tx.commit().map_err(self.err())?;
        }
        for receiver in receivers {
            self.wake(receiver);
        }
        Ok(added)
    }

    /// `receiver`'s pending notifications due by `now`, oldest due first, at most `limit`.
    pub fn next_due(
        &self,
        receiver: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
        self.select(
            "WHERE receiver = ?1 AND state = 'pending' AND next_attempt_at <= ?2 \
             ORDER BY next_attempt_at, enqueued LIMIT ?3",
            params![receiver, millis(now), limit as i64],
        )
    }

    /// When `receiver`'s next pending notification is due, if it has one.
    pub fn next_due_at(&self, receiver: &str) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let at: Option<i64> = self
            .lock()
            .query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE receiver = ?1 AND state = 'pending'",
                params![receiver],
                |row| row.get(0),
            )
            .map_err(self.err())?;
        Ok(at.map(from_millis))
    }

    /// Records a delivery. Gives the row as it was (for the latency since enqueue), or
    /// `None` when the id is unknown or not pending (re-sent and delivered twice at once).
    pub fn mark_sent(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Delivery>, OutboxError> {
        let before = self.get(id)?;
        let updated = self
            .lock()
            .execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?2, \
                 last_error = NULL WHERE id = ?1 AND state = 'pending'",
                params![id, millis(now)],
            )
            .map_err(self.err())?;
        Ok(before.filter(|_| updated == 1))
    }

    /// Records a failed attempt that may pass: due again after the backoff of its attempt
    /// count, or a dead letter once that count reaches `max_attempts`.
    pub fn mark_retry(
        &self,
        id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AfterFailure>, OutboxError> {
        let error = bounded(error);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let attempts: Option<u32> = tx
            .query_row(
                "SELECT attempts FROM outbox WHERE id = ?1 AND state = 'pending'",
                params![id],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.err())?;
        let Some(attempts) = attempts.map(|a| a.saturating_add(1)) else {
            return Ok(None);
        };
        let outcome = if attempts >= self.config.max_attempts {
            tx.execute(
                "UPDATE outbox SET state = 'dead', attempts = ?2, last_error = ?3, dead_at = ?4 \
                 WHERE id = ?1",
                params![id, attempts, error, millis(now)],
            )
            .map_err(self.err())?;
            AfterFailure::Dead { attempts }
        } else {
            let delay = self.config.policy().delay(attempts, &mut rand::rng());
            let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            tx.execute(
                "UPDATE outbox SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
                params![id, attempts, error, millis(at)],
            )
            .map_err(self.err())?;
            AfterFailure::Retry { at, attempts }
        };
        tx.commit().map_err(self.err())?;
        Ok(Some(outcome))
    }

    /// Makes a pending notification a dead letter at once: the receiver refused it, and
    /// would refuse it again. False when the id is unknown or not pending.
    pub fn mark_dead(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, OutboxError> {
        let updated = self
            .lock()
            .execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2, \
                 dead_at = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, bounded(reason), millis(now)],
            )
            .map_err(self.err())?;
        Ok(updated == 1)
    }

    /// Makes a dead letter pending again, due now with its attempts reset. Gives the row as
    /// it is now, or `None` when the id is unknown or not dead.
    pub fn resend(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Delivery>, OutboxError> {
        let updated = self
            .lock()
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2, \
                 dead_at = NULL WHERE id = ?1 AND state = 'dead'",
                params![id, millis(now)],
            )
            .map_err(self.err())?;
        if updated == 0 {
            return Ok(None);
        }
        let row = self.get(id)?;
        if let Some(row) = &row {
            self.wake(&row.receiver);
        }
        Ok(row)
    }

    /// One notification by id.
    pub fn get(&self, id: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self.select("WHERE id = ?1", params![id])?.pop())
    }

    /// Notifications in `state`, newest first, at most `limit`.
    pub fn list(&self, state: DeliveryState, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        self.select(
            "WHERE state = ?1 ORDER BY enqueued DESC, id LIMIT ?2",
            params![state.as_str(), limit as i64],
        )
    }

    /// The dead letters, newest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        self.list(DeliveryState::Dead, limit)
    }

    /// How many notifications are in each state.
    pub fn counts(&self) -> Result<HashMap<DeliveryState, u64>, OutboxError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .map_err(self.err())?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        let mut counts = HashMap::new();
        for row in rows {
            let (state, count) = row.map_err(self.err())?;
            if let Some(state) = DeliveryState::parse(&state) {
                counts.insert(state, count.max(0) as u64);
            }
        }
        Ok(counts)
    }

    /// How many pending notifications each receiver has, for start-up to name those whose
    /// receiver is no longer configured (renamed or removed): nothing would deliver them.
    pub fn pending_by_receiver(&self) -> Result<Vec<(String, u64)>, OutboxError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare(
                "SELECT receiver, COUNT(*) FROM outbox WHERE state = 'pending' \
                 GROUP BY receiver ORDER BY receiver",
            )
            .map_err(self.err())?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(self.err())?;
        let mut pending = Vec::new();
        for row in rows {
            let (receiver, count) = row.map_err(self.err())?;
            pending.push((receiver, count.max(0) as u64));
        }
        Ok(pending)
    }

    /// Every notification that carried `alert_id`, oldest first (bounded: an alert is in
    /// few notifications, one per receiver and group change).
    pub fn deliveries_for_alert(&self, alert_id: &str) -> Result<Vec<Delivery>, OutboxError> {
        self.select(
            "WHERE id IN (SELECT notification_id FROM outbox_alerts WHERE alert_id = ?1) \
             ORDER BY enqueued, receiver LIMIT 200",
            params![alert_id],
        )
    }

    /// Drops delivered rows older than `keep_sent_hours` and dead letters older than
    /// `keep_dead_hours`. Gives how many went.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, OutboxError> {
        let hours = |h: u64| chrono::Duration::hours(h.min(1_000_000) as i64);
        let sent_before = millis(now - hours(self.config.keep_sent_hours));
        let dead_before = millis(now - hours(self.config.keep_dead_hours));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let old = "(state = 'sent' AND sent_at < ?1) OR (state = 'dead' AND dead_at < ?2)";
        // Explicit rather than by cascade, so that pruning does not rely on the connection's
        // foreign-key setting.
        tx.execute(
            &format!(
                "DELETE FROM outbox_alerts WHERE notification_id IN (SELECT id FROM outbox WHERE {old})"
            ),
            params![sent_before, dead_before],
        )
        .map_err(self.err())?;
        let pruned = tx
            .execute(
                &format!("DELETE FROM outbox WHERE {old}"),
                params![sent_before, dead_before],
            )
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(pruned)
    }

    fn select(
        &self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare(&format!(
                "SELECT id, receiver, group_key, state, attempts, next_attempt_at, last_error, \
                 enqueued, sent_at, dead_at, notification FROM outbox {clause}"
            ))
            .map_err(self.err())?;
        let rows = statement
            .query_map(params, RawRow::read)
            .map_err(self.err())?;
        let mut deliveries = Vec::new();
        for row in rows {
            let raw = row.map_err(self.err())?;
            deliveries.push(raw.into_delivery(&self.path)?);
        }
        Ok(deliveries)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while it was held leaves SQLite consistent (an open transaction rolls back
        // on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        move |source| OutboxError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

struct RawRow {
    id: String,
    receiver: String,
    group_key: String,
    state: String,
    attempts: u32,
    next_attempt_at: i64,
    last_error: Option<String>,
    enqueued: i64,
    sent_at: Option<i64>,
    dead_at: Option<i64>,
    notification: String,
}

impl RawRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: row.get(0)?,
            receiver: row.get(1)?,
            group_key: row.get(2)?,
            state: row.get(3)?,
            attempts: row.get(4)?,
            next_attempt_at: row.get(5)?,
            last_error: row.get(6)?,
            enqueued: row.get(7)?,
            sent_at: row.get(8)?,
            dead_at: row.get(9)?,
            notification: row.get(10)?,
        })
    }

    fn into_delivery(self, path: &Path) -> Result<Delivery, OutboxError> {
        let notification: Notification =
            serde_json::from_str(&self.notification).map_err(|source| OutboxError::Corrupt {
                path: path.to_path_buf(),
                id: self.id.clone(),
                source,
            })?;
        Ok(Delivery {
            kind: notification.kind,
            state: DeliveryState::parse(&self.state).unwrap_or(DeliveryState::Pending),
            id: self.id,
            receiver: self.receiver,
            group_key: self.group_key,
            attempts: self.attempts,
            next_attempt_at: from_millis(self.next_attempt_at),
            last_error: self.last_error,
            enqueued: from_millis(self.enqueued),
            sent_at: self.sent_at.map(from_millis),
            dead_at: self.dead_at.map(from_millis),
            notification,
        })
    }
}

fn kind_str(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Firing => "firing",
        NotificationKind::Acknowledged => "acknowledged",
        NotificationKind::Resolved => "resolved",
    }
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// At most [`MAX_ERROR_CHARS`] characters of `text`, marked when cut.
fn bounded(text: &str) -> String {
    let mut chars = text.chars();
    let kept: String = chars.by_ref().take(MAX_ERROR_CHARS).collect();
    if chars.next().is_some() {
        format!("{kept}…")
    } else {
        kept
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
