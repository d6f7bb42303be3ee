//! Stage state in a compacted topic, keyed by what it belongs to (a partition of the events).
//!
//! A save is a produce that returns once acknowledged; a load reads the topic from the start
//! to its end and keeps the newest value of the key. Loads happen when a process takes over a
//! partition, rarely, and compaction keeps the topic to about one record per key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use vigil_bus::BusError;

use crate::auth::AuthContext;
use crate::Config;

pub(crate) struct StateTopic {
    options: Arc<Config>,
    auth: AuthContext,
}

impl StateTopic {
    pub(crate) fn new(options: Arc<Config>, auth: AuthContext) -> Self {
        StateTopic { options, auth }
    }

    pub(crate) async fn save(
        &self,
        producer: &FutureProducer<AuthContext>,
        key: &str,
        state: Bytes,
    ) -> Result<(), (BusError, Option<KafkaError>)> {
        let size = key.len() + state.len();
        if size > self.options.max_message_bytes {
            let max = self.options.max_message_bytes;
            return Err((BusError::MessageTooLarge { size, max }, None));
        }
        let record = FutureRecord::to(&self.options.state_topic)
            .key(key)
            .payload(state.as_ref());
        producer
            .send(record, self.options.delivery_timeout())
            .await
            .map(|_| ())
            .map_err(|(error, _)| {
                let failure =
                    BusError::Unavailable(format!("cannot save state {key} to Kafka: {error}"));
                (failure, Some(error))
            })
    }

    pub(crate) async fn load(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        let (options, auth) = (self.options.clone(), self.auth.clone());
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || read_newest(&options, &auth, &key))
            .await
            .map_err(|e| BusError::Unavailable(format!("state task failed: {e}")))?
    }
}

fn read_newest(options: &Config, auth: &AuthContext, key: &str) -> Result<Option<Bytes>, BusError> {
    let failed = |error: rdkafka::error::KafkaError| {
        BusError::Unavailable(format!("cannot read state {key} from Kafka: {error}"))
    };
    let topic = options.state_topic.as_str();
    let timeout = options.connect_timeout().max(Duration::from_secs(1));
    let config = options.reader_config();
    let consumer: BaseConsumer<AuthContext> =
        config.create_with_context(auth.clone()).map_err(failed)?;
    auth.prime(&config, consumer.client())
        .map_err(BusError::Unavailable)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, timeout)
        .map_err(failed)?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(failed)?;
    consumer.assign(&assignment).map_err(failed)?;
    let mut newest = None;
    let deadline = Instant::now() + timeout * 3;
    let mut next = low;
    while next < high {
        if Instant::now() > deadline {
            return Err(BusError::Unavailable(format!(
                "reading state {key} from Kafka timed out at offset {next} of {high}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(failed)?;
        next = message.offset() + 1;
        if message.key() == Some(key.as_bytes()) {
            newest = message.payload().map(Bytes::copy_from_slice);
        }
    }
    Ok(newest)
}
