//! The stage loops that move messages off the bus: detection, indexing into the store, and
//! notification.
//!
//! Each loop reads a batch, makes its own output durable, and only then commits its offsets,
//! so a crash at any point replays work instead of losing it. Replays are harmless because
//! event and alert ids are stable and the store upserts by id.

mod detect;
mod index;
mod notify;

use std::time::Duration;

use tokio::sync::watch;
use vigil_bus::{Delivery, Subscription};

pub use detect::{run_detection, DetectConfig, GROUP as DETECT_GROUP};
pub use index::{run_indexer, run_retention, IndexTarget};
pub use notify::run_notifier;

/// How long a stage waits for messages before it looks at the shutdown signal again.
const POLL_WAIT: Duration = Duration::from_millis(250);

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
        let mut backoff = $crate::stages::Backoff::default();
        loop {
            match $attempt {
                Ok(value) => break Some(value),
                Err(error) => {
                    if !backoff.wait($what, error.to_string(), $shutdown).await {
                        break None;
                    }
                }
            }
        }
    }};
}
pub(crate) use retry;

/// Exponential delay between retries of a failing step.
struct Backoff {
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// Logs the failure and sleeps; false when the stage should stop instead.
    async fn wait(&mut self, what: &str, error: String, shutdown: &Shutdown) -> bool {
        if stopping(shutdown) {
            tracing::error!(%error, "{what} failed during shutdown; it will be replayed");
            return false;
        }
        tracing::error!(%error, "{what} failed; retrying in {:?}", self.delay);
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(10));
        true
    }
}

/// One bus message as `T`, or `None` after logging and counting it. Detection quarantines
/// what it cannot read, so the later stages only count; the metric keeps its first user's
/// name.
fn decode_message<T: serde::de::DeserializeOwned>(
    delivery: &Delivery,
    group: &'static str,
) -> Option<T> {
    match serde_json::from_slice(&delivery.payload) {
        Ok(item) => Some(item),
        Err(error) => {
            tracing::error!(offset = delivery.offset, %error, group, "skipping an unreadable bus message");
            metrics::counter!("vigil_index_unreadable_total", "group" => group).increment(1);
            None
        }
    }
}

async fn record_lag(subscription: &dyn Subscription, topic: &str, group: &str) {
    if let Ok(lag) = subscription.lag().await {
        metrics::gauge!("vigil_bus_lag", "topic" => topic.to_owned(), "group" => group.to_owned())
            .set(lag as f64);
    }
}
