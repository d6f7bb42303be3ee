//! Parsing throughput per source: how fast `normalise_line` turns delivered lines into events,
//! in MB/s and events/s on one core, next to a plain `serde_json` parse of the same JSON lines
//! measured in the same run (the floor any JSON source pays).
//!
//! Run with `cargo bench --bench parse_throughput`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value};
use vigil_event::{EventId, Source};
use vigil_ingest::{normalise_line, RecordFormat, SourceSpec};

const RUN_FOR: Duration = Duration::from_secs(2);

/// Distinct lines from the demo records: the same shapes, different bytes.
fn lines(demo: &str, count: usize) -> Vec<String> {
    let originals: Vec<&str> = demo.lines().filter(|l| !l.trim().is_empty()).collect();
    (0..count)
        .map(|i| {
            let line = originals[i % originals.len()];
            // Vary a digit-bearing part so no two lines are equal.
            line.replacen("2026-11-28", &format!("2026-11-{:02}", 1 + i % 28), 1)
        })
        .collect()
}

fn vpc_flow_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "2 123456789012 eni-0a1b2c3d{:04x} 10.0.{}.{} 203.0.113.{} {} {} 6 {} {} {} {} {} OK",
                i % 65536,
                i % 250,
                i % 200,
                i % 250,
                1024 + i % 60000,
                [22, 80, 443, 3389][i % 4],
                1 + i % 40,
                40 + i % 9000,
                1_795_860_000 + i,
                1_795_860_060 + i,
                ["ACCEPT", "REJECT"][i % 2],
            )
        })
        .collect()
}

struct Figures {
    events: usize,
    bytes: usize,
    elapsed: Duration,
}

impl Figures {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn measure(lines: &[String], mut work: impl FnMut(&str)) -> Figures {
    let (mut events, mut bytes) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < RUN_FOR {
        for line in lines {
            work(line);
            bytes += line.len();
        }
        events += lines.len();
    }
    Figures {
        events,
        bytes,
        elapsed: start.elapsed(),
    }
}

fn main() {
    // The `vigil` binary's allocator and options, so the figures are the binary's.
    vigil_allocator::configure();
    let sources = [
        (
            "cloudtrail",
            SourceSpec::cloudtrail(),
            lines(include_str!("../demo/cloudtrail.ndjson"), 20_000),
        ),
        (
            "kubernetes-audit",
            SourceSpec::kubernetes_audit(),
            lines(include_str!("../demo/kubernetes-audit.ndjson"), 20_000),
        ),
        (
            "flask-app",
            SourceSpec::flask_app(),
            lines(include_str!("../demo/flask-app.ndjson"), 20_000),
        ),
        (
            "access-log",
            SourceSpec::access_log(),
            lines(include_str!("../demo/flask-access.log"), 20_000),
        ),
        ("vpc-flow", SourceSpec::vpc_flow(), vpc_flow_lines(20_000)),
    ];
    let received = Utc::now();
    println!(
        "{:<18} {:>12} {:>10} {:>16} {:>10}",
        "source", "events/s", "MB/s", "json-only ev/s", "ratio"
    );
    for (name, spec, lines) in &sources {
        let source = Source {
            kind: spec.kind.clone(),
            name: (*name).into(),
        };
        let id = EventId::derive("bench", &[]);
        let ours = measure(lines, |line| {
            let event = normalise_line(spec, &source, line.as_bytes(), id, received, None)
                .expect("demo lines parse");
            black_box(event);
        });
        let baseline = (spec.format == RecordFormat::Json).then(|| {
            measure(lines, |line| {
                black_box(serde_json::from_str::<Map<String, Value>>(line).unwrap());
            })
        });
        println!(
            "{:<18} {:>12.0} {:>10.1} {:>16} {:>10}",
            name,
            ours.events_per_second(),
            ours.megabytes_per_second(),
            baseline
                .as_ref()
                .map(|b| format!("{:.0}", b.events_per_second()))
                .unwrap_or_else(|| "-".into()),
            baseline
                .as_ref()
                .map(|b| format!("{:.2}", ours.events_per_second() / b.events_per_second()))
                .unwrap_or_else(|| "-".into()),
        );
    }
}
