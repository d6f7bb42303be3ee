//! `[ingest]`, `[firehose]` and `[sources]`: the push endpoints and the sources Vigil pulls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_ingest::cloudwatch::LogGroupOverride;
use vigil_ingest::{IngestLimits, SourceCatalog};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Log files to follow.
    pub files: Vec<FileSourceConfig>,
    /// CloudWatch Logs log groups to poll.
    pub cloudwatch: Vec<CloudWatchSourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The source name events carry; also names the checkpoint.
    pub name: String,
    /// How to read the lines: a built-in source (`cloudtrail`, `kubernetes-audit`,
    /// `flask-app`, `access-log`, `vpc-flow`, `waf`), or `json` or `text`.
    pub preset: String,
    /// Glob patterns of the files.
    pub paths: Vec<String>,
    #[serde(default)]
    pub start_at: vigil_ingest::tail::StartAt,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

/// Polls CloudWatch Logs with `FilterLogEvents`: the CloudWatch source's own table.
pub use vigil_ingest::cloudwatch::CloudWatchConfig as CloudWatchSourceConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The access key the Firehose stream sends in `X-Amz-Firehose-Access-Key`.
    pub access_key: String,
    /// Presets for log groups whose records recognition would get wrong, as for
    /// `[[sources.cloudwatch]]`: `{ "/app/flask" = "flask-app" }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// The most bytes the gzip'd records of one request may inflate to, all together; a
    /// request past it gets 413 and nothing of it is stored. 1 MiB to 1 GiB.
    #[serde(default = "default_firehose_max_inflated_bytes")]
    pub max_inflated_bytes: usize,
}

fn default_firehose_max_inflated_bytes() -> usize {
    vigil_ingest::cloudwatch::firehose::DEFAULT_MAX_INFLATED_BYTES
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = IngestLimits::default();
        IngestConfig {
            max_line_bytes: limits.max_line_bytes,
            max_body_bytes: limits.max_body_bytes,
            max_concurrent_requests: 16,
            presets: BTreeMap::new(),
        }
    }
}

impl IngestConfig {
    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_line_bytes: self.max_line_bytes,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl IngestConfig {
    /// Checks that every configured preset exists.
    pub fn validate(&self) -> Result<(), String> {
        push_source_catalog(&self.presets).map(|_| ())
    }
}

impl FirehoseConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.access_key.trim().len() < 16 {
            return Err("firehose.access_key must be at least 16 characters".into());
        }
        const MIB: usize = 1024 * 1024;
        if !(MIB..=1024 * MIB).contains(&self.max_inflated_bytes) {
            return Err(format!(
                "firehose.max_inflated_bytes is {}; use {MIB} (1 MiB) to {} (1 GiB)",
                self.max_inflated_bytes,
                1024 * MIB
            ));
        }
        log_group_overrides(&self.overrides).map_err(|message| format!("firehose: {message}"))?;
        Ok(())
    }
}

impl SourcesConfig {
    /// Checks every file and CloudWatch source: presets that exist, names that can name a
    /// checkpoint, and no two CloudWatch sources sharing one.
    pub fn validate(&self) -> Result<(), String> {
        for source in &self.files {
            if SourceCatalog::builtin().preset(&source.preset).is_none() {
                return Err(format!(
                    "file source {:?}: unknown preset {:?}",
                    source.name, source.preset
                ));
            }
            if !valid_checkpoint_name(&source.name) {
                return Err(format!(
                    "file source name {:?}: use letters, digits, '.', '_' and '-'",
                    source.name
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for source in &self.cloudwatch {
            if !names.insert(source.name.as_str()) {
                return Err(format!(
                    "two CloudWatch sources are named {:?}; give each its own name",
                    source.name
                ));
            }
            if !valid_checkpoint_name(&source.name) {
                return Err(format!(
                    "CloudWatch source name {:?}: use letters, digits, '.', '_' and '-'",
                    source.name
                ));
            }
            log_group_overrides(&source.overrides)
                .map_err(|message| format!("CloudWatch source {:?}: {message}", source.name))?;
        }
        Ok(())
    }
}

/// The built-in sources plus the push source names configured with a preset.
pub fn push_source_catalog(presets: &BTreeMap<String, String>) -> Result<SourceCatalog, String> {
    let mut catalog = SourceCatalog::builtin();
    for (name, preset) in presets {
        let spec = catalog
            .preset(preset)
            .ok_or_else(|| format!("unknown preset {preset:?} for push source {name:?}"))?;
        catalog.insert(name.clone(), spec);
    }
    Ok(catalog)
}

/// Resolves `log group = preset` settings into the specs that override recognition.
pub fn log_group_overrides(
    settings: &BTreeMap<String, String>,
) -> Result<Vec<LogGroupOverride>, String> {
    let catalog = SourceCatalog::builtin();
    settings
        .iter()
        .map(|(log_group, preset)| {
            let spec = catalog
                .preset(preset)
                .ok_or_else(|| format!("unknown preset {preset:?} for log group {log_group:?}"))?;
            Ok(LogGroupOverride {
                log_group: log_group.clone(),
                spec,
            })
        })
        .collect()
}

/// Whether `name` can name a checkpoint file: letters, digits, '.', '_' and '-'.
pub fn valid_checkpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_sources_read_with_their_configured_preset() {
        let presets = BTreeMap::from([("trail-eu".to_owned(), "cloudtrail".to_owned())]);
        let catalog = push_source_catalog(&presets).unwrap();
        let configured = catalog.resolve("trail-eu");
        assert_eq!(
            configured.logsource,
            catalog.resolve("cloudtrail").logsource
        );
        assert_ne!(configured.logsource, catalog.resolve("unnamed").logsource);
    }

    #[test]
    fn an_unknown_push_preset_is_named_in_the_error() {
        let presets = BTreeMap::from([("billing".to_owned(), "cloudtrial".to_owned())]);
        let error = push_source_catalog(&presets).unwrap_err();
        assert!(
            error.contains("cloudtrial") && error.contains("billing"),
            "{error}"
        );
    }
}
