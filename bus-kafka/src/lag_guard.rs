//! Holding back new events while the stages that read them fall behind.
//!
//! Kafka buffers a lagging stage's backlog on the brokers, so memory stays bounded, but the
//! backlog is not unbounded: events older than the topic's retention are deleted whether a
//! group read them or not. Ingest therefore refuses new events (503, which push senders
//! retry and pull sources wait out) while a watched group lags further than a limit, and the
//! events topic's retention only has to outlast that backlog.
//!
//! A group that never committed is left out, so a role a deployment does not run holds
//! nothing back. One that committed and then stopped for good (a role removed) looks like a
//! stage that is down, and holds events back until its offsets are deleted or expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use vigil_bus::BusError;

use crate::auth::AuthContext;
use crate::subscription::uncommitted;
use crate::Config;

/// How often the lag is measured: a round trip per group and per partition.
const MEASURE_EVERY: Duration = Duration::from_secs(2);

/// A group that lags further than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Behind {
    group: String,
    lag: u64,
}

pub(crate) struct LagGuard {
    topic: String,
    limit: u64,
    behind: Arc<Mutex<Option<Behind>>>,
    stop: Arc<AtomicBool>,
}

impl LagGuard {
    /// Starts measuring the lag of `watched_groups` on `topic`, or returns `None` when no
    /// limit is set or no group is watched.
    pub(crate) fn start(
        options: &Config,
        auth: &AuthContext,
        topic: &str,
        watched_groups: &[String],
    ) -> Result<Option<LagGuard>, BusError> {
        if options.max_consumer_lag == 0 || watched_groups.is_empty() {
            return Ok(None);
        }
        // Committed offsets are asked in a group's name; a consumer that never subscribes
        // does not join the group.
        let mut inspectors = Vec::new();
        for group in watched_groups {
            let config = options.consumer_config(group);
            let consumer: BaseConsumer<AuthContext> = config
                .create_with_context(auth.clone())
                .map_err(|e| crate::unavailable(options, "cannot create a Kafka consumer", e))?;
            auth.prime(&config, consumer.client())
                .map_err(BusError::Unavailable)?;
            inspectors.push((group.clone(), consumer));
        }
        let guard = LagGuard {
            topic: topic.to_owned(),
            limit: options.max_consumer_lag,
            behind: Arc::new(Mutex::new(None)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (behind, stop) = (guard.behind.clone(), guard.stop.clone());
        let (topic, limit, timeout) = (guard.topic.clone(), guard.limit, options.connect_timeout());
        std::thread::Builder::new()
            .name("kafka-lag-guard".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Serves the clients' events: errors to log, and OAUTHBEARER token
                    // refreshes, which librdkafka only asks for from a poll.
                    for (_, consumer) in &inspectors {
                        let _ = consumer.poll(Duration::ZERO);
                    }
                    // A failed measurement changes nothing: a flaky coordinator lookup must
                    // not let events through, and a broker that cannot answer refuses them
                    // anyway.
                    let now = match worst_lag(&inspectors, &topic, timeout) {
                        Ok(worst) => worst.filter(|worst| worst.lag > limit),
                        Err(error) => {
                            tracing::debug!(%error, "cannot measure consumer lag");
                            std::thread::sleep(MEASURE_EVERY);
                            continue;
                        }
                    };
                    let mut held = behind.lock().unwrap_or_else(|e| e.into_inner());
                    match (&*held, &now) {
                        (None, Some(worst)) => tracing::warn!(
                            group = %worst.group, lag = worst.lag, limit,
                            "a stage lags too far behind; ingest refuses new events until it catches up"
                        ),
                        (Some(_), None) => {
                            tracing::info!("consumer lag is within its limit; ingest accepts events again")
                        }
                        _ => {}
                    }
                    *held = now;
                    drop(held);
                    std::thread::sleep(MEASURE_EVERY);
                }
            })
            .map_err(|e| BusError::Unavailable(format!("cannot start the lag guard: {e}")))?;
        Ok(Some(guard))
    }

    /// Refuses a publish to the guarded topic while a watched group lags beyond the limit.
    pub(crate) fn check(&self, topic: &str) -> Result<(), BusError> {
        if topic != self.topic {
            return Ok(());
        }
        match &*self.behind.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(behind) => Err(BusError::Behind(format!(
                "consumer group {:?} is {} events behind {} (the limit is {}); new events wait \
                 until it catches up",
                behind.group, behind.lag, self.topic, self.limit
            ))),
        }
    }
}

impl Drop for LagGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The watched group furthest behind on `topic`, if any committed. A group that never
/// committed is not running in this deployment and is left out.
fn worst_lag(
    inspectors: &[(String, BaseConsumer<AuthContext>)],
    topic: &str,
    timeout: Duration,
) -> Result<Option<Behind>, KafkaError> {
    let mut worst: Option<Behind> = None;
    for (group, consumer) in inspectors {
        if let Some(lag) = group_lag(consumer, topic, timeout)? {
            if worst.as_ref().is_none_or(|w| lag > w.lag) {
                worst = Some(Behind {
                    group: group.clone(),
                    lag,
                });
            }
        }
    }
    Ok(worst)
}

/// Events on `topic` that `consumer`'s group has not committed, or `None` when the group has
/// committed nothing.
fn group_lag(
    consumer: &BaseConsumer<AuthContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<u64>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions = TopicPartitionList::new();
    for found in metadata.topics().iter().filter(|t| t.name() == topic) {
        for partition in found.partitions() {
            partitions.add_partition(topic, partition.id());
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let left = uncommitted(consumer, &committed, timeout)?;
    Ok(left.any_commit.then_some(left.events))
}
