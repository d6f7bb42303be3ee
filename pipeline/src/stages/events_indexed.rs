//! How far the events indexer has made the events topic searchable, which the alerts indexer
//! waits for so that an alert is never listed before its events can be found.
//!
//! The two indexers commit apart: the events index at its own interval (the costly commit),
//! the alerts index as soon as a batch of alerts may be listed. Detection records where the
//! event that raised an alert sits on the events topic ([`vigil_event::Alert::event_position`]),
//! and an alert may be listed once the events index holds everything up to that offset of that
//! partition, which is known in one of two ways:
//!
//! - **Reported.** After each store commit, the events indexer reports the offsets up to which
//!   everything it read is searchable ([`EventsIndexed::committed`]). This is the common case,
//!   and costs nothing.
//! - **Confirmed.** What the events indexer has not read since it started (after a restart, a
//!   partition no new event arrived on) it cannot report. When a report has not come within
//!   [`CONFIRM_EVERY`], the alerts indexer looks the newest alert's events up in the store; the
//!   events indexer reads each partition in order and commits offsets only after the store, so
//!   if those events are searchable, so is everything before them on that partition
//!   ([`EventsIndexed::confirmed`]). Alerts that carry no position (raised before it was
//!   recorded) are confirmed by their own events. The inference assumes an event id appears
//!   once on its partition; a sender's retry can publish it twice, and then alerts between the
//!   two copies may be listed a moment before their events, but only on this fallback path.
//!
//! While alerts wait, the events indexer commits as soon as a commit would let them be listed
//! ([`EventsIndexed::commit_would_release`]), rather than at the end of its interval: the
//! interval keeps commits few while nothing waits, and an alert does not pay for it.
//!
//! An alert waits at most [`MAX_WAIT`] (the events indexer stuck, or far behind after an
//! outage); past it, it is listed anyway and counted in `vigil_index_alerts_unconfirmed_total`:
//! visible early rather than held back, and never lost. [`MAX_WAIT`] stays well under Kafka's
//! `max.poll.interval.ms` (at least 30 s here), since the alerts consumer does not poll while
//! it waits.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use vigil_bus::Checkpoint;
use vigil_event::{BusPosition, EventId};

use super::Shutdown;

/// How long an alert waits for a report before its events are looked up in the store.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// The longest an alert waits for its events to be searchable before it is listed anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// What the events indexer has made searchable so far, shared with the alerts indexer.
#[derive(Debug)]
pub struct EventsIndexed {
    /// Per partition of the events topic, the offset below which every event is searchable.
    searchable_below: watch::Sender<BTreeMap<u32, u64>>,
    /// Per partition, the newest offset the alerts waiting now need searchable. A watch
    /// channel only for its lock-free reads; nothing subscribes.
    waiting: watch::Sender<BTreeMap<u32, u64>>,
}

/// What one batch of alerts waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Awaited {
    /// Per partition, the newest awaited offset, with the events of an alert raised there.
    newest: BTreeMap<u32, (u64, Vec<EventId>)>,
    /// The events of alerts that carry no position.
    unplaced: Vec<EventId>,
}

impl Awaited {
    /// Adds an alert raised at `position` on `events`.
    pub fn add(&mut self, position: Option<BusPosition>, events: &[EventId]) {
        match position {
            Some(BusPosition { partition, offset }) => {
                let newest = self.newest.entry(partition).or_insert((offset, Vec::new()));
                if offset > newest.0 || newest.1.is_empty() {
                    *newest = (offset, events.to_vec());
                }
            }
            None => self.unplaced.extend_from_slice(events),
        }
    }

    /// The events whose being searchable would settle what is still awaited beyond
    /// `searchable_below`: for each partition not covered, the newest alert's; and those of
    /// alerts without a position.
    pub fn to_confirm(
        &self,
        searchable_below: &BTreeMap<u32, u64>,
    ) -> Vec<(Option<u32>, u64, Vec<EventId>)> {
        let mut left: Vec<_> = self
            .newest
            .iter()
            .filter(|(partition, (offset, _))| !covered(searchable_below, **partition, *offset))
            .map(|(partition, (offset, events))| (Some(*partition), *offset, events.clone()))
            .collect();
        if !self.unplaced.is_empty() {
            let mut events = self.unplaced.clone();
            events.sort_unstable_by_key(|id| *id.as_bytes());
            events.dedup();
            left.push((None, 0, events));
        }
        left
    }

    /// Settles the alerts without a position, whose events were found searchable.
    pub fn unplaced_confirmed(&mut self) {
        self.unplaced.clear();
    }

    /// Whether the alert raised at `position`, one of those awaited, is settled by
    /// `searchable_below` or, without a position, by the store's confirmation.
    pub fn settled(
        &self,
        position: Option<BusPosition>,
        searchable_below: &BTreeMap<u32, u64>,
    ) -> bool {
        match position {
            Some(BusPosition { partition, offset }) => covered(searchable_below, partition, offset),
            None => self.unplaced.is_empty(),
        }
    }
}

fn covered(searchable_below: &BTreeMap<u32, u64>, partition: u32, offset: u64) -> bool {
    searchable_below
        .get(&partition)
        .is_some_and(|&below| offset < below)
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// What was waited for is searchable.
    Searchable,
    /// The time given passed first.
    TimedOut,
    /// Shutdown began first.
    Stopped,
}

impl Default for EventsIndexed {
    fn default() -> Self {
        EventsIndexed {
            searchable_below: watch::Sender::new(BTreeMap::new()),
            waiting: watch::Sender::new(BTreeMap::new()),
        }
    }
}

impl EventsIndexed {
    /// Notes that everything `checkpoint` covers is now searchable (a store commit returned).
    pub fn committed(&self, checkpoint: &Checkpoint) {
        if !checkpoint.is_empty() {
            self.raise(checkpoint.partitions());
        }
    }

    /// Notes that the store holds the events raised at `offset` of `partition`, so everything
    /// up to it is searchable.
    pub fn confirmed(&self, partition: u32, offset: u64) {
        self.raise([(partition, offset + 1)]);
    }

    /// Moves each partition's `searchable_below` up to the offset given, never down.
    fn raise(&self, below: impl IntoIterator<Item = (u32, u64)>) {
        self.searchable_below.send_modify(|searchable_below| {
            for (partition, next) in below {
                let at = searchable_below.entry(partition).or_insert(next);
                *at = (*at).max(next);
            }
        });
    }

    /// The offsets below which every event is searchable, per partition, as now known.
    pub fn searchable_below(&self) -> BTreeMap<u32, u64> {
        self.searchable_below.borrow().clone()
    }

    /// Notes, until the guard is dropped, that the alerts `awaited` names are waiting, so
    /// that the events indexer commits as soon as that would release them.
    #[must_use = "the note lasts only as long as the guard"]
    pub fn waiting_for(&self, awaited: &Awaited) -> Waiting<'_> {
        Waiting::start(&self.waiting, awaited)
    }

    /// Waits, for at most `limit`, until `ready` holds of the searchable offsets:
    /// [`Waited::Searchable`] when it does. The caller notes what waits ([`Self::waiting_for`]).
    pub async fn wait_until(
        &self,
        ready: impl FnMut(&BTreeMap<u32, u64>) -> bool,
        limit: Duration,
        shutdown: &Shutdown,
    ) -> Waited {
        let mut progress = self.searchable_below.subscribe();
        let mut shutdown = shutdown.clone();
        let searchable = progress.wait_for(ready);
        tokio::select! {
            // The sender lives as long as `self`, so the wait ends only when ready.
            Ok(_) = searchable => Waited::Searchable,
            _ = tokio::time::sleep(limit) => Waited::TimedOut,
            _ = shutdown.wait_for(|stop| *stop) => Waited::Stopped,
        }
    }

    /// Whether committing the events `indexed` covers (read, not yet committed) would let
    /// the alerts waiting now be listed: what the events indexer asks between its reads.
    pub fn commit_would_release(&self, indexed: &Checkpoint) -> bool {
        let waiting = self.waiting.borrow();
        if waiting.is_empty() {
            return false;
        }
        let searchable_below = self.searchable_below.borrow();
        let indexed: BTreeMap<u32, u64> = indexed.partitions().collect();
        waiting.iter().all(|(&partition, &offset)| {
            covered(&searchable_below, partition, offset) || covered(&indexed, partition, offset)
        })
    }
}

/// Records what a wait needs, for [`EventsIndexed::commit_would_release`], while it lasts.
pub struct Waiting<'a>(&'a watch::Sender<BTreeMap<u32, u64>>);

impl<'a> Waiting<'a> {
    fn start(slot: &'a watch::Sender<BTreeMap<u32, u64>>, awaited: &Awaited) -> Self {
        slot.send_replace(
            awaited
                .newest
                .iter()
                .map(|(&partition, (offset, _))| (partition, *offset))
                .collect(),
        );
        Waiting(slot)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.send_replace(BTreeMap::new());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use vigil_bus::Delivery;

    use super::*;

    /// Waits, as the alerts indexer does, until everything `awaited` names is searchable, for
    /// at most `limit`.
    async fn wait_for(
        indexed: &EventsIndexed,
        awaited: &Awaited,
        limit: Duration,
        shutdown: &Shutdown,
    ) -> Waited {
        let _waiting = indexed.waiting_for(awaited);
        let everything = |below: &BTreeMap<u32, u64>| {
            awaited.unplaced.is_empty()
                && awaited
                    .newest
                    .iter()
                    .all(|(&partition, (offset, _))| covered(below, partition, *offset))
        };
        indexed.wait_until(everything, limit, shutdown).await
    }

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

    fn event(n: u8) -> EventId {
        EventId::derive("test", &[&[n]])
    }

    fn awaited(positions: &[Option<(u32, u64)>]) -> Awaited {
        let mut awaited = Awaited::default();
        for (n, position) in positions.iter().enumerate() {
            let position = position.map(|(partition, offset)| BusPosition { partition, offset });
            awaited.add(position, &[event(n as u8)]);
        }
        awaited
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn an_alert_waits_until_its_partition_is_committed_past_its_event() {
        let (_stop, shutdown) = watch::channel(false);
        let indexed = EventsIndexed::default();
        let wanted = awaited(&[Some((0, 10)), Some((1, 3)), Some((0, 4))]);
        let waited = |wanted: Awaited| {
            let (indexed, shutdown) = (&indexed, &shutdown);
            async move { wait_for(indexed, &wanted, SHORT, shutdown).await }
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
    async fn what_is_left_to_confirm_is_the_newest_alert_of_each_partition_not_covered() {
        let (_stop, shutdown) = watch::channel(false);
        let indexed = EventsIndexed::default();
        let mut wanted = awaited(&[Some((0, 10)), Some((1, 3)), Some((0, 4)), None]);
        indexed.committed(&checkpoint(&[(1, 3)]));
        let left = wanted.to_confirm(&indexed.searchable_below());
        assert_eq!(
            left,
            [(Some(0), 10, vec![event(0)]), (None, 0, vec![event(3)])]
        );

        // A confirmation covers everything up to it; alerts without a position only wait
        // for their own events.
        indexed.confirmed(0, 10);
        assert_eq!(
            wait_for(&indexed, &wanted, SHORT, &shutdown).await,
            Waited::TimedOut
        );
        let below = indexed.searchable_below();
        let position = |offset| {
            Some(BusPosition {
                partition: 0,
                offset,
            })
        };
        assert!(wanted.settled(position(10), &below));
        assert!(!wanted.settled(position(11), &below));
        assert!(!wanted.settled(None, &below));
        wanted.unplaced_confirmed();
        assert!(wanted.settled(None, &below));
        assert_eq!(
            wait_for(&indexed, &wanted, SHORT, &shutdown).await,
            Waited::Searchable
        );
        assert!(wanted.to_confirm(&indexed.searchable_below()).is_empty());
        // A confirmation never moves progress back.
        indexed.confirmed(0, 2);
        assert_eq!(indexed.searchable_below()[&0], 11);
    }

    #[tokio::test]
    async fn a_commit_is_asked_for_only_when_it_would_release_the_waiting_alerts() {
        let (_stop, shutdown) = watch::channel(false);
        let indexed = std::sync::Arc::new(EventsIndexed::default());
        // Nothing waits: no early commit, whatever was read.
        assert!(!indexed.commit_would_release(&checkpoint(&[(0, 99)])));
        let waiting = {
            let (indexed, shutdown) = (indexed.clone(), shutdown.clone());
            tokio::spawn(async move {
                let wanted = awaited(&[Some((0, 10)), Some((1, 3))]);
                wait_for(&indexed, &wanted, MAX_WAIT, &shutdown).await
            })
        };
        tokio::time::sleep(SHORT).await;
        // Read past one partition's alert but not the other's: a commit would not do.
        assert!(!indexed.commit_would_release(&checkpoint(&[(0, 10), (1, 2)])));
        // Partition 1 already searchable, partition 0 read: it would.
        indexed.committed(&checkpoint(&[(1, 3)]));
        assert!(indexed.commit_would_release(&checkpoint(&[(0, 10)])));
        indexed.committed(&checkpoint(&[(0, 10)]));
        assert_eq!(waiting.await.unwrap(), Waited::Searchable);
        // The wait is over: nothing asks for a commit any more.
        assert!(!indexed.commit_would_release(&checkpoint(&[(0, 10)])));
    }

    #[tokio::test]
    async fn a_waiting_alert_wakes_on_progress_and_on_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let indexed = std::sync::Arc::new(EventsIndexed::default());
        let wanted = awaited(&[Some((0, 5))]);
        let waiting = {
            let (indexed, shutdown, wanted) = (indexed.clone(), shutdown.clone(), wanted.clone());
            tokio::spawn(async move { wait_for(&indexed, &wanted, MAX_WAIT, &shutdown).await })
        };
        tokio::time::sleep(SHORT).await;
        indexed.committed(&checkpoint(&[(0, 5)]));
        assert_eq!(waiting.await.unwrap(), Waited::Searchable);

        let waiting = {
            let (indexed, shutdown) = (indexed.clone(), shutdown.clone());
            tokio::spawn(async move {
                wait_for(&indexed, &awaited(&[Some((0, 99))]), MAX_WAIT, &shutdown).await
            })
        };
        tokio::time::sleep(SHORT).await;
        stop.send(true).unwrap();
        assert_eq!(waiting.await.unwrap(), Waited::Stopped);
    }
}
