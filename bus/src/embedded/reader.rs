//! A consumer's sequential reader over a topic's segments, up to the high-water mark.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::frame::{read_frame, split_body, FrameError, FRAME_HEADER};
use super::topic::TopicLog;
use crate::{BusError, Delivery};

/// Sequential reader over a topic's segments.
pub(super) struct Reader {
    topic: Arc<TopicLog>,
    /// The offset of the next message to read.
    pub(super) offset: u64,
    open: Option<OpenSegment>,
}

struct OpenSegment {
    file: BufReader<File>,
    path: PathBuf,
    base: u64,
    position: u64,
    /// The base of the following segment, once known; reaching it means switching files.
    end: Option<u64>,
}

impl Reader {
    pub(super) fn new(topic: Arc<TopicLog>, offset: u64) -> Self {
        Reader {
            topic,
            offset,
            open: None,
        }
    }

    /// Reads up to `max` durable messages.
    pub(super) fn read(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let high_water = *self.topic.high_water.borrow();
        let mut out = Vec::new();
        let mut body = Vec::new();
        while out.len() < max && self.offset < high_water {
            let segment = self.segment()?;
            match read_frame(&mut segment.file, &mut body, u64::MAX) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(BusError::Corrupt {
                        path: segment.path.clone(),
                        position: segment.position,
                        reason: format!("offset {} is missing", self.offset),
                    })
                }
                Err(FrameError::Io(source)) => {
                    return Err(BusError::Io {
                        path: segment.path.clone(),
                        source,
                    })
                }
                Err(FrameError::Invalid(reason)) => {
                    return Err(BusError::Corrupt {
                        path: segment.path.clone(),
                        position: segment.position,
                        reason,
                    })
                }
            }
            segment.position += (FRAME_HEADER + body.len()) as u64;
            let (key, payload) = split_body(Bytes::from(std::mem::take(&mut body)));
            out.push(Delivery {
                partition: 0,
                offset: self.offset,
                key,
                payload,
            });
            self.offset += 1;
        }
        Ok(out)
    }

    /// The open segment positioned at `self.offset`, opening or switching files as needed.
    fn segment(&mut self) -> Result<&mut OpenSegment, BusError> {
        if let Some(open) = &mut self.open {
            if open.end.is_none() {
                // It was the last segment when opened; a roll may have happened since.
                open.end = self.topic.locate(open.base).1;
            }
        }
        let stale = match &self.open {
            None => true,
            Some(open) => open.end.is_some_and(|end| self.offset >= end),
        };
        if stale {
            self.open = Some(self.open_at_offset()?);
        }
        Ok(self.open.as_mut().expect("segment opened above"))
    }

    fn open_at_offset(&mut self) -> Result<OpenSegment, BusError> {
        let (base, end) = self.topic.locate(self.offset);
        if self.offset < base {
            // Only reachable when an offset file was edited by hand to point at pruned data.
            tracing::warn!(
                offset = self.offset,
                oldest = base,
                "bus offset below the oldest segment; resuming at the oldest"
            );
            self.offset = base;
        }
        let path = self.topic.segment_path(base);
        let file = File::open(&path).map_err(BusError::io(&path))?;
        let mut file = BufReader::new(file);
        let mut position = 0u64;
        let mut header = [0u8; FRAME_HEADER];
        for _ in base..self.offset {
            file.read_exact(&mut header).map_err(BusError::io(&path))?;
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
            file.seek_relative(i64::from(len))
                .map_err(BusError::io(&path))?;
            position += FRAME_HEADER as u64 + u64::from(len);
        }
        file.seek(SeekFrom::Start(position))
            .map_err(BusError::io(&path))?;
        Ok(OpenSegment {
            file,
            path,
            base,
            position,
            end,
        })
    }
}
