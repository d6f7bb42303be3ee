//! The embedded backend: one append-only log per topic, in segment files on local disk.
//!
//! A segment file is named after the offset of its first message and holds CRC-checked
//! frames ([`frame`]). Offsets are implicit (the count of frames before).
//!
//! A publish writes its whole batch, then `fdatasync`s, then raises the topic's high-water mark;
//! readers never look past that mark, so they only see durable messages ([`topic`]). On open, a
//! torn tail (a crash in the middle of a write that was never acknowledged) is cut off, and a
//! topic whose log ends before an offset a consumer group committed is refused ([`recovery`]).
//!
//! Each consumer group's next offset lives in `offsets/<group>`, replaced atomically on commit
//! ([`offsets`]). Segments that every group has committed past are deleted.
//!
//! The files, one job each: [`layout`] names the files and directories, [`frame`] is the
//! on-disk format of a message, [`recovery`] repairs a topic as it opens, [`topic`] appends
//! and prunes, [`reader`] reads in order, [`subscription`] is a consumer group's view, and
//! this file is the [`Bus`] over them all.

mod frame;
mod layout;
mod offsets;
mod reader;
mod recovery;
mod subscription;
mod topic;

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

pub use frame::MAX_FRAME_BODY_BYTES;
pub use offsets::{committed_offsets, rewind_committed};
pub use topic::EmbeddedBusOptions;

use crate::{Bus, BusError, Message, Subscription};
use layout::{replace_file, validate_name, STATE_DIR};
use subscription::EmbeddedSubscription;
use topic::TopicLog;

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
        Ok(Box::new(EmbeddedSubscription::join(topic, group)?))
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
