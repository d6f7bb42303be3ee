//! The librdkafka settings of each client Vigil creates, as they follow from [`Config`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::{Auth, Config};

impl Config {
    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        if self.auth == Auth::MskIam {
            config
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER");
        }
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set(
                "socket.timeout.ms",
                millis(self.connect_timeout().max(MIN_TIMEOUT)),
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
            // Each batch costs the client and the broker a request, a compression frame and,
            // on tansu, an object every fetch walks. In `bus_throughput`, Kafka reached 0.75 to
            // 0.88 of the embedded bus at 5 ms (24 runs) and 0.77 to 0.96 at 10 ms (7 runs),
            // the p99 under 1 s in all; 20 ms reached 0.87 to 0.93, but the p99 at the higher
            // half rate that sets passed 1 s in three runs of four (benches/RESULTS.md).
            .set("linger.ms", "10")
            .set("batch.num.messages", "10000")
            // The queue bounds the memory ingest can hold for Kafka: 64 MiB, then it waits.
            .set("queue.buffering.max.kbytes", "65536")
            .set("message.timeout.ms", millis(self.delivery_timeout()));
        apply(&mut config, &self.properties);
        apply(&mut config, &self.producer);
        config
    }

    /// A group member that commits by hand and starts new groups at the beginning.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base_config();
        let session = self.session_timeout().max(MIN_TIMEOUT);
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
            // How long a broker may hold a fetch that finds no data. Kafka answers as soon as
            // there is some, so this only sets how often an idle consumer asks; a broker that
            // holds every fetch for the whole wait (tansu does) delivers at most once per wait,
            // and at 100 ms that was each stage's hop: alerts came 0.15 s later at the median.
            .set("fetch.wait.max.ms", "25")
            .set(
                "fetch.message.max.bytes",
                (self.max_message_bytes + 64 * 1024).to_string(),
            );
        apply(&mut config, &self.properties);
        apply(&mut config, &self.consumer);
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
        apply(&mut config, &self.consumer);
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
        let mut options = Config::default();
        options
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        options
            .producer
            .insert("compression.type".into(), "zstd".into());
        options
            .consumer
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
        let mut options = Config {
            auth: Auth::MskIam,
            ..Config::default()
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
        let plain = Config::default().producer_config();
        assert_eq!(plain.get("sasl.mechanism"), None);
    }
}
