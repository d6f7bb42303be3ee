//! Consumer group offsets: in a topic's `offsets/` directory, one file per group holding the
//! offset of the group's next message as text, replaced atomically on each commit.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::layout::{replace_file, segment_base, validate_name, OFFSETS_DIR};
use crate::BusError;

/// The offset file of `group` in the topic directory `topic_dir`.
pub(super) fn offset_path(topic_dir: &Path, group: &str) -> PathBuf {
    topic_dir.join(OFFSETS_DIR).join(group)
}

/// The groups with an offset file in `offsets_dir`, by name, with the file's path. Leftover
/// temporary files of an interrupted replace are not groups.
pub(super) fn group_files(offsets_dir: &Path) -> Result<Vec<(String, PathBuf)>, BusError> {
    let mut groups = Vec::new();
    for entry in fs::read_dir(offsets_dir).map_err(BusError::io(offsets_dir))? {
        let entry = entry.map_err(BusError::io(offsets_dir))?;
        let name = entry.file_name();
        // `vigil_durable::temp_path` names the file a replace writes first `<group>.tmp`.
        let Some(group) = name.to_str().filter(|n| !n.ends_with(".tmp")) else {
            continue;
        };
        groups.push((group.to_owned(), entry.path()));
    }
    Ok(groups)
}

/// The offset an offset file holds, or `None` when there is no such file.
pub(super) fn read_offset(path: &Path) -> Result<Option<u64>, BusError> {
    match fs::read_to_string(path) {
        Ok(text) => parse_offset(path, &text).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BusError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The offset an offset file that must exist holds.
pub(super) fn read_existing_offset(path: &Path) -> Result<u64, BusError> {
    let text = fs::read_to_string(path).map_err(BusError::io(path))?;
    parse_offset(path, &text)
}

fn parse_offset(path: &Path, text: &str) -> Result<u64, BusError> {
    text.trim().parse().map_err(|_| BusError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason: format!("offset file holds {:?}, not a number", text.trim()),
    })
}

/// Durably replaces the offset in the file at `path` with `next`.
pub(super) fn write_offset(path: &Path, next: u64) -> Result<(), BusError> {
    replace_file(path, format!("{next}\n").as_bytes())
}

/// The committed offset of every consumer group of every topic of the embedded bus at `root`,
/// by topic and then group. It only reads the offset files, each replaced atomically on
/// commit, so it can run while another process has the bus open (`vigil backup`).
pub fn committed_offsets(root: &Path) -> Result<BTreeMap<String, BTreeMap<String, u64>>, BusError> {
    let mut topics = BTreeMap::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(topics),
        Err(e) => {
            return Err(BusError::Io {
                path: root.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(BusError::io(root))?;
        let Some(topic) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let offsets_dir = entry.path().join(OFFSETS_DIR);
        if validate_name(&topic).is_err() || !offsets_dir.is_dir() {
            continue;
        }
        let mut groups = BTreeMap::new();
        for (name, path) in group_files(&offsets_dir)? {
            if validate_name(&name).is_err() {
                continue;
            }
            groups.insert(name, read_existing_offset(&path)?);
        }
        topics.insert(topic, groups);
    }
    Ok(topics)
}

/// Moves a consumer group of `topic` back to `offset`, so that it reads again from there, in
/// a bus no process has open (`vigil restore`). It never moves a group forward (that would
/// skip messages: an offset from another bus's log means nothing here), nor before the oldest
/// message still on disk. Gives the offset the group now starts from, or `None` when the
/// topic or the group does not exist here.
pub fn rewind_committed(
    root: &Path,
    topic: &str,
    group: &str,
    offset: u64,
) -> Result<Option<u64>, BusError> {
    validate_name(topic)?;
    validate_name(group)?;
    let dir = root.join(topic);
    let path = offset_path(&dir, group);
    let Some(current) = read_offset(&path)? else {
        return Ok(None);
    };
    let mut oldest = u64::MAX;
    for entry in fs::read_dir(&dir).map_err(BusError::io(&dir))? {
        let entry = entry.map_err(BusError::io(&dir))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment_base) {
            oldest = oldest.min(base);
        }
    }
    let next = offset.min(current).max(oldest.min(current));
    if next != current {
        write_offset(&path, next)?;
    }
    Ok(Some(next))
}
