//! One process's membership of a consumer group on one topic.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use vigil_bus::{BusError, Checkpoint, Delivery, Subscription};

use crate::auth::AuthContext;
use crate::Config;

/// After the first message of a batch, how long to wait for more before returning it.
const BATCH_FILL_WAIT: Duration = Duration::from_millis(2);
/// Lag needs a round trip per partition; it is measured at most this often.
const LAG_REFRESH: Duration = Duration::from_secs(5);

pub(crate) struct KafkaSubscription {
    consumer: Arc<StreamConsumer<GroupContext>>,
    options: Arc<Config>,
    topic: String,
    lag: Mutex<Option<(Instant, u64)>>,
}

impl KafkaSubscription {
    pub(crate) fn join(
        options: Arc<Config>,
        auth: AuthContext,
        topic: &str,
        group: &str,
    ) -> Result<Self, BusError> {
        let context = GroupContext {
            client: options.client_id.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            auth: auth.clone(),
        };
        let config = options.consumer_config(group);
        let consumer: StreamConsumer<GroupContext> = config
            .create_with_context(context)
            .map_err(|e| crate::unavailable(&options, "cannot create a Kafka consumer", e))?;
        auth.prime(&config, consumer.client())
            .map_err(BusError::Unavailable)?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| crate::unavailable(&options, "cannot subscribe to Kafka", e))?;
        Ok(KafkaSubscription {
            consumer: Arc::new(consumer),
            options,
            topic: topic.to_owned(),
            lag: Mutex::new(None),
        })
    }

    fn delivery(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
        Delivery {
            partition: u32::try_from(message.partition()).unwrap_or_default(),
            offset: u64::try_from(message.offset()).unwrap_or_default(),
            key: message
                .key()
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
            payload: message
                .payload()
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(batch),
            Ok(received) => received.map_err(|e| consume_error(&self.options, e))?,
        };
        batch.push(self.delivery(&first));
        drop(first);
        while batch.len() < max {
            match tokio::time::timeout(BATCH_FILL_WAIT, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(self.delivery(&message)),
                // An error after some messages is reported by the next call, if it persists.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(batch)
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), BusError> {
        let assignment = self
            .consumer
            .assignment()
            .map_err(|e| crate::unavailable(&self.options, "cannot read the assignment", e))?;
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in checkpoint.partitions() {
            let partition = i32::try_from(partition).unwrap_or(i32::MAX);
            // A partition handed to another member since it was read is theirs to commit;
            // they resume from the last commit, so its work is replayed, not lost.
            if assignment.find_partition(&self.topic, partition).is_none() {
                tracing::info!(client = %self.options.client_id, topic = %self.topic, partition, "not committing a partition this process no longer owns");
                continue;
            }
            offsets
                .add_partition_offset(&self.topic, partition, Offset::Offset(next as i64))
                .map_err(|e| crate::unavailable(&self.options, "invalid offset", e))?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
                .await
                .map_err(|e| BusError::Unavailable(format!("commit task failed: {e}")))?;
        match result {
            Ok(()) => {
                *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            Err(KafkaError::ConsumerCommit(code)) if lost_membership(code) => {
                tracing::warn!(client = %self.options.client_id, topic = %self.topic, %code, "commit refused after a rebalance; the new owner replays from the last commit");
                Ok(())
            }
            Err(error) => Err(crate::unavailable(
                &self.options,
                "cannot commit offsets to Kafka",
                error,
            )),
        }
    }

    async fn lag(&self) -> Result<u64, BusError> {
        if let Some((measured, lag)) = *self.lag.lock().unwrap_or_else(|e| e.into_inner()) {
            if measured.elapsed() < LAG_REFRESH {
                return Ok(lag);
            }
        }
        let (consumer, timeout) = (self.consumer.clone(), self.options.connect_timeout());
        let lag = tokio::task::spawn_blocking(move || measure_lag(&consumer, timeout))
            .await
            .map_err(|e| BusError::Unavailable(format!("lag task failed: {e}")))?
            .map_err(|e| crate::unavailable(&self.options, "cannot measure consumer lag", e))?;
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), lag));
        Ok(lag)
    }
}

/// Messages published to the partitions this member owns that the group has not committed.
fn measure_lag(
    consumer: &StreamConsumer<GroupContext>,
    timeout: Duration,
) -> Result<u64, KafkaError> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(0);
    }
    let committed = consumer.committed_offsets(assignment, timeout)?;
    Ok(uncommitted(consumer, &committed, timeout)?.events)
}

/// What a group has left to read of some partitions.
pub(crate) struct Uncommitted {
    /// Messages after the group's committed offsets (from the start of a partition it never
    /// committed).
    pub(crate) events: u64,
    /// Whether the group committed an offset on any of the partitions.
    pub(crate) any_commit: bool,
}

/// The messages past `committed`, a group's committed offsets, up to each partition's end.
pub(crate) fn uncommitted<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    committed: &TopicPartitionList,
    timeout: Duration,
) -> Result<Uncommitted, KafkaError> {
    let mut left = Uncommitted {
        events: 0,
        any_commit: false,
    };
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let next = match element.offset() {
            Offset::Offset(next) => {
                left.any_commit = true;
                next
            }
            _ => low,
        };
        left.events += u64::try_from(high - next.max(low)).unwrap_or_default();
    }
    Ok(left)
}

/// Commit errors that mean this member's generation is over, so its offsets are not its own.
fn lost_membership(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::AssignmentLost
            | RDKafkaErrorCode::State
    )
}

fn consume_error(options: &Config, error: KafkaError) -> BusError {
    crate::unavailable(options, "cannot consume from Kafka", error)
}

/// Logs the group's assignments, so an operator sees partitions move between processes.
struct GroupContext {
    /// This process's `client.id`, which tells the members of a group apart in logs.
    client: String,
    topic: String,
    group: String,
    auth: AuthContext,
}

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = AuthContext::ENABLE_REFRESH_OAUTH_TOKEN;

    // Called from `recv`, on a tokio worker: signing only reads credentials kept in memory.
    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.auth.generate_oauth_token(oauthbearer_config)
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| e.partition().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(client = %self.client, topic = %self.topic, group = %self.group, partitions = %partitions(list), "assigned partitions")
            }
            Rebalance::Revoke(list) => {
                tracing::info!(client = %self.client, topic = %self.topic, group = %self.group, partitions = %partitions(list), "revoked partitions")
            }
            Rebalance::Error(error) => {
                tracing::warn!(client = %self.client, topic = %self.topic, group = %self.group, %error, "rebalance failed")
            }
        }
    }
}
