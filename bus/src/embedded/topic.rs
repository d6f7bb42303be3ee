//! One topic's log: its segment files, the writer appending to the last one, and the
//! high-water mark below which every message is durable.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

use tokio::sync::watch;

use super::frame::{self, MAX_FRAME_BODY_BYTES};
use super::layout::{segment_base, segment_path, sync_dir, OFFSETS_DIR};
use super::offsets::{group_files, offset_path, read_offset, write_offset};
use super::recovery::recover_last_segment;
use crate::{BusError, Message};

#[derive(Debug, Clone)]
pub struct EmbeddedBusOptions {
    /// A segment is closed and a new one started once it grows past this size.
    pub segment_bytes: u64,
    /// The largest message body (key and payload) accepted by a publish, capped at
    /// [`MAX_FRAME_BODY_BYTES`]. Only publishes are held to it; what is already on disk is read
    /// whatever this says.
    pub max_message_bytes: usize,
}

impl Default for EmbeddedBusOptions {
    fn default() -> Self {
        EmbeddedBusOptions {
            segment_bytes: 64 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

struct SegmentWriter {
    file: File,
    path: PathBuf,
    size: u64,
    next_offset: u64,
}

pub(super) struct TopicLog {
    dir: PathBuf,
    options: EmbeddedBusOptions,
    writer: Mutex<SegmentWriter>,
    /// Base offsets of the segments on disk, ascending.
    segments: RwLock<Vec<u64>>,
    /// Every offset below this is durable and may be read.
    pub(super) high_water: watch::Sender<u64>,
    /// Groups with a live subscription; one consumer per group in a single process.
    pub(super) active_groups: Mutex<HashSet<String>>,
}

impl TopicLog {
    /// Opens the topic in `dir`, creating it if needed, and recovers its last segment.
    pub(super) fn open(dir: PathBuf, options: EmbeddedBusOptions) -> Result<Self, BusError> {
        fs::create_dir_all(dir.join(OFFSETS_DIR)).map_err(BusError::io(&dir))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir).map_err(BusError::io(&dir))? {
            let entry = entry.map_err(BusError::io(&dir))?;
            if let Some(base) = entry.file_name().to_str().and_then(segment_base) {
                segments.push(base);
            }
        }
        segments.sort_unstable();
        if segments.is_empty() {
            let path = segment_path(&dir, 0);
            File::create(&path).map_err(BusError::io(&path))?;
            sync_dir(&dir)?;
            segments.push(0);
        }

        let last_base = *segments.last().expect("at least one segment");
        let recovered = recover_last_segment(&dir, last_base)?;
        let path = segment_path(&dir, last_base);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(BusError::io(&path))?;
        let next_offset = last_base + recovered.frames;
        Ok(TopicLog {
            dir,
            options,
            writer: Mutex::new(SegmentWriter {
                file,
                path,
                size: recovered.len,
                next_offset,
            }),
            segments: RwLock::new(segments),
            high_water: watch::Sender::new(next_offset),
            active_groups: Mutex::new(HashSet::new()),
        })
    }

    /// Appends `messages` and syncs them, then raises the high-water mark past them.
    pub(super) fn append(&self, messages: &[Message]) -> Result<(), BusError> {
        let max = self.options.max_message_bytes.min(MAX_FRAME_BODY_BYTES);
        let mut size = 0;
        for message in messages {
            let body_len = frame::body_len(message);
            if body_len > max {
                return Err(BusError::MessageTooLarge {
                    size: body_len,
                    max,
                });
            }
            size += frame::FRAME_HEADER + body_len;
        }
        // Allocated once at its final size: grown by doubling, the batch's copies and fresh
        // pages were about 2% of a process taking CloudTrail records at 30,000 a second.
        let mut batch = Vec::with_capacity(size);
        for message in messages {
            frame::encode(message, &mut batch);
        }
        debug_assert_eq!(batch.len(), size);

        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.size > 0 && writer.size + batch.len() as u64 > self.options.segment_bytes {
            self.roll(&mut writer)?;
        }
        let written = writer
            .file
            .write_all(&batch)
            .and_then(|()| writer.file.sync_data());
        if let Err(source) = written {
            // Cut off whatever part of the batch reached the file, so the next append does not
            // land behind a torn frame; the caller was told the batch failed.
            let size = writer.size;
            let _ = writer.file.set_len(size);
            return Err(BusError::Io {
                path: writer.path.clone(),
                source,
            });
        }
        writer.size += batch.len() as u64;
        writer.next_offset += messages.len() as u64;
        self.high_water.send_replace(writer.next_offset);
        Ok(())
    }

    fn roll(&self, writer: &mut SegmentWriter) -> Result<(), BusError> {
        let base = writer.next_offset;
        let path = segment_path(&self.dir, base);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(BusError::io(&path))?;
        sync_dir(&self.dir)?;
        *writer = SegmentWriter {
            file,
            path,
            size: 0,
            next_offset: base,
        };
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(base);
        Ok(())
    }

    /// The next offset of `group`. A group seen for the first time starts at the oldest
    /// segment, and is recorded there at once so that pruning keeps what it has not read.
    pub(super) fn load_committed(&self, group: &str) -> Result<u64, BusError> {
        match read_offset(&offset_path(&self.dir, group))? {
            Some(next) => Ok(next),
            None => {
                let start = self.first_base();
                self.store_committed(group, start)?;
                Ok(start)
            }
        }
    }

    pub(super) fn store_committed(&self, group: &str, next: u64) -> Result<(), BusError> {
        write_offset(&offset_path(&self.dir, group), next)
    }

    fn first_base(&self) -> u64 {
        self.segments.read().unwrap_or_else(|e| e.into_inner())[0]
    }

    /// The base of the segment holding `offset`, and the base of the one after it if any.
    pub(super) fn locate(&self, offset: u64) -> (u64, Option<u64>) {
        let segments = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let index = segments.partition_point(|&base| base <= offset);
        let base = segments[index.saturating_sub(1)];
        (base, segments.get(index).copied())
    }

    /// The segment file whose first message has offset `base`.
    pub(super) fn segment_path(&self, base: u64) -> PathBuf {
        segment_path(&self.dir, base)
    }

    /// Deletes the segments that every known group has committed past.
    pub(super) fn prune(&self) -> Result<(), BusError> {
        let mut min_committed = u64::MAX;
        for (group, _) in group_files(&self.dir.join(OFFSETS_DIR))? {
            min_committed = min_committed.min(self.load_committed(&group)?);
        }
        let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
        while segments.len() > 1 && segments[1] <= min_committed {
            let path = segment_path(&self.dir, segments[0]);
            fs::remove_file(&path).map_err(BusError::io(&path))?;
            segments.remove(0);
        }
        Ok(())
    }
}
