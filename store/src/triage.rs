//! Alert triage: where an alert stands (open, acknowledged, closed, with a reason and an
//! assignee), the changes an analyst may ask for, and the rules that allow or refuse them.
//! Pure: `triage_db.rs` keeps the states and their history in SQLite.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Where an alert is in triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Closed,
}

/// Why an alert was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Resolved,
    FalsePositive,
    Duplicate,
    Other,
}

impl AlertStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        [
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            AlertStatus::Closed,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl CloseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::Resolved => "resolved",
            CloseReason::FalsePositive => "false_positive",
            CloseReason::Duplicate => "duplicate",
            CloseReason::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<CloseReason> {
        [
            CloseReason::Resolved,
            CloseReason::FalsePositive,
            CloseReason::Duplicate,
            CloseReason::Other,
        ]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// The mutable part of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertState {
    pub status: AlertStatus,
    /// Set while closed.
    pub reason: Option<CloseReason>,
    pub assignee: Option<String>,
    /// When the state last changed (first seen, for an untouched alert).
    pub updated: DateTime<Utc>,
}

impl AlertState {
    pub(crate) fn new(now: DateTime<Utc>) -> AlertState {
        AlertState {
            status: AlertStatus::Open,
            reason: None,
            assignee: None,
            updated: now,
        }
    }
}

/// One recorded change: who changed which part of the alert, when, from what to what. A
/// note is a change of `note` with the note's text as the new value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A change asked for by an analyst. Absent parts stay as they are; an empty assignee
/// unassigns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertChange {
    pub status: Option<AlertStatus>,
    pub reason: Option<CloseReason>,
    pub assignee: Option<String>,
    pub note: Option<String>,
}

/// Longest note and assignee accepted; they are shown to every analyst.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
pub const MAX_ASSIGNEE_BYTES: usize = 256;

/// Checks `change` against `state` and gives the new state with the history it writes.
///
/// Allowed moves: open → acknowledged → closed, open → closed, and back to open from either
/// (reopening clears the reason). Closing needs a reason; a reason needs closing.
pub fn apply_change(
    state: &AlertState,
    change: &AlertChange,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(AlertState, Vec<HistoryEntry>), StoreError> {
    let invalid = |message: String| Err(StoreError::InvalidChange(message));
    if change.status.is_none()
        && change.reason.is_none()
        && change.assignee.is_none()
        && change.note.is_none()
    {
        return invalid("nothing to change: give status, reason, assignee or note".into());
    }
    let mut next = state.clone();
    let mut history = Vec::new();
    let mut record = |field: &str, old: Option<&str>, new: Option<&str>| {
        history.push(HistoryEntry {
            at: now,
            actor: actor.to_owned(),
            field: field.to_owned(),
            old: old.map(str::to_owned),
            new: new.map(str::to_owned),
        })
    };
    let target = change.status.unwrap_or(state.status);
    if let Some(status) = change.status {
        use AlertStatus::*;
        match (state.status, status) {
            (from, to) if from == to => {
                return invalid(format!("the alert is already {}", to.as_str()));
            }
            (Closed, Acknowledged) => {
                return invalid(
                    "a closed alert cannot be acknowledged; reopen it (status open) first".into(),
                );
            }
            _ => {}
        }
        next.status = status;
        record("status", Some(state.status.as_str()), Some(status.as_str()));
    }
    match (target, change.reason) {
        (AlertStatus::Closed, Some(reason)) => {
            next.reason = Some(reason);
            if state.reason != Some(reason) {
                record(
                    "reason",
                    state.reason.map(|r| r.as_str()),
                    Some(reason.as_str()),
                );
            }
        }
        (AlertStatus::Closed, None) if state.status != AlertStatus::Closed => {
            return invalid(
                "closing needs a reason: resolved, false_positive, duplicate or other".into(),
            );
        }
        (AlertStatus::Closed, None) => {}
        (_, Some(_)) => {
            return invalid("a reason is only given when closing (status closed)".into());
        }
        (_, None) => {
            if let Some(old) = state.reason {
                next.reason = None;
                record("reason", Some(old.as_str()), None);
            }
        }
    }
    if let Some(assignee) = &change.assignee {
        let assignee = assignee.trim();
        if assignee.len() > MAX_ASSIGNEE_BYTES {
            return invalid(format!(
                "the assignee is longer than {MAX_ASSIGNEE_BYTES} bytes"
            ));
        }
        let new = (!assignee.is_empty()).then(|| assignee.to_owned());
        if new != state.assignee {
            record("assignee", state.assignee.as_deref(), new.as_deref());
            next.assignee = new;
        }
    }
    if let Some(note) = &change.note {
        if note.trim().is_empty() {
            return invalid("the note is empty".into());
        }
        if note.len() > MAX_NOTE_BYTES {
            return invalid(format!("the note is longer than {MAX_NOTE_BYTES} bytes"));
        }
        record("note", None, Some(note));
    }
    if !history.is_empty() {
        next.updated = now;
    }
    Ok((next, history))
}

impl crate::Store {
    /// Where each of `ids` stands in triage, for the notification dispatcher (acknowledge
    /// and resolve a group once all its alerts are). An id the store has not seen yet reads
    /// as open.
    pub fn alert_states(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, AlertState>, StoreError> {
        self.triage.states(ids, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn change(status: Option<AlertStatus>, reason: Option<CloseReason>) -> AlertChange {
        AlertChange {
            status,
            reason,
            ..AlertChange::default()
        }
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use AlertStatus::*;
        let open = AlertState::new(now());
        let (acked, history) =
            apply_change(&open, &change(Some(Acknowledged), None), "ann", now()).unwrap();
        assert_eq!(acked.status, Acknowledged);
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].old.as_deref(), Some("open"));
        assert!(apply_change(&acked, &change(Some(Closed), None), "ann", now()).is_err());
        let (closed, history) = apply_change(
            &acked,
            &change(Some(Closed), Some(CloseReason::FalsePositive)),
            "ann",
            now(),
        )
        .unwrap();
        assert_eq!(closed.reason, Some(CloseReason::FalsePositive));
        assert_eq!(history.len(), 2, "status and reason");
        assert!(apply_change(&closed, &change(Some(Acknowledged), None), "ann", now()).is_err());
        assert!(apply_change(&closed, &change(Some(Closed), None), "ann", now()).is_err());
        let (reopened, _) = apply_change(&closed, &change(Some(Open), None), "ann", now()).unwrap();
        assert_eq!(reopened.reason, None, "reopening clears the reason");
        assert!(
            apply_change(&open, &change(None, Some(CloseReason::Other)), "a", now()).is_err(),
            "a reason without closing"
        );
        assert!(apply_change(&open, &AlertChange::default(), "a", now()).is_err());
    }
}
