//! The audit log: an append-only record of who did what to Vigil. Rows are only ever
//! inserted; triggers refuse updates and deletes, so a bug or a later feature cannot quietly
//! rewrite history through this database handle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AccessDb, AccessError};

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

impl AccessDb {
    /// Appends an entry and returns it.
    pub fn audit(&self, record: AuditRecord) -> Result<AuditEntry, AccessError> {
        let _ = record;
        todo!("H1")
    }

    /// Entries matching `filter`, newest first.
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AccessError> {
        let _ = filter;
        todo!("H1")
    }

    /// Up to `limit` entries after sequence number `after`, oldest first: what the forwarder
    /// has yet to send into the pipeline.
    pub fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, AccessError> {
        let _ = (after, limit);
        todo!("H1")
    }

    /// The sequence number the forwarder has sent up to (0 at first).
    pub fn forwarded_up_to(&self) -> Result<i64, AccessError> {
        todo!("H1")
    }

    pub fn set_forwarded_up_to(&self, seq: i64) -> Result<(), AccessError> {
        let _ = seq;
        todo!("H1")
    }
}
