//! How far the events indexer has made the events topic searchable, which the alerts indexer
//! waits for so that an alert is never listed before its events can be found.
//!
//! The two indexers commit apart: the events index at its own interval (the costly commit),
//! the alerts index as soon as a batch of alerts may be listed. An alert may be listed once
//! the event that raised it is searchable, which is known in one of two ways:
//!
//! - **By position.** Detection records where that event sits on the events topic
//!   ([`vigil_event::Alert::event_position`]); the events indexer reports, after each store
//!   commit, the offsets up to which everything it read is searchable.
//! - **By catching up.** When the events indexer finds nothing new to read with nothing left
//!   uncommitted, every event published before that read began is searchable. An alert is
//!   read after its event was published, so an alert read before that moment may be listed.
//!   This covers a restart, when the indexer may have nothing new to read for a while, and
//!   alerts that carry no position.
//!
//! Neither may ever come (a partition read by another process, an events indexer that is
//! stuck), so an alert waits at most [`MAX_WAIT`]; past it, it is listed anyway and counted in
//! `vigil_index_alerts_unconfirmed_total`: visible early rather than held back, and never lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vigil_bus::Checkpoint;
use vigil_event::BusPosition;

use super::Shutdown;

/// The longest an alert waits for its event to be searchable before it is listed anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What the events indexer has made searchable so far, shared with the alerts indexer.
#[derive(Debug)]
pub struct EventsIndexed {
    progress: watch::Sender<Progress>,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    /// Per partition of the events topic, the offset below which every event is searchable.
    searchable_below: BTreeMap<u32, u64>,
    /// The start of the latest read that found nothing new, with nothing left uncommitted.
    caught_up_at: Option<Instant>,
}

/// What the alerts of one batch wait for before they may be listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Awaited {
    /// Per partition, the offset that must be searchable (the newest alert's event).
    positions: BTreeMap<u32, u64>,
    /// Whether some alert carries no position, and so waits for the indexer to catch up.
    unplaced: bool,
}

impl Awaited {
    pub fn add(&mut self, position: Option<BusPosition>) {
        match position {
            Some(BusPosition { partition, offset }) => {
                let at = self.positions.entry(partition).or_insert(offset);
                *at = (*at).max(offset);
            }
            None => self.unplaced = true,
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Every awaited event is searchable.
    Searchable,
    /// [`MAX_WAIT`] (or the limit given) passed first.
    TimedOut,
    /// Shutdown began first.
    Stopped,
}

impl Progress {
    fn covers(&self, awaited: &Awaited, read_at: Instant) -> bool {
        if self.caught_up_at.is_some_and(|at| at >= read_at) {
            return true;
        }
        !awaited.unplaced
            && awaited.positions.iter().all(|(partition, &offset)| {
                self.searchable_below
                    .get(partition)
                    .is_some_and(|&below| offset < below)
            })
    }
}

impl Default for EventsIndexed {
    fn default() -> Self {
        EventsIndexed {
            progress: watch::Sender::new(Progress::default()),
        }
    }
}

impl EventsIndexed {
    /// Notes that everything `checkpoint` covers is now searchable (a store commit returned).
    pub fn committed(&self, checkpoint: &Checkpoint) {
        if checkpoint.is_empty() {
            return;
        }
        self.progress.send_modify(|progress| {
            for (partition, next) in checkpoint.partitions() {
                let below = progress.searchable_below.entry(partition).or_insert(next);
                *below = (*below).max(next);
            }
        });
    }

    /// Notes that a read begun at `polled_at` found nothing new, with nothing uncommitted.
    pub fn caught_up(&self, polled_at: Instant) {
        self.progress.send_modify(|progress| {
            if progress.caught_up_at.is_none_or(|at| at < polled_at) {
                progress.caught_up_at = Some(polled_at);
            }
        });
    }

    /// Waits until the events `awaited` names, of alerts read at `read_at`, are searchable, for
    /// at most `limit`.
    pub async fn wait_for(
        &self,
        awaited: &Awaited,
        read_at: Instant,
        limit: Duration,
        shutdown: &Shutdown,
    ) -> Waited {
        let mut progress = self.progress.subscribe();
        let mut shutdown = shutdown.clone();
        let searchable = progress.wait_for(|progress| progress.covers(awaited, read_at));
        tokio::select! {
            // The sender lives as long as `self`, so the wait ends only when covered.
            Ok(_) = searchable => Waited::Searchable,
            _ = tokio::time::sleep(limit) => Waited::TimedOut,
            _ = shutdown.wait_for(|stop| *stop) => Waited::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use vigil_bus::Delivery;

    use super::*;

    fn checkpoint(positions: &[(u32, u64)]) -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        for &(partition, offset) in positions {
            checkpoint.advance(&Delivery {
                partition,
                offset,
                key: Bytes::new(),
                payload: Bytes::new(),
            });
        }
        checkpoint
    }

    fn awaited(positions: &[Option<(u32, u64)>]) -> Awaited {
        let mut awaited = Awaited::default();
        for position in positions {
            awaited.add(position.map(|(partition, offset)| BusPosition { partition, offset }));
        }
        awaited
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn an_alert_waits_until_its_partition_is_committed_past_its_event() {
        let (_stop, shutdown) = watch::channel(false);
        let indexed = EventsIndexed::default();
        let read_at = Instant::now();
        let wanted = awaited(&[Some((0, 10)), Some((1, 3)), Some((0, 4))]);
        let waited = |wanted: Awaited| {
            let (indexed, shutdown) = (&indexed, &shutdown);
            async move { indexed.wait_for(&wanted, read_at, SHORT, shutdown).await }
        };
        assert_eq!(waited(wanted.clone()).await, Waited::TimedOut);
        // Offset 10 is searchable once the checkpoint's next offset is beyond it.
        indexed.committed(&checkpoint(&[(0, 9), (1, 3)]));
        assert_eq!(waited(wanted.clone()).await, Waited::TimedOut);
        indexed.committed(&checkpoint(&[(0, 10)]));
        assert_eq!(waited(wanted.clone()).await, Waited::Searchable);
        // Progress never goes back, and a partition not yet seen is not searchable.
        indexed.committed(&checkpoint(&[(0, 2)]));
        assert_eq!(waited(wanted).await, Waited::Searchable);
        assert_eq!(waited(awaited(&[Some((2, 0))])).await, Waited::TimedOut);
    }

    #[tokio::test]
    async fn catching_up_after_the_read_releases_every_alert() {
        let (_stop, shutdown) = watch::channel(false);
        let indexed = EventsIndexed::default();
        let before = Instant::now();
        let read_at = Instant::now();
        let wanted = awaited(&[Some((0, 10)), None]);
        indexed.committed(&checkpoint(&[(0, 50)]));
        // Without a position, the alert's event may be anywhere.
        assert_eq!(
            indexed.wait_for(&wanted, read_at, SHORT, &shutdown).await,
            Waited::TimedOut
        );
        // A catch-up begun before the alerts were read says nothing of their events.
        indexed.caught_up(before);
        assert_eq!(
            indexed.wait_for(&wanted, read_at, SHORT, &shutdown).await,
            Waited::TimedOut
        );
        indexed.caught_up(Instant::now());
        assert_eq!(
            indexed.wait_for(&wanted, read_at, SHORT, &shutdown).await,
            Waited::Searchable
        );
    }

    #[tokio::test]
    async fn a_waiting_alert_wakes_on_progress_and_on_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let indexed = std::sync::Arc::new(EventsIndexed::default());
        let wanted = awaited(&[Some((0, 5))]);
        let waiting = {
            let (indexed, shutdown, wanted) = (indexed.clone(), shutdown.clone(), wanted.clone());
            tokio::spawn(async move {
                indexed
                    .wait_for(&wanted, Instant::now(), MAX_WAIT, &shutdown)
                    .await
            })
        };
        tokio::time::sleep(SHORT).await;
        indexed.committed(&checkpoint(&[(0, 5)]));
        assert_eq!(waiting.await.unwrap(), Waited::Searchable);

        let waiting = {
            let (indexed, shutdown) = (indexed.clone(), shutdown.clone());
            tokio::spawn(async move {
                indexed
                    .wait_for(
                        &awaited(&[Some((0, 99))]),
                        Instant::now(),
                        MAX_WAIT,
                        &shutdown,
                    )
                    .await
            })
        };
        tokio::time::sleep(SHORT).await;
        stop.send(true).unwrap();
        assert_eq!(waiting.await.unwrap(), Waited::Stopped);
    }
}
