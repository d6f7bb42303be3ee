//! The embedded backend: one append-only log per topic, in segment files on local disk.
//!
//! A segment file is named after the offset of its first message and holds frames of
//! `[body length: u32 LE][CRC-32 of body: u32 LE][body]`, where the body is
//! `[key length: u32 LE][key][payload]`. Offsets are implicit (the count of frames before).
//!
//! A publish writes its whole batch, then `fdatasync`s, then raises the topic's high-water mark;
//! readers never look past that mark, so they only see durable messages. On open, a torn tail
//! (a crash in the middle of a write that was never acknowledged) is cut off. Recovery reads
//! frames by [`MAX_FRAME_BODY_BYTES`], a constant of the format, never by the configured
//! message limit: a limit lowered between two runs must not make acknowledged frames look torn.
//! And it refuses to open a topic whose log ends before an offset a consumer group committed,
//! since that log lost acknowledged messages and appending would hand their offsets out again.
//!
//! Each consumer group's next offset lives in `offsets/<group>`, replaced atomically on commit.
//! Segments that every group has committed past are deleted.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::{Bus, BusError, Checkpoint, Delivery, Message, Subscription};

const FRAME_HEADER: usize = 8;
/// The largest frame body (key length, key and payload) the on-disk format holds. A constant
/// of the format, independent of [`EmbeddedBusOptions::max_message_bytes`]: recovery judges
/// frames by it, so frames written under a higher configured limit stay valid after the limit
/// is lowered. Appends never write more than this, whatever the options say.
pub const MAX_FRAME_BODY_BYTES: usize = 1 << 30;
const SEGMENT_SUFFIX: &str = ".log";
const OFFSETS_DIR: &str = "offsets";
/// Stage state saved through [`Bus::save_state`], one file per key, beside the topics.
const STATE_DIR: &str = "state";

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

/// The single-process bus: topics are directories of segment files under one root.
pub struct EmbeddedBus {
    root: PathBuf,
    options: EmbeddedBusOptions,
    topics: Mutex<HashMap<String, Arc<TopicLog>>>,
}

impl EmbeddedBus {
    /// Opens the bus rooted at `root`, creating it if needed. Topics open on first use.
    pub fn open(root: impl Into<PathBuf>, options: EmbeddedBusOptions) -> Result<Self, BusError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(BusError::io(&root))?;
        // Open existing topics now, so a torn tail is repaired and reported at start-up.
        let mut topics = HashMap::new();
        for entry in fs::read_dir(&root).map_err(BusError::io(&root))? {
            let entry = entry.map_err(BusError::io(&root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| validate_name(n).is_ok()) else {
                continue;
            };
            if entry.path().is_dir() && name != STATE_DIR {
                let topic = TopicLog::open(entry.path(), options.clone())?;
                topics.insert(name.to_owned(), Arc::new(topic));
            }
        }
        Ok(EmbeddedBus {
            root,
            options,
            topics: Mutex::new(topics),
        })
    }

    /// The directory the bus keeps its topics in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicLog>, BusError> {
        validate_name(name)?;
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        let topic = Arc::new(TopicLog::open(self.root.join(name), self.options.clone())?);
        topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let topic = self.topic(topic)?;
        tokio::task::spawn_blocking(move || topic.append(&messages))
            .await
            .map_err(|e| BusError::Unavailable(format!("append task failed: {e}")))?
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        validate_name(group)?;
        let topic = self.topic(topic)?;
        let guard = GroupGuard::claim(&topic, group)?;
        let committed = topic.load_committed(group)?;
        Ok(Box::new(EmbeddedSubscription {
            high_water: topic.high_water.subscribe(),
            reader: Some(Box::new(Reader::new(topic.clone(), committed))),
            committed,
            group: guard,
            topic,
        }))
    }

    async fn save_state(&self, key: &str, state: Bytes) -> Result<(), BusError> {
        validate_name(key)?;
        let dir = self.root.join(STATE_DIR);
        let path = dir.join(key);
        tokio::task::spawn_blocking(move || {
            fs::create_dir_all(&dir).map_err(BusError::io(&dir))?;
            replace_file(&path, &state)
        })
        .await
        .map_err(|e| BusError::Unavailable(format!("state task failed: {e}")))?
    }

    async fn load_state(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        validate_name(key)?;
        let path = self.root.join(STATE_DIR).join(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BusError::Io { path, source }),
        }
    }
}

fn validate_name(name: &str) -> Result<(), BusError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name != OFFSETS_DIR
        && name != STATE_DIR
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_owned()))
    }
}

struct SegmentWriter {
    file: File,
    path: PathBuf,
    size: u64,
    next_offset: u64,
}

struct TopicLog {
    dir: PathBuf,
    options: EmbeddedBusOptions,
    writer: Mutex<SegmentWriter>,
    /// Base offsets of the segments on disk, ascending.
    segments: RwLock<Vec<u64>>,
    /// Every offset below this is durable and may be read.
    high_water: watch::Sender<u64>,
    /// Groups with a live subscription; one consumer per group in a single process.
    active_groups: Mutex<HashSet<String>>,
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// Replaces the file at `path` with `bytes` durably: a crash leaves the old content or the
/// new, never a mix. Offsets and stage state are written this way.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(BusError::io(path))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), BusError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BusError::io(dir))
}

impl TopicLog {
    fn open(dir: PathBuf, options: EmbeddedBusOptions) -> Result<Self, BusError> {
        fs::create_dir_all(dir.join(OFFSETS_DIR)).map_err(BusError::io(&dir))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir).map_err(BusError::io(&dir))? {
            let entry = entry.map_err(BusError::io(&dir))?;
            let name = entry.file_name();
            let Some(base) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.push(base);
        }
        segments.sort_unstable();
        if segments.is_empty() {
            let path = segment_path(&dir, 0);
            File::create(&path).map_err(BusError::io(&path))?;
            sync_dir(&dir)?;
            segments.push(0);
        }

        let last_base = *segments.last().expect("at least one segment");
        let path = segment_path(&dir, last_base);
        let scan = scan_segment(&path)?;
        let end = last_base + scan.frames;
        // Checked before anything is cut: a group that committed past the valid frames read
        // messages that were acknowledged, so the log lost data and must not be "repaired".
        check_committed_within(&dir, end)?;
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
        let (count, valid_len) = (scan.frames, scan.valid_len);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(BusError::io(&path))?;
        let next_offset = last_base + count;
        Ok(TopicLog {
            dir,
            options,
            writer: Mutex::new(SegmentWriter {
                file,
                path,
                size: valid_len,
                next_offset,
            }),
            segments: RwLock::new(segments),
            high_water: watch::Sender::new(next_offset),
            active_groups: Mutex::new(HashSet::new()),
        })
    }

    fn append(&self, messages: &[Message]) -> Result<(), BusError> {
        let mut batch = Vec::new();
        for message in messages {
            let body_len = 4 + message.key.len() + message.payload.len();
            let max = self.options.max_message_bytes.min(MAX_FRAME_BODY_BYTES);
            if body_len > max {
                return Err(BusError::MessageTooLarge {
                    size: body_len,
                    max,
                });
            }
            let mut crc = crc32fast::Hasher::new();
            let key_len = (message.key.len() as u32).to_le_bytes();
            crc.update(&key_len);
            crc.update(&message.key);
            crc.update(&message.payload);
            batch.extend_from_slice(&(body_len as u32).to_le_bytes());
            batch.extend_from_slice(&crc.finalize().to_le_bytes());
            batch.extend_from_slice(&key_len);
            batch.extend_from_slice(&message.key);
            batch.extend_from_slice(&message.payload);
        }

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

    fn offsets_path(&self, group: &str) -> PathBuf {
        self.dir.join(OFFSETS_DIR).join(group)
    }

    fn load_committed(&self, group: &str) -> Result<u64, BusError> {
        let path = self.offsets_path(group);
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| BusError::Corrupt {
                path,
                position: 0,
                reason: format!("offset file holds {:?}, not a number", text.trim()),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Record the new group at the start, so that pruning keeps what it has not read.
                let start = self.first_base();
                self.store_committed(group, start)?;
                Ok(start)
            }
            Err(e) => Err(BusError::Io { path, source: e }),
        }
    }

    fn store_committed(&self, group: &str, next: u64) -> Result<(), BusError> {
        let path = self.offsets_path(group);
        replace_file(&path, format!("{next}\n").as_bytes())
    }

    fn first_base(&self) -> u64 {
        self.segments.read().unwrap_or_else(|e| e.into_inner())[0]
    }

    /// The base of the segment holding `offset`, and the base of the one after it if any.
    fn locate(&self, offset: u64) -> (u64, Option<u64>) {
        let segments = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let index = segments.partition_point(|&base| base <= offset);
        let base = segments[index.saturating_sub(1)];
        (base, segments.get(index).copied())
    }

    /// Deletes the segments that every known group has committed past.
    fn prune(&self) -> Result<(), BusError> {
        let offsets_dir = self.dir.join(OFFSETS_DIR);
        let mut min_committed = u64::MAX;
        for entry in fs::read_dir(&offsets_dir).map_err(BusError::io(&offsets_dir))? {
            let entry = entry.map_err(BusError::io(&offsets_dir))?;
            let name = entry.file_name();
            let Some(group) = name.to_str().filter(|n| !n.ends_with(".tmp")) else {
                continue;
            };
            min_committed = min_committed.min(self.load_committed(group)?);
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
    let offsets_dir = dir.join(OFFSETS_DIR);
    for entry in fs::read_dir(&offsets_dir).map_err(BusError::io(&offsets_dir))? {
        let entry = entry.map_err(BusError::io(&offsets_dir))?;
        let name = entry.file_name();
        let Some(group) = name.to_str().filter(|n| !n.ends_with(".tmp")) else {
            continue;
        };
        let path = entry.path();
        let committed = read_offset_file(&path)?;
        if committed > end {
            return Err(BusError::CommittedPastEnd {
                path,
                group: group.to_owned(),
                committed,
                end,
            });
        }
    }
    Ok(())
}

fn read_offset_file(path: &Path) -> Result<u64, BusError> {
    let text = fs::read_to_string(path).map_err(BusError::io(path))?;
    text.trim().parse().map_err(|_| BusError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason: format!("offset file holds {:?}, not a number", text.trim()),
    })
}

enum FrameError {
    Io(io::Error),
    Invalid(String),
}

/// Reads one frame's body into `body`. `Ok(false)` at a clean end of file. A frame longer than
/// `available` bytes (header included) is torn: the file ends inside it.
fn read_frame(
    reader: &mut impl Read,
    body: &mut Vec<u8>,
    available: u64,
) -> Result<bool, FrameError> {
    let mut header = [0u8; FRAME_HEADER];
    let mut filled = 0;
    while filled < FRAME_HEADER {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Invalid("incomplete frame header".into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if !(4..=MAX_FRAME_BODY_BYTES).contains(&len) {
        return Err(FrameError::Invalid(format!(
            "frame length {len} out of range"
        )));
    }
    if (FRAME_HEADER + len) as u64 > available {
        return Err(FrameError::Invalid("incomplete frame body".into()));
    }
    body.resize(len, 0);
    reader.read_exact(body).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => FrameError::Invalid("incomplete frame body".into()),
        _ => FrameError::Io(e),
    })?;
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Invalid("checksum mismatch".into()));
    }
    let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if key_len > len - 4 {
        return Err(FrameError::Invalid(format!(
            "key length {key_len} exceeds the frame"
        )));
    }
    Ok(true)
}

/// Sequential reader over a topic's segments.
struct Reader {
    topic: Arc<TopicLog>,
    offset: u64,
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
    fn new(topic: Arc<TopicLog>, offset: u64) -> Self {
        Reader {
            topic,
            offset,
            open: None,
        }
    }

    /// Reads up to `max` durable messages.
    fn read(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
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
            let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
            let body = Bytes::from(std::mem::take(&mut body));
            out.push(Delivery {
                partition: 0,
                offset: self.offset,
                key: body.slice(4..4 + key_len),
                payload: body.slice(4 + key_len..),
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
        let path = segment_path(&self.topic.dir, base);
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

/// Releases a group's claim on a topic when its subscription is dropped.
struct GroupGuard {
    topic: Arc<TopicLog>,
    group: String,
}

impl GroupGuard {
    fn claim(topic: &Arc<TopicLog>, group: &str) -> Result<Self, BusError> {
        let mut active = topic
            .active_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !active.insert(group.to_owned()) {
            return Err(BusError::Unavailable(format!(
                "group {group:?} already has a consumer; the embedded bus serves one per group"
            )));
        }
        Ok(GroupGuard {
            topic: topic.clone(),
            group: group.to_owned(),
        })
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.topic
            .active_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.group);
    }
}

struct EmbeddedSubscription {
    topic: Arc<TopicLog>,
    group: GroupGuard,
    high_water: watch::Receiver<u64>,
    /// Taken while a blocking read runs on another thread.
    reader: Option<Box<Reader>>,
    committed: u64,
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| BusError::Unavailable("an earlier read was cancelled".into()))?;
        loop {
            let high_water = *self.high_water.borrow_and_update();
            if reader.offset < high_water {
                break;
            }
            match tokio::time::timeout_at(deadline, self.high_water.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    self.reader = Some(reader);
                    return Err(BusError::Unavailable("the topic was closed".into()));
                }
                Err(_elapsed) => {
                    self.reader = Some(reader);
                    return Ok(Vec::new());
                }
            }
        }
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = reader.read(max.max(1));
            (reader, result)
        })
        .await
        .map_err(|e| BusError::Unavailable(format!("read task failed: {e}")))?;
        self.reader = Some(reader);
        result
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), BusError> {
        let Some(next) = checkpoint
            .partitions()
            .find(|&(p, _)| p == 0)
            .map(|(_, o)| o)
        else {
            return Ok(());
        };
        if next <= self.committed {
            return Ok(());
        }
        let topic = self.topic.clone();
        let group = self.group.group.clone();
        tokio::task::spawn_blocking(move || {
            topic.store_committed(&group, next)?;
            topic.prune()
        })
        .await
        .map_err(|e| BusError::Unavailable(format!("commit task failed: {e}")))??;
        self.committed = next;
        Ok(())
    }

    async fn lag(&self) -> Result<u64, BusError> {
        Ok(self.high_water.borrow().saturating_sub(self.committed))
    }
}

/// The committed offset of every consumer group of every topic of the embedded bus at `root`,
/// by topic and then group. It only reads the offset files, each replaced atomically on
/// commit, so it can run while another process has the bus open (`vigil backup`).
pub fn committed_offsets(
    root: &Path,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>, BusError> {
    let mut topics = std::collections::BTreeMap::new();
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
        let mut groups = std::collections::BTreeMap::new();
        for group in fs::read_dir(&offsets_dir).map_err(BusError::io(&offsets_dir))? {
            let group = group.map_err(BusError::io(&offsets_dir))?;
            let Some(name) = group.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(".tmp") || validate_name(&name).is_err() {
                continue;
            }
            let path = group.path();
            let text = fs::read_to_string(&path).map_err(BusError::io(&path))?;
            let offset = text.trim().parse().map_err(|_| BusError::Corrupt {
                path: path.clone(),
                position: 0,
                reason: format!("offset file holds {:?}, not a number", text.trim()),
            })?;
            groups.insert(name, offset);
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
    let path = dir.join(OFFSETS_DIR).join(group);
    let current: u64 = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| BusError::Corrupt {
            path: path.clone(),
            position: 0,
            reason: format!("offset file holds {:?}, not a number", text.trim()),
        })?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BusError::Io { path, source: e }),
    };
    let mut oldest = u64::MAX;
    for entry in fs::read_dir(&dir).map_err(BusError::io(&dir))? {
        let entry = entry.map_err(BusError::io(&dir))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            oldest = oldest.min(base);
        }
    }
    let next = offset.min(current).max(oldest.min(current));
    if next != current {
        replace_file(&path, format!("{next}\n").as_bytes())?;
    }
    Ok(Some(next))
}
