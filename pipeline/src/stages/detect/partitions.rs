//! A detector per partition of the events topic, and what detection makes of one batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use vigil_bus::{Delivery, Message};
use vigil_detect::{CorrelationMatch, CorrelationRule, Detector, Engine, Finding, Limits, Rule};
use vigil_event::wire::{EventHead, EventOnBus};
use vigil_event::{Alert, BusPosition, Quarantined, Source};

use super::{ActiveRules, GROUP};

/// What detection made of one batch of deliveries.
#[derive(Default)]
pub(super) struct BatchOutcome {
    pub(super) alerts: Vec<Alert>,
    pub(super) quarantined: Vec<Quarantined>,
    pub(super) events: u64,
    /// Partitions whose correlation state this batch changed.
    pub(super) touched: BTreeSet<u32>,
    /// Events late for the live correlation windows, by source label.
    pub(super) late: BTreeMap<String, u64>,
    /// Correlation groups evicted, by correlation rule id.
    pub(super) evicted: BTreeMap<String, u64>,
}

/// A detector per partition of the events topic, each knowing the next offset it expects.
pub(super) struct PartitionDetectors {
    engine: Engine,
    generation: u64,
    /// Ids whose own matches are not reported; see [`ActiveRules::suppressed`].
    suppressed: std::sync::Arc<std::collections::HashSet<String>>,
    limits: Limits,
    pub(super) correlating: bool,
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

impl PartitionDetectors {
    pub(super) fn new(rules: ActiveRules, limits: Limits, topic: &str) -> Self {
        let ActiveRules {
            generation,
            engine,
            suppressed,
        } = rules;
        PartitionDetectors {
            correlating: !engine.correlations().is_empty(),
            engine,
            generation,
            suppressed,
            limits,
            topic: topic.to_owned(),
            partitions: HashMap::new(),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Detects with `rules` from now on. Each partition's windows move to a detector of the
    /// new engine by snapshot and restore, which keeps those of the correlations that did not
    /// change and drops those of the ones that did.
    pub(super) fn take_up(&mut self, rules: ActiveRules) {
        let ActiveRules {
            generation,
            engine,
            suppressed,
        } = rules;
        tracing::info!(
            generation,
            rules = engine.rules().len(),
            correlations = engine.correlations().len(),
            "detecting with new rules"
        );
        let correlating = !engine.correlations().is_empty();
        let partitions = std::mem::take(&mut self.partitions);
        // Without correlations one detector served every partition: there are no windows to
        // carry, and the partitions' own are installed from their saved state as they come.
        if self.correlating && correlating {
            for (slot, known) in partitions {
                let mut detector = Detector::with_limits(engine.clone(), self.limits);
                match detector.restore(&known.detector.snapshot()) {
                    Ok(report) => {
                        for id in report.dropped_correlations {
                            tracing::info!(partition = slot, correlation = %id, "correlation changed; its windows start empty");
                        }
                    }
                    Err(error) => {
                        tracing::error!(partition = slot, %error, "correlation state not carried over; starting empty");
                        detector = Detector::with_limits(engine.clone(), self.limits);
                    }
                }
                let mut partition = PartitionDetector::new(detector);
                partition.next_offset = known.next_offset;
                self.partitions.insert(slot, partition);
            }
        }
        self.correlating = correlating;
        self.engine = engine;
        self.generation = generation;
        self.suppressed = suppressed;
    }

    /// Without correlations nothing is remembered, so every partition shares one detector.
    fn slot(&self, partition: u32) -> u32 {
        if self.correlating {
            partition
        } else {
            0
        }
    }

    pub(super) fn state_key(&self, partition: u32) -> String {
        format!("{GROUP}.{}.{partition}", self.topic)
    }

    /// Partitions of `batch` whose detector is missing or out of step with it.
    pub(super) fn stale(&self, batch: &[Delivery]) -> Vec<u32> {
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
    pub(super) fn install(&mut self, partition: u32, state: Option<Bytes>) {
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

    /// The correlation state of `partition` as it stands, to be saved under its key.
    pub(super) fn snapshot(&self, partition: u32) -> Option<Bytes> {
        self.partitions
            .get(&partition)
            .map(|known| Bytes::from(known.detector.snapshot()))
    }
}

pub(super) fn detect_batch(
    detectors: &mut PartitionDetectors,
    topic: &str,
    batch: &[Delivery],
) -> BatchOutcome {
    let detected = Utc::now();
    let mut outcome = BatchOutcome::default();
    for delivery in batch {
        let slot = detectors.slot(delivery.partition);
        let correlating = detectors.correlating;
        let engine = &detectors.engine;
        // The stage installs a detector for each partition of a batch before this runs.
        let limits = detectors.limits;
        let partition = detectors.partitions.entry(slot).or_insert_with(|| {
            PartitionDetector::new(Detector::with_limits(engine.clone(), limits))
        });
        partition.next_offset = Some(delivery.offset + 1);
        let detector = &mut partition.detector;
        // The record is parsed only when some rule may match it, or when rules are found by
        // the values of its fields (`Engine::matching_record`): most events match none, and
        // then cost the bus decode and a scan of their bytes or a parse and a few lookups.
        // The record stays a slice of the message (`vigil_event::wire`).
        let decoded = EventOnBus::decode(&delivery.payload)
            .map_err(|e| format!("unreadable event on the bus: {e}"));
        // The document borrows the record's text from the message.
        let evaluated = decoded.as_ref().map_err(String::clone).and_then(|on_bus| {
            let event = &on_bus.head;
            // A record's own time is attacker-controlled; one from the future would
            // expire every correlation window, so it counts no later than its arrival.
            // Each source is its own stream, with its own watermark, so a source that lags
            // another still correlates.
            let time = event.time.min(event.received).timestamp_millis();
            detector
                .evaluate_event(&event.source.name, time, on_bus)
                .map(|(evaluation, document)| (event, evaluation, document.unwrap_or_default()))
                .map_err(|e| format!("event record is not valid JSON: {e}"))
        });
        match evaluated {
            Ok((event, evaluation, document)) => {
                outcome.events += 1;
                if correlating {
                    outcome.touched.insert(slot);
                }
                if evaluation.late_inputs > 0 {
                    // Source names are the sender's: the label is bounded like ingest's.
                    let label = vigil_ingest::source_label(&event.source.name);
                    *outcome.late.entry(label).or_default() += 1;
                }
                let engine = detector.engine();
                let suppressed = &detectors.suppressed;
                let reported = |finding: &Finding| {
                    let id = match finding {
                        Finding::Rule { rule, .. } => &engine.rules()[*rule].id,
                        Finding::Correlation(matched) => {
                            &engine.correlations()[matched.correlation].id
                        }
                    };
                    !suppressed.contains(id)
                };
                for detection in evaluation.detections.into_iter().filter(reported) {
                    // Asked only of what matched, so the events that do not never pay for it.
                    let matched = engine.matched_fields(&detection, &event.logsource, &document);
                    let mut alert = match detection {
                        Finding::Rule { rule } => {
                            rule_alert(&engine.rules()[rule], event, detected)
                        }
                        Finding::Correlation(matched) => correlation_alert(
                            &engine.correlations()[matched.correlation],
                            matched,
                            event,
                            detected,
                        ),
                    };
                    alert.add_matched(event.id, matched);
                    alert.event_position = Some(BusPosition {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    });
                    outcome.alerts.push(alert);
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

fn rule_alert(rule: &Rule, event: &EventHead, detected: DateTime<Utc>) -> Alert {
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
        matched: Vec::new(),
        event_position: None,
    }
}

/// The alert for a correlation, described by the event that completed it.
fn correlation_alert(
    correlation: &CorrelationRule,
    matched: CorrelationMatch,
    event: &EventHead,
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
        matched: Vec::new(),
        event_position: None,
    }
}

pub(super) fn to_messages<T: serde::Serialize>(
    items: &[T],
    key: impl Fn(&T) -> &String,
) -> Vec<Message> {
    items
        .iter()
        .map(|item| {
            let payload =
                serde_json::to_vec(item).expect("alerts and quarantine records serialise");
            Message::new(key(item).as_bytes().to_vec(), payload)
        })
        .collect()
}
