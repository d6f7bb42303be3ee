//! How Vigil talks to a Kafka cluster, and the librdkafka settings that follow from it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

/// Settings of the Kafka bus. `properties` go to librdkafka verbatim and win over everything
/// Vigil sets, which is how TLS and SASL reach it (`security.protocol`, `sasl.mechanism`,
/// `sasl.username`...), and how batching and compression are tuned.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`: a comma-separated list of `host:port`.
    pub brokers: String,
    /// Names this process to the brokers, in their logs and quotas.
    pub client_id: String,
    /// Create missing topics at start; when false, a missing topic is an error.
    pub create_topics: bool,
    /// Partitions of topics Vigil creates: the most processes one stage can spread over.
    pub partitions: i32,
    /// Replicas of topics Vigil creates (3 on MSK; 1 on a single test broker).
    pub replication_factor: i32,
    /// The topic stage state is kept in, keyed by partition.
    pub state_topic: String,
    /// How long a consumer may be silent before the group gives its partitions to another.
    pub session_timeout: Duration,
    /// How long a message may wait for Kafka's acknowledgement before its publish fails
    /// (and an ingest request is answered 503).
    pub delivery_timeout: Duration,
    /// How long start-up waits for the cluster to answer.
    pub connect_timeout: Duration,
    /// The largest message Vigil produces, key and payload together.
    pub max_message_bytes: usize,
    /// Ingest refuses new events while a group of `lag_watched_groups` has more than this
    /// many events of the events topic left to read (0: never). Kafka keeps the backlog on
    /// disk, but deletes what outlives the topic's retention whether it was read or not.
    pub max_consumer_lag: u64,
    /// The consumer groups whose lag holds back new events: the stages reading the events
    /// topic. Empty in a process that does not ingest.
    pub lag_watched_groups: Vec<String>,
    /// How clients authenticate beyond what `properties` configure.
    pub auth: KafkaAuth,
    /// librdkafka settings for every client, applied last.
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings for the producer only, applied after `properties`.
    pub producer_properties: BTreeMap<String, String>,
    /// librdkafka settings for consumers only, applied after `properties`.
    pub consumer_properties: BTreeMap<String, String>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: "localhost:9092".into(),
            client_id: "vigil".into(),
            create_topics: true,
            partitions: 6,
            replication_factor: 1,
            state_topic: "vigil.state".into(),
            session_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 8 * 1024 * 1024,
            max_consumer_lag: 5_000_000,
            lag_watched_groups: Vec::new(),
            auth: KafkaAuth::default(),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }
}

/// How Vigil authenticates to the brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KafkaAuth {
    /// Only as `properties` say: none, TLS certificates, or SASL/SCRAM.
    #[default]
    Properties,
    /// AWS MSK IAM access control: SASL/OAUTHBEARER over TLS with SigV4-signed tokens, from
    /// the standard AWS credential chain.
    MskIam {
        /// The cluster's region; from the AWS environment (`AWS_REGION`, the profile, IMDS)
        /// when absent.
        region: Option<String>,
    },
}

impl KafkaOptions {
    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        if let KafkaAuth::MskIam { .. } = self.auth {
            config
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER");
        }
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set(
                "socket.timeout.ms",
                millis(self.connect_timeout.max(MIN_TIMEOUT)),
            )
            .set(
                "message.max.bytes",
                // Room for the record batch framing around the largest message.
                (self.max_message_bytes + 64 * 1024).to_string(),
            );
        config
    }

    /// Idempotent, fully acknowledged, compressed and batched production.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            // The queue bounds the memory ingest can hold for Kafka: 64 MiB, then it waits.
            .set("queue.buffering.max.kbytes", "65536")
            .set("message.timeout.ms", millis(self.delivery_timeout));
        apply(&mut config, &self.properties);
        apply(&mut config, &self.producer_properties);
        config
    }

    /// A group member that commits by hand and starts new groups at the beginning.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base_config();
        let session = self.session_timeout.max(MIN_TIMEOUT);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", millis(session))
            .set("heartbeat.interval.ms", millis(session / 3))
            // A stage that takes longer than this between polls is presumed stuck.
            .set(
                "max.poll.interval.ms",
                millis(session.max(Duration::from_secs(30))),
            )
            .set("fetch.wait.max.ms", "100")
            .set(
                "fetch.message.max.bytes",
                (self.max_message_bytes + 64 * 1024).to_string(),
            );
        apply(&mut config, &self.properties);
        apply(&mut config, &self.consumer_properties);
        config
    }

    /// A consumer outside any group, for reading the state topic and for lag.
    pub(crate) fn reader_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", format!("{}-reader", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        apply(&mut config, &self.properties);
        apply(&mut config, &self.consumer_properties);
        config
    }

    pub(crate) fn admin_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        apply(&mut config, &self.properties);
        config
    }
}

const MIN_TIMEOUT: Duration = Duration::from_secs(1);

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

fn apply(config: &mut ClientConfig, properties: &BTreeMap<String, String>) {
    for (key, value) in properties {
        config.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_through_properties_win_over_vigil_defaults() {
        let mut options = KafkaOptions::default();
        options
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        options
            .producer_properties
            .insert("compression.type".into(), "zstd".into());
        options
            .consumer_properties
            .insert("session.timeout.ms".into(), "45000".into());
        let producer = options.producer_config();
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("acks"), Some("all"));
        let consumer = options.consumer_config("detect");
        assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(consumer.get("session.timeout.ms"), Some("45000"));
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("compression.type"), None);
    }

    #[test]
    fn msk_iam_sets_sasl_oauthbearer_over_tls_for_every_client() {
        let mut options = KafkaOptions {
            auth: KafkaAuth::MskIam { region: None },
            ..KafkaOptions::default()
        };
        let configs = [
            options.producer_config(),
            options.consumer_config("detect"),
            options.reader_config(),
            options.admin_config(),
        ];
        for config in configs {
            assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
        }
        options
            .properties
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        assert_eq!(
            options.admin_config().get("security.protocol"),
            Some("SASL_PLAINTEXT")
        );
        let plain = KafkaOptions::default().producer_config();
        assert_eq!(plain.get("sasl.mechanism"), None);
    }
}
