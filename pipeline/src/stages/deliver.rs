//! Delivery: one task per receiver takes its due notifications from the outbox, sends them
//! and records what happened.
//!
//! The tasks share nothing but the outbox, so a receiver that is down, slow or refusing only
//! delays its own notifications: the issue this replaced was a 503 webhook retried inline
//! while a healthy pager received nothing. A notification is marked sent only after its
//! receiver took it, so a crash in between sends it again after the restart, under the same
//! id (the receiver's idempotency key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use vigil_notify::{AfterFailure, Delivery, DeliveryError, Outbox, OutboxError, Receiver};

use super::{retry, stopping, Shutdown};

/// Notifications taken from the outbox at a time.
const BATCH: usize = 50;

/// How often a task looks at the outbox even when nothing woke it: rows a resend from
/// another connection (the CLI, another process's UI) made due.
const POLL: Duration = Duration::from_secs(5);

/// The longest one send may take, whatever the receiver's own timeout: a receiver that
/// hangs must not hold its task forever.
const SEND_LIMIT: Duration = Duration::from_secs(120);

/// Delivers `receiver`'s notifications until shutdown.
pub async fn run_delivery(outbox: Arc<Outbox>, receiver: Arc<dyn Receiver>, shutdown: Shutdown) {
    let name = receiver.name().to_owned();
    let waker = outbox.waker(&name);
    let mut shutdown_changed = shutdown.clone();
    tracing::info!(receiver = %name, "delivering notifications");
    while !stopping(&shutdown) {
        let what = format!("reading the outbox of receiver {name:?}");
        let due = retry!(&what, &shutdown, {
            let receiver = name.clone();
            blocking(&outbox, move |outbox| {
                outbox.next_due(&receiver, Utc::now(), BATCH)
            })
            .await
        });
        let Some(due) = due else { return };
        let full = due.len() == BATCH;
        for delivery in due {
            if !deliver(&outbox, receiver.as_ref(), delivery, &shutdown).await {
                return;
            }
        }
        if full {
            continue;
        }
        let next = {
            let receiver = name.clone();
            blocking(&outbox, move |outbox| outbox.next_due_at(&receiver)).await
        };
        let wait = match next {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(POLL),
            Ok(None) => POLL,
            Err(error) => {
                tracing::error!(receiver = %name, %error, "cannot read the outbox");
                POLL
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = waker.notified() => {}
            _ = shutdown_changed.changed() => {}
        }
    }
}

/// Sends one notification and records the outcome; false when shutdown interrupted it (the
/// row stays pending and is sent after the restart).
async fn deliver(
    outbox: &Arc<Outbox>,
    receiver: &dyn Receiver,
    delivery: Delivery,
    shutdown: &Shutdown,
) -> bool {
    let name = receiver.name().to_owned();
    let mut stop = shutdown.clone();
    let started = Instant::now();
    let result = tokio::select! {
        result = tokio::time::timeout(SEND_LIMIT, receiver.send(&delivery.notification)) => {
            result.unwrap_or_else(|_| Err(DeliveryError::Transient(format!(
                "no answer within {} s", SEND_LIMIT.as_secs()
            ))))
        }
        _ = stop.wait_for(|stopping| *stopping) => return false,
    };
    let id = delivery.id.clone();
    let what = format!("recording a delivery to receiver {name:?}");
    match result {
        Ok(()) => {
            let recorded = retry!(&what, shutdown, {
                let id = id.clone();
                blocking(outbox, move |outbox| outbox.mark_sent(&id, Utc::now())).await
            });
            let Some(recorded) = recorded else {
                return false;
            };
            metrics::counter!("vigil_notifications_sent_total", "receiver" => name.clone())
                .increment(1);
            if let Some(row) = recorded {
                let latency = (Utc::now() - row.enqueued).to_std().unwrap_or_default();
                metrics::histogram!("vigil_notification_latency_seconds", "receiver" => name.clone())
                    .record(latency.as_secs_f64());
            }
            tracing::debug!(receiver = %name, notification = %id, took_ms = started.elapsed().as_millis() as u64, "delivered");
        }
        Err(DeliveryError::Rejected { status, body }) => {
            // The receiver would refuse it the same way again: a dead letter at once, for
            // an analyst to look at (and re-send once the receiver is fixed).
            let reason = format!("refused with {status}: {body}");
            tracing::error!(receiver = %name, notification = %id, %reason, "the receiver refused a notification; it is a dead letter");
            let recorded = retry!(&what, shutdown, {
                let (id, reason) = (id.clone(), reason.clone());
                blocking(outbox, move |outbox| {
                    outbox.mark_dead(&id, &reason, Utc::now())
                })
                .await
            });
            if recorded.is_none() {
                return false;
            }
            let label = || ("receiver", name.clone());
            metrics::counter!("vigil_notifications_failed_total", &[label()]).increment(1);
            metrics::counter!("vigil_notifications_refused_total", &[label()]).increment(1);
            metrics::counter!("vigil_notifications_dead_lettered_total", &[label()]).increment(1);
        }
        Err(DeliveryError::Transient(error)) => {
            let recorded = retry!(&what, shutdown, {
                let (id, error) = (id.clone(), error.clone());
                blocking(outbox, move |outbox| {
                    outbox.mark_retry(&id, &error, Utc::now())
                })
                .await
            });
            let Some(outcome) = recorded else {
                return false;
            };
            let label = || ("receiver", name.clone());
            metrics::counter!("vigil_notifications_failed_total", &[label()]).increment(1);
            match outcome {
                Some(AfterFailure::Retry { at, attempts }) => {
                    metrics::counter!("vigil_notification_retries_total", &[label()]).increment(1);
                    tracing::warn!(receiver = %name, notification = %id, %error, attempts, next = %at, "delivery failed; retrying later");
                }
                Some(AfterFailure::Dead { attempts }) => {
                    metrics::counter!("vigil_notifications_dead_lettered_total", &[label()])
                        .increment(1);
                    tracing::error!(receiver = %name, notification = %id, %error, attempts, "delivery failed on every attempt; it is a dead letter");
                }
                None => {}
            }
        }
    }
    true
}

/// Runs an outbox call off the async threads: each one is a SQLite transaction with an
/// fsync.
pub(super) async fn blocking<T: Send + 'static>(
    outbox: &Arc<Outbox>,
    call: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, String> {
    let outbox = outbox.clone();
    match tokio::task::spawn_blocking(move || call(&outbox)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(join) => Err(format!("the outbox call stopped: {join}")),
    }
}
