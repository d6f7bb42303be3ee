//! Notification: alerts from the bus to the configured webhooks, at least once.
//!
//! Offsets are committed only after every webhook that wants an alert has taken it, or has
//! refused it for good, so a receiver that is down holds the alerts on the bus (visible as
//! lag) until it returns. A replay may resend an alert a webhook already took; the
//! `Idempotency-Key` header (the alert id) lets the receiver drop it.

use std::sync::Arc;

use vigil_bus::{Bus, BusError, Delivery};
use vigil_event::Alert;
use vigil_notify::{DeliveryError, Notifier};

use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::{decode_message, retry, Shutdown};

const GROUP: &str = "notify";
const BATCH: usize = 100;

pub async fn run_notifier(
    bus: Arc<dyn Bus>,
    topic: String,
    notifier: Arc<Notifier>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let settings = StageSettings {
        topic,
        group: GROUP,
        batch: BATCH,
    };
    run_stage(bus, settings, NotifyStage { notifier }, shutdown).await
}

/// Notification as a [`Stage`]: a webhook that took an alert holds it, so there is nothing
/// more to make durable before the commit. What was sent before a shutdown is committed, so
/// a restart resends less.
struct NotifyStage {
    notifier: Arc<Notifier>,
}

impl Stage for NotifyStage {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        for (done, delivery) in batch.iter().enumerate() {
            if let Some(alert) = decode_message::<Alert>(delivery, GROUP) {
                if !notify(&self.notifier, &alert, shutdown).await {
                    return Processed::Prefix(done);
                }
            }
        }
        Processed::All
    }
}

/// Sends `alert` to every webhook that wants it; false when shutdown interrupted the retries.
async fn notify(notifier: &Notifier, alert: &Alert, shutdown: &Shutdown) -> bool {
    for webhook in notifier.routes(alert) {
        let what = format!("notifying webhook {:?}", webhook.name());
        let sent = retry!(&what, shutdown, {
            match notifier.deliver(webhook, alert).await {
                Err(DeliveryError::Rejected { status, body }) => {
                    // Retrying would be refused the same way; holding the stream back for it
                    // would stop every later alert too.
                    tracing::error!(webhook = webhook.name(), alert = %alert.id, status, %body, "the webhook refused an alert; it is not retried");
                    metrics::counter!("vigil_notifications_refused_total", "webhook" => webhook.name().to_owned())
                        .increment(1);
                    Ok(())
                }
                Ok(()) => {
                    metrics::counter!("vigil_notifications_sent_total", "webhook" => webhook.name().to_owned())
                        .increment(1);
                    Ok(())
                }
                Err(transient) => {
                    metrics::counter!("vigil_notification_retries_total", "webhook" => webhook.name().to_owned())
                        .increment(1);
                    Err(transient)
                }
            }
        });
        if sent.is_none() {
            return false;
        }
    }
    true
}
