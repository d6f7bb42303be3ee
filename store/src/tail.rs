//! The live tail's view of the store: every event committed by this store gets the next
//! number of an in-memory arrival log, and a tail asks for the matching events numbered
//! after the last one it saw. The order is the order of indexing, which a sender cannot
//! choose, unlike an event's own time: a record dated last year still shows up as it
//! arrives.
//!
//! The log holds the ids of the last [`KEPT_ARRIVALS`] events only; a tail that falls
//! further behind is told it missed some ([`Arrived::gap`]). Numbers start at the time the
//! store opened, in microseconds, so that a cursor from before a restart is older than any
//! number this process gives and reads as a gap rather than as a future number.

use std::collections::VecDeque;
use std::sync::Mutex;

use vigil_event::{Event, EventId};

use crate::index::lock;
use crate::query::Visibility;
use crate::{Store, StoreError};

/// How many of the latest committed event ids the log keeps.
pub const KEPT_ARRIVALS: usize = 100_000;

/// The most ids one [`Store::arrived_since`] call looks at.
const IDS_PER_CALL: usize = 5_000;

/// What arrived after a cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrived {
    /// The matching events, each with its number, in the order they were committed.
    pub events: Vec<(u64, Event)>,
    /// Where the next call continues from.
    pub cursor: u64,
    /// Whether some events after the cursor are no longer in the log (too many arrived since,
    /// or the cursor is from before this process started), so may have been missed.
    pub gap: bool,
}

/// The ids of the latest committed events, numbered in commit order.
pub(crate) struct ArrivalLog {
    inner: Mutex<LogInner>,
}

struct LogInner {
    /// Ids indexed but not yet taken by a commit.
    staged: Vec<EventId>,
    /// The latest committed ids with their numbers, oldest first.
    committed: VecDeque<(u64, EventId)>,
    /// The number the log started at; every number it gives is above it.
    base: u64,
    /// The last number given (`base` before any).
    last: u64,
}

impl ArrivalLog {
    pub(crate) fn new() -> ArrivalLog {
        let base = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        ArrivalLog {
            inner: Mutex::new(LogInner {
                staged: Vec::new(),
                committed: VecDeque::new(),
                base,
                last: base,
            }),
        }
    }

    /// Notes ids just handed to the index, to be numbered at the next commit.
    pub(crate) fn stage(&self, ids: impl IntoIterator<Item = EventId>) {
        let mut inner = lock(&self.inner);
        inner.staged.extend(ids);
        // Without commits (a failing disk), staged ids must not grow without bound either.
        if inner.staged.len() > KEPT_ARRIVALS {
            let excess = inner.staged.len() - KEPT_ARRIVALS;
            inner.staged.drain(..excess);
        }
    }

    /// Takes the staged ids before a commit: everything staged by then was handed to the
    /// index before it, so the commit makes it searchable.
    pub(crate) fn take_staged(&self) -> Vec<EventId> {
        std::mem::take(&mut lock(&self.inner).staged)
    }

    /// Puts back ids whose commit failed, to be numbered by the next one.
    pub(crate) fn restage(&self, ids: Vec<EventId>) {
        let mut inner = lock(&self.inner);
        let later = std::mem::replace(&mut inner.staged, ids);
        inner.staged.extend(later);
    }

    /// Numbers ids a commit has made searchable.
    pub(crate) fn committed(&self, ids: Vec<EventId>) {
        let mut inner = lock(&self.inner);
        for id in ids {
            inner.last += 1;
            let number = inner.last;
            inner.committed.push_back((number, id));
        }
        while inner.committed.len() > KEPT_ARRIVALS {
            inner.committed.pop_front();
        }
    }

    /// The last number given.
    pub(crate) fn cursor(&self) -> u64 {
        lock(&self.inner).last
    }

    /// Up to `limit` ids numbered after `cursor`, whether some after it are gone, and the
    /// last number given (where a caller that got no ids carries on from: read under the
    /// same lock, so no commit falls between).
    fn since(&self, cursor: u64, limit: usize) -> (Vec<(u64, EventId)>, bool, u64) {
        let inner = lock(&self.inner);
        // A cursor past the last number is not one this process gave: start from now.
        let cursor = cursor.min(inner.last);
        let oldest_kept = inner
            .committed
            .front()
            .map_or(inner.last + 1, |(number, _)| *number);
        let gap = cursor < inner.base || cursor + 1 < oldest_kept;
        let start = inner
            .committed
            .partition_point(|(number, _)| *number <= cursor);
        let ids = inner
            .committed
            .range(start..)
            .take(limit)
            .copied()
            .collect();
        (ids, gap, inner.last)
    }
}

impl Store {
    /// Where a live tail that starts now begins: events committed after this call come after
    /// it.
    pub fn arrival_cursor(&self) -> u64 {
        self.arrivals.cursor()
    }

    /// The events committed after `cursor` that match `query` and that `visibility` shows,
    /// at most `limit`, oldest first. A cursor this process did not give (a future number)
    /// reads as [`Store::arrival_cursor`]. A bad query fails even when nothing arrived.
    pub fn arrived_since(
        &self,
        cursor: u64,
        query: &str,
        visibility: &Visibility,
        limit: usize,
    ) -> Result<Arrived, StoreError> {
        let (numbered, gap, last) = self.arrivals.since(cursor, IDS_PER_CALL);
        let ids: Vec<EventId> = numbered.iter().map(|(_, id)| *id).collect();
        let mut matching: std::collections::HashMap<EventId, Event> = self
            .events
            .matching_among(&ids, query, visibility)?
            .into_iter()
            .map(|event| (event.id, event))
            .collect();
        let mut next = numbered.last().map_or(last, |(number, _)| *number);
        let mut events = Vec::new();
        for (number, id) in numbered {
            if let Some(event) = matching.remove(&id) {
                if events.len() == limit {
                    // Full: the next call starts just before this one.
                    next = number - 1;
                    break;
                }
                events.push((number, event));
            }
        }
        Ok(Arrived {
            events,
            cursor: next,
            gap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EventId {
        EventId::derive("arrival log test", &[&n.to_le_bytes()])
    }

    #[test]
    fn numbers_follow_commits_and_old_cursors_report_a_gap() {
        let log = ArrivalLog::new();
        let start = log.cursor();
        log.stage([id(1), id(2)]);
        let taken = log.take_staged();
        // Staged during the commit: numbered by the next one, not this one.
        log.stage([id(3)]);
        log.committed(taken);
        assert_eq!(
            log.since(start, 10),
            (
                vec![(start + 1, id(1)), (start + 2, id(2))],
                false,
                start + 2
            )
        );
        assert_eq!(
            log.since(start + 1, 10),
            (vec![(start + 2, id(2))], false, start + 2)
        );
        assert_eq!(log.since(start, 1).0, vec![(start + 1, id(1))]);
        // A failed commit puts its ids back ahead of those staged since.
        let taken = log.take_staged();
        log.stage([id(4)]);
        log.restage(taken);
        log.committed(log.take_staged());
        let after: Vec<EventId> = log
            .since(start + 2, 10)
            .0
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(after, vec![id(3), id(4)]);
        // A future cursor reads as now; one from before this log started is a gap.
        assert_eq!(log.since(u64::MAX, 10), (vec![], false, start + 4));
        assert!(log.since(start - 1, 10).1);
    }

    #[test]
    fn the_log_keeps_only_the_latest_and_says_so() {
        let log = ArrivalLog::new();
        let start = log.cursor();
        log.committed((0..KEPT_ARRIVALS as u32 + 5).map(id).collect());
        let (ids, gap, _) = log.since(start, 1);
        assert!(gap);
        assert_eq!(ids, vec![(start + 6, id(5))]);
        let (_, gap, _) = log.since(start + 5, 1);
        assert!(!gap);
    }
}
