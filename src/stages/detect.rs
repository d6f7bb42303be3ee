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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use vigil_bus::{Bus, Checkpoint, Delivery, Message, Topics};
use vigil_detect::{CorrelationMatch, CorrelationRule, Detection, Detector, Engine, Rule};
use vigil_event::{Alert, Event, Quarantined, Source};

use super::{record_lag, retry, stopping, Shutdown, POLL_WAIT};

pub const GROUP: &str = "detect";
const BATCH: usize = 1000;

/// What detection made of one batch of deliveries.
#[derive(Default)]
struct BatchOutcome {
    alerts: Vec<Alert>,
    quarantined: Vec<Quarantined>,
    checkpoint: Checkpoint,
    events: u64,
    /// Partitions whose correlation state this batch changed.
    touched: BTreeSet<u32>,
}

/// A detector per partition of the events topic, each knowing the next offset it expects.
struct PartitionDetectors {
    engine: Engine,
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
}

impl PartitionDetectors {
    fn new(engine: Engine, topic: &str) -> Self {
        PartitionDetectors {
            correlating: !engine.correlations().is_empty(),
            engine,
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
        let mut detector = Detector::new(self.engine.clone());
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
                    detector = Detector::new(self.engine.clone());
                }
            }
        }
        self.partitions.insert(
            partition,
            PartitionDetector {
                detector,
                next_offset: None,
            },
        );
    }
}

pub async fn run_detection(
    bus: Arc<dyn Bus>,
    topics: Topics,
    engine: Engine,
    shutdown: Shutdown,
) -> Result<()> {
    let mut detectors = PartitionDetectors::new(engine, &topics.events);
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
        let partition = detectors
            .partitions
            .entry(slot)
            .or_insert_with(|| PartitionDetector {
                detector: Detector::new(engine.clone()),
                next_offset: None,
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
                let detections = detector.process_stream(
                    &event.source.name,
                    time,
                    Some(event.id),
                    &event.logsource,
                    &document,
                );
                let engine = detector.engine();
                for detection in detections {
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
