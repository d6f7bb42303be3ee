//! Alert groups in notify.sqlite: one per route, receiver set and group-by values. A group
//! is told of its first alerts after `group_wait`, of later ones no sooner than
//! `group_interval` after its last notification, and again after `repeat_interval` while
//! any of its alerts is open. A notification handed out by [`due_groups`] stays pending,
//! under the same sequence number, until [`confirm`] records it: a crash in between hands
//! out the same ids again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use vigil_event::{Alert, AlertId, Id};

use crate::routing::Route;
use crate::{AlertState, Notification, NotificationKind};

/// Alert ids a group remembers (for acknowledge and resolve); older ones are only counted.
const MAX_IDS: i64 = 500;
/// Alerts whose whole JSON a group keeps, for the message.
const MAX_BODIES: i64 = 20;
/// How long a group that never repeats lives on after its last notification, for its
/// acknowledge and resolve.
const MAX_IDLE_MS: i64 = 7 * 86_400_000;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    key TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    receivers TEXT NOT NULL,
    labels TEXT NOT NULL,
    -- firing | acknowledged | ended
    state TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    -- When the alerts not yet told may be told; NULL when there are none.
    next_ms INTEGER,
    notified_ms INTEGER,
    seq INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    notified_total INTEGER NOT NULL DEFAULT 0,
    group_wait_ms INTEGER NOT NULL,
    group_interval_ms INTEGER NOT NULL,
    repeat_ms INTEGER,
    -- The notification handed out and not yet confirmed: JSON of Pending.
    pending TEXT
);
CREATE INDEX IF NOT EXISTS groups_by_state ON groups (state);
CREATE TABLE IF NOT EXISTS group_alerts (
    group_key TEXT NOT NULL REFERENCES groups (key) ON DELETE CASCADE,
    alert_id TEXT NOT NULL,
    ord INTEGER NOT NULL,
    alert TEXT,
    PRIMARY KEY (group_key, alert_id)
);
CREATE INDEX IF NOT EXISTS group_alerts_by_ord ON group_alerts (group_key, ord);
";

const FIRING: &str = "firing";
const ACKNOWLEDGED: &str = "acknowledged";
const ENDED: &str = "ended";

/// The group an alert joins on a route.
pub(crate) struct GroupId {
    pub key: String,
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn group_id(route: &Route, alert: &Alert) -> GroupId {
    let labels: BTreeMap<String, String> = route
        .group_by
        .iter()
        .map(|field| (field.name(), field.value(alert)))
        .collect();
    let mut parts: Vec<&[u8]> = vec![route.name.as_bytes()];
    parts.extend(route.receivers.iter().map(|r| r.as_bytes()));
    // The receivers' count separates them from the labels, which come in pairs.
    let receivers = route.receivers.len().to_le_bytes();
    parts.push(&receivers);
    for (field, value) in &labels {
        parts.push(field.as_bytes());
        parts.push(value.as_bytes());
    }
    GroupId {
        key: Id::derive("vigil notify group v1", &parts).to_string(),
        labels,
    }
}

fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Adds `alert` to its group on `route` (starting or restarting the group). An alert the
/// group already has changes nothing: redelivery from the bus is not news.
pub(crate) fn add(
    tx: &Transaction<'_>,
    route: &Route,
    alert: &Alert,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let id = group_id(route, alert);
    let now_ms = ms(now);
    let existing: Option<(String, i64, Option<i64>, Option<i64>)> = tx
        .query_row(
            "SELECT state, total, next_ms, notified_ms FROM groups WHERE key = ?1",
            [&id.key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let receivers = serde_json::to_string(&route.receivers).unwrap_or_default();
    let labels = serde_json::to_string(&id.labels).unwrap_or_default();
    let (wait, interval) = (
        duration_ms(route.group_wait),
        duration_ms(route.group_interval),
    );
    let repeat = route.repeat_interval.map(duration_ms);
    match &existing {
        Some((state, ..)) if state != ENDED => {
            // The route's settings as configured now, should they have changed.
            tx.execute(
                "UPDATE groups SET group_wait_ms = ?2, group_interval_ms = ?3, repeat_ms = ?4
                 WHERE key = ?1",
                params![id.key, wait, interval, repeat],
            )?;
        }
        _ => {
            // A new group, or one that ended: its sequence goes on, so that its
            // notification ids never repeat.
            tx.execute("DELETE FROM group_alerts WHERE group_key = ?1", [&id.key])?;
            tx.execute(
                "INSERT INTO groups (key, route, receivers, labels, state, started_ms, next_ms,
                     group_wait_ms, group_interval_ms, repeat_ms)
                 VALUES (?1, ?2, ?3, ?4, 'firing', ?5, NULL, ?6, ?7, ?8)
                 ON CONFLICT (key) DO UPDATE SET state = 'firing', started_ms = ?5,
                     next_ms = NULL, notified_ms = NULL, total = 0, notified_total = 0,
                     group_wait_ms = ?6, group_interval_ms = ?7, repeat_ms = ?8, pending = NULL",
                params![id.key, route.name, receivers, labels, now_ms, wait, interval, repeat],
            )?;
        }
    }
    let alert_json = serde_json::to_string(alert).unwrap_or_default();
    let ord: i64 = tx.query_row("SELECT total FROM groups WHERE key = ?1", [&id.key], |r| {
        r.get(0)
    })?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO group_alerts (group_key, alert_id, ord, alert)
         VALUES (?1, ?2, ?3, ?4)",
        params![id.key, alert.id.to_string(), ord, alert_json],
    )?;
    if inserted == 0 {
        return Ok(());
    }
    // A group told before waits out group_interval from its last notification; a new one
    // waits group_wait, collecting the alerts that follow.
    tx.execute(
        "UPDATE groups SET total = total + 1, state = 'firing',
             next_ms = COALESCE(next_ms, CASE WHEN notified_ms IS NULL THEN ?2 + group_wait_ms
                                    ELSE MAX(?2, notified_ms + group_interval_ms) END)
         WHERE key = ?1",
        params![id.key, now_ms],
    )?;
    tx.execute(
        "DELETE FROM group_alerts WHERE group_key = ?1 AND ord <= ?2 - ?3",
        params![id.key, ord, MAX_IDS],
    )?;
    tx.execute(
        "UPDATE group_alerts SET alert = NULL
         WHERE group_key = ?1 AND ord <= ?2 - ?3 AND alert IS NOT NULL",
        params![id.key, ord, MAX_BODIES],
    )?;
    Ok(())
}

/// The notification a group has handed out and not yet had confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    seq: i64,
    kind: NotificationKind,
    at_ms: i64,
    /// The group's alert count when it was handed out.
    total: i64,
}

/// One group as `due_groups` reads it.
struct GroupRow {
    key: String,
    receivers: Vec<String>,
    labels: BTreeMap<String, String>,
    state: String,
    next_ms: Option<i64>,
    notified_ms: Option<i64>,
    seq: i64,
    total: i64,
    notified_total: i64,
    repeat_ms: Option<i64>,
    pending: Option<Pending>,
}

fn groups(conn: &Connection) -> rusqlite::Result<Vec<GroupRow>> {
    let mut statement = conn.prepare(
        "SELECT key, receivers, labels, state, next_ms, notified_ms, seq, total, notified_total,
                repeat_ms, pending
         FROM groups WHERE state != 'ended' ORDER BY started_ms, key",
    )?;
    let rows = statement.query_map([], |r| {
        let receivers: String = r.get(1)?;
        let labels: String = r.get(2)?;
        let pending: Option<String> = r.get(10)?;
        Ok(GroupRow {
            key: r.get(0)?,
            receivers: serde_json::from_str(&receivers).unwrap_or_default(),
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            state: r.get(3)?,
            next_ms: r.get(4)?,
            notified_ms: r.get(5)?,
            seq: r.get(6)?,
            total: r.get(7)?,
            notified_total: r.get(8)?,
            repeat_ms: r.get(9)?,
            pending: pending.and_then(|p| serde_json::from_str(&p).ok()),
        })
    })?;
    rows.collect()
}

/// The ids of a group's remembered alerts and the kept alerts, newest first.
fn members(conn: &Connection, key: &str) -> rusqlite::Result<(Vec<AlertId>, Vec<Alert>)> {
    let mut statement = conn.prepare(
        "SELECT alert_id, alert FROM group_alerts WHERE group_key = ?1 ORDER BY ord DESC",
    )?;
    let mut ids = Vec::new();
    let mut alerts = Vec::new();
    let rows = statement.query_map([key], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    for row in rows {
        let (id, body) = row?;
        if let Ok(id) = id.parse() {
            ids.push(id);
        }
        if let Some(alert) = body.and_then(|b| serde_json::from_str(&b).ok()) {
            alerts.push(alert);
        }
    }
    Ok((ids, alerts))
}

/// What the dispatcher asks of triage and silences while deciding what is due.
pub(crate) trait Judge {
    fn states(&self, ids: &[AlertId]) -> BTreeMap<AlertId, AlertState>;
    /// Whether a silence covers this alert now.
    fn silenced(&self, alert: &Alert) -> bool;
    /// Whether to ask triage about every told group in this call, not only the due ones.
    fn sweep_states(&self) -> bool;
}

struct Timing {
    /// Alerts not yet told.
    new: i64,
    /// They may be told now.
    new_due: bool,
    /// Nothing new, and the group's repeat is due.
    repeat_due: bool,
}

fn timing(group: &GroupRow, now_ms: i64) -> Timing {
    let new = group.total - group.notified_total;
    Timing {
        new,
        new_due: new > 0 && group.next_ms.is_some_and(|next| next <= now_ms),
        repeat_due: new <= 0
            && group.state == FIRING
            && matches!((group.notified_ms, group.repeat_ms), (Some(at), Some(every)) if at.saturating_add(every) <= now_ms),
    }
}

/// The alert ids [`due_groups`] will ask triage about at `now`: asked beforehand, outside
/// the write transaction, so that the store's answer does not hold up the outbox and the
/// silences, which write to the same file.
pub(crate) fn triage_questions(
    conn: &Connection,
    now: DateTime<Utc>,
    sweep: bool,
) -> rusqlite::Result<Vec<AlertId>> {
    let now_ms = ms(now);
    let mut ids = Vec::new();
    for group in groups(conn)? {
        let Timing {
            new_due,
            repeat_due,
            ..
        } = timing(&group, now_ms);
        if group.pending.is_none() && (new_due || repeat_due || (group.seq > 0 && sweep)) {
            let mut statement =
                conn.prepare_cached("SELECT alert_id FROM group_alerts WHERE group_key = ?1")?;
            let rows = statement.query_map([&group.key], |r| r.get::<_, String>(0))?;
            for id in rows {
                if let Ok(id) = id?.parse() {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
}

/// The notifications due at `now`, each group's recorded as pending.
pub(crate) fn due_groups(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    judge: &dyn Judge,
) -> rusqlite::Result<Vec<Notification>> {
    let now_ms = ms(now);
    let mut out = Vec::new();
    for group in groups(tx)? {
        if let Some(pending) = &group.pending {
            let (_, alerts) = members(tx, &group.key)?;
            out.extend(notifications(&group, pending, &alerts));
            continue;
        }
        let Timing {
            new,
            new_due,
            repeat_due,
        } = timing(&group, now_ms);
        let told = group.seq > 0;
        // A group that never repeats and has been quiet for long is over: without this,
        // groups of one alert each (the legacy webhooks' routes) would pile up for ever.
        if !new_due
            && new <= 0
            && group.repeat_ms.is_none()
            && group
                .notified_ms
                .is_some_and(|at| at.saturating_add(MAX_IDLE_MS) <= now_ms)
        {
            end(tx, &group.key)?;
            continue;
        }
        // Triage is asked about groups something is due for, and about the others that
        // were told (might they be acknowledged or resolved?) only now and then.
        if !(new_due || repeat_due || (told && judge.sweep_states())) {
            continue;
        }
        let (ids, alerts) = members(tx, &group.key)?;
        let states = judge.states(&ids);
        let state_of = |id: &AlertId| states.get(id).copied().unwrap_or(AlertState::Open);
        let all_closed = !ids.is_empty() && ids.iter().all(|id| state_of(id) == AlertState::Closed);
        let any_open = ids.is_empty() || ids.iter().any(|id| state_of(id) == AlertState::Open);
        let kind = if all_closed {
            if !told {
                // Closed before anyone was told: nothing to say.
                end(tx, &group.key)?;
                continue;
            }
            NotificationKind::Resolved
        } else if !any_open {
            if group.state == ACKNOWLEDGED {
                continue;
            }
            if !told {
                tx.execute(
                    "UPDATE groups SET state = 'acknowledged' WHERE key = ?1",
                    [&group.key],
                )?;
                continue;
            }
            NotificationKind::Acknowledged
        } else {
            if group.state == ACKNOWLEDGED {
                // Reopened in triage: the group fires again, repeats counted from its last
                // notification.
                tx.execute(
                    "UPDATE groups SET state = 'firing' WHERE key = ?1",
                    [&group.key],
                )?;
            }
            let repeat_due = repeat_due
                || (group.state == ACKNOWLEDGED
                    && matches!((group.notified_ms, group.repeat_ms), (Some(at), Some(every)) if at.saturating_add(every) <= now_ms));
            if !(new_due || repeat_due) {
                continue;
            }
            // Held while a silence covers every alert the group shows; told once it ends.
            if !alerts.is_empty() && alerts.iter().all(|alert| judge.silenced(alert)) {
                continue;
            }
            NotificationKind::Firing
        };
        let pending = Pending {
            seq: group.seq + 1,
            kind,
            at_ms: now_ms,
            total: group.total,
        };
        tx.execute(
            "UPDATE groups SET pending = ?2 WHERE key = ?1",
            params![
                group.key,
                serde_json::to_string(&pending).unwrap_or_default()
            ],
        )?;
        out.extend(notifications(&group, &pending, &alerts));
    }
    Ok(out)
}

fn notifications(group: &GroupRow, pending: &Pending, alerts: &[Alert]) -> Vec<Notification> {
    let new_alerts = match pending.kind {
        NotificationKind::Firing => (pending.total - group.notified_total).max(0),
        _ => 0,
    };
    group
        .receivers
        .iter()
        .map(|receiver| Notification {
            id: notification_id(&group.key, receiver, pending.seq),
            receiver: receiver.clone(),
            group_key: group.key.clone(),
            group: group.labels.clone(),
            kind: pending.kind,
            alerts: alerts.to_vec(),
            total_alerts: u64::try_from(pending.total).unwrap_or(0),
            new_alerts: u64::try_from(new_alerts).unwrap_or(0),
            created: time(pending.at_ms),
        })
        .collect()
}

/// `{group}:{receiver}:{sequence}`: the same notification gets the same id however often it
/// is handed out.
pub(crate) fn notification_id(group_key: &str, receiver: &str, seq: i64) -> String {
    format!("{group_key}:{receiver}:{seq}")
}

/// The group key and sequence of a notification id.
fn parse_id(id: &str) -> Option<(&str, i64)> {
    let (key, rest) = id.split_once(':')?;
    let (_, seq) = rest.rsplit_once(':')?;
    Some((key, seq.parse().ok()?))
}

/// Records that the notifications `ids` are safely in the outbox: their groups move on.
pub(crate) fn confirm(tx: &Transaction<'_>, ids: &[String]) -> rusqlite::Result<()> {
    let mut done: Vec<(&str, i64)> = ids.iter().filter_map(|id| parse_id(id)).collect();
    done.sort_unstable();
    done.dedup();
    for (key, seq) in done {
        let pending: Option<Option<String>> = tx
            .query_row("SELECT pending FROM groups WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(pending) = pending
            .flatten()
            .and_then(|p| serde_json::from_str::<Pending>(&p).ok())
        else {
            continue;
        };
        if pending.seq != seq {
            continue;
        }
        match pending.kind {
            NotificationKind::Resolved if total_now(tx, key)? == pending.total => {
                tx.execute(
                    "UPDATE groups SET seq = ?2, notified_ms = ?3, pending = NULL WHERE key = ?1",
                    params![key, pending.seq, pending.at_ms],
                )?;
                end(tx, key)?;
            }
            // Resolved while new alerts came: the group goes on for them.
            kind => {
                let state = if kind == NotificationKind::Acknowledged {
                    ACKNOWLEDGED
                } else {
                    FIRING
                };
                // Alerts that came while it was pending are told after group_interval.
                tx.execute(
                    "UPDATE groups SET seq = ?2, notified_ms = ?3, notified_total = ?4,
                         pending = NULL, state = ?5,
                         next_ms = CASE WHEN total > ?4 THEN ?3 + group_interval_ms END
                     WHERE key = ?1",
                    params![key, pending.seq, pending.at_ms, pending.total, state],
                )?;
            }
        }
    }
    Ok(())
}

fn total_now(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<i64> {
    tx.query_row("SELECT total FROM groups WHERE key = ?1", [key], |r| {
        r.get(0)
    })
}

/// Ends a group: its alerts are forgotten, its sequence kept (a later alert starts it anew
/// under fresh ids).
fn end(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM group_alerts WHERE group_key = ?1", [key])?;
    tx.execute(
        "UPDATE groups SET state = 'ended', next_ms = NULL, pending = NULL WHERE key = ?1",
        [key],
    )?;
    Ok(())
}

/// The kept alerts of the groups that are not over, for inhibition.
pub(crate) fn live_alerts(conn: &Connection) -> rusqlite::Result<Vec<Alert>> {
    let mut statement = conn.prepare(
        "SELECT a.alert FROM group_alerts a JOIN groups g ON g.key = a.group_key
         WHERE g.state != 'ended' AND a.alert IS NOT NULL",
    )?;
    let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
    let mut alerts = Vec::new();
    for row in rows {
        if let Ok(alert) = serde_json::from_str(&row?) {
            alerts.push(alert);
        }
    }
    Ok(alerts)
}
