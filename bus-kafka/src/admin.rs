//! Start-up checks: the cluster answers, and every topic Vigil uses exists.

use std::collections::HashSet;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use vigil_bus::BusError;

use crate::auth::AuthContext;
use crate::Config;

/// Checks that the brokers answer and that `topics` exist, creating the missing ones when the
/// options allow. The last topic of `topics` is the state topic, made with one partition and
/// compaction, since only the newest state per key matters.
pub(crate) async fn ensure_topics(
    options: &Config,
    auth: &AuthContext,
    topics: &[&str],
) -> Result<(), BusError> {
    let present = existing_topics(options, auth).await?;
    let missing: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|topic| !present.contains(*topic))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !options.create_topics {
        return Err(BusError::Unavailable(format!(
            "Kafka topics missing on {}: {}; create them, or set bus.kafka.create_topics = true",
            options.brokers,
            missing.join(", ")
        )));
    }
    let config = options.admin_config();
    let admin: AdminClient<AuthContext> = config
        .create_with_context(auth.clone())
        .map_err(|e| crate::unavailable(options, "cannot create the Kafka admin client", e))?;
    // The admin client never polls its main queue, so this token is the only one it gets;
    // it outlives the few seconds the client is used for.
    auth.prime(&config, admin.inner())
        .map_err(BusError::Unavailable)?;
    let state_topic = options.state_topic.as_str();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|&name| {
            let replication = TopicReplication::Fixed(options.replication_factor);
            if name == state_topic {
                NewTopic::new(name, 1, replication).set("cleanup.policy", "compact")
            } else {
                NewTopic::new(name, options.partitions, replication)
            }
        })
        .collect();
    let admin_options =
        AdminOptions::new().operation_timeout(Some(options.connect_timeout().max(MIN_WAIT)));
    let results = admin
        .create_topics(&new_topics, &admin_options)
        .await
        .map_err(|e| crate::unavailable(options, "cannot create Kafka topics", e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BusError::Unavailable(format!(
                    "cannot create Kafka topic {name} on {}: {code}",
                    options.brokers
                )))
            }
        }
    }
    Ok(())
}

const MIN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The names of the topics the cluster holds; the call that tells whether it answers at all.
async fn existing_topics(
    options: &Config,
    auth: &AuthContext,
) -> Result<HashSet<String>, BusError> {
    let config = options.reader_config();
    let consumer: BaseConsumer<AuthContext> = config
        .create_with_context(auth.clone())
        .map_err(|e| crate::unavailable(options, "cannot create a Kafka client", e))?;
    auth.prime(&config, consumer.client())
        .map_err(BusError::Unavailable)?;
    let timeout = options.connect_timeout().max(MIN_WAIT);
    let brokers = options.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
            BusError::Unavailable(format!(
                "cannot reach Kafka at {brokers} within {timeout:?}: {e}"
            ))
        })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none())
            .map(|topic| topic.name().to_owned())
            .collect())
    })
    .await
    .map_err(|e| BusError::Unavailable(format!("metadata task failed: {e}")))?
}
