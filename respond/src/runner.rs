//! The [`Responder`]: an alert in, its playbooks' runs planned, executed, held for approval
//! or recorded as a dry run; approvals and undos.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use vigil_event::{Alert, Event};
use vigil_retry::{sleep_or_stop, Backoff, BackoffPolicy};

use crate::actions::{self, Action};
use crate::playbook::{self, Mode, Playbook, PlaybookError};
use crate::runs::{run_id, Run, RunState, RunStore, RunsError};
use crate::RespondConfig;

/// The file runs are kept in, in the data directory.
pub const RUNS_FILE: &str = "respond.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error(transparent)]
    Runs(#[from] RunsError),
    #[error("no playbook run {0}")]
    NotFound(String),
    /// The run is not in a state that allows this (approving a run that does not wait for
    /// approval, undoing one that did not succeed).
    #[error("{0}")]
    Conflict(String),
    /// Shutdown began while an action was being retried; its run stays `running` and the
    /// replayed alert resumes it.
    #[error("interrupted by shutdown")]
    Interrupted,
}

struct Loaded {
    playbook: Playbook,
    actions: Vec<Arc<dyn Action>>,
}

pub struct Responder {
    playbooks: Vec<Loaded>,
    runs: RunStore,
    max_attempts: u32,
    backoff: BackoffPolicy,
}

impl Responder {
    /// The responder of `config`, with runs kept in `data_dir`; `None` when no playbook
    /// directory is configured.
    pub fn open(
        config: &RespondConfig,
        data_dir: &Path,
    ) -> Result<Option<Responder>, RespondError> {
        if config.playbooks.is_empty() {
            return Ok(None);
        }
        let playbooks = playbook::load_dirs(&config.playbooks)?;
        Ok(Some(Responder::new(
            playbooks,
            config,
            &data_dir.join(RUNS_FILE),
        )?))
    }

    /// A responder for `playbooks`, keeping runs in the SQLite file `runs`.
    pub fn new(
        playbooks: Vec<Playbook>,
        config: &RespondConfig,
        runs: &Path,
    ) -> Result<Responder, RespondError> {
        let playbooks = playbooks
            .into_iter()
            .map(|playbook| {
                let actions = actions::build_all(&playbook, config)?;
                Ok(Loaded { playbook, actions })
            })
            .collect::<Result<Vec<_>, PlaybookError>>()?;
        Ok(Responder {
            playbooks,
            runs: RunStore::open(runs)?,
            max_attempts: config.max_attempts.max(1),
            backoff: BackoffPolicy::new(
                Duration::from_millis(config.retry_base_ms),
                Duration::from_millis(config.retry_max_ms.max(config.retry_base_ms)),
            ),
        })
    }

    pub fn playbooks(&self) -> impl Iterator<Item = &Playbook> {
        self.playbooks.iter().map(|l| &l.playbook)
    }

    /// Whether any playbook answers `alert` (so its events are worth reading).
    pub fn wants(&self, alert: &Alert) -> bool {
        self.playbooks.iter().any(|l| l.playbook.matches(alert))
    }

    /// Answers `alert`: each action of each matching playbook gets its run, once. Gives the
    /// runs this call recorded or changed, in their final state, for the alert's history and
    /// the audit log. A replay finds its runs done and gives nothing.
    pub async fn respond(
        &self,
        alert: &Alert,
        events: &[Event],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<Run>, RespondError> {
        let mut changed = Vec::new();
        for loaded in self.playbooks.iter().filter(|l| l.playbook.matches(alert)) {
            let playbook = &loaded.playbook;
            for (index, action) in loaded.actions.iter().enumerate() {
                let id = run_id(&alert.id.to_string(), &playbook.id, index);
                let mut run = match self.runs.get(&id)? {
                    // Interrupted while executing: resume (actions are idempotent).
                    Some(run)
                        if run.state == RunState::Running && playbook.mode == Mode::Automatic =>
                    {
                        run
                    }
                    Some(_) => continue,
                    None => {
                        let run = self.plan(alert, events, playbook, index, action.as_ref());
                        self.runs.insert(&run)?;
                        metrics::counter!("vigil_playbook_runs_total", "action" => action.name(), "state" => run.state.as_str())
                            .increment(1);
                        run
                    }
                };
                if run.state == RunState::Running {
                    let actor = format!("playbook:{}", playbook.id);
                    self.execute(&mut run, action.as_ref(), &actor, shutdown)
                        .await?;
                }
                changed.push(self.with_undoable(run));
            }
        }
        Ok(changed)
    }

    fn plan(
        &self,
        alert: &Alert,
        events: &[Event],
        playbook: &Playbook,
        index: usize,
        action: &dyn Action,
    ) -> Run {
        let now = Utc::now();
        let (state, plan, error) = match action.plan(alert, events) {
            Ok(plan) => {
                let state = match playbook.mode {
                    Mode::Automatic => RunState::Running,
                    Mode::Approval => RunState::AwaitingApproval,
                    Mode::DryRun => RunState::DryRun,
                };
                (state, Some(plan), None)
            }
            Err(error) => (RunState::Failed, None, Some(error.to_string())),
        };
        Run {
            id: run_id(&alert.id.to_string(), &playbook.id, index),
            alert_id: alert.id.to_string(),
            playbook_id: playbook.id.clone(),
            action_index: index as u32,
            action: action.name().to_owned(),
            mode: playbook.mode.as_str().to_owned(),
            state,
            plan,
            result: None,
            error,
            attempts: 0,
            undo_data: None,
            undoable: false,
            actor: None,
            created: now,
            updated: now,
        }
    }

    /// Executes a `running` run, retrying transient failures with backoff up to the bound,
    /// and records the outcome.
    async fn execute(
        &self,
        run: &mut Run,
        action: &dyn Action,
        actor: &str,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), RespondError> {
        let Some(plan) = run.plan.clone() else {
            run.state = RunState::Failed;
            run.error = Some("the run has no plan".into());
            self.runs.update(run)?;
            return Ok(());
        };
        let mut backoff = Backoff::new(self.backoff);
        loop {
            run.attempts += 1;
            let started = Instant::now();
            let outcome = action.execute(&plan).await;
            metrics::histogram!("vigil_playbook_action_seconds", "action" => action.name())
                .record(started.elapsed().as_secs_f64());
            run.updated = Utc::now();
            match outcome {
                Ok(executed) => {
                    run.state = RunState::Succeeded;
                    run.result = Some(executed.result);
                    run.error = None;
                    // A resumed run keeps what the first execution recorded for its undo.
                    if executed.undo.is_some() {
                        run.undo_data = executed.undo;
                    }
                    metrics::counter!("vigil_playbook_actions_sent_total", "action" => action.name()).increment(1);
                }
                Err(error) if error.is_transient() && run.attempts < self.max_attempts => {
                    run.error = Some(error.to_string());
                    self.runs.update(run)?;
                    metrics::counter!("vigil_playbook_action_retries_total", "action" => action.name()).increment(1);
                    tracing::warn!(run = %run.id, %error, attempts = run.attempts, "a playbook action failed; retrying");
                    if !sleep_or_stop(backoff.next_delay(), shutdown).await {
                        return Err(RespondError::Interrupted);
                    }
                    continue;
                }
                Err(error) => {
                    run.state = RunState::Failed;
                    run.error = Some(error.to_string());
                    metrics::counter!("vigil_playbook_actions_failed_total", "action" => action.name()).increment(1);
                    tracing::error!(run = %run.id, %error, attempts = run.attempts, actor, "a playbook action failed");
                }
            }
            self.runs.update(run)?;
            return Ok(());
        }
    }

    fn action_of(&self, run: &Run) -> Option<&Arc<dyn Action>> {
        self.playbooks
            .iter()
            .find(|l| l.playbook.id == run.playbook_id)
            .and_then(|l| l.actions.get(run.action_index as usize))
            .filter(|a| a.name() == run.action)
    }

    fn with_undoable(&self, mut run: Run) -> Run {
        run.undoable =
            run.state == RunState::Succeeded && self.action_of(&run).is_some_and(|a| a.undoable());
        run
    }

    pub fn run(&self, id: &str) -> Result<Run, RespondError> {
        let run = self
            .runs
            .get(id)?
            .ok_or_else(|| RespondError::NotFound(id.to_owned()))?;
        Ok(self.with_undoable(run))
    }

    pub fn runs_for_alert(&self, alert_id: &str) -> Result<Vec<Run>, RespondError> {
        Ok(self
            .runs
            .for_alert(alert_id)?
            .into_iter()
            .map(|run| self.with_undoable(run))
            .collect())
    }

    /// Executes a run that waits for approval, on behalf of `actor`. Only one approval acts.
    pub async fn approve(&self, id: &str, actor: &str) -> Result<Run, RespondError> {
        let run = self.run(id)?;
        let action = self
            .action_of(&run)
            .ok_or_else(|| {
                RespondError::Conflict(format!("playbook {} is no longer loaded", run.playbook_id))
            })?
            .clone();
        if !self
            .runs
            .transition(id, RunState::AwaitingApproval, RunState::Running, actor)?
        {
            return Err(RespondError::Conflict(format!(
                "the run is {}, not awaiting approval",
                run.state.as_str()
            )));
        }
        let mut run = self.run(id)?;
        let (_keep, never) = watch::channel(false);
        self.execute(&mut run, action.as_ref(), actor, &never)
            .await?;
        Ok(self.with_undoable(run))
    }

    /// Reverses a run that succeeded, on behalf of `actor`, where its action allows it.
    pub async fn undo(&self, id: &str, actor: &str) -> Result<Run, RespondError> {
        let run = self.run(id)?;
        let action = self
            .action_of(&run)
            .filter(|a| a.undoable())
            .ok_or_else(|| RespondError::Conflict(format!("{} cannot be undone", run.action)))?
            .clone();
        if !self
            .runs
            .transition(id, RunState::Succeeded, RunState::Running, actor)?
        {
            return Err(RespondError::Conflict(format!(
                "the run is {}; only a run that succeeded can be undone",
                run.state.as_str()
            )));
        }
        let mut run = self.run(id)?;
        let plan = run
            .plan
            .clone()
            .ok_or_else(|| RespondError::Conflict("the run has no plan".into()))?;
        let mut backoff = Backoff::new(self.backoff);
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match action.undo(&plan, run.undo_data.as_ref()).await {
                Err(error) if error.is_transient() && tries < self.max_attempts => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => break other,
            }
        };
        run.updated = Utc::now();
        match outcome {
            Ok(result) => {
                run.state = RunState::Undone;
                run.result = Some(serde_json::json!({ "executed": run.result, "undone": result }));
                run.error = None;
            }
            Err(error) => {
                // Still in force: it stays succeeded, and the error says the undo failed.
                run.state = RunState::Succeeded;
                run.error = Some(format!("undo failed: {error}"));
            }
        }
        self.runs.update(&run)?;
        Ok(self.with_undoable(run))
    }
}
