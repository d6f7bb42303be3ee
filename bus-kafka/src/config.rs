//! The Kafka bus's settings, the `[bus.kafka]` section of Vigil's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the Kafka bus. `properties` go to librdkafka verbatim and win over everything
/// Vigil sets, which is how TLS and SASL reach it (MSK with SCRAM: `security.protocol =
/// "SASL_SSL"`, `sasl.mechanism = "SCRAM-SHA-512"`, `sasl.username`...), and how batching and
/// compression are tuned. `auth = "msk-iam"` authenticates to MSK with IAM instead, with AWS
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `bootstrap.servers`: a comma-separated list of `host:port`.
    pub brokers: String,
    /// Names this process to the brokers, in their logs and quotas.
    pub client_id: String,
    /// Create missing topics at start; when false, a missing topic is an error.
    pub create_topics: bool,
    /// Partitions of topics Vigil creates: the most processes one stage can spread over
    /// (-1: the brokers' default).
    pub partitions: i32,
    /// Replicas of topics Vigil creates (3 on MSK; 1 on a single test broker; -1: the
    /// brokers' default).
    pub replication_factor: i32,
    /// The topic stage state is kept in, keyed by partition.
    pub state_topic: String,
    /// How long a consumer may be silent before the group gives its partitions to another.
    pub session_timeout_ms: u64,
    /// How long a message may wait for Kafka's acknowledgement before its publish fails
    /// (and an ingest request is answered 503).
    pub delivery_timeout_ms: u64,
    /// How long start-up waits for the cluster to answer.
    pub connect_timeout_ms: u64,
    /// The largest message Vigil produces, key and payload together.
    pub max_message_bytes: usize,
    /// Ingest refuses new events while detection or indexing has more than this many events
    /// left to read (0: never). Kafka keeps the backlog on disk, but deletes what outlives the
    /// topic's retention whether it was read or not: keep the events topic's retention longer
    /// than that backlog.
    pub max_consumer_lag: u64,
    /// How clients authenticate beyond what `properties` configure.
    pub auth: Auth,
    /// The MSK cluster's region for `auth = "msk-iam"`; from the AWS environment
    /// (`AWS_REGION`, the profile, IMDS) when unset.
    pub region: Option<String>,
    /// librdkafka settings for every client, applied last.
    pub properties: BTreeMap<String, String>,
    /// librdkafka settings for the producer only, applied after `properties`.
    pub producer: BTreeMap<String, String>,
    /// librdkafka settings for consumers only, applied after `properties`.
    pub consumer: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            brokers: "localhost:9092".into(),
            client_id: "vigil".into(),
            create_topics: true,
            partitions: 6,
            replication_factor: 1,
            state_topic: "vigil.state".into(),
            session_timeout_ms: 10_000,
            delivery_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            max_message_bytes: 8 * 1024 * 1024,
            max_consumer_lag: 5_000_000,
            auth: Auth::default(),
            region: None,
            properties: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }
}

/// How Vigil authenticates to the brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// Only as `properties` say: none, TLS client certificates, or SASL/SCRAM.
    #[default]
    Properties,
    /// AWS MSK IAM access control (port 9098): SASL/OAUTHBEARER over TLS, with tokens signed
    /// by the standard AWS credential chain.
    MskIam,
}

/// A `[bus.kafka]` setting that cannot work, found before anything connects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("bus.kafka.brokers is empty: name at least one host:port")]
    NoBrokers,
    #[error("bus.kafka.{setting} is {value}: use 1 or more, or -1 for the brokers' default")]
    TopicShape { setting: &'static str, value: i32 },
    #[error(
        "bus.kafka.state_topic {0:?} is not a Kafka topic name: use 1 to 249 letters, digits, \
         '.', '_' and '-'"
    )]
    StateTopic(String),
    #[error("bus.kafka.max_message_bytes is 0: no message would fit")]
    NoMessageFits,
}

impl Config {
    /// Checks what can be checked without a cluster: a setting refused here would fail
    /// start-up later, or make every publish fail.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .brokers
            .split(',')
            .all(|broker| broker.trim().is_empty())
        {
            return Err(ConfigError::NoBrokers);
        }
        if self.create_topics {
            for (setting, value) in [
                ("partitions", self.partitions),
                ("replication_factor", self.replication_factor),
            ] {
                if value < 1 && value != -1 {
                    return Err(ConfigError::TopicShape { setting, value });
                }
            }
        }
        if !is_topic_name(&self.state_topic) {
            return Err(ConfigError::StateTopic(self.state_topic.clone()));
        }
        if self.max_message_bytes == 0 {
            return Err(ConfigError::NoMessageFits);
        }
        Ok(())
    }

    /// How long a consumer may be silent before the group gives its partitions to another.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    /// How long a message may wait for Kafka's acknowledgement.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
    }

    /// How long start-up (and each metadata request) waits for the cluster to answer.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Kafka's rule for topic names.
fn is_topic_name(name: &str) -> bool {
    vigil_bus::is_plain_name(name) && name.len() <= 249 && name != "." && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys `[bus.kafka]` has always taken, each set away from its default.
    #[test]
    fn every_key_of_the_section_is_read() {
        let section = serde_json::json!({
            "brokers": "b-1.msk:9098,b-2.msk:9098",
            "client_id": "vigil-eu",
            "create_topics": false,
            "partitions": 12,
            "replication_factor": 3,
            "state_topic": "vigil.eu.state",
            "session_timeout_ms": 6000,
            "delivery_timeout_ms": 7000,
            "connect_timeout_ms": 8000,
            "max_message_bytes": 1024,
            "max_consumer_lag": 10,
            "auth": "msk-iam",
            "region": "eu-west-1",
            "properties": {"security.protocol": "SASL_SSL"},
            "producer": {"compression.type": "zstd"},
            "consumer": {"fetch.wait.max.ms": "50"},
        });
        let config: Config = serde_json::from_value(section).unwrap();
        let expected = Config {
            brokers: "b-1.msk:9098,b-2.msk:9098".into(),
            client_id: "vigil-eu".into(),
            create_topics: false,
            partitions: 12,
            replication_factor: 3,
            state_topic: "vigil.eu.state".into(),
            session_timeout_ms: 6000,
            delivery_timeout_ms: 7000,
            connect_timeout_ms: 8000,
            max_message_bytes: 1024,
            max_consumer_lag: 10,
            auth: Auth::MskIam,
            region: Some("eu-west-1".into()),
            properties: BTreeMap::from([("security.protocol".into(), "SASL_SSL".into())]),
            producer: BTreeMap::from([("compression.type".into(), "zstd".into())]),
            consumer: BTreeMap::from([("fetch.wait.max.ms".into(), "50".into())]),
        };
        assert_eq!(config, expected);
        assert_eq!(config.session_timeout(), Duration::from_secs(6));

        // Absent keys take their defaults; unknown keys and auth modes are refused.
        let empty: Config = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(empty, Config::default());
        let unknown = serde_json::from_value::<Config>(serde_json::json!({"broker": "x:9092"}));
        assert!(unknown.unwrap_err().to_string().contains("broker"));
        let auth = serde_json::from_value::<Config>(serde_json::json!({"auth": "iam"}));
        assert!(auth.unwrap_err().to_string().contains("msk-iam"));
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let cases: [(Config, &str); 6] = [
            (
                Config {
                    brokers: " , ".into(),
                    ..Config::default()
                },
                "bus.kafka.brokers",
            ),
            (
                Config {
                    partitions: 0,
                    ..Config::default()
                },
                "bus.kafka.partitions is 0",
            ),
            (
                Config {
                    replication_factor: -2,
                    ..Config::default()
                },
                "bus.kafka.replication_factor is -2",
            ),
            (
                Config {
                    state_topic: "vigil state".into(),
                    ..Config::default()
                },
                "bus.kafka.state_topic \"vigil state\"",
            ),
            (
                Config {
                    state_topic: String::new(),
                    ..Config::default()
                },
                "bus.kafka.state_topic \"\"",
            ),
            (
                Config {
                    max_message_bytes: 0,
                    ..Config::default()
                },
                "bus.kafka.max_message_bytes",
            ),
        ];
        for (config, expected) in cases {
            let error = config.validate().expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn the_brokers_defaults_and_existing_topics_are_accepted() {
        let brokers_default = Config {
            partitions: -1,
            replication_factor: -1,
            ..Config::default()
        };
        assert_eq!(brokers_default.validate(), Ok(()));
        // Topics Vigil does not create are not shaped by it.
        let existing = Config {
            create_topics: false,
            partitions: 0,
            ..Config::default()
        };
        assert_eq!(existing.validate(), Ok(()));
    }
}
