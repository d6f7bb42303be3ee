//! A consumer group's subscription to a topic of the embedded bus: one consumer per group,
//! reading up to the high-water mark and committing to the group's offset file.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::reader::Reader;
use super::topic::TopicLog;
use crate::{BusError, Checkpoint, Delivery, Subscription};

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

pub(super) struct EmbeddedSubscription {
    topic: Arc<TopicLog>,
    group: GroupGuard,
    high_water: watch::Receiver<u64>,
    /// Taken while a blocking read runs on another thread.
    reader: Option<Box<Reader>>,
    committed: u64,
}

impl EmbeddedSubscription {
    /// Joins `group` on `topic`, resuming at the group's committed offset. Fails while another
    /// subscription of the group is alive.
    pub(super) fn join(topic: Arc<TopicLog>, group: &str) -> Result<Self, BusError> {
        let guard = GroupGuard::claim(&topic, group)?;
        let committed = topic.load_committed(group)?;
        Ok(EmbeddedSubscription {
            high_water: topic.high_water.subscribe(),
            reader: Some(Box::new(Reader::new(topic.clone(), committed))),
            committed,
            group: guard,
            topic,
        })
    }
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
