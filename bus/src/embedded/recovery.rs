//! Recovery of a topic's log when it opens: a torn tail (a crash in the middle of a write that
//! was never acknowledged) is cut off the last segment, and a log that ends before an offset a
//! consumer group committed is refused, since it lost acknowledged messages.
//!
//! Frames are judged by [`MAX_FRAME_BODY_BYTES`](super::frame::MAX_FRAME_BODY_BYTES), a
//! constant of the format, never by the configured message limit: a limit lowered between two
//! runs must not make acknowledged frames look torn.

use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::path::Path;

use super::frame::{read_frame, FrameError, FRAME_HEADER};
use super::layout::{segment_path, OFFSETS_DIR};
use super::offsets::{group_files, read_existing_offset};
use crate::BusError;

/// The valid part of a topic's last segment, once recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recovered {
    /// How many valid frames the segment holds.
    pub(super) frames: u64,
    /// The length of those frames: the segment's length once its torn tail is cut.
    pub(super) len: u64,
}

/// Recovers the last segment of the topic in `dir`, the one whose base offset is `last_base`:
/// checks that no consumer group committed past its valid frames, then cuts off whatever
/// follows them. A refused log is left exactly as it was.
pub(super) fn recover_last_segment(dir: &Path, last_base: u64) -> Result<Recovered, BusError> {
    let path = segment_path(dir, last_base);
    let scan = scan_segment(&path)?;
    // Checked before anything is cut: a group that committed past the valid frames read
    // messages that were acknowledged, so the log lost data and must not be "repaired".
    check_committed_within(dir, last_base + scan.frames)?;
    if scan.valid_len < scan.file_len {
        tracing::warn!(
            path = %path.display(),
            position = scan.valid_len,
            bytes = scan.file_len - scan.valid_len,
            reason = scan.invalid_reason.as_deref().unwrap_or("unknown"),
            "cutting off the torn tail of a bus segment (a write that was never acknowledged)"
        );
        truncate(&path, scan.valid_len)?;
    }
    Ok(Recovered {
        frames: scan.frames,
        len: scan.valid_len,
    })
}

/// What a scan of a segment found: its valid frames, and where they end.
struct SegmentScan {
    frames: u64,
    /// The length of the valid frames; anything after is a torn or corrupt tail.
    valid_len: u64,
    file_len: u64,
    /// Why the frame at `valid_len` is not valid, when the file goes on past it.
    invalid_reason: Option<String>,
}

/// Reads a segment frame by frame, up to the end of the file or the first frame that is torn
/// or fails its checksum. It changes nothing on disk.
fn scan_segment(path: &Path) -> Result<SegmentScan, BusError> {
    let file = File::open(path).map_err(BusError::io(path))?;
    let file_len = file.metadata().map_err(BusError::io(path))?.len();
    let mut reader = BufReader::new(&file);
    let mut position = 0u64;
    let mut frames = 0u64;
    let mut invalid_reason = None;
    let mut body = Vec::new();
    loop {
        // What is left bounds the body, so a torn header that promises a huge frame is found
        // out without allocating it.
        let available = file_len - position;
        match read_frame(&mut reader, &mut body, available) {
            Ok(true) => {
                position += (FRAME_HEADER + body.len()) as u64;
                frames += 1;
            }
            Ok(false) => break,
            Err(FrameError::Io(e)) => {
                return Err(BusError::Io {
                    path: path.into(),
                    source: e,
                })
            }
            Err(FrameError::Invalid(reason)) => {
                invalid_reason = Some(reason);
                break;
            }
        }
    }
    Ok(SegmentScan {
        frames,
        valid_len: position,
        file_len,
        invalid_reason,
    })
}

fn truncate(path: &Path, len: u64) -> Result<(), BusError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(BusError::io(path))?;
    file.set_len(len).map_err(BusError::io(path))?;
    file.sync_all().map_err(BusError::io(path))
}

/// Fails when a consumer group of the topic in `dir` committed an offset past `end`, the
/// offset the next append would take.
fn check_committed_within(dir: &Path, end: u64) -> Result<(), BusError> {
    for (group, path) in group_files(&dir.join(OFFSETS_DIR))? {
        let committed = read_existing_offset(&path)?;
        if committed > end {
            return Err(BusError::CommittedPastEnd {
                path,
                group,
                committed,
                end,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::embedded::frame;
    use crate::embedded::topic::TopicLog;
    use crate::{EmbeddedBusOptions, Message};

    /// The frames of `count` small messages, and where each frame ends.
    fn frames(count: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for n in 0..count {
            frame::encode(
                &Message::new(format!("key {n}"), format!("payload {n}")),
                &mut bytes,
            );
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    /// A topic directory holding one segment, based at `base`, with `bytes` in it.
    fn topic_with(base: u64, bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(OFFSETS_DIR)).unwrap();
        fs::write(segment_path(dir.path(), base), bytes).unwrap();
        dir
    }

    fn segment_len(dir: &tempfile::TempDir, base: u64) -> u64 {
        fs::metadata(segment_path(dir.path(), base)).unwrap().len()
    }

    /// Recovers a segment based at `base` holding `bytes`, and checks that it keeps `frames`
    /// frames, `len` bytes long, and that recovering again changes nothing.
    fn assert_recovers(bytes: &[u8], base: u64, frames: u64, len: u64) -> tempfile::TempDir {
        let dir = topic_with(base, bytes);
        let expected = Recovered { frames, len };
        let recovered = recover_last_segment(dir.path(), base).unwrap();
        assert_eq!(recovered, expected, "a segment of {} bytes", bytes.len());
        assert_eq!(
            segment_len(&dir, base),
            len,
            "a segment of {} bytes",
            bytes.len()
        );
        assert_eq!(recover_last_segment(dir.path(), base).unwrap(), expected);
        dir
    }

    /// Three good frames followed by `tail` recover to the three frames, with the tail cut.
    fn assert_tail_is_cut(tail: &[u8]) {
        let (mut bytes, ends) = frames(3);
        bytes.extend_from_slice(tail);
        assert_recovers(&bytes, 0, 3, ends[2]);
    }

    #[test]
    fn a_frame_cut_mid_header_is_cut_off() {
        let (fourth, _) = frames(4);
        let (three, ends) = frames(3);
        let header_start = ends[2] as usize;
        assert_eq!(&fourth[..header_start], three.as_slice());
        for cut in 1..FRAME_HEADER {
            assert_tail_is_cut(&fourth[header_start..header_start + cut]);
        }
    }

    #[test]
    fn a_frame_cut_mid_body_is_cut_off() {
        let (four, ends) = frames(4);
        let start = ends[2] as usize;
        let end = ends[3] as usize;
        // Just after the header, in the middle, and one byte short.
        for cut in [start + FRAME_HEADER, (start + end) / 2, end - 1] {
            assert_tail_is_cut(&four[start..cut]);
        }
    }

    #[test]
    fn a_checksum_mismatch_in_the_last_frame_cuts_that_frame() {
        let (mut bytes, ends) = frames(3);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert_recovers(&bytes, 0, 2, ends[1]);
    }

    #[test]
    fn garbage_after_the_last_valid_frame_is_cut_off() {
        // Zeroed blocks a crash can leave past the end of the data.
        assert_tail_is_cut(&[0; 4096]);
        // Text, whose first bytes read as a length far past the end of the file.
        assert_tail_is_cut(b"not a frame at all, just bytes a crash left behind\n");
        // A header of a plausible length whose body fails the checksum.
        let mut plausible = vec![12, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        plausible.extend_from_slice(&[0x55; 12]);
        plausible.extend_from_slice(b"and more after it");
        assert_tail_is_cut(&plausible);
        // A frame whose key length points past its body, checksum and all.
        let body = [200u8, 0, 0, 0, b'k'];
        let mut bad_key = (body.len() as u32).to_le_bytes().to_vec();
        bad_key.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bad_key.extend_from_slice(&body);
        assert_tail_is_cut(&bad_key);
    }

    #[test]
    fn a_segment_ending_at_a_frame_boundary_is_kept_whole() {
        let (bytes, ends) = frames(3);
        let dir = assert_recovers(&bytes, 7, 3, ends[2]);
        assert_eq!(fs::read(segment_path(dir.path(), 7)).unwrap(), bytes);
        assert_recovers(&[], 0, 0, 0);
    }

    #[test]
    fn a_valid_frame_bigger_than_the_ingest_body_limit_is_kept() {
        let limit = EmbeddedBusOptions::default().max_message_bytes;
        let (mut bytes, ends) = frames(1);
        let big = Message::new("big", vec![b'b'; limit + 1]);
        frame::encode(&big, &mut bytes);
        assert!(bytes.len() as u64 - ends[0] > limit as u64);
        let dir = assert_recovers(&bytes, 0, 2, bytes.len() as u64);

        // Opening the topic under a lower limit keeps it too.
        let lower = EmbeddedBusOptions {
            max_message_bytes: 1024,
            ..EmbeddedBusOptions::default()
        };
        let topic = TopicLog::open(dir.path().to_owned(), lower).unwrap();
        assert_eq!(*topic.high_water.borrow(), 2);
        assert_eq!(segment_len(&dir, 0), bytes.len() as u64);
    }

    #[test]
    fn a_commit_past_the_end_refuses_to_open_and_cuts_nothing() {
        let (mut bytes, _) = frames(3);
        bytes.extend_from_slice(&[1, 2, 3]);
        let dir = topic_with(10, &bytes);
        let offsets = dir.path().join(OFFSETS_DIR);
        fs::write(offsets.join("index"), "13\n").unwrap();
        fs::write(offsets.join("detect"), "14\n").unwrap();
        // A leftover of an interrupted offset replace is not a group.
        fs::write(offsets.join("alerts.tmp"), "99\n").unwrap();
        match recover_last_segment(dir.path(), 10) {
            Err(BusError::CommittedPastEnd {
                path,
                group,
                committed,
                end,
            }) => {
                assert_eq!(group, "detect");
                assert_eq!((committed, end), (14, 13));
                assert_eq!(path, offsets.join("detect"));
            }
            other => panic!("expected CommittedPastEnd, got {other:?}"),
        }
        assert_eq!(fs::read(segment_path(dir.path(), 10)).unwrap(), bytes);

        // A commit at the end is within the log: the torn tail is cut, the frames are kept.
        fs::write(offsets.join("detect"), "13\n").unwrap();
        let recovered = recover_last_segment(dir.path(), 10).unwrap();
        assert_eq!(recovered.frames, 3);
        assert_eq!(segment_len(&dir, 10), bytes.len() as u64 - 3);
    }
}
