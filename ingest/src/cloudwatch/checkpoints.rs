//! The CloudWatch pull source's checkpoints: one file per log group in the source's own
//! directory, written after the bus acknowledged every event of a window.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::window::GroupProgress;
use super::CloudWatchError;
use crate::checkpoint;

/// What a log group's checkpoint holds.
#[derive(Debug, Serialize, Deserialize)]
struct GroupCheckpoint {
    log_group: String,
    window_end_ms: i64,
    /// `[eventId, timestamp]` pairs.
    seen: Vec<(String, i64)>,
}

/// A file name for a log group's checkpoint: readable, and unique through a hash since
/// log group names may be longer than file names and hold `/`.
fn checkpoint_file_name(group: &str) -> String {
    let readable: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = vigil_event::Id::derive("vigil cloudwatch checkpoint v1", &[group.as_bytes()]);
    format!("{}-{}.json", readable.trim_start_matches('_'), hash)
}

pub(super) fn save_checkpoint(dir: &Path, group: &str, progress: &GroupProgress) -> io::Result<()> {
    let Some(end) = progress.end_ms else {
        return Ok(());
    };
    let mut seen: Vec<(String, i64)> = progress
        .seen
        .iter()
        .map(|(id, ts)| (id.clone(), *ts))
        .collect();
    seen.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let checkpoint = GroupCheckpoint {
        log_group: group.to_owned(),
        window_end_ms: end,
        seen,
    };
    checkpoint::save(&dir.join(checkpoint_file_name(group)), &checkpoint)
}

pub(super) fn load_checkpoints(
    dir: &Path,
) -> Result<HashMap<String, GroupProgress>, CloudWatchError> {
    let mut progress = HashMap::new();
    for file in checkpoint::load_dir::<GroupCheckpoint>(dir)? {
        progress.insert(
            file.log_group,
            GroupProgress {
                end_ms: Some(file.window_end_ms),
                seen: file.seen.into_iter().collect(),
            },
        );
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::checkpoint::CheckpointError;

    #[test]
    fn checkpoints_round_trip_and_corrupt_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let progress = GroupProgress {
            end_ms: Some(42),
            seen: [("id-1".to_owned(), 40)].into_iter().collect(),
        };
        save_checkpoint(dir.path(), "/aws/eks/prod/cluster", &progress).unwrap();
        save_checkpoint(dir.path(), "/app/flask", &GroupProgress::default()).unwrap();
        let loaded = load_checkpoints(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["/aws/eks/prod/cluster"], progress);
        assert!(fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().path().extension().unwrap() == "json"));

        fs::write(dir.path().join("broken.json"), b"{\"version\":1").unwrap();
        assert!(matches!(
            load_checkpoints(dir.path()),
            Err(CloudWatchError::Checkpoint(CheckpointError::Corrupt { .. }))
        ));
        assert!(load_checkpoints(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn checkpoint_names_are_distinct_and_safe() {
        let a = checkpoint_file_name("/app/flask");
        let b = checkpoint_file_name("/app_flask");
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.starts_with('.'));
        assert!(checkpoint_file_name(&"x".repeat(512)).len() < 200);
    }
}
