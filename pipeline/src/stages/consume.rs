//! The one consume → process → commit loop every stage runs.
//!
//! The loop owns the order that makes delivery at least once: a batch is read, the stage
//! processes it, the stage makes its output durable, and only then are the batch's offsets
//! committed. A crash anywhere before the commit leaves the offsets where they were, so the
//! next owner of the partition reads the batch again; the commit can never cover a message
//! whose output is not durable yet. A stage may make its output durable less often than once
//! a batch ([`Stage::commit_due`]), and then the offsets wait with it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vigil_bus::{Bus, BusError, Checkpoint, Delivery};

use super::{record_lag, retry, stopping, Shutdown, POLL_WAIT};

/// What became of a batch a stage was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// All of it.
    All,
    /// Its first `n` deliveries; shutdown interrupted the rest, which are left for the next
    /// owner. The loop makes them durable, commits them and stops.
    Prefix(usize),
    /// Shutdown interrupted a step that cannot be skipped: none of it counts as processed,
    /// nor does anything processed since the last commit. The loop stops without committing.
    Stopped,
}

/// One stage: what it does with each batch of a topic, and how it makes that durable.
pub trait Stage: Send {
    /// Handles `batch`, retrying failed steps until they succeed or shutdown begins.
    fn process(
        &mut self,
        batch: &[Delivery],
        shutdown: &Shutdown,
    ) -> impl Future<Output = Processed> + Send;

    /// Makes durable everything processed since the last call; false when shutdown
    /// interrupted it. The offsets are committed only after this returns true.
    fn make_durable(&mut self, shutdown: &Shutdown) -> impl Future<Output = bool> + Send {
        let _ = shutdown;
        std::future::ready(true)
    }

    /// Whether what was processed since the last commit (`pending` deliveries; `since` is
    /// the time since that commit, or since the loop last had nothing pending) should be made
    /// durable and committed now. Every batch, unless the stage batches its commits.
    fn commit_due(&self, pending: usize, since: Duration) -> bool {
        let _ = (pending, since);
        true
    }

    /// How much longer, with `since` passed since the last commit, before
    /// [`Stage::commit_due`] may turn true with nothing more read; a stage whose commit can
    /// fall due at any moment gives how often to look again. While something waits for a
    /// commit, the loop waits for the next batch no longer than this, so a commit is made on
    /// time rather than after a poll that found nothing. Zero only when a commit is due. A
    /// stage that commits every batch leaves nothing waiting, so the default does not bound
    /// the wait.
    fn commit_due_in(&self, since: Duration) -> Duration {
        let _ = since;
        Duration::MAX
    }

    /// Called once the offsets of what was processed are committed, for counting.
    fn committed(&mut self) {}
}

/// Where a stage reads from, and how much at a time.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub topic: String,
    /// The consumer group, which names the stage in logs and metrics too.
    pub group: &'static str,
    /// The most deliveries one batch holds.
    pub batch: usize,
}

/// Runs `stage` over `settings.topic` as consumer group `settings.group` until shutdown, or
/// until a step fails during shutdown. Fails only when the subscription cannot be made.
pub async fn run_stage<S: Stage>(
    bus: Arc<dyn Bus>,
    settings: StageSettings,
    mut stage: S,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let StageSettings {
        topic,
        group,
        batch: batch_size,
    } = settings;
    let mut subscription = bus.subscribe(&topic, group).await?;
    let mut uncommitted = Checkpoint::default();
    let mut pending = 0usize;
    let mut last_commit = Instant::now();
    loop {
        let stop = stopping(&shutdown);
        let mut interrupted = false;
        if !stop {
            let what = format!("reading {topic} for {group}");
            let wait = match pending {
                0 => POLL_WAIT,
                _ => POLL_WAIT.min(stage.commit_due_in(last_commit.elapsed())),
            };
            let Some(batch) = retry!(
                &what,
                &shutdown,
                subscription.next_batch(batch_size, wait).await
            ) else {
                break;
            };
            record_lag(subscription.as_ref(), &topic, group).await;
            if !batch.is_empty() {
                let done = match stage.process(&batch, &shutdown).await {
                    Processed::All => batch.len(),
                    Processed::Prefix(done) => {
                        interrupted = true;
                        done.min(batch.len())
                    }
                    Processed::Stopped => break,
                };
                batch[..done].iter().for_each(|d| uncommitted.advance(d));
                pending += done;
            }
        }
        let finishing = stop || interrupted;
        if pending > 0 && (finishing || stage.commit_due(pending, last_commit.elapsed())) {
            if !stage.make_durable(&shutdown).await {
                break;
            }
            let what = format!("committing {group} offsets");
            if retry!(&what, &shutdown, subscription.commit(&uncommitted).await).is_none() {
                break;
            }
            stage.committed();
            uncommitted = Checkpoint::default();
            pending = 0;
            last_commit = Instant::now();
        } else if pending == 0 {
            last_commit = Instant::now();
        }
        if finishing {
            break;
        }
    }
    Ok(())
}
