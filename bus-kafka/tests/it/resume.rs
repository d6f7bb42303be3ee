//! The Kafka bus against a real broker (tansu): a group resumes exactly where it committed.

use std::time::{Duration, Instant};

use vigil_bus::{Bus, Checkpoint, Message, Topics};
use vigil_bus_kafka::{Config, KafkaBus};

use crate::tansu::Tansu;

#[tokio::test(flavor = "multi_thread")]
async fn a_group_resumes_exactly_at_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    // tansu's memory engine skips the rest of a produced batch for a consumer resuming
    // inside it (tests/kafka.rs says more); its SQL engine resumes exactly, as Kafka does.
    let broker = Tansu::start(dir.path(), "sqlite://tansu.db");
    let options = Config {
        brokers: broker.brokers(),
        partitions: 1,
        session_timeout_ms: 6_000,
        ..Config::default()
    };
    let topics = Topics::default();
    let bus = KafkaBus::connect(options, &topics).await.unwrap();
    let messages = (0..2000)
        .map(|n| Message::new(b"source".to_vec(), format!("message {n}").into_bytes()))
        .collect();
    bus.publish(&topics.events, messages).await.unwrap();

    let mut first = bus.subscribe(&topics.events, "resume").await.unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.len() < 60 {
        assert!(
            Instant::now() < deadline,
            "only {} messages arrived",
            read.len()
        );
        read.extend(
            first
                .next_batch(60 - read.len(), Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    let mut checkpoint = Checkpoint::default();
    for delivery in &read[..57] {
        checkpoint.advance(delivery);
    }
    first.commit(&checkpoint).await.unwrap();
    drop(first);

    let mut second = bus.subscribe(&topics.events, "resume").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        assert!(
            Instant::now() < deadline,
            "nothing arrived after the restart"
        );
        let batch = second
            .next_batch(10, Duration::from_millis(500))
            .await
            .unwrap();
        if let Some(delivery) = batch.into_iter().next() {
            break delivery;
        }
    };
    assert_eq!(
        resumed.offset,
        57,
        "{:?}",
        String::from_utf8_lossy(&resumed.payload)
    );
    assert_eq!(resumed.payload.as_ref(), b"message 57");
}
