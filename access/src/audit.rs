//! The audit log: an append-only record of who did what to Vigil. Rows are only ever
//! inserted; triggers refuse updates and deletes, so a bug or a later feature cannot quietly
//! rewrite history through this database handle.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::db::{parse_time, stored_now, time_text};
use crate::{AccessDb, AccessError};

/// The longest actor, action, target, client address or reason kept, in characters. Failed
/// sign-ins record the name that was tried, which the attacker chooses: unbounded, one
/// request could write megabytes into the log and into the event it is forwarded as.
const MAX_TEXT_CHARS: usize = 256;

/// The longest `detail` kept, as JSON text; a longer one is replaced by a note saying so
/// and its first part.
const MAX_DETAIL_BYTES: usize = 16 * 1024;

/// The most entries one read returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

fn bounded(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

fn bounded_detail(detail: serde_json::Value) -> serde_json::Value {
    let text = detail.to_string();
    if text.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    // A quarter, since escaping the JSON text as a string may double it.
    let mut cut = MAX_DETAIL_BYTES / 4;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::json!({ "truncated": true, "bytes": text.len(), "start": &text[..cut] })
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    fn parse(text: &str) -> Result<Outcome, AccessError> {
        match text {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            other => Err(AccessError::Corrupt(format!("audit outcome {other:?}"))),
        }
    }
}

const AUDIT_COLUMNS: &str =
    "seq, time, actor, action, outcome, target, client_address, reason, detail";

type AuditRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn audit_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    AuditRow::try_from(row)
}

fn entry_from_row(
    (seq, time, actor, action, outcome, target, client_address, reason, detail): AuditRow,
) -> Result<AuditEntry, AccessError> {
    let detail = match detail {
        None => serde_json::Value::Null,
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| AccessError::Corrupt(format!("audit entry {seq}'s detail: {e}")))?,
    };
    Ok(AuditEntry {
        seq,
        time: parse_time("the audit log", &time)?,
        record: AuditRecord {
            actor,
            action,
            outcome: Outcome::parse(&outcome)?,
            target,
            client_address,
            reason,
            detail,
        },
    })
}

fn page_size(limit: usize) -> i64 {
    i64::try_from(limit.clamp(1, MAX_AUDIT_PAGE)).unwrap_or(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// One thing to record. `action` is a dotted name from a fixed vocabulary:
/// `sign_in`, `sign_out`, `bearer`, `alert.update`, `rule.enable`, `rule.disable`,
/// `rules.reload`, `user.add`, `user.disable`, `user.password`, `token.create`,
/// `token.revoke`, `backup.create`, `backup.restore`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Who: a user name, `token:NAME`, `bootstrap-token`, `cli:<os user>`, or for a failed
    /// sign-in the name that was tried.
    pub actor: String,
    pub action: String,
    pub outcome: Outcome,
    /// What it was done to: an alert id, a user or token name, a rule, a path.
    pub target: Option<String>,
    /// The client's address, when the action came over HTTP.
    pub client_address: Option<String>,
    /// Why, for failures and refusals: `wrong_password`, `locked_out`, `unknown_token`...
    pub reason: Option<String>,
    /// Anything else worth keeping: the fields an alert change touched, a token's scopes.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// A recorded entry: the record, its sequence number and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub record: AuditRecord,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries before this sequence number (for paging back), newest first.
    pub before: Option<i64>,
    pub limit: usize,
}

/// The query for [`AccessDb::audit_entries`] and its values. Only the filters given go
/// into the text, so SQLite can use the index on actor or action instead of walking the
/// whole log; each of the few shapes is a cached statement.
fn entries_query(filter: &AuditFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(actor) = &filter.actor {
        conditions.push("actor = ?");
        values.push(actor.clone().into());
    }
    if let Some(action) = &filter.action {
        conditions.push("action = ?");
        values.push(action.clone().into());
    }
    if let Some(before) = filter.before {
        conditions.push("seq < ?");
        values.push(before.into());
    }
    values.push(page_size(filter.limit).into());
    let conditions = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (
        format!("SELECT {AUDIT_COLUMNS} FROM audit {conditions} ORDER BY seq DESC LIMIT ?"),
        values,
    )
}

impl AccessDb {
    /// Appends an entry and returns it.
    pub fn audit(&self, record: AuditRecord) -> Result<AuditEntry, AccessError> {
        let record = AuditRecord {
            actor: bounded(record.actor),
            action: bounded(record.action),
            outcome: record.outcome,
            target: record.target.map(bounded),
            client_address: record.client_address.map(bounded),
            reason: record.reason.map(bounded),
            detail: bounded_detail(record.detail),
        };
        let time = stored_now();
        let detail = (!record.detail.is_null()).then(|| record.detail.to_string());
        let conn = self.lock();
        conn.execute(
            "INSERT INTO audit (time, actor, action, outcome, target, client_address, reason, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                time_text(time),
                record.actor,
                record.action,
                record.outcome.as_str(),
                record.target,
                record.client_address,
                record.reason,
                detail
            ],
        )
        .map_err(self.err())?;
        Ok(AuditEntry {
            seq: conn.last_insert_rowid(),
            time,
            record,
        })
    }

    /// Entries matching `filter`, newest first. `limit` is clamped to 1..=1000.
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AccessError> {
        let (sql, values) = entries_query(filter);
        let conn = self.lock();
        let mut query = conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = query
            .query_map(rusqlite::params_from_iter(values), audit_row)
            .map_err(self.err())?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(entry_from_row(row.map_err(self.err())?)?);
        }
        Ok(entries)
    }

    /// Up to `limit` entries after sequence number `after`, oldest first: what the forwarder
    /// has yet to send into the pipeline. `limit` is clamped to 1..=1000.
    pub fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, AccessError> {
        let conn = self.lock();
        let mut query = conn
            .prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(self.err())?;
        let rows = query
            .query_map(params![after, page_size(limit)], audit_row)
            .map_err(self.err())?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(entry_from_row(row.map_err(self.err())?)?);
        }
        Ok(entries)
    }

    /// The sequence number the forwarder has sent up to (0 at first).
    pub fn forwarded_up_to(&self) -> Result<i64, AccessError> {
        let conn = self.lock();
        let seq: Option<i64> = conn
            .query_row("SELECT max(forwarded_up_to) FROM audit_cursor", [], |row| {
                row.get(0)
            })
            .map_err(self.err())?;
        Ok(seq.unwrap_or(0))
    }

    /// Records that entries up to `seq` have been sent. Never moves backwards, so a slow
    /// forwarder finishing late cannot cause a resend of what a faster one already sent.
    pub fn set_forwarded_up_to(&self, seq: i64) -> Result<(), AccessError> {
        self.lock()
            .execute(
                "INSERT INTO audit_cursor (id, forwarded_up_to) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE
                 SET forwarded_up_to = max(forwarded_up_to, excluded.forwarded_up_to)",
                params![seq],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::db::tests::temp_db;

    fn record(actor: &str, action: &str, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            actor: actor.into(),
            action: action.into(),
            outcome,
            target: None,
            client_address: None,
            reason: None,
            detail: serde_json::Value::Null,
        }
    }

    fn filter(limit: usize) -> AuditFilter {
        AuditFilter {
            limit,
            ..AuditFilter::default()
        }
    }

    #[test]
    fn entries_are_appended_and_read_back_newest_first() {
        let (_dir, db) = temp_db();
        let first = db
            .audit(AuditRecord {
                target: Some("ci".into()),
                client_address: Some("192.0.2.7".into()),
                detail: json!({"scopes": "ingest:cloudtrail"}),
                ..record("alice", "token.create", Outcome::Success)
            })
            .unwrap();
        let second = db
            .audit(AuditRecord {
                reason: Some("wrong_password".into()),
                ..record("mallory", "sign_in", Outcome::Failure)
            })
            .unwrap();
        assert!(second.seq > first.seq);
        let entries = db.audit_entries(&filter(10)).unwrap();
        assert_eq!(entries, [second.clone(), first.clone()]);
        assert_eq!(entries[1].record.detail["scopes"], "ingest:cloudtrail");
        assert_eq!(entries[0].record.detail, serde_json::Value::Null);
        // As the forwarder sends it: flat, with the outcome in snake case.
        let json = serde_json::to_value(&entries[0]).unwrap();
        assert_eq!(json["actor"], "mallory");
        assert_eq!(json["outcome"], "failure");
        assert_eq!(json["seq"], second.seq);
        assert!(json.get("detail").is_none());
    }

    #[test]
    fn entries_filter_by_actor_and_action_and_page_back() {
        let (_dir, db) = temp_db();
        for i in 0..5 {
            db.audit(record("alice", "alert.update", Outcome::Success))
                .unwrap();
            db.audit(record(&format!("user{i}"), "sign_in", Outcome::Failure))
                .unwrap();
        }
        db.audit(record("alice", "sign_out", Outcome::Success))
            .unwrap();
        let alice = db
            .audit_entries(&AuditFilter {
                actor: Some("alice".into()),
                ..filter(100)
            })
            .unwrap();
        assert_eq!(alice.len(), 6);
        assert!(alice.iter().all(|e| e.record.actor == "alice"));
        assert!(alice.windows(2).all(|w| w[0].seq > w[1].seq));
        let sign_ins = db
            .audit_entries(&AuditFilter {
                action: Some("sign_in".into()),
                ..filter(3)
            })
            .unwrap();
        let actors: Vec<&str> = sign_ins.iter().map(|e| e.record.actor.as_str()).collect();
        assert_eq!(actors, ["user4", "user3", "user2"]);
        let older = db
            .audit_entries(&AuditFilter {
                action: Some("sign_in".into()),
                before: Some(sign_ins[2].seq),
                ..filter(3)
            })
            .unwrap();
        let actors: Vec<&str> = older.iter().map(|e| e.record.actor.as_str()).collect();
        assert_eq!(actors, ["user1", "user0"]);
        assert_eq!(db.audit_entries(&filter(0)).unwrap().len(), 1, "0 means 1");
        assert_eq!(db.audit_entries(&filter(usize::MAX)).unwrap().len(), 11);
    }

    #[test]
    fn reads_return_at_most_a_thousand() {
        let (_dir, db) = temp_db();
        {
            let mut conn = db.lock();
            let tx = conn.transaction().unwrap();
            for _ in 0..MAX_AUDIT_PAGE + 5 {
                tx.execute(
                    "INSERT INTO audit (time, actor, action, outcome) VALUES ('2026-01-01T00:00:00.000000Z', 'a', 'sign_in', 'success')",
                    [],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(
            db.audit_entries(&filter(5000)).unwrap().len(),
            MAX_AUDIT_PAGE
        );
        assert_eq!(db.audit_after(0, 5000).unwrap().len(), MAX_AUDIT_PAGE);
    }

    #[test]
    fn attacker_chosen_text_is_bounded() {
        let (_dir, db) = temp_db();
        let huge = "é".repeat(100_000);
        let entry = db
            .audit(AuditRecord {
                target: Some(huge.clone()),
                reason: Some(huge.clone()),
                client_address: Some(huge.clone()),
                detail: json!({ "note": huge.clone() }),
                ..record(&huge, &huge, Outcome::Failure)
            })
            .unwrap();
        let stored = &db.audit_entries(&filter(1)).unwrap()[0];
        assert_eq!(stored, &entry);
        let r = &stored.record;
        for text in [
            &r.actor,
            &r.action,
            r.target.as_ref().unwrap(),
            r.reason.as_ref().unwrap(),
        ] {
            assert_eq!(text.chars().count(), MAX_TEXT_CHARS);
        }
        assert!(r.detail.to_string().len() <= MAX_DETAIL_BYTES);
        assert_eq!(r.detail["truncated"], true);
        // Short text is kept whole.
        let short = db
            .audit(record("alice", "sign_in", Outcome::Success))
            .unwrap();
        assert_eq!(short.record.actor, "alice");
    }

    #[test]
    fn the_log_refuses_updates_and_deletes_even_through_a_raw_connection() {
        let (dir, db) = temp_db();
        db.audit(record("alice", "sign_in", Outcome::Success))
            .unwrap();
        drop(db);
        let raw = rusqlite::Connection::open(dir.path().join(crate::ACCESS_DB)).unwrap();
        let update = raw
            .execute("UPDATE audit SET actor = 'mallory'", [])
            .unwrap_err()
            .to_string();
        assert!(update.contains("append-only"), "{update}");
        let delete = raw
            .execute("DELETE FROM audit", [])
            .unwrap_err()
            .to_string();
        assert!(delete.contains("append-only"), "{delete}");
        let actor: String = raw
            .query_row("SELECT actor FROM audit", [], |row| row.get(0))
            .unwrap();
        assert_eq!(actor, "alice");
    }

    #[test]
    fn the_forwarder_reads_after_its_cursor_which_never_moves_back() {
        let (_dir, db) = temp_db();
        assert_eq!(db.forwarded_up_to().unwrap(), 0);
        let seqs: Vec<i64> = (0..5)
            .map(|i| {
                db.audit(record(&format!("u{i}"), "sign_in", Outcome::Success))
                    .unwrap()
                    .seq
            })
            .collect();
        let batch = db.audit_after(0, 3).unwrap();
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[..3]);
        db.set_forwarded_up_to(batch[2].seq).unwrap();
        assert_eq!(db.forwarded_up_to().unwrap(), seqs[2]);
        let rest = db.audit_after(db.forwarded_up_to().unwrap(), 100).unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[3..]);
        db.set_forwarded_up_to(seqs[0]).unwrap();
        assert_eq!(db.forwarded_up_to().unwrap(), seqs[2], "never backwards");
        db.set_forwarded_up_to(seqs[4]).unwrap();
        assert_eq!(db.forwarded_up_to().unwrap(), seqs[4]);
        assert!(db.audit_after(seqs[4], 10).unwrap().is_empty());
    }

    #[test]
    fn filtered_reads_use_an_index() {
        let (_dir, db) = temp_db();
        let conn = db.lock();
        let plan = |sql: &str| -> String {
            let mut query = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = query
                .query_map([], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows.join("; ")
        };
        let (sql, _) = entries_query(&AuditFilter {
            actor: Some("a".into()),
            before: Some(9),
            ..filter(5)
        });
        let by_actor = plan(&sql.replacen('?', "'a'", 1).replace('?', "9"));
        assert!(by_actor.contains("audit_by_actor"), "{by_actor}");
        let (sql, _) = entries_query(&AuditFilter {
            action: Some("a".into()),
            ..filter(5)
        });
        let by_action = plan(&sql.replacen('?', "'a'", 1).replace('?', "5"));
        assert!(by_action.contains("audit_by_action"), "{by_action}");
    }

    #[test]
    fn unreadable_rows_are_corrupt() {
        let (_dir, db) = temp_db();
        db.lock()
            .execute(
                "INSERT INTO audit (time, actor, action, outcome) VALUES ('2026-01-01T00:00:00.000000Z', 'a', 'b', 'maybe')",
                [],
            )
            .unwrap();
        assert!(matches!(
            db.audit_after(0, 10),
            Err(AccessError::Corrupt(_))
        ));
    }
}
