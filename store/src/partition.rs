//! Partitions: which partition an event is written to, which partitions a time range
//! touches, and which partitions retention removes.
//!
//! This is the planning half of partitioning, kept free of I/O so that it can be tested
//! exhaustively; the events index (`events/`) opens, writes and removes the partitions it names.
//!
//! An event's partition comes from its arrival: the time Vigil received it ([`arrival`]).
//! Its own time is written by whoever sent the record, so partitioning by it let a sender
//! choose where events are stored and when retention removes them: one body spanning 1000
//! days made 1000 partitions, a record dated 45 days back was removed by the next retention
//! pass while its alert stayed, and a time in the year 11476 made a directory that could not
//! be read back. Arrival is Vigil's own clock, so a steady stream writes one partition, and
//! retention by arrival keeps every event as long as the period it arrived in.
//!
//! Searches still select by event time: each partition keeps the span of event times it holds
//! ([`TimeSpan`]), and a search over a range reads only the partitions whose span overlaps it.
//! Partitions written by an earlier Vigil were cut by event time; their spans are read from
//! their time column like any other partition's, so they need no conversion.
//!
//! A replay of the bus carries each event's receive time, so it lands in the partition the
//! first delivery did and upsert-by-id (delete the id, add the document) stays inside one
//! partition's index. A resend through ingest on another day arrives in another partition;
//! the writer then keeps the copy already stored (the events index checks every partition's
//! id filter as it writes), so an id has one document across all partitions.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};

use crate::StoreError;

/// Partitions as fixed periods counted from the Unix epoch; one day by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionScheme {
    period_seconds: i64,
}

/// A partition, named by the start of its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PartitionKey {
    pub start: DateTime<Utc>,
}

const DIR_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// How finely a partition's [`TimeSpan`] is kept: its ends are rounded out to whole hours,
/// so a partition written by a steady stream widens its span once an hour, not each commit.
const SPAN_GRAIN_SECONDS: i64 = 3600;

/// The first time taken as a plausible event time: records dated earlier (a zero or negative
/// epoch, a year 0001 default) are flagged as suspect rather than trusted.
pub const EARLIEST_PLAUSIBLE_TIME: &str = "2000-01-01T00:00:00Z";

/// The default of [`crate::StoreOptions::future_skew`]: how far past its arrival an event's
/// own time may lie before it is suspect. Sources stamp events before Vigil receives them,
/// so a later time is a clock that is wrong, or a sender that lies; a few minutes allow for
/// clocks that drift.
pub const DEFAULT_FUTURE_SKEW_SECONDS: i64 = 15 * 60;

fn earliest_plausible() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(EARLIEST_PLAUSIBLE_TIME)
        .expect("a valid RFC 3339 time")
        .with_timezone(&Utc)
}

/// Where an event is stored and at which time it is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The time its partition is chosen by.
    pub(crate) arrival: DateTime<Utc>,
    /// The time searches, ranges, ordering and histograms use: the event's own time, or its
    /// arrival when that time is suspect.
    pub(crate) indexed_time: DateTime<Utc>,
    /// The event's own time is before [`EARLIEST_PLAUSIBLE_TIME`] or more than the skew past
    /// its arrival.
    pub(crate) time_suspect: bool,
}

/// Places an event received at `received` that says it happened at `time`, indexed at `now`.
///
/// The arrival is `received`, which Vigil stamped, unless it is itself implausible (before
/// [`EARLIEST_PLAUSIBLE_TIME`] or past `now + skew`: an event put on the bus by another
/// producer, or a clock that jumped), when it is `now`. A suspect event is indexed at its
/// arrival: indexed at a time in the year 11476 it would head every newest-first page for
/// good, and at one before 1970 it would sit below every range. Its stored record, and the
/// `time` of the stored event, stay as received.
pub(crate) fn place(
    time: DateTime<Utc>,
    received: DateTime<Utc>,
    now: DateTime<Utc>,
    skew: Duration,
) -> Placement {
    let earliest = earliest_plausible();
    let latest = now.checked_add_signed(skew).unwrap_or(now);
    let arrival = if received >= earliest && received <= latest {
        received
    } else {
        now
    };
    let time_suspect = time < earliest
        || arrival
            .checked_add_signed(skew)
            .is_some_and(|last| time > last);
    Placement {
        arrival,
        indexed_time: if time_suspect { arrival } else { time },
        time_suspect,
    }
}

/// The event times a partition holds (both ends inclusive), rounded out to whole hours: a
/// search over a range reads the partition only when the two overlap. It may be wider than
/// what the partition holds, never narrower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeSpan {
    pub min: DateTime<Utc>,
    pub max: DateTime<Utc>,
}

impl TimeSpan {
    /// The span of one event time, rounded out to the hour around it.
    pub fn of(time: DateTime<Utc>) -> TimeSpan {
        let start = time.timestamp().div_euclid(SPAN_GRAIN_SECONDS) * SPAN_GRAIN_SECONDS;
        let min = Utc
            .timestamp_opt(start, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // The last instant of the hour, so that an hour's span does not reach into the next.
        let max = Utc
            .timestamp_opt(start + SPAN_GRAIN_SECONDS, 0)
            .single()
            .map_or(DateTime::<Utc>::MAX_UTC, |end| {
                end - Duration::nanoseconds(1)
            });
        TimeSpan {
            min: min.min(time),
            max: max.max(time),
        }
    }

    /// The span that every time falls in: for a partition whose span cannot be read.
    pub fn everything() -> TimeSpan {
        TimeSpan {
            min: DateTime::<Utc>::MIN_UTC,
            max: DateTime::<Utc>::MAX_UTC,
        }
    }

    /// The smallest span holding both.
    pub fn union(self, other: TimeSpan) -> TimeSpan {
        TimeSpan {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    pub fn covers(&self, other: &TimeSpan) -> bool {
        self.min <= other.min && self.max >= other.max
    }

    /// Whether events in this span may fall in `from..to` (from inclusive, to exclusive;
    /// `None` is open).
    pub fn overlaps(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> bool {
        from.is_none_or(|from| self.max >= from) && to.is_none_or(|to| self.min < to)
    }
}

impl Default for PartitionScheme {
    fn default() -> Self {
        PartitionScheme {
            period_seconds: 86_400,
        }
    }
}

impl PartitionScheme {
    /// A scheme with the given period, from one minute to a year.
    pub fn new(period: Duration) -> Result<PartitionScheme, StoreError> {
        let seconds = period.num_seconds();
        if !(60..=366 * 86_400).contains(&seconds) {
            return Err(StoreError::query(format!(
                "a partition period of {seconds} s is outside 60 s .. 366 days"
            )));
        }
        Ok(PartitionScheme {
            period_seconds: seconds,
        })
    }

    pub fn hourly() -> PartitionScheme {
        PartitionScheme {
            period_seconds: 3600,
        }
    }

    pub fn daily() -> PartitionScheme {
        PartitionScheme::default()
    }

    /// Weeks counted from the epoch, so they start on Thursdays; only the period matters to
    /// the store, never the weekday.
    pub fn weekly() -> PartitionScheme {
        PartitionScheme {
            period_seconds: 7 * 86_400,
        }
    }

    /// Reads `hour`, `day` or `week`, the periods offered in the configuration.
    pub fn from_name(name: &str) -> Result<PartitionScheme, StoreError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "hour" | "hourly" => Ok(PartitionScheme::hourly()),
            "day" | "daily" => Ok(PartitionScheme::daily()),
            "week" | "weekly" => Ok(PartitionScheme::weekly()),
            other => Err(StoreError::query(format!(
                "unknown partition period `{other}`; use hour, day or week"
            ))),
        }
    }

    pub fn period(&self) -> Duration {
        Duration::seconds(self.period_seconds)
    }

    /// The partition holding events at `time`.
    pub fn key(&self, time: DateTime<Utc>) -> PartitionKey {
        let start = time.timestamp().div_euclid(self.period_seconds) * self.period_seconds;
        PartitionKey {
            start: Utc
                .timestamp_opt(start, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// The partitions among `existing` that may hold events in `from..to` (from inclusive,
    /// to exclusive; `None` is open), by the span of event times each holds. A partition
    /// without a span holds no event and is left out. They come newest first by the latest
    /// event each may hold, the order searches read them in.
    pub fn touched(
        &self,
        existing: &[(PartitionKey, Option<TimeSpan>)],
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Vec<(PartitionKey, TimeSpan)> {
        let mut touched: Vec<(PartitionKey, TimeSpan)> = existing
            .iter()
            .filter_map(|(key, span)| span.map(|span| (*key, span)))
            .filter(|(_, span)| span.overlaps(from, to))
            .collect();
        touched.sort_by_key(|(key, span)| std::cmp::Reverse((span.max, *key)));
        touched.dedup_by_key(|(key, _)| *key);
        touched
    }

    /// The partitions retention removes: those whose whole period ended more than `max_age`
    /// before `now`, then the oldest of the rest until the total size fits `max_bytes`.
    /// The newest partition is never removed, nor the one holding `now`: those are the ones
    /// being written. (They differ only after the clock went back, or where an earlier Vigil,
    /// which cut partitions by event time, left one dated in the future.) Partitions follow
    /// arrival, so an event is kept `max_age` after it arrived, whatever its own time.
    pub fn expired(
        &self,
        partitions: &[(PartitionKey, u64)],
        now: DateTime<Utc>,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Vec<PartitionKey> {
        let current = self.key(now);
        let mut oldest_first: Vec<(PartitionKey, u64)> = partitions.to_vec();
        oldest_first.sort_by_key(|(key, _)| *key);
        let Some(newest) = oldest_first.last().map(|(key, _)| *key) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        let mut total: u64 = oldest_first.iter().map(|(_, size)| *size).sum();
        for (key, size) in oldest_first {
            if key == newest {
                break;
            }
            if key == current {
                continue;
            }
            let too_old = max_age.is_some_and(|age| key.start + self.period() <= now - age);
            let too_big = max_bytes.is_some_and(|max| total > max);
            if too_old || too_big {
                removed.push(key);
                total = total.saturating_sub(size);
            }
        }
        removed
    }
}

impl PartitionKey {
    /// The partition's directory name, sortable by time.
    pub fn dir_name(&self) -> String {
        self.start.format(DIR_FORMAT).to_string()
    }

    /// Reads a directory name written by [`PartitionKey::dir_name`]; other names are not
    /// partitions.
    ///
    /// Years outside 0 to 9999 are written with a sign (`+114760815T000000Z`), which chrono
    /// does not parse back. Only partitions cut by event time, before they were cut by
    /// arrival, have such names (made by records dated absurdly); they are read so that what
    /// they hold can be searched after the upgrade.
    pub fn from_dir_name(name: &str) -> Option<PartitionKey> {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(name, DIR_FORMAT) {
            return Some(PartitionKey {
                start: time.and_utc(),
            });
        }
        let sign = match name.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        // The rest after the year: MMDDTHHMMSSZ.
        let split = name.len().checked_sub(12).filter(|at| *at > 1)?;
        let (year, rest) = (name.get(1..split)?, name.get(split..)?);
        if !year.bytes().all(|b| b.is_ascii_digit()) || year.len() > 6 {
            return None;
        }
        let year: i32 = sign * year.parse::<i32>().ok()?;
        let time =
            chrono::NaiveDateTime::parse_from_str(&format!("2000{rest}"), DIR_FORMAT).ok()?;
        let start = chrono::NaiveDate::from_ymd_opt(year, time.month(), time.day())?
            .and_time(time.time())
            .and_utc();
        let key = PartitionKey { start };
        // Only names this very key would be written as.
        (key.dir_name() == name).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn day(d: u32) -> PartitionKey {
        PartitionKey { start: t(d, 0) }
    }

    #[test]
    fn events_fall_in_the_period_that_contains_them() {
        let daily = PartitionScheme::default();
        assert_eq!(daily.key(t(28, 0)), day(28));
        assert_eq!(daily.key(t(28, 23) + Duration::minutes(59)), day(28));
        assert_eq!(daily.key(t(29, 0)), day(29));
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(
            daily.key(before_epoch).start,
            Utc.with_ymd_and_hms(1969, 12, 31, 0, 0, 0).unwrap()
        );
        let hourly = PartitionScheme::new(Duration::hours(1)).unwrap();
        assert_eq!(hourly.key(t(28, 5) + Duration::minutes(30)).start, t(28, 5));
        assert!(PartitionScheme::new(Duration::seconds(5)).is_err());
        assert!(PartitionScheme::new(Duration::days(400)).is_err());
        assert_eq!(PartitionScheme::from_name("Hour").unwrap(), hourly);
        assert_eq!(
            PartitionScheme::from_name("week").unwrap().period(),
            Duration::days(7)
        );
        assert!(PartitionScheme::from_name("fortnight").is_err());
    }

    /// A partition written by arrival holds events of any time; searches select it by the
    /// span of event times it holds, not by its period.
    #[test]
    fn a_range_touches_only_the_partitions_whose_span_it_overlaps() {
        let daily = PartitionScheme::default();
        let span = |from: DateTime<Utc>, to: DateTime<Utc>| {
            Some(TimeSpan::of(from).union(TimeSpan::of(to)))
        };
        let existing = [
            (day(25), span(t(25, 3), t(25, 4))),
            // Arrived on the 26th, with a backfill from the 1st.
            (day(26), span(t(1, 0), t(26, 4))),
            (day(27), span(t(27, 3), t(27, 4))),
            (day(28), span(t(28, 3), t(28, 4))),
            // Created, but nothing in it yet.
            (day(29), None),
        ];
        let keys = |touched: Vec<(PartitionKey, TimeSpan)>| -> Vec<PartitionKey> {
            touched.into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(
            keys(daily.touched(&existing, Some(t(26, 12)), Some(t(27, 6)))),
            [day(27)],
            "the 26th's events end at 05:00"
        );
        assert_eq!(
            keys(daily.touched(&existing, Some(t(5, 0)), Some(t(6, 0)))),
            [day(26)],
            "the backfill is found in the partition it arrived in"
        );
        assert_eq!(
            keys(daily.touched(&existing, Some(t(28, 4)), Some(t(29, 0)))),
            [day(28)],
            "the 28th's events end in the hour from 04:00"
        );
        assert!(daily.touched(&existing, Some(t(28, 5)), None).is_empty());
        assert_eq!(
            keys(daily.touched(&existing, None, Some(t(25, 3)))),
            [day(26)],
            "to is exclusive"
        );
        assert_eq!(
            keys(daily.touched(&existing, None, None)),
            [day(28), day(27), day(26), day(25)],
            "newest first by their latest event, without the empty one"
        );
    }

    #[test]
    fn spans_are_whole_hours_around_their_times() {
        let span = TimeSpan::of(t(28, 5) + Duration::minutes(30));
        let last = |time: DateTime<Utc>| time - Duration::nanoseconds(1);
        assert_eq!((span.min, span.max), (t(28, 5), last(t(28, 6))));
        assert_eq!(
            TimeSpan::of(t(28, 5)),
            span,
            "an hour's first instant is in it"
        );
        let wide = span.union(TimeSpan::of(t(20, 1)));
        assert_eq!((wide.min, wide.max), (t(20, 1), last(t(28, 6))));
        assert!(wide.covers(&span) && !span.covers(&wide));
        let extreme = TimeSpan::of(DateTime::<Utc>::MAX_UTC);
        assert_eq!(extreme.max, DateTime::<Utc>::MAX_UTC);
        let ancient = TimeSpan::of(DateTime::<Utc>::MIN_UTC);
        assert_eq!(ancient.min, DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn absurd_times_are_suspect_and_indexed_at_their_arrival() {
        let skew = Duration::minutes(15);
        let now = t(28, 12);
        let received = now - Duration::seconds(2);
        let placed = |time| place(time, received, now, skew);
        let backfill = placed(now - Duration::days(45));
        assert!(!backfill.time_suspect, "old but plausible");
        assert_eq!(backfill.indexed_time, now - Duration::days(45));
        assert_eq!(backfill.arrival, received);
        let in_skew = placed(received + Duration::minutes(10));
        assert!(!in_skew.time_suspect);
        for absurd in [
            received + Duration::minutes(16),
            DateTime::<Utc>::MAX_UTC,
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap(),
            DateTime::<Utc>::UNIX_EPOCH,
            DateTime::<Utc>::MIN_UTC,
        ] {
            let suspect = placed(absurd);
            assert!(suspect.time_suspect, "{absurd}");
            assert_eq!(suspect.indexed_time, received, "{absurd}");
        }
        // A receive time Vigil cannot have stamped gives way to the indexing time.
        for received in [DateTime::<Utc>::MIN_UTC, now + Duration::days(3)] {
            let placed = place(now, received, now, skew);
            assert_eq!(placed.arrival, now);
            assert!(!placed.time_suspect);
        }
    }

    #[test]
    fn retention_removes_old_partitions_then_the_oldest_until_the_size_fits() {
        let daily = PartitionScheme::default();
        let parts = [
            (day(25), 100),
            (day(26), 100),
            (day(27), 100),
            (day(28), 100),
        ];
        let now = t(28, 12);
        assert_eq!(
            daily.expired(&parts, now, Some(Duration::days(2)), None),
            [day(25)],
            "the 26th ends at the 27th, within two days of now"
        );
        assert_eq!(
            daily.expired(&parts, now, None, Some(250)),
            [day(25), day(26)]
        );
        assert_eq!(
            daily.expired(&parts, now, Some(Duration::days(3)), Some(1)),
            [day(25), day(26), day(27)],
            "the newest partition stays even over the size budget"
        );
        assert!(daily.expired(&parts, now, None, None).is_empty());
        let with_future = [(day(27), 100), (day(28), 100), (day(30), 100)];
        assert_eq!(
            daily.expired(&with_future, now, Some(Duration::zero()), Some(1)),
            [day(27)],
            "the partition holding now stays even when a future one is newer"
        );
        assert!(daily
            .expired(&[], now, Some(Duration::zero()), Some(0))
            .is_empty());
    }

    #[test]
    fn directory_names_round_trip_and_sort_by_time() {
        let key = day(28);
        assert_eq!(key.dir_name(), "20261128T000000Z");
        assert_eq!(PartitionKey::from_dir_name(&key.dir_name()), Some(key));
        assert_eq!(PartitionKey::from_dir_name("lost+found"), None);
        // Partitions cut by event time before arrival could be dated beyond year 9999 or
        // before year 0, and are read back after the upgrade.
        let daily = PartitionScheme::default();
        for absurd in [
            Utc.timestamp_millis_opt(300_000_000_000_000).unwrap(),
            Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(262_000, 2, 29, 0, 0, 0).unwrap(),
        ] {
            let key = daily.key(absurd);
            let name = key.dir_name();
            assert!(name.starts_with('+') || name.starts_with('-'), "{name}");
            assert_eq!(PartitionKey::from_dir_name(&name), Some(key), "{name}");
        }
        for not_a_partition in [
            "+",
            "+0101T000000Z",
            "+x1476-0815T000000Z",
            "+114760815T000000",
            "-50000101T0000Z",
            "+0020000101T000000Z",
        ] {
            assert_eq!(
                PartitionKey::from_dir_name(not_a_partition),
                None,
                "{not_a_partition}"
            );
        }
        assert!(day(9).dir_name() < day(28).dir_name());
    }
}
