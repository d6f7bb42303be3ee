//! Matches counted by when they arrived rather than by their own time.
//!
//! An event's own time is whatever its sender wrote: a source can look silent by dating its
//! records last year, or busy by dating them now. What an operator watches (events per
//! second, when a source was last heard from) is therefore read from arrivals, which Vigil
//! stamps and partitions are cut by. Partitions of [`Layout::Arrivals`] keep each event's
//! arrival as a column; older partitions lack it and answer by event time, which only the
//! partition being written when Vigil was upgraded can still take.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::Field;
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument, Term};

use vigil_event::Event;

use super::fields;
use super::layout::Layout;
use super::EventIndex;
use crate::aggregate;
use crate::index;
use crate::partition::PartitionKey;
use crate::query::{self, Visibility};
use crate::StoreError;

impl EventIndex {
    /// The column of arrivals of a layout, with its field; event times where it has none.
    fn arrival_column(&self, layout: Layout) -> (&'static str, Field) {
        if layout.has_arrivals() {
            (fields::RECEIVED, self.fields.received)
        } else {
            (fields::TIME, self.fields.time)
        }
    }

    /// Partitions that may hold events that arrived in `from..to`, newest first. Partitions
    /// are cut by arrival, so each holds the arrivals of its own period only.
    fn arrived_in(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<PartitionKey>, StoreError> {
        let period = self.scheme.period();
        let mut keys: Vec<PartitionKey> = self
            .partitions()?
            .into_iter()
            .filter(|key| {
                let end = key.start.checked_add_signed(period).unwrap_or(key.start);
                from.is_none_or(|from| end > from) && to.is_none_or(|to| key.start < to)
            })
            .collect();
        keys.sort_by_key(|key| std::cmp::Reverse(*key));
        Ok(keys)
    }

    /// How many events matching `text` arrived in each interval of `from..to`, cut as
    /// [`EventIndex::histogram`] cuts event times.
    pub(crate) fn arrival_histogram(
        &self,
        text: &str,
        visibility: &Visibility,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<aggregate::Histogram, StoreError> {
        let mut searchers: Vec<(Searcher, Layout)> = Vec::new();
        for key in self.arrived_in(Some(from), Some(to))? {
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let partition = self.partition(key)?;
            searchers.push((partition.reader.searcher(), partition.layout));
        }
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let matches = self.request_query(text, visibility, None, None, Utc::now(), layouts)?;
        let bounded: Vec<(Box<dyn Query>, &'static str)> = searchers
            .iter()
            .map(|(_, layout)| {
                let (name, field) = self.arrival_column(*layout);
                (within(matches.get(*layout), field, from, to), name)
            })
            .collect();
        let timed: Vec<aggregate::TimedSearch<'_>> = searchers
            .iter()
            .zip(&bounded)
            .map(|((searcher, _), (query, name))| (searcher, query.as_ref(), *name))
            .collect();
        aggregate::histogram(&timed, Some(from), Some(to))
    }

    /// The event matching `text` that arrived last, if any: the newest partition holding a
    /// match holds it.
    pub(crate) fn last_arrived(
        &self,
        text: &str,
        visibility: &Visibility,
    ) -> Result<Option<Event>, StoreError> {
        let keys = self.arrived_in(None, None)?;
        let mut partitions = Vec::with_capacity(keys.len());
        for key in keys {
            partitions.push(self.partition(key)?);
        }
        let layouts = partitions.iter().map(|p| p.layout);
        let matches = self.request_query(text, visibility, None, None, Utc::now(), layouts)?;
        for partition in partitions {
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let searcher = partition.reader.searcher();
            let (column, _) = self.arrival_column(partition.layout);
            let newest = index::greatest_by::<tantivy::DateTime, u64>(
                &searcher,
                matches.get(partition.layout),
                1,
                column,
                fields::TIEBREAK,
            )
            .map_err(query::search_error)?;
            if let Some((_, address)) = newest.first() {
                let doc: TantivyDocument = searcher.doc(*address)?;
                return Ok(Some(self.stored_event(&doc)?));
            }
        }
        Ok(None)
    }
}

impl EventIndex {
    /// How many events matching `text` that arrived in `from..to` arrived more than
    /// `lateness` after their own time: a shipper that lags, a backlog delivered at once, or
    /// a clock that runs slow. Partitions without arrivals cannot tell, and add nothing.
    pub(crate) fn late_arrivals(
        &self,
        text: &str,
        visibility: &Visibility,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        lateness: chrono::Duration,
    ) -> Result<u64, StoreError> {
        let mut partitions = Vec::new();
        for key in self.arrived_in(Some(from), Some(to))? {
            let partition = self.partition(key)?;
            if partition.layout.has_arrivals() {
                partitions.push(partition);
            }
        }
        let layouts = partitions.iter().map(|p| p.layout);
        let matches = self.request_query(text, visibility, None, None, Utc::now(), layouts)?;
        let collector = LateCount {
            lateness_nanos: lateness.num_nanoseconds().unwrap_or(i64::MAX),
        };
        let mut late = 0;
        for partition in partitions {
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let query = within(
                matches.get(partition.layout),
                self.fields.received,
                from,
                to,
            );
            late += partition
                .reader
                .searcher()
                .search(query.as_ref(), &collector)
                .map_err(query::search_error)?;
        }
        Ok(late)
    }
}

/// Counts matches whose arrival is more than `lateness_nanos` after their indexed time.
struct LateCount {
    lateness_nanos: i64,
}

struct SegmentLateCount {
    time: Column<tantivy::DateTime>,
    arrival: Column<tantivy::DateTime>,
    lateness_nanos: i64,
    late: u64,
}

impl Collector for LateCount {
    type Fruit = u64;
    type Child = SegmentLateCount;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentLateCount> {
        Ok(SegmentLateCount {
            time: reader.fast_fields().date(fields::TIME)?,
            arrival: reader.fast_fields().date(fields::RECEIVED)?,
            lateness_nanos: self.lateness_nanos,
            late: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<u64>) -> tantivy::Result<u64> {
        Ok(fruits.into_iter().sum())
    }
}

impl SegmentCollector for SegmentLateCount {
    type Fruit = u64;

    fn collect(&mut self, doc: DocId, _: Score) {
        let (Some(time), Some(arrival)) = (self.time.first(doc), self.arrival.first(doc)) else {
            return;
        };
        let behind = arrival
            .into_timestamp_nanos()
            .saturating_sub(time.into_timestamp_nanos());
        if behind > self.lateness_nanos {
            self.late += 1;
        }
    }

    fn harvest(self) -> u64 {
        self.late
    }
}

/// `matches` with its `field` (a date column) in `from..to`.
fn within(
    matches: &dyn Query,
    field: Field,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Box<dyn Query> {
    let at = |t: &DateTime<Utc>| Term::from_field_date(field, index::to_tantivy(t));
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, matches.box_clone()),
        (
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(at(&from)),
                Bound::Excluded(at(&to)),
            )),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, DurationRound, TimeZone};
    use serde_json::json;
    use vigil_event::{EventId, LogSource, Record, Source};

    use super::*;
    use crate::events::layout::schema;
    use crate::partition::PartitionScheme;

    fn event(n: u32, name: &str, time: DateTime<Utc>, received: DateTime<Utc>) -> Event {
        Event {
            id: EventId::derive("arrivals test", &[&n.to_le_bytes()]),
            time,
            received,
            source: Source {
                kind: "cloudtrail".into(),
                name: name.into(),
            },
            logsource: LogSource::default(),
            record: Record::json(&json!({ "n": n }).to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    fn n(event: &Event) -> i64 {
        event.document().unwrap()["n"].as_i64().unwrap()
    }

    /// Events dated years ago or minutes ahead, all received in the last minutes, are counted
    /// where they arrived; the last to arrive is the last, whatever its date.
    #[test]
    fn arrivals_count_when_events_arrived_not_when_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), PartitionScheme::hourly(), false, 8).unwrap();
        let now = Utc::now().duration_trunc(Duration::minutes(1)).unwrap();
        let long_ago = Utc.with_ymd_and_hms(2021, 3, 1, 12, 0, 0).unwrap();
        // Within the allowed skew, so it is indexed at its own time, not as a suspect one.
        let ahead = now + Duration::minutes(10);
        index
            .index(&[
                event(1, "trail", long_ago, now - Duration::minutes(3)),
                event(2, "trail", ahead, now - Duration::minutes(2)),
                event(3, "trail", long_ago, now - Duration::minutes(1)),
                event(
                    4,
                    "other",
                    now - Duration::minutes(1),
                    now - Duration::seconds(30),
                ),
            ])
            .unwrap();
        index.commit().unwrap();
        let trail = "source_name:trail";
        let everyone = Visibility::everything();

        let arrived = index
            .arrival_histogram(trail, &everyone, now - Duration::minutes(10), now)
            .unwrap();
        let per_minute: Vec<(i64, u64)> = arrived
            .buckets
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| ((now - b.start).num_minutes(), b.count))
            .collect();
        assert_eq!(per_minute, [(3, 1), (2, 1), (1, 1)]);
        // By their own times, none of them falls in the last ten minutes.
        let dated = index
            .histogram(
                trail,
                &everyone,
                Some(now - Duration::minutes(10)),
                Some(now),
            )
            .unwrap();
        assert_eq!(dated.buckets.iter().map(|b| b.count).sum::<u64>(), 0);

        let last = index.last_arrived(trail, &everyone).unwrap().unwrap();
        assert_eq!((n(&last), last.time), (3, long_ago));
        // Dated years back, two arrived late; the one dated ahead and the other source's
        // event (a minute behind) did not.
        let late = |text: &str, lateness: Duration| {
            index
                .late_arrivals(text, &everyone, now - Duration::minutes(10), now, lateness)
                .unwrap()
        };
        assert_eq!(late(trail, Duration::minutes(15)), 2);
        assert_eq!(late("", Duration::minutes(15)), 2);
        assert_eq!(late("", Duration::seconds(10)), 3);
        let last = index.last_arrived("", &everyone).unwrap().unwrap();
        assert_eq!(n(&last), 4);
        assert!(index
            .last_arrived("source_name:nobody", &everyone)
            .unwrap()
            .is_none());
    }

    /// A partition written before arrivals were kept answers by event time, and is read
    /// beside one that keeps them.
    #[test]
    fn partitions_without_arrivals_answer_by_event_time() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::hourly();
        // Half past an hour that has passed: arrivals are never in the future, and a search
        // reads the partitions up to the present.
        let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::minutes(30);
        let earlier = now - Duration::hours(1);
        {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            index
                .schemas
                .retain(|s| *s == schema(Layout::SuspectTimes).0);
            index
                .index(&[event(1, "trail", earlier, earlier + Duration::seconds(5))])
                .unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        index.index(&[event(2, "trail", earlier, now)]).unwrap();
        index.commit().unwrap();
        let arrived = index
            .arrival_histogram(
                "",
                &Visibility::everything(),
                earlier - Duration::minutes(30),
                now + Duration::minutes(30),
            )
            .unwrap();
        let counted: Vec<(i64, u64)> = arrived
            .buckets
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| ((b.start - earlier).num_minutes(), b.count))
            .collect();
        // The old partition's event by its own time, the new one's by its arrival.
        assert_eq!(counted, [(0, 1), (60, 1)]);
        let last = index
            .last_arrived("", &Visibility::everything())
            .unwrap()
            .unwrap();
        assert_eq!(n(&last), 2);
    }
}
