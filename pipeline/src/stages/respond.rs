//! Response: alerts from the bus to the playbooks that answer them (consumer group
//! "respond").
//!
//! The stage runs in the process with the index role, because a playbook acts on the alert's
//! events (the CloudTrail call that created a key) and those are read from the store by the
//! alert's `event_ids`. Detection publishes an alert after its events, but the indexer may not
//! have committed them yet, so the stage waits (with backoff, bounded) for the alert and its
//! events to be searchable before planning.
//!
//! Offsets are committed after the responder recorded its runs: a crash replays the alert,
//! and the runs' keys (alert, playbook, action) keep it from acting twice. Each run's outcome
//! goes into the alert's history and the audit log, under `playbook:<id>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vigil_access::{AccessDb, AuditRecord, Outcome};
use vigil_bus::{Bus, BusError, Delivery};
use vigil_event::{Alert, Event};
use vigil_respond::{RespondError, Responder, Run, RunState};
use vigil_retry::{sleep_or_stop, Backoff, BackoffPolicy};
use vigil_store::{AlertChange, Store, StoreError};
use vigil_ui::playbook_runs::{history_note, RunError, RunFuture};
use vigil_ui::{PlaybookRuns, RunView};

use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::{decode_message, json_from_bus, Shutdown};

pub const GROUP: &str = "respond";
const BATCH: usize = 20;

/// How long the stage waits for an alert's events to be indexed before planning without the
/// missing ones (a plan that needs them then fails and says so).
const EVENTS_WAIT: BackoffPolicy =
    BackoffPolicy::new(Duration::from_millis(200), Duration::from_secs(5));
const EVENTS_ATTEMPTS: u32 = 12;
/// How many times (a quarter second apart) a run's history note waits for its alert to be
/// indexed.
const HISTORY_ATTEMPTS: u32 = 40;

pub async fn run_responder(
    bus: Arc<dyn Bus>,
    topic: String,
    responder: Arc<Responder>,
    store: Arc<Store>,
    access: Arc<AccessDb>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let settings = StageSettings {
        topic,
        group: GROUP,
        batch: BATCH,
    };
    let stage = RespondStage {
        responder,
        store,
        access,
    };
    run_stage(bus, settings, stage, shutdown).await
}

struct RespondStage {
    responder: Arc<Responder>,
    store: Arc<Store>,
    access: Arc<AccessDb>,
}

impl Stage for RespondStage {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        for (done, delivery) in batch.iter().enumerate() {
            let Some(alert) = decode_message(delivery, GROUP, json_from_bus::<Alert>) else {
                continue;
            };
            if !self.responder.wants(&alert) {
                continue;
            }
            let Some(events) = self.events_of(&alert, shutdown).await else {
                return Processed::Prefix(done);
            };
            match self.responder.respond(&alert, &events, shutdown).await {
                Ok(runs) => {
                    for run in &runs {
                        record(&self.store, &self.access, run).await;
                    }
                }
                Err(RespondError::Interrupted) => return Processed::Prefix(done),
                Err(error) => {
                    // The runs database failing is not the alert's fault; holding the stream
                    // until it returns keeps every later alert's response too.
                    tracing::error!(%error, alert = %alert.id, "responding to an alert failed; it will be replayed");
                    return Processed::Prefix(done);
                }
            }
        }
        Processed::All
    }
}

impl RespondStage {
    /// The alert's events once the store has them all, or what it has after the bounded
    /// wait; `None` when shutdown began meanwhile.
    async fn events_of(&self, alert: &Alert, shutdown: &Shutdown) -> Option<Vec<Event>> {
        let mut backoff = Backoff::new(EVENTS_WAIT);
        loop {
            let store = self.store.clone();
            let (ids, until) = (alert.event_ids.clone(), alert.time);
            let found = tokio::task::spawn_blocking(move || store.events_by_id(&ids, until))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match found {
                Ok(events) if events.len() >= alert.event_ids.len() => return Some(events),
                Ok(events) if backoff.failures() >= EVENTS_ATTEMPTS => {
                    tracing::warn!(alert = %alert.id, found = events.len(), wanted = alert.event_ids.len(), "planning with the events indexed so far");
                    return Some(events);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reading an alert's events failed; retrying"),
            }
            if !sleep_or_stop(backoff.next_delay(), shutdown).await {
                return None;
            }
        }
    }
}

/// The run as the UI shows it.
pub fn run_view(run: &Run) -> RunView {
    RunView {
        id: run.id.clone(),
        alert_id: run.alert_id.clone(),
        playbook_id: run.playbook_id.clone(),
        action: run.action.clone(),
        mode: run.mode.clone(),
        state: run.state.as_str().to_owned(),
        summary: run.plan.as_ref().map(|p| p.summary.clone()),
        plan: run.plan.as_ref().map(|p| p.params.clone()),
        result: run.result.clone(),
        error: run.error.clone(),
        attempts: run.attempts,
        undoable: run.undoable,
        actor: run.actor.clone(),
        updated: run.updated,
    }
}

/// Writes what happened to `run` into its alert's history and the audit log, under the
/// playbook's name (approvals and undos are recorded by the UI, under the user's).
async fn record(store: &Arc<Store>, access: &Arc<AccessDb>, run: &Run) {
    let actor = format!("playbook:{}", run.playbook_id);
    let what = match run.state {
        RunState::DryRun => "dry run",
        RunState::AwaitingApproval => "awaiting approval",
        _ => "run",
    };
    let note = history_note(&run_view(run), what);
    let audit = AuditRecord {
        actor: actor.clone(),
        action: "playbook.run".into(),
        outcome: if run.state == RunState::Failed {
            Outcome::Failure
        } else {
            Outcome::Success
        },
        target: Some(run.id.clone()),
        client_address: None,
        reason: run.error.clone(),
        detail: json!({
            "alert": run.alert_id,
            "playbook": run.playbook_id,
            "action": run.action,
            "mode": run.mode,
            "state": run.state.as_str(),
            "plan": run.plan.as_ref().map(|p| &p.params),
        }),
    };
    let (store, access, alert) = (store.clone(), access.clone(), run.alert_id.clone());
    let written = tokio::task::spawn_blocking(move || {
        if let Err(error) = access.audit(audit) {
            tracing::error!(%error, "cannot write the audit log");
        }
        let change = AlertChange {
            note: Some(note),
            ..AlertChange::default()
        };
        // The indexer takes the alert from the same topic; it may not have committed it yet.
        for attempt in 1..=HISTORY_ATTEMPTS {
            match store.update_alert(&alert, &change, &actor) {
                Err(StoreError::NotFound { .. }) if attempt < HISTORY_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "cannot record a playbook run in the alert's history");
                    break;
                }
            }
        }
    })
    .await;
    if let Err(error) = written {
        tracing::error!(%error, "recording a playbook run failed");
    }
}

/// The responder's runs for the UI.
pub struct ResponderRuns {
    pub responder: Arc<Responder>,
}

fn ui_error(error: RespondError) -> RunError {
    match error {
        RespondError::NotFound(id) => RunError::NotFound(format!("no playbook run {id}")),
        RespondError::Conflict(message) => RunError::Conflict(message),
        other => {
            tracing::error!(error = %other, "a playbook run request failed");
            RunError::Failed("the run could not be changed; see Vigil's log".into())
        }
    }
}

impl PlaybookRuns for ResponderRuns {
    fn runs(&self, alert_id: &str) -> Result<Vec<RunView>, String> {
        self.responder
            .runs_for_alert(alert_id)
            .map(|runs| runs.iter().map(run_view).collect())
            .map_err(|e| e.to_string())
    }

    fn approve<'a>(&'a self, run_id: &'a str, actor: &'a str) -> RunFuture<'a> {
        let future: Pin<Box<dyn Future<Output = _> + Send + 'a>> = Box::pin(async move {
            self.responder
                .approve(run_id, actor)
                .await
                .map(|run| run_view(&run))
                .map_err(ui_error)
        });
        future
    }

    fn undo<'a>(&'a self, run_id: &'a str, actor: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            self.responder
                .undo(run_id, actor)
                .await
                .map(|run| run_view(&run))
                .map_err(ui_error)
        })
    }
}

/// Starts the respond stage when playbooks are configured: in the process with the index
/// role, which has the alerts' events. Elsewhere the playbooks are left to that process.
pub fn start(
    stages: &mut tokio::task::JoinSet<Result<(), crate::error::RunError>>,
    config: &crate::config::Config,
    bus: &Arc<dyn Bus>,
    store: Option<&Arc<Store>>,
    access: &Arc<AccessDb>,
    shutdown: &Shutdown,
) -> Result<Option<Arc<Responder>>, crate::error::RunError> {
    if config.respond.playbooks.is_empty() {
        return Ok(None);
    }
    let Some(store) = store else {
        tracing::info!("playbooks are run by the process with the index role");
        return Ok(None);
    };
    let Some(responder) = Responder::open(&config.respond, &config.data_dir)? else {
        return Ok(None);
    };
    let ids: Vec<&str> = responder.playbooks().map(|p| p.id.as_str()).collect();
    tracing::info!(playbooks = ?ids, "responding to alerts");
    let responder = Arc::new(responder);
    let stage = run_responder(
        bus.clone(),
        config.bus.topics.alerts.clone(),
        responder.clone(),
        store.clone(),
        access.clone(),
        shutdown.clone(),
    );
    stages.spawn(async move { Ok(stage.await?) });
    Ok(Some(responder))
}
