//! The bus that joins Vigil's stages.
//!
//! Stages see only the [`Bus`] and [`Subscription`] traits: a producer publishes keyed messages
//! to a topic and is told when they are durable; a consumer group reads a topic in order and
//! commits how far it got, so that after a restart it resumes there. Delivery is at least once:
//! whatever was read but not committed is read again, so consumers must be idempotent.
//!
//! [`EmbeddedBus`] is the single-process backend, an append-only log on local disk. The Kafka
//! backend implements the same traits.

mod config;
mod embedded;
mod error;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use config::{is_plain_name, Backend, Topics};
pub use embedded::{
    committed_offsets, rewind_committed, EmbeddedBus, EmbeddedBusOptions, MAX_FRAME_BODY_BYTES,
};
pub use error::BusError;

/// A message to publish. The key decides the partition, so messages with one key stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Bytes,
    pub payload: Bytes,
}

impl Message {
    pub fn new(key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Self {
        Message {
            key: key.into(),
            payload: payload.into(),
        }
    }
}

/// A message as a consumer receives it, with its place in the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub payload: Bytes,
}

/// How far a consumer has processed, per partition: the offset of the next message to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    next: BTreeMap<u32, u64>,
}

impl Checkpoint {
    /// Records that `delivery` and everything before it in its partition is processed.
    pub fn advance(&mut self, delivery: &Delivery) {
        let next = self.next.entry(delivery.partition).or_insert(0);
        *next = (*next).max(delivery.offset + 1);
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// The next offset to read in each partition this checkpoint covers.
    pub fn partitions(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.next.iter().map(|(&p, &o)| (p, o))
    }
}

/// The producing half of the bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Appends `messages` to `topic`, in order. Returns only once they are durable: on disk for
    /// the embedded log, acknowledged by all in-sync replicas for Kafka.
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`, resuming after the group's last commit.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;

    /// Durably stores a stage's state under `key`, replacing what was there. The state follows
    /// a partition from one consumer to the next (correlation windows, say), so it lives
    /// beside the bus, not in one process's data directory.
    async fn save_state(&self, key: &str, state: Bytes) -> Result<(), BusError>;

    /// The state last saved under `key`, if any.
    async fn load_state(&self, key: &str) -> Result<Option<Bytes>, BusError>;
}

/// A consumer group's view of one topic.
#[async_trait]
pub trait Subscription: Send + Sync {
    /// Returns up to `max` messages, waiting at most `wait` for the first one.
    /// An empty batch means nothing arrived in time.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Durably records the group's progress; call it only once the processing is itself durable.
    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), BusError>;

    /// How many published messages the group has not committed yet.
    async fn lag(&self) -> Result<u64, BusError>;
}
