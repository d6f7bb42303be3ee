//! The store's configuration as an operator writes it: the `[index]` section of `vigil.toml`.
//!
//! [`Config`] is what is read (plain numbers and names, with defaults for what is left out);
//! [`Config::store_options`] checks it and gives the [`StoreOptions`] a [`crate::Store`] is
//! opened with. Errors name the setting as it is written under `[index]`.

use serde::{Deserialize, Serialize};

use crate::{
    PartitionScheme, QuarantineLimits, Retention, StoreOptions, DEFAULT_FUTURE_SKEW_SECONDS,
    DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_TOTAL_BYTES,
};

/// The `[index]` settings: how the indexing stage commits, how events are partitioned and
/// kept, and how much of the quarantine is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The events index commits at least this often while events arrive, and an alert is
    /// listed once the events it was raised on are committed, so this sets most of how late
    /// both become searchable (add the time a commit takes, and the indexers' reads). A
    /// quarter of a second costs no measurable throughput in a flood, where commits are
    /// large (`benches/RESULTS.md`). At a moderate rate it costs CPU: each commit is a segment
    /// per indexing thread, and small segments are merged again and again. The store bench
    /// (`VIGIL_BENCH_COMMIT_EVERY`) used 21 to 23 CPU seconds for 200k events committed 500 at
    /// a time, 14 to 16 for 2,000 at a time, and about 6.5 for one commit, so a longer
    /// interval trades freshness for CPU.
    pub commit_interval_ms: u64,
    /// ...and whenever this many events wait for a commit.
    pub commit_events: usize,
    /// One events index per `hour`, `day` or `week`. Fixed once the index exists.
    pub partition: String,
    /// Events older than this many days are removed, a whole partition at a time.
    pub retention_days: Option<u64>,
    /// Then the oldest partitions are removed until the events fit in this many bytes.
    pub retention_max_bytes: Option<u64>,
    /// How often retention looks for partitions to remove.
    pub retention_interval_ms: u64,
    /// How far past its arrival an event's own time may lie before it is flagged
    /// `time_suspect` and indexed at its arrival instead.
    pub future_skew_secs: u64,
    /// Bytes kept of each quarantined record; its full length and blake3 hash are kept too.
    pub quarantine_max_record_bytes: usize,
    /// Bytes all quarantined records may take; the oldest are evicted past it.
    pub quarantine_max_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            commit_interval_ms: 250,
            commit_events: 20_000,
            partition: "day".into(),
            retention_days: None,
            retention_max_bytes: None,
            retention_interval_ms: 60_000,
            future_skew_secs: DEFAULT_FUTURE_SKEW_SECONDS as u64,
            quarantine_max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            quarantine_max_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// A setting of [`Config`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("index.partition is `{0}`; use hour, day or week")]
    Partition(String),
    #[error("index.retention_days is too large")]
    RetentionDaysTooLarge,
    #[error("index.future_skew_secs is too large")]
    FutureSkewTooLarge,
    #[error("index.retention_interval_ms must be above 0")]
    RetentionIntervalZero,
}

impl Config {
    /// Checks every setting, so that a bad one is reported before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store_options().map(|_| ())
    }

    /// The options a store is opened with; the first setting that is wrong otherwise.
    pub fn store_options(&self) -> Result<StoreOptions, ConfigError> {
        let partition = PartitionScheme::from_name(&self.partition)
            .map_err(|_| ConfigError::Partition(self.partition.clone()))?;
        let max_age = self
            .retention_days
            .map(|days| {
                i64::try_from(days)
                    .ok()
                    .and_then(chrono::Duration::try_days)
                    .ok_or(ConfigError::RetentionDaysTooLarge)
            })
            .transpose()?;
        let future_skew = i64::try_from(self.future_skew_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or(ConfigError::FutureSkewTooLarge)?;
        if self.retention_interval_ms == 0 {
            return Err(ConfigError::RetentionIntervalZero);
        }
        Ok(StoreOptions {
            partition,
            retention: Retention {
                max_age,
                max_bytes: self.retention_max_bytes,
            },
            future_skew,
            retention_interval: std::time::Duration::from_millis(self.retention_interval_ms),
            quarantine: QuarantineLimits {
                max_record_bytes: self.quarantine_max_record_bytes,
                max_total_bytes: self.quarantine_max_bytes,
            },
            ..StoreOptions::default()
        })
    }

    /// How often the indexing stage commits at least, while events arrive.
    pub fn commit_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.commit_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_defaults_are_the_default_store_options() {
        assert_eq!(
            Config::default().store_options().unwrap(),
            StoreOptions::default()
        );
        let empty: Config = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, Config::default());
    }

    #[test]
    fn settings_reach_the_store_options() {
        let config: Config = serde_json::from_value(json!({
            "commit_interval_ms": 250,
            "partition": "hour",
            "retention_days": 3,
            "retention_max_bytes": 1000,
            "retention_interval_ms": 500,
            "future_skew_secs": 60,
            "quarantine_max_record_bytes": 10,
            "quarantine_max_bytes": 100,
        }))
        .unwrap();
        assert_eq!(
            config.commit_interval(),
            std::time::Duration::from_millis(250)
        );
        let options = config.store_options().unwrap();
        assert_eq!(
            options.partition,
            PartitionScheme::from_name("hour").unwrap()
        );
        assert_eq!(options.retention.max_age, Some(chrono::Duration::days(3)));
        assert_eq!(options.retention.max_bytes, Some(1000));
        assert_eq!(
            options.retention_interval,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(options.future_skew, chrono::Duration::seconds(60));
        assert_eq!(options.quarantine.max_record_bytes, 10);
        assert_eq!(options.quarantine.max_total_bytes, 100);
    }

    #[test]
    fn unknown_settings_are_refused() {
        let error = serde_json::from_value::<Config>(json!({ "retention_day": 3 })).unwrap_err();
        assert!(error.to_string().contains("retention_day"), "{error}");
    }

    #[test]
    fn each_bad_setting_is_named() {
        let bad = |change: fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.partition = "fortnight".into()),
            "index.partition is `fortnight`; use hour, day or week"
        );
        assert_eq!(
            bad(|c| c.retention_days = Some(u64::MAX)),
            "index.retention_days is too large"
        );
        assert_eq!(
            bad(|c| c.future_skew_secs = u64::MAX),
            "index.future_skew_secs is too large"
        );
        assert_eq!(
            bad(|c| c.retention_interval_ms = 0),
            "index.retention_interval_ms must be above 0"
        );
    }
}
