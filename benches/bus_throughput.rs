//! End-to-end throughput of `vigil run` through Kafka next to the embedded bus, in one run.
//!
//! Each run starts the release binary with every role in one process, posts the same events
//! over HTTP in batches of 5000, and stops the clock when search finds the last one: ingest,
//! the bus, detection over our rules and indexing are all inside the figure. The Kafka run
//! uses a local tansu broker with in-memory storage, so it measures Vigil's Kafka path, not a
//! production cluster's disks.
//!
//! `cargo bench --bench bus_throughput -- --events 200000` (default 100000).

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tansu::Tansu;
use common::{wait_for, Vigil};

const BATCH: usize = 5000;
const SOURCES: usize = 8;

fn main() {
    let events = event_count();
    let batches = batches(events);
    let bytes: usize = batches.iter().map(|(_, body)| body.len()).sum();
    println!(
        "{events} events, {:.1} MB, in batches of {BATCH} over {SOURCES} sources",
        bytes as f64 / 1e6
    );

    let dir = tempfile::tempdir().unwrap();
    let embedded = run(
        "embedded",
        &dir.path().join("embedded"),
        &batches,
        events,
        &[],
    );

    let tansu_dir = dir.path().join("tansu");
    std::fs::create_dir_all(&tansu_dir).unwrap();
    let tansu = Tansu::start(&tansu_dir, "memory://tansu/");
    let brokers = tansu.brokers();
    let kafka = run(
        "kafka",
        &dir.path().join("kafka"),
        &batches,
        events,
        &[
            ("VIGIL_BUS__BACKEND", "kafka"),
            ("VIGIL_BUS__KAFKA__BROKERS", &brokers),
            ("VIGIL_BUS__KAFKA__PARTITIONS", "4"),
            ("VIGIL_BUS__KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ],
    );
    println!(
        "kafka / embedded end-to-end throughput: {:.2}",
        kafka / embedded
    );
}

/// Runs one Vigil, posts every batch and waits until all events are searchable; events/s.
fn run(
    label: &str,
    data_dir: &Path,
    batches: &[(String, String)],
    events: usize,
    env: &[(&str, &str)],
) -> f64 {
    std::fs::create_dir_all(data_dir).unwrap();
    let mut env = env.to_vec();
    env.push(("VIGIL_INDEX__COMMIT_INTERVAL_MS", "500"));
    let vigil = Vigil::start_with(data_dir, &[], &env);
    let start = Instant::now();
    for (source, body) in batches {
        let response = vigil.post_ndjson(source, body.clone());
        assert_eq!(response.status(), 202, "{}", response.text().unwrap());
    }
    let accepted = start.elapsed();
    wait_for(
        "every event to be indexed",
        Duration::from_secs(1800),
        || (vigil.search_total("marker:busbench") >= events as u64).then_some(()),
    );
    let total = start.elapsed();
    let rate = events as f64 / total.as_secs_f64();
    println!(
        "{label:>8}: accepted in {:>6.2} s ({:>7.0} events/s); indexed in {:>6.2} s ({:>7.0} events/s end to end)",
        accepted.as_secs_f64(),
        events as f64 / accepted.as_secs_f64(),
        total.as_secs_f64(),
        rate
    );
    rate
}

fn batches(events: usize) -> Vec<(String, String)> {
    (0..events)
        .step_by(BATCH)
        .enumerate()
        .map(|(n, first)| {
            let source = n % SOURCES;
            let body = (first..(first + BATCH).min(events))
                .map(|seq| {
                    format!(
                        "{{\"marker\":\"busbench\",\"app\":\"app-{source}\",\"seq\":{seq},\"user\":\"user{}\",\"path\":\"/api/accounts/{}\",\"status\":{},\"message\":\"request served\"}}\n",
                        seq % 911,
                        seq % 7919,
                        if seq % 13 == 0 { 403 } else { 200 }
                    )
                })
                .collect();
            (format!("app-{source}"), body)
        })
        .collect()
}

fn event_count() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}
