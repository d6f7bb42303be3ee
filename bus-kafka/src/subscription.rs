//! One process's membership of a consumer group on one topic.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
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
    lag: Arc<Mutex<LagGauge>>,
}

/// The group's lag as last measured, off the consume loop.
///
/// Measuring takes a round trip for the committed offsets and one per partition for its end,
/// which against a broker a few milliseconds away is most of a second: done in the loop, as
/// it was after every commit, it capped a stage at one batch per measurement (the detect
/// stage at about 2,400 events/s against tansu). So the loop only reads the last figure, and
/// a stale one starts a measurement in the background.
#[derive(Debug, Default)]
struct LagGauge {
    last: Option<u64>,
    measured: Option<Instant>,
    measuring: bool,
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
            lag: Arc::default(),
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
        let deadline = tokio::time::Instant::now() + wait;
        // One stream for the whole batch: `recv` makes a stream a message, and each takes and
        // gives back a waker slot under the consumer's lock.
        let mut stream = self.consumer.stream();
        let first = loop {
            match tokio::time::timeout_at(deadline, next_message(&mut stream)).await {
                Err(_) => return Ok(batch),
                Ok(Err(error)) if is_connection_event(&error) => continue,
                Ok(received) => break received.map_err(|e| consume_error(&self.options, e))?,
            }
        };
        batch.push(self.delivery(&first));
        drop(first);
        while batch.len() < max {
            // A message already fetched is taken as it is; only an empty queue arms a timer.
            let next = match queued_message(&mut stream) {
                Some(next) => next,
                None => {
                    match tokio::time::timeout(BATCH_FILL_WAIT, next_message(&mut stream)).await {
                        Ok(next) => next,
                        Err(_) => break,
                    }
                }
            };
            match next {
                Ok(message) => batch.push(self.delivery(&message)),
                // An error after some messages is reported by the next call, if it persists.
                Err(_) => break,
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
            Ok(()) => Ok(()),
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

    /// The lag as last measured, at most [`LAG_REFRESH`] old once measuring succeeds; never
    /// waits for a measurement (see [`LagGauge`]). Unavailable until the first one is done.
    async fn lag(&self) -> Result<u64, BusError> {
        let mut gauge = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let stale = gauge
            .measured
            .is_none_or(|measured| measured.elapsed() >= LAG_REFRESH);
        if stale && !gauge.measuring {
            gauge.measuring = true;
            let (consumer, timeout) = (self.consumer.clone(), self.options.connect_timeout());
            let (shared, topic) = (Arc::clone(&self.lag), self.topic.clone());
            tokio::task::spawn_blocking(move || {
                let measured = measure_lag(&consumer, timeout);
                let mut gauge = shared.lock().unwrap_or_else(|e| e.into_inner());
                gauge.measuring = false;
                // A failure is tried again after the same wait, not on the next batch.
                gauge.measured = Some(Instant::now());
                match measured {
                    Ok(lag) => gauge.last = Some(lag),
                    Err(error) => {
                        tracing::warn!(%topic, %error, "cannot measure consumer lag")
                    }
                }
            });
        }
        gauge
            .last
            .ok_or_else(|| BusError::Unavailable("consumer lag not measured yet".into()))
    }
}

type Received<'a> = Result<BorrowedMessage<'a>, KafkaError>;

/// The stream's next message, waiting for one.
async fn next_message<'a>(stream: &mut MessageStream<'a, GroupContext>) -> Received<'a> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx))
        .await
        .expect("rdkafka's message streams never end")
}

/// The stream's next message if the consumer holds one already, without waiting.
fn queued_message<'a>(stream: &mut MessageStream<'a, GroupContext>) -> Option<Received<'a>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(stream).poll_next(&mut cx) {
        Poll::Ready(next) => Some(next.expect("rdkafka's message streams never end")),
        Poll::Pending => None,
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

/// Whether a consume error only reports the state of the connections, which librdkafka
/// restores by itself and has already logged through the client context.
///
/// librdkafka queues one such event per failed reconnect, in the consumer's own queue. Each
/// was a failed read, and the stage backed off (up to ten seconds) before the next: after a
/// broker outage of a few seconds, a consumer could spend minutes draining stale
/// `AllBrokersDown` events while its messages waited. They are read past instead, and a
/// broker that stays down is an empty read, as a quiet topic is.
fn is_connection_event(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_about_the_connections_are_read_past() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(is_connection_event(&KafkaError::MessageConsumption(code)));
            // A fatal error stops the consumer for good; the stage must hear of it.
            assert!(!is_connection_event(&KafkaError::MessageConsumptionFatal(
                code
            )));
        }
        // Errors a broker answers with are the stage's to report and retry.
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(!is_connection_event(&KafkaError::MessageConsumption(code)));
        }
    }
}
