//! Events of a time range oldest first, a page at a time: what replaying stored events
//! through a rule (a backtest) reads, since correlations must see events in time order.
//!
//! Each page asks every partition the range touches for its oldest matches past the cursor
//! and keeps the oldest of them all, so partitions whose spans overlap (a backfill) still come
//! out in one order. Only a page of documents is loaded at a time, so a range of any size
//! takes memory for one page.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};

use vigil_event::Event;

use super::fields;
use super::EventIndex;
use crate::index;
use crate::query::{self, Cursor, Visibility};
use crate::StoreError;

/// The most events one page may hold, whatever is asked: a page is held in memory whole.
pub const MAX_IN_ORDER_PAGE: usize = 10_000;

/// One page of events in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventsInOrder {
    /// Oldest first (by indexed time, then by a tiebreak from the id).
    pub events: Vec<Event>,
    /// Where the next page starts; `None` once the range is exhausted.
    pub next_cursor: Option<String>,
}

type SortKey = (Option<tantivy::DateTime>, Option<u64>);

impl EventIndex {
    /// Events with `from <= time < to` that `visibility` lets through, oldest first, at most
    /// `limit` (capped at [`MAX_IN_ORDER_PAGE`]), after `cursor` (a previous page's
    /// `next_cursor`).
    pub(crate) fn in_time_order(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visibility: &Visibility,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<EventsInOrder, StoreError> {
        let limit = limit.min(MAX_IN_ORDER_PAGE);
        let cursor = cursor.map(Cursor::decode).transpose()?;
        // Oldest first by their earliest event, so that a full page can skip the partitions
        // whose every event comes after it; and those whose every event is at or before the
        // cursor are skipped too, so a long range is not searched whole for every page.
        let mut plan = self.plan(Some(from), Some(to))?;
        plan.sort_by_key(|(key, span)| (span.min, *key));
        let nanos = |time: &DateTime<Utc>| index::to_tantivy(time).into_timestamp_nanos();
        let now = Utc::now();
        let past = cursor.map(|cursor| self.past_cursor(cursor));
        let order = |c: &Cursor| (c.time_nanos, c.tiebreak);
        // The oldest `limit` across partitions, oldest first.
        let mut page: Vec<(Cursor, Event)> = Vec::new();
        for (key, span) in &plan {
            let before_cursor = cursor.is_some_and(|c| nanos(&span.max) < c.time_nanos);
            let after_page = page.len() >= limit
                && page
                    .last()
                    .is_some_and(|(last, _)| last.time_nanos < nanos(&span.min));
            if limit == 0 || before_cursor || after_page {
                continue;
            }
            let partition = self.partition(*key)?;
            // The query is the range and the visibility alone, so translating it for each
            // partition's layout costs next to nothing.
            let queries = self.request_query(
                "",
                visibility,
                Some(from),
                Some(to),
                now,
                [partition.layout],
            )?;
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let searcher = partition.reader.searcher();
            let base = queries.get(partition.layout);
            let query: Box<dyn Query> = match &past {
                Some(past) => Box::new(BooleanQuery::new(vec![
                    (Occur::Must, base.box_clone()),
                    (Occur::Must, past.box_clone()),
                ])),
                None => base.box_clone(),
            };
            for (key, address) in oldest(&searcher, query.as_ref(), limit)? {
                if page.len() >= limit
                    && page
                        .last()
                        .is_some_and(|(last, _)| order(&key) >= order(last))
                {
                    // Its hits come oldest first, so none of the rest makes the page either.
                    break;
                }
                let doc: TantivyDocument = searcher.doc(address)?;
                let at = page.partition_point(|(other, _)| order(other) < order(&key));
                page.insert(at, (key, self.stored_event(&doc)?));
                page.truncate(limit);
            }
        }
        let next_cursor = match page.last() {
            Some((key, _)) if page.len() == limit => Some(key.encode()),
            _ => None,
        };
        Ok(EventsInOrder {
            events: page.into_iter().map(|(_, event)| event).collect(),
            next_cursor,
        })
    }

    /// Events strictly after `cursor` in oldest-first order.
    fn past_cursor(&self, cursor: Cursor) -> Box<dyn Query> {
        let time = |nanos| {
            Term::from_field_date(
                self.fields.time,
                tantivy::DateTime::from_timestamp_nanos(nanos),
            )
        };
        let newer = RangeQuery::new(Bound::Excluded(time(cursor.time_nanos)), Bound::Unbounded);
        let same_time = RangeQuery::new(
            Bound::Included(time(cursor.time_nanos)),
            Bound::Included(time(cursor.time_nanos)),
        );
        let higher_tiebreak = RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(self.fields.tiebreak, cursor.tiebreak)),
            Bound::Unbounded,
        );
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, Box::new(newer) as Box<dyn Query>),
            (
                Occur::Should,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(same_time) as Box<dyn Query>),
                    (Occur::Must, Box::new(higher_tiebreak)),
                ])),
            ),
        ]))
    }
}

/// The oldest `limit` matches of one partition, oldest first, with their sort keys.
fn oldest(
    searcher: &Searcher,
    query: &dyn Query,
    limit: usize,
) -> Result<Vec<(Cursor, DocAddress)>, StoreError> {
    let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
    if limit == 0 {
        return Ok(Vec::new());
    }
    let collector = TopDocs::with_limit(limit).order_by((
        (
            SortByStaticFastValue::<tantivy::DateTime>::for_field(fields::TIME),
            Order::Asc,
        ),
        (
            SortByStaticFastValue::<u64>::for_field(fields::TIEBREAK),
            Order::Asc,
        ),
    ));
    let top: Vec<(SortKey, DocAddress)> = searcher
        .search(query, &collector)
        .map_err(query::search_error)?;
    Ok(top
        .into_iter()
        .map(|((time, tiebreak), address)| {
            let cursor = Cursor {
                time_nanos: time.map_or(i64::MIN, |t| t.into_timestamp_nanos()),
                tiebreak: tiebreak.unwrap_or(0),
            };
            (cursor, address)
        })
        .collect())
}

impl crate::Store {
    /// Events with `from <= time < to` that `visibility` lets through, oldest first (by their
    /// indexed time), a page of at most `limit` at a time (capped at [`MAX_IN_ORDER_PAGE`]):
    /// pass each page's `next_cursor` to get the next. Events stored after the first page
    /// may or may not appear, as in any paged read.
    pub fn events_in_time_order(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        visibility: &Visibility,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<EventsInOrder, StoreError> {
        self.events
            .in_time_order(from, to, visibility, cursor, limit)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde_json::json;
    use vigil_event::{EventId, LogSource, Record, Source};

    use super::*;
    use crate::{PartitionScheme, Store, StoreOptions};

    fn event(n: u32, kind: &str, time: DateTime<Utc>, received: DateTime<Utc>) -> Event {
        Event {
            id: EventId::derive("in order test", &[&n.to_le_bytes()]),
            time,
            received,
            source: Source {
                kind: kind.into(),
                name: kind.into(),
            },
            logsource: LogSource::default(),
            record: Record::json(&json!({ "n": n }).to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    fn numbers(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.document().unwrap()["n"].as_i64().unwrap())
            .collect()
    }

    /// Events that arrived in three hourly partitions, out of time order (a backfill lands in
    /// a later partition than the events after it), come out oldest first across them, page
    /// by page, within the range and without what the caller may not see.
    #[test]
    fn pages_run_oldest_first_across_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                partition: PartitionScheme::hourly(),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let base = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap();
        let at = |minutes: i64| base + Duration::minutes(minutes);
        let arrived = |hours: i64| Utc::now() - Duration::hours(hours);
        // (n, minutes after base, hours ago it arrived); n is the expected order.
        let spec = [
            (1, 0, 3),
            (4, 30, 3),
            (2, 10, 1),
            (6, 50, 2),
            (3, 20, 2),
            (5, 40, 1),
            (7, 52, 1),
            (8, 55, 1),
            (9, 70, 1),
        ];
        let mut events: Vec<Event> = spec
            .iter()
            .map(|&(n, minutes, hours)| event(n, "cloudtrail", at(minutes), arrived(hours)))
            .collect();
        events.push(event(100, "vigil-audit", at(35), arrived(1)));
        store.index_events(&events).unwrap();
        store.commit().unwrap();
        assert!(store.partitions().unwrap().len() >= 3);

        let hiding = Visibility::hiding(&["vigil-audit"]);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = store
                .events_in_time_order(at(0), at(60), &hiding, cursor.as_deref(), 2)
                .unwrap();
            assert!(page.events.len() <= 2);
            seen.extend(numbers(&page.events));
            pages += 1;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(pages < 10, "the pages never end");
        }
        // 9 is at minute 70, outside [0, 60); the audit event is hidden.
        assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7, 8]);

        let everything = store
            .events_in_time_order(at(0), at(60), &Visibility::everything(), None, 100)
            .unwrap();
        assert_eq!(
            numbers(&everything.events),
            vec![1, 2, 3, 4, 100, 5, 6, 7, 8]
        );
        assert_eq!(everything.next_cursor, None);
        assert!(store
            .events_in_time_order(at(0), at(60), &hiding, Some("not a cursor"), 2)
            .is_err());
    }

    /// Partitions whose events all come after a full page, or all at or before the cursor,
    /// are not searched: paging through a long range reads each partition about once.
    #[test]
    fn pages_skip_partitions_they_cannot_reach() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            dir.path(),
            StoreOptions {
                partition: PartitionScheme::hourly(),
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let base = Utc.with_ymd_and_hms(2026, 11, 1, 10, 30, 0).unwrap();
        let events: Vec<Event> = (0..3)
            .map(|n| {
                let arrived = Utc::now() - Duration::hours(3 - i64::from(n));
                event(
                    n + 1,
                    "cloudtrail",
                    base + Duration::hours(2 * i64::from(n)),
                    arrived,
                )
            })
            .collect();
        store.index_events(&events).unwrap();
        store.commit().unwrap();
        assert_eq!(store.partitions().unwrap().len(), 3);
        let before = store.partition_stats().unwrap().partitions_searched;
        let (from, to) = (base - Duration::hours(1), base + Duration::hours(6));
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .events_in_time_order(from, to, &Visibility::everything(), cursor.as_deref(), 1)
                .unwrap();
            seen.extend(numbers(&page.events));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, vec![1, 2, 3]);
        // Four pages: 1 + 2 + 2 + 1 partitions, where searching all would be 3 + 3 + 2 + 1.
        let searched = store.partition_stats().unwrap().partitions_searched - before;
        assert_eq!(searched, 6);
    }
}
