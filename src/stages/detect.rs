//! Detection: events in, Sigma matches out as alerts.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;
use vigil_bus::{Bus, Checkpoint, Delivery, Message, Topics};
use vigil_detect::{Engine, Rule};
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
    engine: Arc<Engine>,
    shutdown: Shutdown,
) -> Result<()> {
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
        let engine = engine.clone();
        let events_topic = topics.events.clone();
        let outcome =
            tokio::task::spawn_blocking(move || detect_batch(&engine, &events_topic, &batch))
                .await?;

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

fn detect_batch(engine: &Engine, topic: &str, batch: &[Delivery]) -> BatchOutcome {
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
                for rule in engine.evaluate(&event.logsource, &document) {
                    outcome.alerts.push(alert_for(rule, &event, detected));
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

fn alert_for(rule: &Rule, event: &Event, detected: chrono::DateTime<Utc>) -> Alert {
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
