//! A CloudWatch pull source's settings, and what is wrong with them.

use std::path::PathBuf;
use std::time::Duration;

use super::LogGroupOverride;
use crate::checkpoint::CheckpointError;

#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    /// Names this source in logs; the checkpoint directory is its own.
    pub name: String,
    /// Log groups read by exact name.
    pub log_groups: Vec<String>,
    /// Every log group whose name starts with one of these is read too.
    pub log_group_prefixes: Vec<String>,
    /// Overrides the region of the standard AWS chain.
    pub region: Option<String>,
    /// Sends requests here instead of the region's endpoint (a proxy, a VPC endpoint, moto).
    pub endpoint_url: Option<String>,
    pub poll_interval: Duration,
    /// How far behind now every window ends.
    pub lag: Duration,
    /// How far each window reaches back into the one before.
    pub overlap: Duration,
    /// Where a log group without a checkpoint starts, before now.
    pub start_lookback: Duration,
    /// The most new time one window covers.
    pub max_window: Duration,
    /// How often prefixes are listed again to find new log groups.
    pub discovery_interval: Duration,
    /// The most events per `FilterLogEvents` page (1 to 10,000); the API's default if unset.
    pub page_size: Option<i32>,
    pub checkpoint_dir: PathBuf,
    pub overrides: Vec<LogGroupOverride>,
}

impl CloudWatchConfig {
    /// A config with the default timings, for `name`'s log groups.
    pub fn new(name: impl Into<String>, checkpoint_dir: PathBuf) -> Self {
        CloudWatchConfig {
            name: name.into(),
            log_groups: Vec::new(),
            log_group_prefixes: Vec::new(),
            region: None,
            endpoint_url: None,
            poll_interval: Duration::from_secs(10),
            lag: Duration::from_secs(15),
            overlap: Duration::from_secs(60),
            start_lookback: Duration::from_secs(15 * 60),
            max_window: Duration::from_secs(5 * 60),
            discovery_interval: Duration::from_secs(60),
            page_size: None,
            checkpoint_dir,
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("CloudWatch source {0:?}: configure at least one log group or prefix")]
    NoLogGroups(String),
    #[error("invalid log group name or prefix {0:?}")]
    InvalidLogGroup(String),
    #[error("CloudWatch source {name:?}: {message}")]
    InvalidConfig { name: String, message: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Log group names as CloudWatch allows them, which are also valid source names.
pub(super) fn valid_log_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_group_names_are_checked() {
        assert!(valid_log_group_name("/aws/eks/prod/cluster"));
        assert!(valid_log_group_name("aws-waf-logs-prod#1"));
        assert!(!valid_log_group_name(""));
        assert!(!valid_log_group_name("bad group"));
        assert!(!valid_log_group_name(&"a".repeat(513)));
    }
}
