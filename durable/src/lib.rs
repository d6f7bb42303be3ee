//! Vigil's one way to replace a small file durably: the bus's offsets and stage state, the
//! sources' checkpoints and a backup's manifest are all written with it.
//!
//! [`replace_file`] writes the new content to a temporary file beside the old one, syncs it,
//! renames it over the old one and syncs the directory, so a crash or a power loss leaves
//! either the old content or the new, never a mix, and the rename itself survives.
//! [`write_json`] and [`read_json`] keep a JSON value (a checkpoint) in such a file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The temporary file a replace of `path` writes first: `path` with the extension `tmp`.
/// A leftover one is a replace that never completed; readers skip it.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

/// Replaces the file at `path` with `bytes`: a crash leaves the old content or the new, never
/// a mix. The directory must exist.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    match path.parent() {
        // A bare file name lives in the working directory.
        Some(dir) if dir.as_os_str().is_empty() => sync_dir(Path::new(".")),
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Syncs a directory, so the renames and creations in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `value` as pretty-printed JSON, creating its directory if needed.
pub fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir)?;
        }
    }
    replace_file(path, &bytes)
}

/// Why a JSON file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is there but does not hold the value: it is not skipped, since starting over
    /// without it could lose or repeat work silently.
    #[error("{path} is unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The value kept in `path` by [`write_json`], or none when there is no such file yet.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReadError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReadError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ReadError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Checkpoint {
        version: u32,
        offset: u64,
    }

    #[test]
    fn a_replace_leaves_the_new_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets");
        replace_file(&path, b"old").unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["offsets"]);
    }

    #[test]
    fn a_failed_replace_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_file(&path, b"old").unwrap();
        // The temporary file cannot be created where a directory stands in its way.
        fs::create_dir(temp_path(&path)).unwrap();
        assert!(replace_file(&path, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn json_round_trips_and_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints/source.json");
        assert_eq!(read_json::<Checkpoint>(&path).unwrap(), None);
        let checkpoint = Checkpoint {
            version: 1,
            offset: 42,
        };
        write_json(&path, &checkpoint).unwrap();
        assert_eq!(read_json::<Checkpoint>(&path).unwrap(), Some(checkpoint));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.json");
        fs::write(&path, b"{\"version\":1").unwrap();
        assert!(matches!(
            read_json::<Checkpoint>(&path),
            Err(ReadError::Corrupt { .. })
        ));
        // A directory where the file should be is an I/O error, not a missing file.
        let dir_path = dir.path().join("dir.json");
        fs::create_dir(&dir_path).unwrap();
        assert!(matches!(
            read_json::<Checkpoint>(&dir_path),
            Err(ReadError::Io { .. })
        ));
    }
}
