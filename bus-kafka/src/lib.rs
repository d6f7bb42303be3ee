//! The Kafka backend of Vigil's bus, through librdkafka.
//!
//! [`KafkaBus`] implements [`vigil_bus::Bus`], so the stages that run over the embedded log run
//! unchanged over Kafka (AWS MSK in production). What Kafka adds is scale: several processes of
//! one stage join one consumer group and share the topic's partitions.
//!
//! - **Producing** is idempotent with `acks=all`: [`Bus::publish`] returns only once every
//!   message is acknowledged by the in-sync replicas, so an ingest request or a source
//!   checkpoint is confirmed only for what Kafka holds. librdkafka's queue is bounded, and a full
//!   queue makes publishers wait: that is the backpressure a lagging cluster exerts on ingest.
//! - **Consuming** commits offsets by hand and only through [`Subscription::commit`], which the
//!   stages call once their own output is durable. After a rebalance a commit for a partition
//!   this process no longer owns is dropped: the new owner replays from the last commit, which
//!   is the at-least-once contract every stage already honours.
//! - **Backpressure** from lagging stages: while a group reading the events topic is more
//!   than [`Config::max_consumer_lag`] events behind, publishing events is refused, so
//!   ingest answers 503 and a backlog never outgrows the topic's retention.
//! - **Stage state** (correlation windows) lives in a state topic keyed by partition, so it
//!   follows a partition to whichever process owns it next.
//! - **Authentication** is TLS or SASL/SCRAM through librdkafka properties, or AWS MSK IAM
//!   ([`Auth::MskIam`]): every client Vigil creates gets its OAUTHBEARER tokens from one
//!   [`MskIamSigner`], which holds AWS credentials refreshed in the background.
//!
//! Topics are checked at start. When allowed, missing ones are created; otherwise, as when no
//! broker answers, [`KafkaBus::connect`] fails with one error that says what is wrong.

mod admin;
mod auth;
mod client_config;
mod config;
mod iam;
mod lag_guard;
mod state;
mod subscription;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use vigil_bus::{Bus, BusError, Message, Subscription, Topics};

pub use config::{Auth, Config, ConfigError};
pub use iam::{sign_token, IamError, IamToken, MskIamSigner, TOKEN_LIFETIME};

use crate::auth::AuthContext;
use crate::lag_guard::LagGuard;
use crate::state::StateTopic;
use crate::subscription::KafkaSubscription;

/// The bus over a Kafka cluster.
pub struct KafkaBus {
    options: Arc<Config>,
    auth: AuthContext,
    /// Replaced when librdkafka declares it failed for good (an idempotence sequence it cannot
    /// recover after a broker lost its state, say); a new one starts a new producer id.
    producer: RwLock<KafkaProducer>,
    state: StateTopic,
    /// Refuses new events while the stages reading them lag too far; `None` when off.
    lag_guard: Option<LagGuard>,
}

type KafkaProducer = FutureProducer<AuthContext>;

impl KafkaBus {
    /// Connects to the cluster, checks (or creates) Vigil's topics and the state topic, and
    /// fails with one clear error when the brokers do not answer, a topic is missing, or MSK
    /// IAM authentication lacks a region or credentials.
    pub async fn connect(config: Config, topics: &Topics) -> Result<Self, BusError> {
        Self::connect_watching_lag(config, topics, &[]).await
    }

    /// [`KafkaBus::connect`] for a process that ingests: while one of `lag_watched_groups`
    /// (the stages reading the events topic) lags more than [`Config::max_consumer_lag`]
    /// events, publishing events is refused. A group that never committed is left out.
    pub async fn connect_watching_lag(
        config: Config,
        topics: &Topics,
        lag_watched_groups: &[String],
    ) -> Result<Self, BusError> {
        let options = Arc::new(config);
        let auth = match options.auth {
            Auth::Properties => AuthContext::default(),
            Auth::MskIam => {
                let signer = MskIamSigner::load(options.region.clone())
                    .await
                    .map_err(|e| BusError::Unavailable(e.to_string()))?;
                tracing::info!(region = %signer.region(), "authenticating to Kafka with MSK IAM");
                AuthContext::msk_iam(signer)
            }
        };
        let producer = create_producer(&options, &auth)?;
        let mut names = vec![
            topics.events.as_str(),
            topics.alerts.as_str(),
            topics.quarantine.as_str(),
        ];
        names.push(options.state_topic.as_str());
        admin::ensure_topics(&options, &auth, &names).await?;
        let state = StateTopic::new(options.clone(), auth.clone());
        let lag_guard = LagGuard::start(&options, &auth, &topics.events, lag_watched_groups)?;
        Ok(KafkaBus {
            options,
            auth,
            producer: RwLock::new(producer),
            state,
            lag_guard,
        })
    }

    fn producer(&self) -> KafkaProducer {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a failed publish: if the producer is beyond recovery, or the broker refused its
    /// messages outright, starts a fresh one (with a fresh producer id) so that the retry the
    /// caller makes can succeed. A broker that lost its idempotence state in a restart keeps
    /// refusing the old producer id, and librdkafka does not always call that fatal.
    fn renew_if_failed(&self, failed: &KafkaProducer, error: Option<&KafkaError>) {
        let reason = match (failed.client().fatal_error(), error) {
            (Some((code, reason)), _) => format!("{code}: {reason}"),
            (None, Some(error)) if refused_by_broker(error) => error.to_string(),
            _ => return,
        };
        tracing::warn!(%reason, "the Kafka producer failed; starting a new one");
        match create_producer(&self.options, &self.auth) {
            Ok(fresh) => *self.producer.write().unwrap_or_else(|e| e.into_inner()) = fresh,
            Err(error) => tracing::error!(%error, "cannot start a new Kafka producer"),
        }
    }

    /// Sends one message, waiting while librdkafka's bounded queue is full.
    async fn enqueue(
        &self,
        producer: &KafkaProducer,
        topic: &str,
        message: &Message,
    ) -> Result<rdkafka::producer::DeliveryFuture, BusError> {
        let mut record = FutureRecord::to(topic)
            .key(message.key.as_ref())
            .payload(message.payload.as_ref());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    return Err(unavailable(&self.options, "cannot produce to Kafka", error))
                }
            }
        }
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        if let Some(guard) = &self.lag_guard {
            guard.check(topic)?;
        }
        // Sizes are checked before anything is sent, so a rejected batch sent nothing.
        for message in &messages {
            let size = message.key.len() + message.payload.len();
            if size > self.options.max_message_bytes {
                return Err(BusError::MessageTooLarge {
                    size,
                    max: self.options.max_message_bytes,
                });
            }
        }
        let producer = self.producer();
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            match self.enqueue(&producer, topic, message).await {
                Ok(delivery) => pending.push(delivery),
                Err(error) => {
                    self.renew_if_failed(&producer, None);
                    return Err(error);
                }
            }
        }
        // Every delivery is awaited, failed or not, so none is left in flight when we answer.
        let mut failure: Option<(String, Option<KafkaError>)> = None;
        for delivery in pending {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((error, _))) => (error.to_string(), Some(error)),
                Err(_) => ("the producer was dropped before delivery".to_owned(), None),
            };
            failure.get_or_insert(error);
        }
        match failure {
            None => Ok(()),
            Some((message, error)) => {
                self.renew_if_failed(&producer, error.as_ref());
                Err(BusError::Unavailable(format!(
                    "Kafka did not confirm delivery to {topic}: {message}"
                )))
            }
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(KafkaSubscription::join(
            self.options.clone(),
            self.auth.clone(),
            topic,
            group,
        )?))
    }

    async fn save_state(&self, key: &str, state: Bytes) -> Result<(), BusError> {
        let producer = self.producer();
        let saved = self.state.save(&producer, key, state).await;
        if let Err((_, error)) = &saved {
            self.renew_if_failed(&producer, error.as_ref());
        }
        saved.map_err(|(error, _)| error)
    }

    async fn load_state(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        self.state.load(key).await
    }
}

/// Whether a delivery failed because a broker answered no, rather than because none answered
/// in time (which a new producer would not change).
fn refused_by_broker(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        None => false,
        Some(code) => !matches!(
            code,
            MessageTimedOut
                | QueueFull
                | AllBrokersDown
                | BrokerTransportFailure
                | Resolve
                | BrokerDestroy
                | PurgeQueue
                | PurgeInflight
                | RequestTimedOut
                | NetworkException
                | NotEnoughReplicas
                | NotEnoughReplicasAfterAppend
                | LeaderNotAvailable
                | NotLeaderForPartition
        ),
    }
}

fn create_producer(options: &Config, auth: &AuthContext) -> Result<KafkaProducer, BusError> {
    let config = options.producer_config();
    let producer: KafkaProducer = config
        .create_with_context(auth.clone())
        .map_err(|e| unavailable(options, "cannot create the Kafka producer", e))?;
    auth.prime(&config, producer.client())
        .map_err(BusError::Unavailable)?;
    Ok(producer)
}

/// A Kafka failure as the bus reports it: the stage retries or answers 503.
fn unavailable(options: &Config, what: &str, error: KafkaError) -> BusError {
    BusError::Unavailable(format!("{what} ({}): {error}", options.brokers))
}
