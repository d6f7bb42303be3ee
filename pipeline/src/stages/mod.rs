//! The stage loops that move messages off the bus: detection, indexing into the store, and
//! notification.
//!
//! Each is a [`Stage`] run by the one loop in [`consume`]: it reads a batch, the stage
//! processes it and makes its output durable, and only then are the offsets committed, so a
//! crash at any point replays work instead of losing it. Replays are harmless because event
//! and alert ids are stable and the store upserts by id.

mod consume;
mod deliver;
mod detect;
mod events_indexed;
mod index;
mod notify;
mod respond;
#[cfg(test)]
pub(crate) mod tests;

use std::time::Duration;

use tokio::sync::watch;
use vigil_bus::{Delivery, Subscription};
use vigil_retry::{Backoff, BackoffPolicy};

pub use consume::{run_stage, Processed, Stage, StageSettings};
pub use deliver::run_delivery;
pub use detect::{
    run_detection, run_detection_with, ActiveRules, DetectConfig, RuleFeed, GROUP as DETECT_GROUP,
};
pub use events_indexed::EventsIndexed;
pub use index::{run_indexer, run_retention, IndexOrder, IndexTarget};
pub use notify::{run_dispatch, run_notifier, NoAlertStates, StoreAlertStates};
pub use respond::{run_responder, start as start_respond, ResponderRuns};

/// How long a stage waits for messages before it looks at the shutdown signal again.
const POLL_WAIT: Duration = Duration::from_millis(250);

/// Retries of a failing step start around a tenth of a second and wait at most ten seconds.
const RETRY_POLICY: BackoffPolicy =
    BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(10));

/// Tells stage loops to finish their batch, commit and stop.
pub type Shutdown = watch::Receiver<bool>;

fn stopping(shutdown: &Shutdown) -> bool {
    *shutdown.borrow()
}

/// Evaluates `$attempt` (an expression that may `.await`) until it succeeds, backing off
/// between failures, and gives `Some(value)`; gives `None` only once shutdown has begun, because
/// a stage that skipped its failed work would lose it.
macro_rules! retry {
    ($what:expr, $shutdown:expr, $attempt:expr) => {{
        let mut backoff = $crate::stages::new_backoff();
        loop {
            match $attempt {
                Ok(value) => break Some(value),
                Err(error) => {
                    if !$crate::stages::wait_to_retry(
                        &mut backoff,
                        $what,
                        error.to_string(),
                        $shutdown,
                    )
                    .await
                    {
                        break None;
                    }
                }
            }
        }
    }};
}
pub(crate) use retry;

fn new_backoff() -> Backoff {
    Backoff::new(RETRY_POLICY)
}

/// Logs the failure and waits before the next attempt; false when the stage should stop
/// instead, leaving the failed work to be replayed.
async fn wait_to_retry(
    backoff: &mut Backoff,
    what: &str,
    error: String,
    shutdown: &Shutdown,
) -> bool {
    if stopping(shutdown) {
        tracing::error!(%error, "{what} failed during shutdown; it will be replayed");
        return false;
    }
    tracing::error!(%error, failures = backoff.failures() + 1, "{what} failed; retrying");
    backoff.wait(shutdown).await
}

/// One bus message as `T`, or `None` after logging and counting it. Detection quarantines
/// what it cannot read, so the later stages only count; the metric keeps its first user's
/// name. Detection parses a framed event's record only when some rule may match it, so a
/// damaged record it had no need to parse (only a writer's bug or a forged message makes
/// one: ingest checks every record) reaches the events indexer, where the store indexes and
/// keeps it as a text record and counts it (`vigil_index_records_as_text_total`).
fn decode_message<T>(
    delivery: &Delivery,
    group: &'static str,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Option<T> {
    match decode(&delivery.payload) {
        Ok(item) => Some(item),
        Err(error) => {
            tracing::error!(offset = delivery.offset, %error, group, "skipping an unreadable bus message");
            metrics::counter!("vigil_index_unreadable_total", "group" => group).increment(1);
            None
        }
    }
}

/// A bus message that is one JSON document: an alert, a quarantined record. Events have a
/// format of their own (`vigil_event::wire`).
fn json_from_bus<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

async fn record_lag(subscription: &dyn Subscription, topic: &str, group: &str) {
    if let Ok(lag) = subscription.lag().await {
        metrics::gauge!("vigil_bus_lag", "topic" => topic.to_owned(), "group" => group.to_owned())
            .set(lag as f64);
    }
}
