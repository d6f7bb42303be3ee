//! The file tailer: follows log files matched by globs, like Filebeat or Vector's file source.
//!
//! - **Identity.** A file is known by a fingerprint of its first line, not by its inode or
//!   name, so a renamed file keeps its place and a new file under an old name starts afresh.
//!   A file whose first line is not complete yet waits until it is.
//! - **Checkpoints.** After every delivery the bus has acknowledged, the offset of each file
//!   is written atomically to the checkpoint file; a restart resumes there. Event ids derive
//!   from the fingerprint, the line's offset and the line itself, so lines re-read after a
//!   crash are the same events and the index keeps one copy, while a line rewritten in place
//!   is another event beside the first.
//! - **Rotation.** Rename-and-create: the open handle is read to its end, and the renamed file
//!   keeps its fingerprint if a glob still matches it; the new file is read from its start.
//!   Copytruncate: the truncated file starts again from offset 0 with its new first line.
//! - **Lines.** A partial last line waits for its newline. A line longer than the limit is
//!   quarantined (its first bytes, with the reason) and skipped up to its newline.
//! - **Start.** Files present at the first scan start at their beginning or their end, as
//!   configured; files that appear later always start at their beginning, since they are new.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use memchr::memchr;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checkpoint::{self, CheckpointError};
use crate::{IncomingRecord, IngestError, Ingestor, SourceCatalog, SourceSpec};

/// Where to start reading files that exist when the tailer first looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// One `[[sources.files]]` table: log files to follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub start_at: StartAt,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    250
}

/// The most bytes read from one file per delivery.
const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl FileSourceConfig {
    /// Checks every setting, before anything starts.
    pub fn validate(&self) -> Result<(), TailError> {
        self.spec()?;
        if !checkpoint::valid_name(&self.name) {
            return Err(TailError::InvalidName(self.name.clone()));
        }
        for pattern in &self.paths {
            check_glob(pattern)?;
        }
        Ok(())
    }

    /// The tailer, its checkpoint in `data_dir`'s `checkpoints/file-<name>.json`.
    pub fn build(&self, data_dir: &Path, ingestor: Arc<Ingestor>) -> Result<FileTailer, TailError> {
        self.validate()?;
        let config = TailConfig {
            name: self.name.clone(),
            spec: self.spec()?,
            paths: self.paths.clone(),
            start_at: self.start_at,
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            checkpoint_path: data_dir
                .join("checkpoints")
                .join(format!("file-{}.json", self.name)),
            read_chunk_bytes: READ_CHUNK_BYTES,
        };
        FileTailer::new(config, ingestor)
    }

    fn spec(&self) -> Result<SourceSpec, TailError> {
        SourceCatalog::builtin()
            .preset(&self.preset)
            .ok_or_else(|| TailError::UnknownPreset {
                name: self.name.clone(),
                preset: self.preset.clone(),
            })
    }
}

#[derive(Debug, Clone)]
pub struct TailConfig {
    /// The source name events carry.
    pub name: String,
    pub spec: SourceSpec,
    /// Glob patterns of the files to follow.
    pub paths: Vec<String>,
    pub start_at: StartAt,
    pub poll_interval: Duration,
    pub checkpoint_path: PathBuf,
    /// The most bytes read from one file per delivery.
    pub read_chunk_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("file source {name:?}: unknown preset {preset:?}")]
    UnknownPreset { name: String, preset: String },
    #[error("file source name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("invalid glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

type Fingerprint = vigil_event::Id;

/// The longest first line used for a fingerprint; longer first lines are cut here.
const FINGERPRINT_BYTES: usize = 1024;

/// What the tailer's checkpoint holds: each file's fingerprint, last path and offset.
#[derive(Debug, Serialize, Deserialize)]
struct TailCheckpoint {
    files: Vec<CheckpointEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointEntry {
    fingerprint: String,
    path: PathBuf,
    offset: u64,
}

struct Tracked {
    path: PathBuf,
    offset: u64,
    /// The open handle, kept across renames so a rotated file is read to its end.
    file: Option<File>,
    inode: Option<(u64, u64)>,
    /// Scans in a row that did not find the file under any matching path.
    missing_scans: u32,
    /// Inside an over-long line that was quarantined: skip to its newline.
    skipping: bool,
}

/// Follows the files of one source, delivering complete lines to the ingestor.
pub struct FileTailer {
    config: TailConfig,
    ingestor: Arc<Ingestor>,
    files: HashMap<Fingerprint, Tracked>,
    first_scan: bool,
}

impl FileTailer {
    pub fn new(config: TailConfig, ingestor: Arc<Ingestor>) -> Result<Self, TailError> {
        for pattern in &config.paths {
            check_glob(pattern)?;
        }
        let files = load_checkpoint(&config.checkpoint_path)?;
        Ok(FileTailer {
            config,
            ingestor,
            files,
            first_scan: true,
        })
    }

    /// Runs until `shutdown` turns true. Blocking file I/O happens on this task's thread, so
    /// spawn it with `spawn_blocking` or on a thread of its own; deliveries are awaited through
    /// the runtime `handle`.
    pub fn run_blocking(
        mut self,
        handle: tokio::runtime::Handle,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), TailError> {
        while !*shutdown.borrow() {
            let delivered = self.poll_once(&handle)?;
            if !delivered {
                std::thread::sleep(self.config.poll_interval);
            }
        }
        Ok(())
    }

    /// Scans the globs and delivers what is new. True when it delivered anything, so the
    /// caller polls again at once instead of sleeping.
    pub fn poll_once(&mut self, handle: &tokio::runtime::Handle) -> Result<bool, TailError> {
        self.scan();
        let mut delivered = false;
        let fingerprints: Vec<Fingerprint> = self.files.keys().copied().collect();
        for fingerprint in fingerprints {
            match self.deliver(&fingerprint, handle) {
                Ok(sent) => delivered |= sent,
                Err(error) => {
                    // The bus refused: keep the offset, retry on the next poll.
                    tracing::warn!(source = %self.config.name, %error, "tailer delivery failed; will retry");
                    metrics::counter!("vigil_source_errors_total", "source" => crate::source_label(&self.config.name))
                        .increment(1);
                    return Ok(false);
                }
            }
        }
        self.forget_vanished();
        Ok(delivered)
    }

    fn scan(&mut self) {
        let mut seen = Vec::new();
        for pattern in &self.config.paths {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if !path.is_file() {
                    continue;
                }
                let Ok(mut file) = File::open(&path) else {
                    continue;
                };
                let Some(fingerprint) = fingerprint(&mut file) else {
                    continue;
                };
                let inode = file.metadata().ok().map(|m| (m.dev(), m.ino()));
                seen.push(fingerprint);
                // Another fingerprint on this inode means the file was truncated and rewritten
                // in place: the old content's handle would now read the new content.
                for (other, tracked) in &mut self.files {
                    if *other != fingerprint && inode.is_some() && tracked.inode == inode {
                        tracked.file = None;
                        tracked.inode = None;
                    }
                }
                match self.files.get_mut(&fingerprint) {
                    Some(tracked) => {
                        tracked.missing_scans = 0;
                        if tracked.inode != inode || tracked.file.is_none() {
                            // A restart, or a copy (copytruncate's rotated file): same content
                            // prefix, so the offset holds in it too.
                            tracked.file = Some(file);
                            tracked.inode = inode;
                        }
                        tracked.path = path;
                    }
                    None => {
                        let offset = match (self.first_scan, self.config.start_at) {
                            (true, StartAt::End) => end_of_last_line(&mut file).unwrap_or(0),
                            _ => 0,
                        };
                        self.files.insert(
                            fingerprint,
                            Tracked {
                                path,
                                offset,
                                file: Some(file),
                                inode,
                                missing_scans: 0,
                                skipping: false,
                            },
                        );
                    }
                }
            }
        }
        for (fingerprint, tracked) in &mut self.files {
            if !seen.contains(fingerprint) {
                tracked.missing_scans += 1;
            }
        }
        self.first_scan = false;
    }

    /// Reads complete lines after the file's offset and delivers them. The offset moves only
    /// after the bus acknowledged them.
    fn deliver(
        &mut self,
        fingerprint: &Fingerprint,
        handle: &tokio::runtime::Handle,
    ) -> Result<bool, IngestError> {
        let max_line = self.ingestor.limits().max_line_bytes;
        let chunk_limit = self.config.read_chunk_bytes.max(max_line + 1);
        let Some(tracked) = self.files.get_mut(fingerprint) else {
            return Ok(false);
        };
        let Some(file) = tracked.file.as_mut() else {
            return Ok(false);
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size < tracked.offset {
            // Truncated in place: what we had not read is gone with the old content.
            tracing::info!(path = %tracked.path.display(), "file truncated; reading it from the start");
            tracked.offset = 0;
        }
        metrics::gauge!("vigil_source_checkpoint_lag_bytes", "source" => crate::source_label(&self.config.name), "path" => tracked.path.display().to_string())
            .set(size.saturating_sub(tracked.offset) as f64);
        if size == tracked.offset {
            return Ok(false);
        }
        let mut buffer = Vec::new();
        let read = file
            .seek(SeekFrom::Start(tracked.offset))
            .and_then(|_| file.take(chunk_limit as u64).read_to_end(&mut buffer));
        if let Err(error) = read {
            tracing::warn!(path = %tracked.path.display(), %error, "cannot read; will retry");
            return Ok(false);
        }

        let base = tracked.offset;
        let mut records = Vec::new();
        let mut oversized = Vec::new();
        let mut consumed = 0usize;
        if tracked.skipping {
            match memchr(b'\n', &buffer) {
                Some(newline) => {
                    consumed = newline + 1;
                    tracked.skipping = false;
                }
                None => consumed = buffer.len(),
            }
        }
        let mut skipping = tracked.skipping;
        while let Some(newline) = memchr(b'\n', &buffer[consumed..]) {
            let line_start = consumed;
            let line = &buffer[line_start..line_start + newline];
            consumed += newline + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut key = fingerprint.as_bytes().to_vec();
            key.extend_from_slice(&(base + line_start as u64).to_le_bytes());
            records.push(IncomingRecord {
                bytes: line,
                position: base + line_start as u64,
                key: Some(key),
                time: None,
            });
        }
        if !skipping && buffer.len() - consumed > max_line {
            // No newline within the limit: quarantine its start and skip to its newline.
            oversized.push((base + consumed as u64, consumed));
            consumed = buffer.len();
            skipping = true;
        }
        if consumed == 0 {
            return Ok(false);
        }
        let source = self.config.name.clone();
        for &(position, start) in &oversized {
            let kept = &buffer[start..];
            let reason = format!(
                "line longer than {max_line} bytes at byte {position}; its first {} bytes are kept",
                kept.len()
            );
            handle.block_on(self.ingestor.quarantine(
                &source,
                &self.config.spec.kind,
                kept,
                position,
                crate::QuarantineKind::TooLarge,
                reason,
            ))?;
        }
        if !records.is_empty() {
            handle.block_on(
                self.ingestor
                    .ingest_records(&source, &self.config.spec, records),
            )?;
        }
        let tracked = self.files.get_mut(fingerprint).expect("tracked above");
        tracked.offset = base + consumed as u64;
        tracked.skipping = skipping;
        if let Err(error) = self.save_checkpoint() {
            tracing::error!(%error, "cannot write the tailer checkpoint; a restart will re-read (without duplicates)");
        }
        Ok(true)
    }

    /// Drops files that no glob has matched for a while, once they are read to the end.
    fn forget_vanished(&mut self) {
        let before = self.files.len();
        self.files.retain(|_, tracked| {
            let drained = match &tracked.file {
                Some(file) => file
                    .metadata()
                    .map(|m| m.len() <= tracked.offset)
                    .unwrap_or(true),
                None => true,
            };
            !(tracked.missing_scans >= 3 && drained)
        });
        if self.files.len() != before {
            let _ = self.save_checkpoint();
        }
    }

    fn save_checkpoint(&self) -> io::Result<()> {
        let state = TailCheckpoint {
            files: self
                .files
                .iter()
                .map(|(fingerprint, tracked)| CheckpointEntry {
                    fingerprint: fingerprint.to_string(),
                    path: tracked.path.clone(),
                    offset: tracked.offset,
                })
                .collect(),
        };
        checkpoint::save(&self.config.checkpoint_path, &state)
    }
}

fn load_checkpoint(path: &Path) -> Result<HashMap<Fingerprint, Tracked>, TailError> {
    let Some(checkpoint) = checkpoint::load::<TailCheckpoint>(path)? else {
        return Ok(HashMap::new());
    };
    let mut files = HashMap::new();
    for entry in checkpoint.files {
        let fingerprint: Fingerprint =
            entry
                .fingerprint
                .parse()
                .map_err(|e| CheckpointError::Corrupt {
                    path: path.to_owned(),
                    message: format!("{e}"),
                })?;
        files.insert(
            fingerprint,
            Tracked {
                path: entry.path,
                offset: entry.offset,
                file: None,
                inode: None,
                missing_scans: 0,
                skipping: false,
            },
        );
    }
    Ok(files)
}

fn check_glob(pattern: &str) -> Result<(), TailError> {
    glob::Pattern::new(pattern)
        .map(drop)
        .map_err(|e| TailError::Glob {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })
}

/// The fingerprint of a file: a hash of its first complete line (up to [`FINGERPRINT_BYTES`]).
fn fingerprint(file: &mut File) -> Option<Fingerprint> {
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    let first_line = match memchr(b'\n', &head) {
        Some(end) => &head[..end],
        None if head.len() == FINGERPRINT_BYTES => &head[..],
        None => return None,
    };
    Some(vigil_event::Id::derive(
        "vigil tail fingerprint v1",
        &[first_line],
    ))
}

/// The offset just after the last complete line, where `start_at = end` begins.
fn end_of_last_line(file: &mut File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let window = size.min(64 * 1024);
    file.seek(SeekFrom::Start(size - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    file.take(window).read_to_end(&mut tail)?;
    Ok(match tail.iter().rposition(|&b| b == b'\n') {
        Some(index) => size - window + index as u64 + 1,
        None if window == size => 0,
        None => size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> Result<FileSourceConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn a_file_source_takes_its_defaults_and_refuses_unknown_keys() {
        let source = config(
            serde_json::json!({"name": "app", "preset": "flask", "paths": ["/var/log/*.log"]}),
        )
        .unwrap();
        assert_eq!(source.start_at, StartAt::Beginning);
        assert_eq!(source.poll_interval_ms, 250);
        assert!(source.validate().is_ok());
        let typo = config(
            serde_json::json!({"name": "app", "preset": "flask", "paths": [], "start": "end"}),
        );
        assert!(typo.unwrap_err().to_string().contains("start"));
    }

    #[test]
    fn unknown_presets_bad_names_and_bad_globs_are_refused() {
        let valid = FileSourceConfig {
            name: "app".into(),
            preset: "json".into(),
            paths: vec!["/var/log/app/*.log".into()],
            start_at: StartAt::End,
            poll_interval_ms: 250,
        };
        let error = FileSourceConfig {
            preset: "flsk".into(),
            ..valid.clone()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"file source "app": unknown preset "flsk""#
        );
        for name in ["", "../etc", "a/b", "app log"] {
            let error = FileSourceConfig {
                name: name.into(),
                ..valid.clone()
            }
            .validate()
            .unwrap_err();
            assert!(
                matches!(error, TailError::InvalidName(_)),
                "{name}: {error}"
            );
        }
        let error = FileSourceConfig {
            paths: vec!["/var/log/[".into()],
            ..valid
        }
        .validate()
        .unwrap_err();
        assert!(matches!(error, TailError::Glob { .. }), "{error}");
    }
}
