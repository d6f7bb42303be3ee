//! `[index]`: how the store commits, partitions and keeps events.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// The index commits at least this often while events arrive.
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

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            commit_interval_ms: 1000,
            commit_events: 20_000,
            partition: "day".into(),
            retention_days: None,
            retention_max_bytes: None,
            retention_interval_ms: 60_000,
            future_skew_secs: vigil_store::DEFAULT_FUTURE_SKEW_SECONDS as u64,
            quarantine_max_record_bytes: vigil_store::DEFAULT_MAX_RECORD_BYTES,
            quarantine_max_bytes: vigil_store::DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

impl IndexConfig {
    /// The store's options, or a message naming the setting that is wrong.
    pub fn store_options(&self) -> Result<vigil_store::StoreOptions, String> {
        let partition = vigil_store::PartitionScheme::from_name(&self.partition).map_err(|_| {
            format!(
                "index.partition is `{}`; use hour, day or week",
                self.partition
            )
        })?;
        let max_age = self
            .retention_days
            .map(|days| {
                i64::try_from(days)
                    .ok()
                    .and_then(chrono::Duration::try_days)
            })
            .map(|age| age.ok_or("index.retention_days is too large"))
            .transpose()?;
        let future_skew = i64::try_from(self.future_skew_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or("index.future_skew_secs is too large")?;
        if self.retention_interval_ms == 0 {
            return Err("index.retention_interval_ms must be above 0".into());
        }
        Ok(vigil_store::StoreOptions {
            partition,
            retention: vigil_store::Retention {
                max_age,
                max_bytes: self.retention_max_bytes,
            },
            future_skew,
            retention_interval: std::time::Duration::from_millis(self.retention_interval_ms),
            quarantine: vigil_store::QuarantineLimits {
                max_record_bytes: self.quarantine_max_record_bytes,
                max_total_bytes: self.quarantine_max_bytes,
            },
            ..vigil_store::StoreOptions::default()
        })
    }
}
