//! Silences (made by analysts from the API and the UI, stored in notify.sqlite) and
//! inhibition rules (from `[[notify.inhibit]]`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use vigil_event::Alert;

use crate::db::DbError;
use crate::routing::{parse_duration, AlertField, MatchValue, Matchers, RouteError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers TEXT NOT NULL,
    author TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    starts_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL,
    expired_by TEXT
);
CREATE INDEX IF NOT EXISTS silences_by_end ON silences (ends_ms);
";

/// How long a silence may last: a forgotten one must not hide pages for ever.
const MAX_SILENCE_MS: i64 = 90 * 86_400_000;
const MAX_COMMENT: usize = 2_000;

/// One silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: BTreeMap<String, MatchValue>,
    /// Who made it (the actor of the request).
    pub author: String,
    pub comment: String,
    pub created: DateTime<Utc>,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    /// Who ended it early, if anyone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

impl Silence {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts <= now && now < self.ends
    }
}

/// A silence as asked for: its matchers, why, and either how long (`duration = "2h"`) or
/// until when (`ends`). It starts at once unless `starts` says otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: BTreeMap<String, MatchValue>,
    pub comment: String,
    #[serde(default)]
    pub starts: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration: Option<String>,
}

/// Why a silence could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// The request is wrong; the text says how.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("notify database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The silences in notify.sqlite, for the API and the UI. The dispatcher reads the same
/// table, so a silence made here applies to the next alert.
pub struct Silences {
    conn: Mutex<Connection>,
}

impl Silences {
    pub fn open(path: &Path) -> Result<Silences, SilenceError> {
        let conn = crate::db::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Silences {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The newest silences first, active and ended, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<Silence>, SilenceError> {
        Ok(list(&self.lock(), limit)?)
    }

    pub fn get(&self, id: i64) -> Result<Option<Silence>, SilenceError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!("{SELECT} WHERE id = ?1"))?;
        Ok(statement.query_row([id], row_to_silence).optional()?)
    }

    /// Makes a silence after checking it: known fields, valid patterns, a comment, an end
    /// after its start and within 90 days.
    pub fn create(
        &self,
        new: &NewSilence,
        author: &str,
        now: DateTime<Utc>,
    ) -> Result<Silence, SilenceError> {
        let invalid = |reason: String| SilenceError::Invalid(reason);
        if new.matchers.is_empty() {
            return Err(invalid(
                "a silence needs at least one matcher: one with none would hide every alert".into(),
            ));
        }
        Matchers::parse(&new.matchers).map_err(|reason| invalid(format!("matchers: {reason}")))?;
        let comment = new.comment.trim();
        if comment.is_empty() || comment.chars().count() > MAX_COMMENT {
            return Err(invalid(format!(
                "say why in a comment of 1 to {MAX_COMMENT} characters"
            )));
        }
        if author.is_empty() {
            return Err(invalid("a silence needs an author".into()));
        }
        let starts = new.starts.unwrap_or(now).max(now);
        let ends = match (new.ends, &new.duration) {
            (Some(_), Some(_)) => {
                return Err(invalid("give either ends or duration, not both".into()))
            }
            (Some(ends), None) => ends,
            (None, Some(duration)) => {
                let duration = parse_duration(duration).map_err(invalid)?;
                // A start near the end of representable time plus the duration overflows;
                // such a silence ends far past the 90 days anyway.
                chrono::Duration::from_std(duration)
                    .ok()
                    .and_then(|duration| starts.checked_add_signed(duration))
                    .ok_or_else(|| invalid("a silence may last at most 90 days".into()))?
            }
            (None, None) => {
                return Err(invalid(
                    "give how long (duration = \"2h\") or until when (ends)".into(),
                ))
            }
        };
        if ends <= starts {
            return Err(invalid("the silence would end before it starts".into()));
        }
        if ends.timestamp_millis() - now.timestamp_millis() > MAX_SILENCE_MS {
            return Err(invalid("a silence may last at most 90 days".into()));
        }
        let matchers = serde_json::to_string(&new.matchers).unwrap_or_default();
        let conn = self.lock();
        conn.execute(
            "INSERT INTO silences (matchers, author, comment, created_ms, starts_ms, ends_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                matchers,
                author,
                comment,
                now.timestamp_millis(),
                starts.timestamp_millis(),
                ends.timestamp_millis()
            ],
        )?;
        let id = conn.last_insert_rowid();
        let mut statement = conn.prepare(&format!("{SELECT} WHERE id = ?1"))?;
        Ok(statement.query_row([id], row_to_silence)?)
    }

    /// Ends a silence now. `None` when there is no such silence; an ended one is returned
    /// as it is.
    pub fn expire(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Silence>, SilenceError> {
        let conn = self.lock();
        let now_ms = now.timestamp_millis();
        conn.execute(
            "UPDATE silences SET ends_ms = ?2, expired_by = ?3 WHERE id = ?1 AND ends_ms > ?2",
            params![id, now_ms, actor],
        )?;
        let mut statement = conn.prepare(&format!("{SELECT} WHERE id = ?1"))?;
        Ok(statement.query_row([id], row_to_silence).optional()?)
    }
}

const SELECT: &str =
    "SELECT id, matchers, author, comment, created_ms, starts_ms, ends_ms, expired_by FROM silences";

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn row_to_silence(r: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    let matchers: String = r.get(1)?;
    Ok(Silence {
        id: r.get(0)?,
        matchers: serde_json::from_str(&matchers).unwrap_or_default(),
        author: r.get(2)?,
        comment: r.get(3)?,
        created: time(r.get(4)?),
        starts: time(r.get(5)?),
        ends: time(r.get(6)?),
        expired_by: r.get(7)?,
    })
}

pub(crate) fn list(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Silence>> {
    let mut statement = conn.prepare(&format!("{SELECT} ORDER BY id DESC LIMIT ?1"))?;
    let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], row_to_silence)?;
    rows.collect()
}

/// The matchers of the silences active at `now`.
pub(crate) fn active(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<Matchers>> {
    let now_ms = now.timestamp_millis();
    let mut statement =
        conn.prepare(&format!("{SELECT} WHERE starts_ms <= ?1 AND ends_ms > ?1"))?;
    let rows = statement.query_map([now_ms], row_to_silence)?;
    let mut active = Vec::new();
    for silence in rows {
        // Checked when made; one that no longer parses (an older Vigil's) silences nothing.
        if let Ok(matchers) = Matchers::parse(&silence?.matchers) {
            if !matchers.is_empty() {
                active.push(matchers);
            }
        }
    }
    Ok(active)
}

/// One `[[notify.inhibit]]`: while a group with an alert matching `source` is firing,
/// alerts matching `target` whose `equal` fields have the same values are not notified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source: BTreeMap<String, MatchValue>,
    pub target: BTreeMap<String, MatchValue>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A checked inhibition rule.
#[derive(Debug, Clone)]
pub(crate) struct InhibitRule {
    source: Matchers,
    target: Matchers,
    equal: Vec<AlertField>,
}

impl InhibitRule {
    pub(crate) fn compile(rules: &[InhibitConfig]) -> Result<Vec<InhibitRule>, RouteError> {
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let err = |reason: String| RouteError {
                    at: format!("notify.inhibit[{i}]"),
                    reason,
                };
                if rule.source.is_empty() || rule.target.is_empty() {
                    return Err(err(
                        "source and target each need a matcher: an empty one matches every alert"
                            .into(),
                    ));
                }
                Ok(InhibitRule {
                    source: Matchers::parse(&rule.source)
                        .map_err(|r| err(format!("source: {r}")))?,
                    target: Matchers::parse(&rule.target)
                        .map_err(|r| err(format!("target: {r}")))?,
                    equal: rule
                        .equal
                        .iter()
                        .map(|f| AlertField::for_grouping(f))
                        .collect::<Result<_, _>>()
                        .map_err(|r| err(format!("equal: {r}")))?,
                })
            })
            .collect()
    }

    pub(crate) fn targets(&self, alert: &Alert) -> bool {
        self.target.matches(alert)
    }

    /// Whether the firing alert `source` inhibits `target` under this rule. As in
    /// Alertmanager, alerts that match both sides do not inhibit each other (nor itself),
    /// else a rule whose sides overlap would mute them all.
    pub(crate) fn inhibits(&self, source: &Alert, target: &Alert) -> bool {
        source.id != target.id
            && self.source.matches(source)
            && !(self.target.matches(source) && self.source.matches(target))
            && self
                .equal
                .iter()
                .all(|field| field.value(source) == field.value(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(starts: Option<&str>, duration: &str) -> NewSilence {
        NewSilence {
            matchers: BTreeMap::from([("rule_id".to_owned(), MatchValue::One("r".to_owned()))]),
            comment: "maintenance".to_owned(),
            starts: starts.map(|text| text.parse().unwrap()),
            duration: Some(duration.to_owned()),
            ..NewSilence::default()
        }
    }

    /// A start at the end of representable time plus a duration overflowed the date
    /// arithmetic, which panicked, and the API answered 500. Found probing the API with the
    /// boundary values its description allows beside scripts/dast, whose Schemathesis keeps
    /// to RFC 3339 years and so never sends such a start.
    #[test]
    fn a_start_too_far_ahead_is_refused_not_a_panic() {
        let dir = tempfile::TempDir::new().unwrap();
        let silences = Silences::open(&dir.path().join("notify.sqlite")).unwrap();
        let now = Utc::now();
        for starts in ["+262142-12-31T00:00:00Z", "9999-12-31T23:59:59Z"] {
            match silences.create(&silence(Some(starts), "364d"), "ana", now) {
                Err(SilenceError::Invalid(reason)) => {
                    assert!(reason.contains("90 days"), "{starts}: {reason}")
                }
                other => panic!("{starts}: {other:?}"),
            }
        }
        let made = silences.create(&silence(None, "2h"), "ana", now).unwrap();
        assert_eq!(made.ends - made.starts, chrono::Duration::hours(2));
    }
}
