//! The `[ingest]` table (the limits every source reads within, and the presets of push
//! sources) and the `[sources]` table that lists the pulled sources. Each source's own table
//! lives with it: `tail::FileSourceConfig`, `cloudwatch::CloudWatchConfig`,
//! `cloudwatch::firehose::FirehoseConfig`.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cloudwatch::{CloudWatchConfig, CloudWatchError};
use crate::tail::{FileSourceConfig, TailError};
use vigil_event::wire::EventFormat;

use crate::{IngestLimits, SourceCatalog};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub max_line_bytes: usize,
    pub max_body_bytes: usize,
    /// Push requests handled at once; more wait for a turn, so memory stays bounded.
    pub max_concurrent_requests: usize,
    /// How to read what is pushed to `/api/v1/ingest/{name}` under names other than the
    /// built-in ones: `{ "trail-eu" = "cloudtrail", "billing" = "flask-app" }`. Unnamed
    /// sources are generic JSON.
    pub presets: BTreeMap<String, String>,
    /// How events are written to the bus: `framed` (a head, then the record), or `json` while
    /// roles of a Vigil before 5 December 2026, which read only that, still consume the bus.
    pub event_format: EventFormat,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = IngestLimits::default();
        IngestConfig {
            max_line_bytes: limits.max_line_bytes,
            max_body_bytes: limits.max_body_bytes,
            max_concurrent_requests: 16,
            presets: BTreeMap::new(),
            event_format: EventFormat::default(),
        }
    }
}

/// What is wrong with the `[ingest]` table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestConfigError {
    #[error("unknown preset {preset:?} for push source {name:?}")]
    UnknownPreset { name: String, preset: String },
}

impl IngestConfig {
    /// Checks every setting, before anything binds or starts.
    pub fn validate(&self) -> Result<(), IngestConfigError> {
        self.catalog().map(drop)
    }

    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_line_bytes: self.max_line_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The built-in sources plus the push source names configured with a preset.
    pub fn catalog(&self) -> Result<SourceCatalog, IngestConfigError> {
        let mut catalog = SourceCatalog::builtin();
        for (name, preset) in &self.presets {
            let spec = catalog
                .preset(preset)
                .ok_or_else(|| IngestConfigError::UnknownPreset {
                    name: name.clone(),
                    preset: preset.clone(),
                })?;
            catalog.insert(name.clone(), spec);
        }
        Ok(catalog)
    }
}

/// The `[sources]` table: the sources Vigil pulls from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Log files to follow.
    pub files: Vec<FileSourceConfig>,
    /// CloudWatch Logs log groups to poll.
    pub cloudwatch: Vec<CloudWatchConfig>,
}

/// What is wrong with the `[sources]` table.
#[derive(Debug, thiserror::Error)]
pub enum SourcesConfigError {
    #[error(transparent)]
    File(#[from] TailError),
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    /// Two CloudWatch sources would share one checkpoint directory.
    #[error("two CloudWatch sources are named {0:?}; give each its own name")]
    DuplicateCloudWatchName(String),
}

impl SourcesConfig {
    /// Checks every source, before anything starts.
    pub fn validate(&self) -> Result<(), SourcesConfigError> {
        for source in &self.files {
            source.validate()?;
        }
        let mut names = HashSet::new();
        for source in &self.cloudwatch {
            if !names.insert(source.name.as_str()) {
                return Err(SourcesConfigError::DuplicateCloudWatchName(
                    source.name.clone(),
                ));
            }
            source.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_ingest_limits() {
        let config: IngestConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, IngestConfig::default());
        assert_eq!(
            config.limits().max_line_bytes,
            IngestLimits::default().max_line_bytes
        );
        assert_eq!(config.max_concurrent_requests, 16);
        let typo = serde_json::from_str::<IngestConfig>(r#"{"max_line":1}"#).unwrap_err();
        assert!(typo.to_string().contains("max_line"), "{typo}");
    }

    #[test]
    fn push_sources_read_with_their_configured_preset() {
        let config = IngestConfig {
            presets: BTreeMap::from([("trail-eu".to_owned(), "cloudtrail".to_owned())]),
            ..IngestConfig::default()
        };
        let catalog = config.catalog().unwrap();
        let configured = catalog.resolve("trail-eu");
        assert_eq!(
            configured.logsource,
            catalog.resolve("cloudtrail").logsource
        );
        assert_ne!(configured.logsource, catalog.resolve("unnamed").logsource);
    }

    #[test]
    fn an_unknown_push_preset_is_named_in_the_error() {
        let config = IngestConfig {
            presets: BTreeMap::from([("billing".to_owned(), "cloudtrial".to_owned())]),
            ..IngestConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert_eq!(
            error,
            r#"unknown preset "cloudtrial" for push source "billing""#
        );
    }

    #[test]
    fn sources_are_checked_each_and_cloudwatch_names_once() {
        let cloudwatch = CloudWatchConfig {
            log_groups: vec!["/app/flask".into()],
            ..CloudWatchConfig::default()
        };
        let mut sources = SourcesConfig {
            files: Vec::new(),
            cloudwatch: vec![cloudwatch.clone()],
        };
        assert!(sources.validate().is_ok());
        sources.cloudwatch.push(cloudwatch.clone());
        assert_eq!(
            sources.validate().unwrap_err().to_string(),
            r#"two CloudWatch sources are named "cloudwatch"; give each its own name"#
        );
        sources.cloudwatch[1].name = "other".into();
        assert!(sources.validate().is_ok());
        sources.cloudwatch[1].log_groups.clear();
        assert!(matches!(
            sources.validate(),
            Err(SourcesConfigError::CloudWatch(
                CloudWatchError::NoLogGroups(_)
            ))
        ));
        let sources = SourcesConfig {
            files: vec![FileSourceConfig {
                name: "app".into(),
                preset: "flsk".into(),
                paths: Vec::new(),
                start_at: crate::tail::StartAt::Beginning,
                poll_interval_ms: 250,
            }],
            cloudwatch: Vec::new(),
        };
        assert!(matches!(
            sources.validate(),
            Err(SourcesConfigError::File(TailError::UnknownPreset { .. }))
        ));
    }
}
