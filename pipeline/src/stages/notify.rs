//! Notification: alerts from the bus to the configured webhooks, at least once.
//!
//! Offsets are committed only after every webhook that wants an alert has taken it, or has
//! refused it for good, so a receiver that is down holds the alerts on the bus (visible as
//! lag) until it returns. A replay may resend an alert a webhook already took; the
//! `Idempotency-Key` header (the alert id) lets the receiver drop it.

use std::sync::Arc;

use anyhow::Result;
use vigil_bus::{Bus, Checkpoint};
use vigil_event::Alert;
use vigil_notify::{DeliveryError, Notifier};

use super::{decode_message, record_lag, retry, stopping, Shutdown, POLL_WAIT};

const GROUP: &str = "notify";
const BATCH: usize = 100;

pub async fn run_notifier(
    bus: Arc<dyn Bus>,
    topic: String,
    notifier: Arc<Notifier>,
    shutdown: Shutdown,
) -> Result<()> {
    let mut subscription = bus.subscribe(&topic, GROUP).await?;
    while !stopping(&shutdown) {
        let Some(batch) = retry!(
            "reading alerts to notify",
            &shutdown,
            subscription.next_batch(BATCH, POLL_WAIT).await
        ) else {
            break;
        };
        record_lag(subscription.as_ref(), &topic, GROUP).await;
        if batch.is_empty() {
            continue;
        }
        let mut done = Checkpoint::default();
        let mut interrupted = false;
        for delivery in &batch {
            if let Some(alert) = decode_message::<Alert>(delivery, GROUP) {
                if !notify(&notifier, &alert, &shutdown).await {
                    interrupted = true;
                    break;
                }
            }
            done.advance(delivery);
        }
        // What was sent before a shutdown is committed, so a restart resends less.
        if !done.is_empty()
            && retry!(
                "committing notify offsets",
                &shutdown,
                subscription.commit(&done).await
            )
            .is_none()
        {
            break;
        }
        if interrupted {
            break;
        }
    }
    Ok(())
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
