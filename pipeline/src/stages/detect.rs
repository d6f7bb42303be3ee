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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use vigil_bus::{Bus, Checkpoint, Delivery, Message, Topics};
use vigil_detect::{CorrelationMatch, CorrelationRule, Detection, Detector, Engine, Limits, Rule};
use vigil_event::{Alert, Event, Quarantined, Source};

use super::{record_lag, retry, stopping, Shutdown, POLL_WAIT};

pub const GROUP: &str = "detect";
const BATCH: usize = 1000;
/// Late events and evicted groups are logged at most this often (and counted always), so a
/// flood of them cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The `[detect]` settings: how late events may arrive for the live correlation windows, and
/// how many groups each correlation keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// How far, in milliseconds, one source's events may lag behind the newest event of any
    /// source and still be correlated in the live windows. An event further behind (or older
    /// than its own source's newest event by more than a correlation's timespan) is late: it
    /// is counted in `vigil_detect_late_events_total{source}`, rules still match it, and it
    /// is correlated only with other late events.
    pub max_stream_lag_ms: u64,
    /// Groups (distinct group-by values) kept per correlation rule. One-off groups are
    /// evicted before groups that are counting up; evictions are counted in
    /// `vigil_detect_correlation_evictions_total{rule}`.
    pub max_groups: usize,
    /// Groups kept per correlation rule for late events; 0 drops late events from
    /// correlations (they still match rules).
    pub max_late_groups: usize,
}

/// The largest `max_stream_lag_ms`: a lagging source keeps windows open this long at most.
const MAX_STREAM_LAG_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// The largest `max_groups` and `max_late_groups`, so a typo cannot let state grow unbounded.
const MAX_GROUPS: usize = 1_000_000;

impl Default for DetectConfig {
    fn default() -> Self {
        let limits = Limits::default();
        DetectConfig {
            max_stream_lag_ms: u64::try_from(limits.max_stream_lag).unwrap_or(0),
            max_groups: limits.max_groups,
            max_late_groups: limits.max_late_groups,
        }
    }
}

impl DetectConfig {
    /// The detector's limits, or a message naming the setting that is out of range.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.max_stream_lag_ms > MAX_STREAM_LAG_MS {
            return Err(format!(
                "detect.max_stream_lag_ms is {}; at most {MAX_STREAM_LAG_MS} (30 days)",
                self.max_stream_lag_ms
            ));
        }
        if !(1..=MAX_GROUPS).contains(&self.max_groups) {
            return Err(format!(
                "detect.max_groups is {}; use 1 to {MAX_GROUPS}",
                self.max_groups
            ));
        }
        if self.max_late_groups > MAX_GROUPS {
            return Err(format!(
                "detect.max_late_groups is {}; use 0 to {MAX_GROUPS}",
                self.max_late_groups
            ));
        }
        Ok(Limits {
            max_stream_lag: i64::try_from(self.max_stream_lag_ms).unwrap_or(i64::MAX),
            max_groups: self.max_groups,
            max_late_groups: self.max_late_groups,
            ..Limits::default()
        })
    }
}

/// What detection made of one batch of deliveries.
#[derive(Default)]
struct BatchOutcome {
    alerts: Vec<Alert>,
    quarantined: Vec<Quarantined>,
    checkpoint: Checkpoint,
    events: u64,
    /// Partitions whose correlation state this batch changed.
    touched: BTreeSet<u32>,
    /// Events late for the live correlation windows, by source label.
    late: BTreeMap<String, u64>,
    /// Correlation groups evicted, by correlation rule id.
    evicted: BTreeMap<String, u64>,
}

/// A detector per partition of the events topic, each knowing the next offset it expects.
struct PartitionDetectors {
    engine: Engine,
    limits: Limits,
    correlating: bool,
    topic: String,
    partitions: HashMap<u32, PartitionDetector>,
}

struct PartitionDetector {
    detector: Detector,
    /// The offset that follows the last one processed. A delivery elsewhere means the
    /// partition was replayed or processed by another process meanwhile, so the state in
    /// memory is not the state for that offset and is loaded again.
    next_offset: Option<u64>,
    /// Per correlation, the groups evicted so far as last reported; the detector's counters
    /// persist with its state, so only what grows beyond them is new.
    evicted: Vec<u64>,
}

impl PartitionDetector {
    fn new(detector: Detector) -> Self {
        let evicted = evicted_groups(&detector);
        PartitionDetector {
            detector,
            next_offset: None,
            evicted,
        }
    }

    /// Adds the groups evicted since the last call to `out`, by correlation rule id.
    fn report_evictions(&mut self, out: &mut BTreeMap<String, u64>) {
        let now = evicted_groups(&self.detector);
        for (index, (&now, before)) in now.iter().zip(&self.evicted).enumerate() {
            if now > *before {
                let id = &self.detector.engine().correlations()[index].id;
                *out.entry(id.clone()).or_default() += now - before;
            }
        }
        self.evicted = now;
    }
}

fn evicted_groups(detector: &Detector) -> Vec<u64> {
    (0..detector.engine().correlations().len())
        .map(|index| detector.counters(index).map_or(0, |c| c.evicted_groups))
        .collect()
}

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

impl PartitionDetectors {
    fn new(engine: Engine, limits: Limits, topic: &str) -> Self {
        PartitionDetectors {
            correlating: !engine.correlations().is_empty(),
            engine,
            limits,
            topic: topic.to_owned(),
            partitions: HashMap::new(),
        }
    }

    /// Without correlations nothing is remembered, so every partition shares one detector.
    fn slot(&self, partition: u32) -> u32 {
        if self.correlating {
            partition
        } else {
            0
        }
    }

    fn state_key(&self, partition: u32) -> String {
        format!("{GROUP}.{}.{partition}", self.topic)
    }

    /// Partitions of `batch` whose detector is missing or out of step with it.
    fn stale(&self, batch: &[Delivery]) -> Vec<u32> {
        let mut first_offsets = BTreeMap::new();
        for delivery in batch {
            first_offsets
                .entry(self.slot(delivery.partition))
                .or_insert(delivery.offset);
        }
        first_offsets
            .into_iter()
            .filter(|(slot, offset)| match self.partitions.get(slot) {
                None => true,
                Some(known) => self.correlating && known.next_offset != Some(*offset),
            })
            .map(|(slot, _)| slot)
            .collect()
    }

    /// Installs a detector for `partition` holding `state`, the last saved for it. State that
    /// cannot be used is reported and replaced by empty windows.
    fn install(&mut self, partition: u32, state: Option<Bytes>) {
        let mut detector = Detector::with_limits(self.engine.clone(), self.limits);
        if let Some(bytes) = state {
            match detector.restore(&bytes) {
                Ok(report) => {
                    tracing::info!(
                        partition,
                        groups = report.groups,
                        "restored correlation state"
                    );
                    for id in report.dropped_correlations {
                        tracing::warn!(correlation = %id, "correlation changed since the snapshot; its windows start empty");
                    }
                }
                Err(error) => {
                    tracing::error!(partition, %error, "correlation state unusable; starting empty");
                    detector = Detector::with_limits(self.engine.clone(), self.limits);
                }
            }
        }
        self.partitions
            .insert(partition, PartitionDetector::new(detector));
    }
}

pub async fn run_detection(
    bus: Arc<dyn Bus>,
    topics: Topics,
    engine: Engine,
    limits: Limits,
    shutdown: Shutdown,
) -> Result<()> {
    let mut detectors = PartitionDetectors::new(engine, limits, &topics.events);
    let mut late_log = Throttled::new(
        "events arrived too late for the live correlation windows; \
         they were matched by rules and correlated only among late events",
    );
    let mut eviction_log = Throttled::new(
        "correlation groups evicted at detect.max_groups (or max_late_groups), by rule id",
    );
    let mut subscription = bus.subscribe(&topics.events, GROUP).await?;
    while !stopping(&shutdown) {
        let Some(batch) = retry!(
            "reading events for detection",
            &shutdown,
            subscription.next_batch(BATCH, POLL_WAIT).await
        ) else {
            break;
        };
        record_lag(subscription.as_ref(), &topics.events, GROUP).await;
        if batch.is_empty() {
            continue;
        }
        for partition in detectors.stale(&batch) {
            let state = if detectors.correlating {
                let key = detectors.state_key(partition);
                let Some(state) = retry!(
                    "loading correlation state",
                    &shutdown,
                    bus.load_state(&key).await
                ) else {
                    return Ok(());
                };
                state
            } else {
                None
            };
            detectors.install(partition, state);
        }
        let events_topic = topics.events.clone();
        let (returned, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = detect_batch(&mut detectors, &events_topic, &batch);
            (detectors, outcome)
        })
        .await?;
        detectors = returned;

        let quarantine = to_messages(&outcome.quarantined, |q| &q.source.name);
        let alerts = to_messages(&outcome.alerts, |a| &a.rule_id);
        if !quarantine.is_empty()
            && retry!(
                "quarantining unreadable events",
                &shutdown,
                bus.publish(&topics.quarantine, quarantine.clone()).await
            )
            .is_none()
        {
            break;
        }
        if !alerts.is_empty()
            && retry!(
                "publishing alerts",
                &shutdown,
                bus.publish(&topics.alerts, alerts.clone()).await
            )
            .is_none()
        {
            break;
        }
        // The state goes first: state that includes a batch whose offsets are not yet
        // committed only means a replayed event counts twice in a window, whereas offsets
        // ahead of the state would lose its contribution.
        let mut saved = true;
        for &partition in &outcome.touched {
            let key = detectors.state_key(partition);
            let state = Bytes::from(detectors.partitions[&partition].detector.snapshot());
            if retry!(
                "saving correlation state",
                &shutdown,
                bus.save_state(&key, state.clone()).await
            )
            .is_none()
            {
                saved = false;
                break;
            }
        }
        if !saved {
            break;
        }
        if retry!(
            "committing detection offsets",
            &shutdown,
            subscription.commit(&outcome.checkpoint).await
        )
        .is_none()
        {
            break;
        }
        metrics::counter!("vigil_events_detected_total").increment(outcome.events);
        for alert in &outcome.alerts {
            metrics::counter!("vigil_alerts_raised_total", "level" => alert.level.as_str())
                .increment(1);
        }
        if !outcome.quarantined.is_empty() {
            metrics::counter!("vigil_quarantined_total", "source" => "bus")
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
        late_log.add(&outcome.late);
        eviction_log.add(&outcome.evicted);
    }
    Ok(())
}

fn detect_batch(
    detectors: &mut PartitionDetectors,
    topic: &str,
    batch: &[Delivery],
) -> BatchOutcome {
    let detected = Utc::now();
    let mut outcome = BatchOutcome::default();
    for delivery in batch {
        outcome.checkpoint.advance(delivery);
        let slot = detectors.slot(delivery.partition);
        let correlating = detectors.correlating;
        let engine = &detectors.engine;
        // run_detection installs a detector for each partition of a batch before this runs.
        let limits = detectors.limits;
        let partition = detectors.partitions.entry(slot).or_insert_with(|| {
            PartitionDetector::new(Detector::with_limits(engine.clone(), limits))
        });
        partition.next_offset = Some(delivery.offset + 1);
        let detector = &mut partition.detector;
        let event = serde_json::from_slice::<Event>(&delivery.payload)
            .map_err(|e| format!("unreadable event on the bus: {e}"))
            .and_then(|event| match event.document() {
                Ok(document) => Ok((event, document)),
                Err(e) => Err(format!("event record is not valid JSON: {e}")),
            });
        match event {
            Ok((event, document)) => {
                outcome.events += 1;
                if correlating {
                    outcome.touched.insert(slot);
                }
                // A record's own time is attacker-controlled; one from the future would
                // expire every correlation window, so it counts no later than its arrival.
                // Each source is its own stream, with its own watermark, so a source that lags
                // another still correlates.
                let time = event.time.min(event.received).timestamp_millis();
                let evaluation = detector.evaluate(
                    &event.source.name,
                    time,
                    Some(event.id),
                    &event.logsource,
                    &document,
                );
                if evaluation.late_inputs > 0 {
                    // Source names are the sender's: the label is bounded like ingest's.
                    let label = vigil_ingest::source_label(&event.source.name);
                    *outcome.late.entry(label).or_default() += 1;
                }
                let engine = detector.engine();
                for detection in evaluation.detections {
                    outcome.alerts.push(match detection {
                        Detection::Rule { rule } => {
                            rule_alert(&engine.rules()[rule], &event, detected)
                        }
                        Detection::Correlation(matched) => correlation_alert(
                            &engine.correlations()[matched.correlation],
                            matched,
                            &event,
                            detected,
                        ),
                    });
                }
            }
            Err(reason) => {
                tracing::error!(offset = delivery.offset, %reason, "quarantining a bus message");
                outcome.quarantined.push(Quarantined {
                    source: Source {
                        kind: "bus".into(),
                        name: topic.to_owned(),
                    },
                    reason,
                    line: Some(delivery.offset),
                    received: detected,
                    raw: delivery.payload.to_vec(),
                });
            }
        }
    }
    for &slot in &outcome.touched {
        if let Some(partition) = detectors.partitions.get_mut(&slot) {
            partition.report_evictions(&mut outcome.evicted);
        }
    }
    outcome
}

fn rule_alert(rule: &Rule, event: &Event, detected: DateTime<Utc>) -> Alert {
    Alert {
        id: Alert::derive_id(&rule.id, &[event.id]),
        rule_id: rule.id.clone(),
        rule_title: rule.title.clone(),
        level: rule.level,
        tags: rule.tags.clone(),
        event_ids: vec![event.id],
        time: event.time,
        detected,
        source: event.source.clone(),
        logsource: event.logsource.clone(),
        group: BTreeMap::new(),
    }
}

/// The alert for a correlation, described by the event that completed it.
fn correlation_alert(
    correlation: &CorrelationRule,
    matched: CorrelationMatch,
    event: &Event,
    detected: DateTime<Utc>,
) -> Alert {
    Alert {
        id: Alert::derive_id(&correlation.id, &matched.event_ids),
        rule_id: correlation.id.clone(),
        rule_title: correlation.title.clone(),
        level: correlation.level,
        tags: correlation.tags.clone(),
        time: Utc
            .timestamp_millis_opt(matched.last_time)
            .single()
            .unwrap_or(event.time),
        event_ids: matched.event_ids,
        detected,
        source: event.source.clone(),
        logsource: event.logsource.clone(),
        group: matched.group.into_iter().collect(),
    }
}

fn to_messages<T: serde::Serialize>(items: &[T], key: impl Fn(&T) -> &String) -> Vec<Message> {
    items
        .iter()
        .map(|item| {
            let payload =
                serde_json::to_vec(item).expect("alerts and quarantine records serialise");
            Message::new(key(item).as_bytes().to_vec(), payload)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_settings_become_limits_within_their_bounds() {
        let limits = DetectConfig::default().limits().unwrap();
        assert_eq!(limits, Limits::default());
        let custom = DetectConfig {
            max_stream_lag_ms: 3_600_000,
            max_groups: 50,
            max_late_groups: 0,
        };
        let limits = custom.limits().unwrap();
        assert_eq!(
            (
                limits.max_stream_lag,
                limits.max_groups,
                limits.max_late_groups
            ),
            (3_600_000, 50, 0)
        );
        for (bad, setting) in [
            (
                DetectConfig {
                    max_stream_lag_ms: u64::MAX,
                    ..DetectConfig::default()
                },
                "detect.max_stream_lag_ms",
            ),
            (
                DetectConfig {
                    max_groups: 0,
                    ..DetectConfig::default()
                },
                "detect.max_groups",
            ),
            (
                DetectConfig {
                    max_late_groups: usize::MAX,
                    ..DetectConfig::default()
                },
                "detect.max_late_groups",
            ),
        ] {
            let message = bad.limits().unwrap_err();
            assert!(message.starts_with(setting), "{message}");
        }
    }
}
