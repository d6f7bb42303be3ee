//! Sources' checkpoints: how far a pulling source (the file tailer, the CloudWatch poller) has
//! read, kept in a JSON file that is replaced atomically (with `vigil_durable`) only after the
//! bus acknowledged everything it covers. A crash then re-reads at most what came after, and
//! the re-read events keep their ids.
//!
//! Each file is `{"version": 1, ...}` with the source's own fields beside the version. One
//! that cannot be read, or has another version, is an error rather than a fresh start from the
//! configured start, which could skip events.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The checkpoint format every source writes.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl From<vigil_durable::ReadError> for CheckpointError {
    fn from(error: vigil_durable::ReadError) -> Self {
        match error {
            vigil_durable::ReadError::Io { path, source } => CheckpointError::Io { path, source },
            vigil_durable::ReadError::Corrupt { path, message } => {
                CheckpointError::Corrupt { path, message }
            }
        }
    }
}

/// Whether a source's name can name its checkpoint file or directory: letters, digits, `.`,
/// `_` and `-`, so that behind its prefix (`file-`, `cloudwatch-`) it stays one plain name
/// in the checkpoint directory.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Serialize)]
struct Versioned<'a, T> {
    version: u32,
    #[serde(flatten)]
    state: &'a T,
}

#[derive(Deserialize)]
struct VersionedOwned<T> {
    version: u32,
    #[serde(flatten)]
    state: T,
}

/// Replaces the checkpoint at `path` with `state`, creating its directory if needed.
pub(crate) fn save<T: Serialize>(path: &Path, state: &T) -> io::Result<()> {
    let file = Versioned {
        version: VERSION,
        state,
    };
    vigil_durable::write_json(path, &file)
}

/// The checkpoint at `path`, or none when the source has not written one yet.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, CheckpointError> {
    let Some(file) = vigil_durable::read_json::<VersionedOwned<T>>(path)? else {
        return Ok(None);
    };
    if file.version != VERSION {
        return Err(CheckpointError::Corrupt {
            path: path.to_owned(),
            message: format!("unknown version {}", file.version),
        });
    }
    Ok(Some(file.state))
}

/// Every checkpoint in `dir` (files ending `.json`), or none when there is no such directory.
/// Leftover temporary files are writes that never completed, and are passed over.
pub(crate) fn load_dir<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, CheckpointError> {
    let io_error = |source| CheckpointError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut states = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        // Listed a moment ago: a file gone since is as bad as an unreadable one.
        let state = load(&path)?.ok_or_else(|| CheckpointError::Io {
            path: path.clone(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        states.push(state);
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Progress {
        offset: u64,
        seen: Vec<(String, i64)>,
    }

    #[test]
    fn a_checkpoint_is_its_state_beside_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        assert!(load::<Progress>(&path).unwrap().is_none());
        let progress = Progress {
            offset: u64::MAX,
            seen: vec![("a".into(), -1)],
        };
        save(&path, &progress).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"version": 1, "offset": u64::MAX, "seen": [["a", -1]]})
        );
        assert_eq!(load::<Progress>(&path).unwrap(), Some(progress));
    }

    #[test]
    fn other_versions_and_broken_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        for broken in [
            r#"{"version":2,"offset":1,"seen":[]}"#,
            r#"{"offset":1,"seen":[]}"#,
            r#"{"version":1,"offset":1"#,
        ] {
            fs::write(&path, broken).unwrap();
            assert!(
                matches!(
                    load::<Progress>(&path),
                    Err(CheckpointError::Corrupt { .. })
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn a_directory_of_checkpoints_skips_unfinished_writes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dir::<Progress>(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
        let progress = Progress {
            offset: 3,
            seen: Vec::new(),
        };
        save(&dir.path().join("a.json"), &progress).unwrap();
        fs::write(dir.path().join("b.tmp"), b"{\"version\":1,").unwrap();
        assert_eq!(load_dir::<Progress>(dir.path()).unwrap(), [progress]);
    }
}
