//! The backfill ratio: how much slower the store indexes events whose own times spread over
//! 77 days than the same events stamped within the last hour, all received now.
//!
//! A backfill (a month of CloudTrail from S3, a replayed archive) is events whose times lie
//! far behind their arrival. When partitions followed event times, such a backfill wrote to
//! dozens of partitions at once; partitions now follow arrival, so both runs write one
//! partition. The goal is a ratio of at most 1.5; figures are in benches/RESULTS.md.
//!
//! Events are the demo CloudTrail records, varied in their ids, times, users and addresses.
//! Each run indexes into a fresh store in the indexing stage's batches (2,000 events) and
//! commits as it does (every 20,000 events, and at the end). The two runs alternate
//! (`VIGIL_BENCH_ROUNDS` rounds, default 2), and each figure is the best of its rounds: the
//! 2-core machine is shared, and a neighbour only ever makes a run slower.
//!
//! A third run indexes the events stamped now into a store that already holds 30 daily
//! partitions of earlier arrivals (as many events again, reopened first): each event's id is
//! checked against every partition's id filter, so that a resend arriving on another day
//! adds no second copy, and the filters are built from the partitions' terms at the first
//! batch after the reopen. Its ratio to the first run is what those checks cost.
//!
//! `VIGIL_BENCH_EVENTS` sets the number of events (default 100,000).
//!
//! Run with `cargo bench --bench backfill`.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use vigil_event::{Event, EventId, Source};
use vigil_ingest::{normalise_line, SourceSpec};
use vigil_store::{SearchRequest, Store};

mod support;
use support::{cpu_seconds, env_usize, Rng};

const DEMO_CLOUDTRAIL: &str = include_str!("../demo/cloudtrail.ndjson");
const SEED: u64 = 0x5eed_0000_0077;
/// As the indexing stage (src/stages/index.rs).
const BATCH: usize = 2_000;
/// As `index.commit_events`' default.
const COMMIT_EVENTS: usize = 20_000;
const BACKFILL_DAYS: i64 = 77;
const TARGET_RATIO: f64 = 1.5;

/// `n` CloudTrail events received at `received`, the i-th stamped `received - offsets[i]`.
fn events(n: usize, received: DateTime<Utc>, spread: chrono::Duration) -> Vec<Event> {
    let templates: Vec<Value> = DEMO_CLOUDTRAIL
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let spec = SourceSpec::cloudtrail();
    let source = Source {
        kind: spec.kind.clone(),
        name: "bench".to_owned(),
    };
    // The same seed for both runs: the same events, only their times differ.
    let mut rng = Rng(SEED);
    let spread_ms = spread.num_milliseconds().max(1) as usize;
    (0..n)
        .map(|i| {
            let mut record = templates[rng.below(templates.len())].clone();
            let time = received - chrono::Duration::milliseconds(rng.below(spread_ms) as i64);
            let object = record.as_object_mut().unwrap();
            object.insert(
                "eventTime".into(),
                time.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
            );
            object.insert(
                "eventID".into(),
                format!("{:016x}{:016x}", rng.next(), i).into(),
            );
            object.insert(
                "sourceIPAddress".into(),
                format!(
                    "10.{}.{}.{}",
                    rng.below(64),
                    rng.below(256),
                    rng.below(254) + 1
                )
                .into(),
            );
            let line = record.to_string();
            let id = EventId::derive("vigil backfill bench", &[&(i as u64).to_le_bytes()]);
            normalise_line(&spec, &source, line.as_bytes(), id, received, None).unwrap()
        })
        .collect()
}

struct Run {
    wall: Duration,
    cpu: Option<f64>,
    partitions: usize,
}

/// How many daily partitions the third run's store holds before it starts.
const EARLIER_PARTITIONS: usize = 30;

/// A store holding `events` received over the days before `received`, one partition a day.
fn earlier_partitions(dir: &std::path::Path, events: &[Event], received: DateTime<Utc>) {
    let store = Store::open(dir).unwrap();
    let per_day = events.len().div_ceil(EARLIER_PARTITIONS);
    for (day, chunk) in events.chunks(per_day).enumerate() {
        let arrived = received - chrono::Duration::days(day as i64 + 1);
        let moved: Vec<Event> = chunk
            .iter()
            .map(|event| Event {
                // Other ids than the events indexed next, so none of those is a resend.
                id: EventId::derive("vigil backfill bench, earlier", &[event.id.as_bytes()]),
                received: arrived,
                time: arrived,
                ..event.clone()
            })
            .collect();
        for batch in moved.chunks(BATCH) {
            store.index_events(batch).unwrap();
        }
        store.commit().unwrap();
    }
}

fn index(events: &[Event], earlier: Option<(&[Event], DateTime<Utc>)>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    if let Some((earlier, received)) = earlier {
        earlier_partitions(dir.path(), earlier, received);
    }
    let store = Store::open(dir.path()).unwrap();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut pending = 0;
    for batch in events.chunks(BATCH) {
        store.index_events(batch).unwrap();
        pending += batch.len();
        if pending >= COMMIT_EVENTS {
            store.commit().unwrap();
            pending = 0;
        }
    }
    store.commit().unwrap();
    let wall = started.elapsed();
    let cpu = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    let total = store.search(&SearchRequest::new("", 1)).unwrap().total;
    let before = earlier.map_or(0, |(earlier, _)| earlier.len());
    assert_eq!(
        total,
        (events.len() + before) as u64,
        "every event is searchable"
    );
    Run {
        wall,
        cpu,
        partitions: store.partitions().unwrap().len(),
    }
}

fn main() {
    // The `vigil` binary's allocator and options, so the figures are the binary's.
    vigil_allocator::configure();
    let n = env_usize("VIGIL_BENCH_EVENTS", 100_000);
    let rounds = env_usize("VIGIL_BENCH_ROUNDS", 2).max(1);
    let received = Utc::now();
    let now = events(n, received, chrono::Duration::hours(1));
    let backfill = events(n, received, chrono::Duration::days(BACKFILL_DAYS));
    println!(
        "backfill: {n} CloudTrail events received now, stamped within the last hour against \
         spread over {BACKFILL_DAYS} days; best of {rounds} alternating rounds"
    );
    let mut best: [Option<Run>; 3] = [None, None, None];
    for round in 0..rounds {
        for (slot, (name, events)) in [("now", &now), ("backfill", &backfill), ("beside30", &now)]
            .into_iter()
            .enumerate()
        {
            let earlier = (slot == 2).then_some((backfill.as_slice(), received));
            let run = index(events, earlier);
            println!(
                "  round {} {name:>8}: {:>7.2} s wall, {} CPU, {} partition(s)",
                round + 1,
                run.wall.as_secs_f64(),
                run.cpu.map_or("?".to_owned(), |cpu| format!("{cpu:.2} s")),
                run.partitions
            );
            if best[slot].as_ref().is_none_or(|b| run.wall < b.wall) {
                best[slot] = Some(run);
            }
        }
    }
    let [Some(now), Some(backfill), Some(beside)] = best else {
        unreachable!("at least one round ran")
    };
    let ratio = backfill.wall.as_secs_f64() / now.wall.as_secs_f64();
    let rate = |run: &Run| n as f64 / run.wall.as_secs_f64();
    println!(
        "  stamped now  {:>7.2} s {:>9.0} events/s",
        now.wall.as_secs_f64(),
        rate(&now)
    );
    println!(
        "  backfill     {:>7.2} s {:>9.0} events/s",
        backfill.wall.as_secs_f64(),
        rate(&backfill)
    );
    if let (Some(a), Some(b)) = (now.cpu, backfill.cpu) {
        println!("  CPU ratio    {:>7.2}x", b / a);
    }
    println!(
        "  now, beside {EARLIER_PARTITIONS} earlier partitions {:>7.2} s ({:.2}x the first run: \
         the id checks across partitions)",
        beside.wall.as_secs_f64(),
        beside.wall.as_secs_f64() / now.wall.as_secs_f64()
    );
    println!(
        "  backfill ratio {ratio:.2}x slower (goal <= {TARGET_RATIO}x): {}",
        if ratio <= TARGET_RATIO {
            "ok"
        } else {
            "MISSED"
        }
    );
}
