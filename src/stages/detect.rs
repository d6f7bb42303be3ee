//! Detection: events in, Sigma matches out as alerts.

use std::sync::Arc;

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
}

pub async fn run_detection(
    bus: Arc<dyn Bus>,
    topics: Topics,
    engine: Engine,
    state_dir: PathBuf,
    shutdown: Shutdown,
) -> Result<()> {
    let snapshot_path = state_dir.join(SNAPSHOT_FILE);
    let mut detector = Detector::new(engine);
    let correlating = !detector.engine().correlations().is_empty();
    if correlating {
        restore_snapshot(&mut detector, &snapshot_path);
    }
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
        let events_topic = topics.events.clone();
        let (returned, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = detect_batch(&mut detector, &events_topic, &batch);
            (detector, outcome)
        })
        .await?;
        detector = returned;

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
        // The snapshot goes first: state that includes a batch whose offsets are not yet
        // committed only means a replayed event counts twice in a window, whereas offsets
        // ahead of the state would lose its contribution.
        if correlating {
            let (bytes, path) = (detector.snapshot(), snapshot_path.clone());
            if retry!(
                "saving correlation state",
                &shutdown,
                write_atomically(path.clone(), bytes.clone()).await
            )
            .is_none()
            {
                break;
            }
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

const SNAPSHOT_FILE: &str = "correlation-state.json";

/// Restores correlation state from the last run. A snapshot that cannot be used is set aside,
/// not deleted, and detection starts with empty windows.
fn restore_snapshot(detector: &mut Detector, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot read the correlation state; starting empty");
            return;
        }
    };
    match detector.restore(&bytes) {
        Ok(report) => {
            tracing::info!(groups = report.groups, "restored correlation state");
            for id in report.dropped_correlations {
                tracing::warn!(correlation = %id, "correlation changed since the snapshot; its windows start empty");
            }
        }
        Err(error) => {
            let aside = path.with_extension("unusable");
            tracing::error!(%error, aside = %aside.display(), "correlation state unusable; starting empty");
            let _ = std::fs::rename(path, aside);
        }
    }
}

async fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

fn detect_batch(detector: &mut Detector, topic: &str, batch: &[Delivery]) -> BatchOutcome {
    let detected = Utc::now();
    let mut outcome = BatchOutcome::default();
    for delivery in batch {
        outcome.checkpoint.advance(delivery);
        let event = serde_json::from_slice::<Event>(&delivery.payload)
            .map_err(|e| format!("unreadable event on the bus: {e}"))
            .and_then(|event| match event.document() {
                Ok(document) => Ok((event, document)),
                Err(e) => Err(format!("event record is not valid JSON: {e}")),
            });
        match event {
            Ok((event, document)) => {
                outcome.events += 1;
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
