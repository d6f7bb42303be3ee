//! A CloudWatch pull source's settings (one `[[sources.cloudwatch]]` table), and what is
//! wrong with them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{log_group_overrides, LogGroupOverride, UnknownPreset};
use crate::checkpoint::{self, CheckpointError};

/// One `[[sources.cloudwatch]]` table: log groups to poll with `FilterLogEvents`.
/// Credentials come from the standard AWS chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// Names this source in logs, and its checkpoint directory; events carry their log group
    /// as the source name.
    #[serde(default = "defaults::name")]
    pub name: String,
    /// Log groups read by exact name.
    #[serde(default)]
    pub log_groups: Vec<String>,
    /// Every log group whose name starts with one of these is read too.
    #[serde(default)]
    pub log_group_prefixes: Vec<String>,
    /// Overrides the region of the AWS chain (`AWS_REGION`, the profile, ...).
    #[serde(default)]
    pub region: Option<String>,
    /// Sends requests here instead of the region's endpoint (a proxy, a VPC endpoint, moto).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How far behind now every window ends.
    #[serde(default = "defaults::lag_ms")]
    pub lag_ms: u64,
    /// How far each window reaches back into the one before.
    #[serde(default = "defaults::overlap_ms")]
    pub overlap_ms: u64,
    /// Where a log group without a checkpoint starts, before now.
    #[serde(default = "defaults::start_lookback_ms")]
    pub start_lookback_ms: u64,
    /// The most new time one window covers.
    #[serde(default = "defaults::max_window_ms")]
    pub max_window_ms: u64,
    /// Events per `FilterLogEvents` page, 1 to 10000; the API's default when unset.
    #[serde(default)]
    pub page_size: Option<i32>,
    /// Log group name to preset, for groups recognition would read wrongly.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

mod defaults {
    pub fn name() -> String {
        "cloudwatch".into()
    }
    pub fn poll_interval_ms() -> u64 {
        10_000
    }
    pub fn lag_ms() -> u64 {
        15_000
    }
    pub fn overlap_ms() -> u64 {
        60_000
    }
    pub fn start_lookback_ms() -> u64 {
        15 * 60_000
    }
    pub fn max_window_ms() -> u64 {
        5 * 60_000
    }
}

impl Default for CloudWatchConfig {
    fn default() -> Self {
        CloudWatchConfig {
            name: defaults::name(),
            log_groups: Vec::new(),
            log_group_prefixes: Vec::new(),
            region: None,
            endpoint_url: None,
            poll_interval_ms: defaults::poll_interval_ms(),
            lag_ms: defaults::lag_ms(),
            overlap_ms: defaults::overlap_ms(),
            start_lookback_ms: defaults::start_lookback_ms(),
            max_window_ms: defaults::max_window_ms(),
            page_size: None,
            overrides: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("CloudWatch source name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("CloudWatch source {name:?}: {error}")]
    Override { name: String, error: UnknownPreset },
    #[error("CloudWatch source {0:?}: configure at least one log group or prefix")]
    NoLogGroups(String),
    #[error("invalid log group name or prefix {0:?}")]
    InvalidLogGroup(String),
    #[error("CloudWatch source {name:?}: {message}")]
    InvalidConfig { name: String, message: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl CloudWatchConfig {
    /// Checks every setting, before anything starts.
    pub fn validate(&self) -> Result<(), CloudWatchError> {
        self.log_group_overrides().map(drop)
    }

    /// Validates, and resolves the overrides into specs.
    pub(super) fn log_group_overrides(&self) -> Result<Vec<LogGroupOverride>, CloudWatchError> {
        if !checkpoint::valid_name(&self.name) {
            return Err(CloudWatchError::InvalidName(self.name.clone()));
        }
        let overrides =
            log_group_overrides(&self.overrides).map_err(|error| CloudWatchError::Override {
                name: self.name.clone(),
                error,
            })?;
        if self.log_groups.is_empty() && self.log_group_prefixes.is_empty() {
            return Err(CloudWatchError::NoLogGroups(self.name.clone()));
        }
        for name in self.log_groups.iter().chain(&self.log_group_prefixes) {
            if !valid_log_group_name(name) {
                return Err(CloudWatchError::InvalidLogGroup(name.clone()));
            }
        }
        let invalid = |message: &str| CloudWatchError::InvalidConfig {
            name: self.name.clone(),
            message: message.to_owned(),
        };
        if self.max_window_ms == 0 {
            return Err(invalid("max_window must be positive"));
        }
        if self
            .page_size
            .is_some_and(|size| !(1..=10_000).contains(&size))
        {
            return Err(invalid("page_size must be 1 to 10000"));
        }
        Ok(overrides)
    }

    /// How long to wait between polls; at least 10 ms, so a zero cannot spin.
    pub(super) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }
}

/// Log group names as CloudWatch allows them: exactly the names a source may have, since
/// events carry their log group as their source name.
pub(super) use crate::ingestor::valid_source_name as valid_log_group_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> Result<CloudWatchConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn a_table_takes_the_defaults_and_refuses_unknown_keys() {
        let source = config(serde_json::json!({"log_groups": ["/aws/eks/prod/cluster"]})).unwrap();
        assert_eq!(
            source,
            CloudWatchConfig {
                log_groups: vec!["/aws/eks/prod/cluster".into()],
                ..CloudWatchConfig::default()
            }
        );
        assert_eq!(
            (source.name.as_str(), source.poll_interval_ms, source.lag_ms),
            ("cloudwatch", 10_000, 15_000)
        );
        assert_eq!(
            (
                source.overlap_ms,
                source.start_lookback_ms,
                source.max_window_ms
            ),
            (60_000, 900_000, 300_000)
        );
        assert!(source.validate().is_ok());
        let typo = config(serde_json::json!({"log_groups": ["/a"], "lag": 5}));
        assert!(typo.unwrap_err().to_string().contains("lag"));
    }

    #[test]
    fn every_setting_is_checked_before_start() {
        let valid = CloudWatchConfig {
            log_groups: vec!["/app/flask".into()],
            ..CloudWatchConfig::default()
        };
        let error = |config: CloudWatchConfig| config.validate().unwrap_err().to_string();
        assert_eq!(
            error(CloudWatchConfig {
                name: "a/b".into(),
                ..valid.clone()
            }),
            r#"CloudWatch source name "a/b": use letters, digits, '.', '_' and '-'"#
        );
        assert_eq!(
            error(CloudWatchConfig {
                overrides: BTreeMap::from([("/app/flask".into(), "flsk".into())]),
                ..valid.clone()
            }),
            r#"CloudWatch source "cloudwatch": unknown preset "flsk" for log group "/app/flask""#
        );
        assert_eq!(
            error(CloudWatchConfig {
                log_groups: Vec::new(),
                ..valid.clone()
            }),
            r#"CloudWatch source "cloudwatch": configure at least one log group or prefix"#
        );
        assert!(matches!(
            CloudWatchConfig {
                log_group_prefixes: vec!["bad prefix".into()],
                ..valid.clone()
            }
            .validate(),
            Err(CloudWatchError::InvalidLogGroup(_))
        ));
        assert!(error(CloudWatchConfig {
            max_window_ms: 0,
            ..valid.clone()
        })
        .contains("max_window must be positive"));
        for page_size in [0, 10_001] {
            assert!(error(CloudWatchConfig {
                page_size: Some(page_size),
                ..valid.clone()
            })
            .contains("page_size must be 1 to 10000"));
        }
    }

    #[test]
    fn log_group_names_are_checked() {
        assert!(valid_log_group_name("/aws/eks/prod/cluster"));
        assert!(valid_log_group_name("aws-waf-logs-prod#1"));
        assert!(!valid_log_group_name(""));
        assert!(!valid_log_group_name("bad group"));
        assert!(!valid_log_group_name(&"a".repeat(513)));
    }
}
