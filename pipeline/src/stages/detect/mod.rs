//! Detection: events in, Sigma matches out as alerts.
//!
//! Correlation state belongs to a partition of the events topic, since events are keyed by
//! source and a source's events stay in one partition. Each partition gets its own
//! [`Detector`], saved through the bus after each batch and before the offsets are committed,
//! so whichever process owns the partition next (this one after a restart, another after a
//! Kafka rebalance) resumes with the windows as they were at the last commit, or slightly
//! later, which at worst counts a replayed event twice: at least once, never lost.
//!
//! Correlations therefore combine events within one partition. With the embedded bus there is
//! one; with Kafka, a correlation across sources needs those sources in the same partition.
//!
//! Event times are the sender's. An event too late for the live correlation windows (see
//! [`vigil_detect::Detector`]) is still matched by every rule, correlated only among other late
//! events, counted in `vigil_detect_late_events_total{source}` and logged at most once a
//! minute. Groups evicted because a correlation held `detect.max_groups` are counted in
//! `vigil_detect_correlation_evictions_total{rule}` and logged the same way.
//!
//! The rules may change while the stage runs (see `rule_runtime`): between two batches, never
//! during one, the stage takes up a new generation of them, moving each partition's windows
//! over by snapshot and restore, which keeps those of the correlations that did not change.

mod config;
mod partitions;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bus::{Bus, BusError, Delivery, Topics};
use vigil_detect::{Engine, Limits};

pub use self::config::DetectConfig;
use self::partitions::{detect_batch, to_messages, BatchOutcome, PartitionDetectors};
use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::{retry, Shutdown};

pub const GROUP: &str = "detect";
const BATCH: usize = 1000;
/// Late events and evicted groups are logged at most this often (and counted always), so a
/// flood of them cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Logs a summary of counts at most once per [`LOG_EVERY`], adding up what came between.
struct Throttled {
    what: &'static str,
    pending: BTreeMap<String, u64>,
    last: Option<Instant>,
}

impl Throttled {
    fn new(what: &'static str) -> Self {
        Throttled {
            what,
            pending: BTreeMap::new(),
            last: None,
        }
    }

    fn add(&mut self, counts: &BTreeMap<String, u64>) {
        if counts.is_empty() {
            return;
        }
        tracing::debug!(counts = ?counts, "{}", self.what);
        for (name, count) in counts {
            *self.pending.entry(name.clone()).or_default() += count;
        }
        if self.last.is_none_or(|last| last.elapsed() >= LOG_EVERY) {
            let total: u64 = self.pending.values().sum();
            tracing::warn!(total, counts = ?self.pending, "{}", self.what);
            self.pending.clear();
            self.last = Some(Instant::now());
        }
    }
}

/// One generation of rules as detection runs them.
#[derive(Debug, Clone)]
pub struct ActiveRules {
    pub generation: u64,
    pub engine: Engine,
    /// Rules and correlations in `engine` only to feed correlations: their own matches are
    /// not reported (disabled at runtime, or building blocks of a disabled correlation).
    pub suppressed: Arc<HashSet<String>>,
}

/// Where detection gets its rules, asked between batches.
pub trait RuleFeed: Send + Sync + 'static {
    /// The generation of the rules now current; cheap, asked before every batch.
    fn generation(&self) -> u64;
    fn current(&self) -> ActiveRules;
}

/// Rules that never change.
struct FixedRules(ActiveRules);

impl RuleFeed for FixedRules {
    fn generation(&self) -> u64 {
        self.0.generation
    }

    fn current(&self) -> ActiveRules {
        self.0.clone()
    }
}

/// Detection as a [`Stage`]: each batch's alerts and quarantined records are published, then
/// the correlation state of the partitions it changed is saved, and only then are its offsets
/// committed.
struct DetectStage {
    bus: Arc<dyn Bus>,
    topics: Topics,
    rules: Arc<dyn RuleFeed>,
    /// Taken while a batch is evaluated on a blocking thread.
    detectors: Option<PartitionDetectors>,
    /// Partitions whose correlation state changed since it was last saved.
    unsaved: BTreeSet<u32>,
    /// What the batches since the last commit did, counted once it is committed.
    uncounted: Vec<BatchOutcome>,
    late_log: Throttled,
    eviction_log: Throttled,
}

/// Detection with rules that never change.
pub async fn run_detection(
    bus: Arc<dyn Bus>,
    topics: Topics,
    engine: Engine,
    limits: Limits,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let rules = FixedRules(ActiveRules {
        generation: 0,
        engine,
        suppressed: Arc::default(),
    });
    run_detection_with(bus, topics, Arc::new(rules), limits, shutdown).await
}

/// Detection with the rules `rules` holds, taking up each new generation between batches.
pub async fn run_detection_with(
    bus: Arc<dyn Bus>,
    topics: Topics,
    rules: Arc<dyn RuleFeed>,
    limits: Limits,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let stage = DetectStage {
        detectors: Some(PartitionDetectors::new(
            rules.current(),
            limits,
            &topics.events,
        )),
        rules,
        bus: bus.clone(),
        topics: topics.clone(),
        unsaved: BTreeSet::new(),
        uncounted: Vec::new(),
        late_log: Throttled::new(
            "events arrived too late for the live correlation windows; \
             they were matched by rules and correlated only among late events",
        ),
        eviction_log: Throttled::new(
            "correlation groups evicted at detect.max_groups (or max_late_groups), by rule id",
        ),
    };
    let settings = StageSettings {
        topic: topics.events,
        group: GROUP,
        batch: BATCH,
    };
    run_stage(bus, settings, stage, shutdown).await
}

impl Stage for DetectStage {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        let Some(mut detectors) = self.detectors.take() else {
            unreachable!("the detectors are put back after every batch");
        };
        if self.rules.generation() != detectors.generation() {
            detectors.take_up(self.rules.current());
        }
        for partition in detectors.stale(batch) {
            let state = if detectors.correlating {
                let key = detectors.state_key(partition);
                let Some(state) = retry!(
                    "loading correlation state",
                    shutdown,
                    self.bus.load_state(&key).await
                ) else {
                    self.detectors = Some(detectors);
                    return Processed::Stopped;
                };
                state
            } else {
                None
            };
            detectors.install(partition, state);
        }
        let events_topic = self.topics.events.clone();
        let batch = batch.to_vec();
        let evaluated = tokio::task::spawn_blocking(move || {
            let outcome = detect_batch(&mut detectors, &events_topic, &batch);
            (detectors, outcome)
        })
        .await;
        let (detectors, outcome) = match evaluated {
            Ok(evaluated) => evaluated,
            // Detection panicked: the stage cannot go on without its state, and the batch is
            // replayed by whoever runs detection next.
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        self.detectors = Some(detectors);

        let quarantine = to_messages(&outcome.quarantined, |q| &q.source.name);
        let alerts = to_messages(&outcome.alerts, |a| &a.rule_id);
        if !quarantine.is_empty()
            && retry!(
                "quarantining unreadable events",
                shutdown,
                self.bus
                    .publish(&self.topics.quarantine, quarantine.clone())
                    .await
            )
            .is_none()
        {
            return Processed::Stopped;
        }
        if !alerts.is_empty()
            && retry!(
                "publishing alerts",
                shutdown,
                self.bus.publish(&self.topics.alerts, alerts.clone()).await
            )
            .is_none()
        {
            return Processed::Stopped;
        }
        self.unsaved.extend(outcome.touched.iter().copied());
        self.uncounted.push(outcome);
        Processed::All
    }

    /// Saves the correlation state of the partitions the batches changed. State that includes
    /// a batch whose offsets are not yet committed only means a replayed event counts twice
    /// in a window, whereas offsets ahead of the state would lose its contribution.
    async fn make_durable(&mut self, shutdown: &Shutdown) -> bool {
        let Some(detectors) = &self.detectors else {
            return false;
        };
        while let Some(&partition) = self.unsaved.first() {
            let key = detectors.state_key(partition);
            if let Some(state) = detectors.snapshot(partition) {
                if retry!(
                    "saving correlation state",
                    shutdown,
                    self.bus.save_state(&key, state.clone()).await
                )
                .is_none()
                {
                    return false;
                }
            }
            self.unsaved.remove(&partition);
        }
        true
    }

    fn committed(&mut self) {
        for outcome in std::mem::take(&mut self.uncounted) {
            count(&outcome);
            self.late_log.add(&outcome.late);
            self.eviction_log.add(&outcome.evicted);
        }
    }
}

/// Counts what one committed batch did.
fn count(outcome: &BatchOutcome) {
    metrics::counter!("vigil_events_detected_total").increment(outcome.events);
    for alert in &outcome.alerts {
        metrics::counter!("vigil_alerts_raised_total", "level" => alert.level.as_str())
            .increment(1);
    }
    if !outcome.quarantined.is_empty() {
        metrics::counter!("vigil_quarantined_total", "source" => "bus", "reason" => "unreadable")
            .increment(outcome.quarantined.len() as u64);
    }
    for (source, &count) in &outcome.late {
        metrics::counter!("vigil_detect_late_events_total", "source" => source.clone())
            .increment(count);
    }
    for (rule, &count) in &outcome.evicted {
        metrics::counter!("vigil_detect_correlation_evictions_total", "rule" => rule.clone())
            .increment(count);
    }
}
