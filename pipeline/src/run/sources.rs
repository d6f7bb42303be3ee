//! The sources a process that ingests runs: file tailers and CloudWatch pollers, built from
//! their validated settings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_ingest::cloudwatch::CloudWatchSource;
use vigil_ingest::tail::{FileTailer, TailConfig};
use vigil_ingest::{Ingestor, SourceCatalog};

use crate::config::{CloudWatchSourceConfig, ConfigError, FileSourceConfig};
use crate::error::RunError;

pub(super) fn file_tailer(
    source: &FileSourceConfig,
    data_dir: &Path,
    ingestor: Arc<Ingestor>,
) -> Result<FileTailer, RunError> {
    // Checked by `SourcesConfig::validate` before start-up; kept as an error all the same.
    let spec = SourceCatalog::builtin()
        .preset(&source.preset)
        .ok_or_else(|| {
            ConfigError::Setting(format!(
                "file source {:?}: unknown preset {:?}",
                source.name, source.preset
            ))
        })?;
    let config = TailConfig {
        name: source.name.clone(),
        spec,
        paths: source.paths.clone(),
        start_at: source.start_at,
        poll_interval: Duration::from_millis(source.poll_interval_ms.max(10)),
        checkpoint_path: data_dir
            .join("checkpoints")
            .join(format!("file-{}.json", source.name)),
        read_chunk_bytes: 4 * 1024 * 1024,
    };
    Ok(FileTailer::new(config, ingestor)?)
}

pub(super) fn cloudwatch_source(
    source: &CloudWatchSourceConfig,
    data_dir: &Path,
    ingestor: Arc<Ingestor>,
) -> Result<CloudWatchSource, RunError> {
    Ok(source.build(data_dir, ingestor)?)
}
