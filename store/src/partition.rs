//! Time partitions: which partition an event belongs to, which partitions a time range
//! touches, and which partitions retention removes.
//!
//! This is the planning half of partitioning, kept free of I/O so that it can be tested
//! exhaustively; `events.rs` opens, writes and removes the partitions it names.
//!
//! An event's partition comes from its event time. That time is read from the record, and
//! the id is derived from the record, so a replay of the same record gives the same id and
//! the same partition: upsert-by-id (delete the id, add the document) stays inside one
//! partition's index. The exception is a record that carries no time, where the event takes
//! its receive time: a re-delivery on another period would land in another partition, so the
//! writer must delete such ids from every open partition, not only the target one.

use chrono::{DateTime, Duration, TimeZone, Utc};

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
    /// to exclusive; `None` is open), newest first, the order searches read them in.
    pub fn touched(
        &self,
        existing: &[PartitionKey],
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Vec<PartitionKey> {
        let mut keys: Vec<PartitionKey> = existing
            .iter()
            .copied()
            .filter(|key| {
                let end = key.start + self.period();
                from.is_none_or(|from| end > from) && to.is_none_or(|to| key.start < to)
            })
            .collect();
        keys.sort_by(|a, b| b.cmp(a));
        keys.dedup();
        keys
    }

    /// The partitions retention removes: those whose whole period ended more than `max_age`
    /// before `now`, then the oldest of the rest until the total size fits `max_bytes`.
    /// The newest partition is never removed, nor the one holding `now`: those are the ones
    /// being written. (They differ when events arrive stamped in the future.)
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
    pub fn from_dir_name(name: &str) -> Option<PartitionKey> {
        chrono::NaiveDateTime::parse_from_str(name, DIR_FORMAT)
            .ok()
            .map(|t| PartitionKey { start: t.and_utc() })
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

    #[test]
    fn a_range_touches_only_the_partitions_it_overlaps() {
        let daily = PartitionScheme::default();
        let existing = [day(25), day(26), day(27), day(28)];
        assert_eq!(
            daily.touched(&existing, Some(t(26, 12)), Some(t(27, 6))),
            [day(27), day(26)]
        );
        assert_eq!(
            daily.touched(&existing, Some(t(27, 0)), Some(t(28, 0))),
            [day(27)],
            "to is exclusive, from inclusive"
        );
        assert_eq!(daily.touched(&existing, Some(t(28, 1)), None), [day(28)]);
        assert_eq!(daily.touched(&existing, None, Some(t(26, 0))), [day(25)]);
        assert_eq!(daily.touched(&existing, None, None).len(), 4);
        assert!(daily.touched(&existing, Some(t(29, 0)), None).is_empty());
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
        assert!(day(9).dir_name() < day(28).dir_name());
    }
}
