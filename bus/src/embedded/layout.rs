//! Where the embedded bus keeps things under its root: one directory per topic holding its
//! segment files and an `offsets/` directory, and a `state/` directory beside the topics.

use std::path::{Path, PathBuf};

use crate::{is_plain_name, BusError};

const SEGMENT_SUFFIX: &str = ".log";
/// In a topic's directory: one file per consumer group, holding its next offset.
pub(super) const OFFSETS_DIR: &str = "offsets";
/// Stage state saved through [`Bus::save_state`](crate::Bus::save_state), one file per key,
/// beside the topics.
pub(super) const STATE_DIR: &str = "state";

/// The segment file of the topic in `dir` whose first message has offset `base`.
pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// The base offset a segment file's name gives, or `None` when the name is not a segment's.
pub(super) fn segment_base(file_name: &str) -> Option<u64> {
    file_name
        .strip_suffix(SEGMENT_SUFFIX)
        .and_then(|n| n.parse::<u64>().ok())
}

/// Topic, group and state key names become file names, so only plain ones are taken.
pub(super) fn validate_name(name: &str) -> Result<(), BusError> {
    let valid = is_plain_name(name)
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name != OFFSETS_DIR
        && name != STATE_DIR;
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_owned()))
    }
}

/// Replaces the file at `path` with `bytes` durably, through Vigil's one atomic replace: a
/// crash leaves the old content or the new, never a mix. Offsets and stage state are written
/// this way; the temporary file it leaves when interrupted is never read as a group.
pub(super) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    vigil_durable::replace_file(path, bytes).map_err(BusError::io(path))
}

/// Syncs `dir`, so that the segment files created in it survive a power loss.
pub(super) fn sync_dir(dir: &Path) -> Result<(), BusError> {
    vigil_durable::sync_dir(dir).map_err(BusError::io(dir))
}
