//! The durable record of playbook runs: `<data_dir>/respond.sqlite`.
//!
//! One row per (alert, playbook, action index), under that key: a replayed alert finds its
//! rows and acts no twice. A row is written before its action runs (state `running`), so a
//! crash mid-call leaves a row that the replay picks up again; actions are idempotent.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::actions::PlannedAction;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Recorded; not yet executed (automatic runs, for a moment).
    Planned,
    /// Waits for an analyst's approval.
    AwaitingApproval,
    /// Executing (or interrupted while executing, and to be resumed).
    Running,
    Succeeded,
    /// Failed for good: refused, unplannable, or out of attempts.
    Failed,
    /// A dry-run: planned, recorded, nothing changed.
    DryRun,
    /// Succeeded, then undone.
    Undone,
}

impl RunState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Planned => "planned",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::DryRun => "dry_run",
            RunState::Undone => "undone",
        }
    }

    fn parse(text: &str) -> RunState {
        match text {
            "planned" => RunState::Planned,
            "awaiting_approval" => RunState::AwaitingApproval,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "dry_run" => RunState::DryRun,
            "undone" => RunState::Undone,
            _ => RunState::Failed,
        }
    }
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// `<alert id>:<playbook id>:<action index>`.
    pub id: String,
    pub alert_id: String,
    pub playbook_id: String,
    pub action_index: u32,
    pub action: String,
    pub mode: String,
    pub state: RunState,
    /// `None` when the action could not be planned (see `error`).
    pub plan: Option<PlannedAction>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: u32,
    /// What an undo needs (the previous security groups); not shown to clients.
    #[serde(skip)]
    pub undo_data: Option<Value>,
    /// Whether this run can be undone now.
    pub undoable: bool,
    /// Who approved or undid it, when someone did.
    pub actor: Option<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

pub fn run_id(alert_id: &str, playbook_id: &str, index: usize) -> String {
    format!("{alert_id}:{playbook_id}:{index}")
}

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("respond.sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

pub struct RunStore {
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    playbook_id TEXT NOT NULL,
    action_index INTEGER NOT NULL,
    action TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,
    plan TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    undo_data TEXT,
    actor TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_alert ON runs (alert_id);
";

const COLUMNS: &str = "id, alert_id, playbook_id, action_index, action, mode, state, plan, result, error, attempts, undo_data, actor, created, updated";

impl RunStore {
    /// Opens (creating) `path`, private to its user, in WAL mode with full syncs: a run's
    /// record is what stops a replay from acting twice.
    pub fn open(path: &Path) -> Result<RunStore, RunsError> {
        if !path.exists() {
            create_private(path).map_err(|source| RunsError::Open {
                path: path.display().to_string(),
                source,
            })?;
        }
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(RunStore { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is atomic).
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Inserts `run` unless its id is known; true when inserted.
    pub fn insert(&self, run: &Run) -> Result<bool, RunsError> {
        let inserted = self.db().execute(
            &format!("INSERT OR IGNORE INTO runs ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"),
            params![
                run.id,
                run.alert_id,
                run.playbook_id,
                run.action_index,
                run.action,
                run.mode,
                run.state.as_str(),
                run.plan.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                run.result.as_ref().map(Value::to_string),
                run.error,
                run.attempts,
                run.undo_data.as_ref().map(Value::to_string),
                run.actor,
                run.created.to_rfc3339(),
                run.updated.to_rfc3339(),
            ],
        )?;
        Ok(inserted == 1)
    }

    /// Writes the mutable part of `run` (state, result, error, attempts, undo data, actor).
    pub fn update(&self, run: &Run) -> Result<(), RunsError> {
        self.db().execute(
            "UPDATE runs SET state = ?2, result = ?3, error = ?4, attempts = ?5, undo_data = ?6, actor = ?7, updated = ?8 WHERE id = ?1",
            params![
                run.id,
                run.state.as_str(),
                run.result.as_ref().map(Value::to_string),
                run.error,
                run.attempts,
                run.undo_data.as_ref().map(Value::to_string),
                run.actor,
                run.updated.to_rfc3339(),
            ],
        )?;
        Ok(())
    }

    /// Moves a run from `from` to `to` only if it is still in `from`: two analysts approving
    /// at once, or an approval racing an undo, act once. True when this call moved it.
    pub fn transition(
        &self,
        id: &str,
        from: RunState,
        to: RunState,
        actor: &str,
    ) -> Result<bool, RunsError> {
        let changed = self.db().execute(
            "UPDATE runs SET state = ?3, actor = ?4, updated = ?5 WHERE id = ?1 AND state = ?2",
            params![
                id,
                from.as_str(),
                to.as_str(),
                actor,
                Utc::now().to_rfc3339()
            ],
        )?;
        Ok(changed == 1)
    }

    pub fn get(&self, id: &str) -> Result<Option<Run>, RunsError> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                read_run,
            )
            .optional()?)
    }

    /// The runs of an alert, in playbook and action order.
    pub fn for_alert(&self, alert_id: &str) -> Result<Vec<Run>, RunsError> {
        let db = self.db();
        let mut statement = db.prepare(&format!(
            "SELECT {COLUMNS} FROM runs WHERE alert_id = ?1 ORDER BY playbook_id, action_index"
        ))?;
        let runs = statement
            .query_map([alert_id], read_run)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs)
    }
}

fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let time = |text: String| {
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let plan: Option<String> = row.get(7)?;
    Ok(Run {
        id: row.get(0)?,
        alert_id: row.get(1)?,
        playbook_id: row.get(2)?,
        action_index: row.get(3)?,
        action: row.get(4)?,
        mode: row.get(5)?,
        state: RunState::parse(&row.get::<_, String>(6)?),
        plan: plan.and_then(|p| serde_json::from_str(&p).ok()),
        result: json(row.get(8)?),
        error: row.get(9)?,
        attempts: row.get(10)?,
        undo_data: json(row.get(11)?),
        undoable: false,
        actor: row.get(12)?,
        created: time(row.get(13)?),
        updated: time(row.get(14)?),
    })
}

/// Creates an empty file readable by its owner only (SQLite's `-wal` and `-shm` files take
/// the main file's mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}
