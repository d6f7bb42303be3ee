//! Notification: alerts from the bus into the dispatcher's groups, and the groups' due
//! notifications into the outbox.
//!
//! Two loops. The stage reads `vigil.alerts` and hands each alert to
//! [`Dispatcher::accept`], which routes, silences and groups it durably; only then is the
//! offset committed, so a crash replays alerts rather than lose them (the dispatcher takes
//! a known alert again harmlessly). The dispatch timer asks the dispatcher what is due,
//! writes it to the outbox and only then tells the dispatcher it was emitted, so a crash in
//! between re-emits the same notification ids, which the outbox ignores. Sending is the
//! delivery tasks' work ([`super::deliver`]), one per receiver.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use vigil_bus::{Bus, BusError, Delivery};
use vigil_event::{Alert, AlertId};
use vigil_notify::{AlertState, AlertStates, DeliveryState, Dispatcher, Outbox};
use vigil_store::{AlertStatus, Store};

use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::deliver::blocking;
use super::{decode_message, json_from_bus, retry, stopping, Shutdown};

const GROUP: &str = "notify";
const BATCH: usize = 100;

/// How often the dispatch timer asks for due notifications: the shortest wait a group can
/// have beyond its own `group_wait`.
pub const DISPATCH_EVERY: Duration = Duration::from_secs(1);

/// Delivered rows and old dead letters are pruned this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The outbox's gauge (pending and dead notifications) is refreshed this often.
const COUNT_EVERY: Duration = Duration::from_secs(15);

pub async fn run_notifier(
    bus: Arc<dyn Bus>,
    topic: String,
    dispatcher: Arc<Dispatcher>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let settings = StageSettings {
        topic,
        group: GROUP,
        batch: BATCH,
    };
    run_stage(bus, settings, NotifyStage { dispatcher }, shutdown).await
}

/// The alerts' consumer: a batch is committed once the dispatcher has taken every alert of
/// it, which is durable when `accept` returns.
struct NotifyStage {
    dispatcher: Arc<Dispatcher>,
}

impl Stage for NotifyStage {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        let alerts: Arc<Vec<Alert>> = Arc::new(
            batch
                .iter()
                .filter_map(|delivery| decode_message(delivery, GROUP, json_from_bus::<Alert>))
                .collect(),
        );
        let accepted = retry!("grouping alerts for notification", shutdown, {
            let (dispatcher, alerts) = (self.dispatcher.clone(), alerts.clone());
            match tokio::task::spawn_blocking(move || accept_all(&dispatcher, &alerts)).await {
                Ok(result) => result,
                Err(join) => Err(format!("grouping stopped: {join}")),
            }
        });
        match accepted {
            Some(()) => Processed::All,
            None => Processed::Prefix(0),
        }
    }
}

/// Every alert into the dispatcher, counting what became of it per route. A replayed batch
/// is accepted again from its start: the dispatcher knows the alerts it holds.
fn accept_all(dispatcher: &Dispatcher, alerts: &[Alert]) -> Result<(), String> {
    for alert in alerts {
        let accepted = dispatcher
            .accept(alert, Utc::now())
            .map_err(|e| e.to_string())?;
        for route in accepted.grouped {
            metrics::counter!("vigil_notifications_grouped_total", "route" => route).increment(1);
        }
        for route in accepted.silenced {
            metrics::counter!("vigil_notifications_silenced_total", "route" => route).increment(1);
        }
        for route in accepted.inhibited {
            metrics::counter!("vigil_notifications_inhibited_total", "route" => route).increment(1);
        }
    }
    Ok(())
}

/// The dispatch timer: due notifications into the outbox, every [`DISPATCH_EVERY`], until
/// shutdown. A failed round is logged and the next one tries again: nothing is emitted that
/// the outbox did not take.
pub async fn run_dispatch(
    dispatcher: Arc<Dispatcher>,
    outbox: Arc<Outbox>,
    states: Arc<dyn AlertStates>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(DISPATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    let mut last_count: Option<Instant> = None;
    let mut stop = shutdown.clone();
    while !stopping(&shutdown) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => continue,
        }
        let prune = last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        let count = last_count.is_none_or(|at| at.elapsed() >= COUNT_EVERY);
        let round = {
            let (dispatcher, states) = (dispatcher.clone(), states.clone());
            blocking(&outbox, move |outbox| {
                Ok(dispatch_once(
                    &dispatcher,
                    outbox,
                    states.as_ref(),
                    prune,
                    count,
                ))
            })
            .await
        };
        match round.and_then(|round| round) {
            Ok(()) => {
                if prune {
                    last_prune = Some(Instant::now());
                }
                if count {
                    last_count = Some(Instant::now());
                }
            }
            Err(error) => {
                metrics::counter!("vigil_notify_dispatch_errors_total").increment(1);
                tracing::error!(%error, "dispatching notifications failed; trying again");
            }
        }
    }
}

/// One round of the timer: due → outbox (durable) → emitted.
fn dispatch_once(
    dispatcher: &Dispatcher,
    outbox: &Outbox,
    states: &dyn AlertStates,
    prune: bool,
    count: bool,
) -> Result<(), String> {
    let now = Utc::now();
    let due = dispatcher.due(now, states).map_err(|e| e.to_string())?;
    if !due.is_empty() {
        outbox.enqueue(&due, now).map_err(|e| e.to_string())?;
        for notification in &due {
            metrics::counter!("vigil_notifications_enqueued_total", "receiver" => notification.receiver.clone())
                .increment(1);
        }
        let ids: Vec<String> = due.into_iter().map(|n| n.id).collect();
        dispatcher.emitted(&ids).map_err(|e| e.to_string())?;
    }
    if prune {
        let pruned = outbox.prune(now).map_err(|e| e.to_string())?;
        if pruned > 0 {
            tracing::info!(pruned, "pruned old notifications from the outbox");
        }
    }
    if count {
        let counts = outbox.counts().map_err(|e| e.to_string())?;
        for state in [DeliveryState::Pending, DeliveryState::Dead] {
            let count = counts.get(&state).copied().unwrap_or(0);
            metrics::gauge!("vigil_notification_outbox", "state" => state.as_str())
                .set(count as f64);
        }
    }
    Ok(())
}

/// What triage says of alerts, read from the store this process indexes into.
pub struct StoreAlertStates(pub Arc<Store>);

impl AlertStates for StoreAlertStates {
    fn states(&self, ids: &[AlertId]) -> BTreeMap<AlertId, AlertState> {
        let keys: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let mut found = match self.0.alert_states(&keys) {
            Ok(found) => found,
            Err(error) => {
                // Without states, groups keep firing and are not resolved: late, not lost.
                tracing::warn!(%error, "cannot read alert states for notifications");
                return BTreeMap::new();
            }
        };
        ids.iter()
            .zip(keys)
            .filter_map(|(id, key)| {
                let state = match found.remove(&key)?.status {
                    AlertStatus::Open => AlertState::Open,
                    AlertStatus::Acknowledged => AlertState::Acknowledged,
                    AlertStatus::Closed => AlertState::Closed,
                };
                Some((*id, state))
            })
            .collect()
    }
}

/// A process that does not index knows nothing of triage: its groups only fire.
pub struct NoAlertStates;

impl AlertStates for NoAlertStates {
    fn states(&self, _ids: &[AlertId]) -> BTreeMap<AlertId, AlertState> {
        BTreeMap::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vigil_event::{EventId, Level, LogSource, Source};
    use vigil_store::AlertChange;

    use super::*;

    fn alert(key: &[u8]) -> Alert {
        let now = Utc::now();
        let event_ids = vec![EventId::derive("notify stage test", &[key])];
        Alert {
            id: Alert::derive_id("r", &event_ids),
            rule_id: "r".into(),
            rule_title: "t".into(),
            level: Level::High,
            tags: vec![],
            event_ids,
            time: now,
            detected: now,
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail".into(),
            },
            logsource: LogSource::default(),
            group: BTreeMap::new(),
            matched: Vec::new(),
            event_position: None,
        }
    }

    /// The dispatcher hears triage's word: acknowledged and closed alerts as such, others
    /// open; a process without the store says nothing.
    #[test]
    fn alert_states_come_from_triage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (open, acked, closed) = (alert(b"1"), alert(b"2"), alert(b"3"));
        store
            .index_alerts(&[open.clone(), acked.clone(), closed.clone()])
            .unwrap();
        store.commit().unwrap();
        let change = |status| AlertChange {
            status: Some(status),
            reason: (status == AlertStatus::Closed).then_some(vigil_store::CloseReason::Resolved),
            ..AlertChange::default()
        };
        store
            .update_alert(
                &acked.id.to_string(),
                &change(AlertStatus::Acknowledged),
                "ana",
            )
            .unwrap();
        store
            .update_alert(&closed.id.to_string(), &change(AlertStatus::Closed), "ana")
            .unwrap();
        let ids = [open.id, acked.id, closed.id];
        let states = StoreAlertStates(store).states(&ids);
        assert_eq!(states.get(&open.id), Some(&AlertState::Open));
        assert_eq!(states.get(&acked.id), Some(&AlertState::Acknowledged));
        assert_eq!(states.get(&closed.id), Some(&AlertState::Closed));
        assert!(NoAlertStates.states(&ids).is_empty());
    }
}
