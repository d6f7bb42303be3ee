//! Ingest throughput: NDJSON bodies through the ingestor onto the embedded bus, against a
//! baseline that only appends the same bytes to a file and fsyncs, in the same run.
//!
//! The baseline is the floor any durable ingest pays (one write and one fdatasync per
//! delivery); the ratio says what parsing, id derivation, framing and checksums cost on top.
//!
//! Run with `cargo bench --bench ingest_throughput`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_bus::{EmbeddedBus, EmbeddedBusOptions, Topics};
use vigil_ingest::{IngestLimits, Ingestor, SourceCatalog};

const DEMO_CLOUDTRAIL: &str = include_str!("../demo/cloudtrail.ndjson");
const LINES_PER_BODY: usize = 500;
const RUN_FOR: Duration = Duration::from_secs(3);

fn body(round: usize) -> Vec<u8> {
    // Distinct bodies each round, as real deliveries are; content-derived ids must differ.
    let mut body = Vec::new();
    for (i, line) in DEMO_CLOUDTRAIL
        .lines()
        .cycle()
        .take(LINES_PER_BODY)
        .enumerate()
    {
        let line = line.replacen(
            "\"eventVersion\"",
            &format!(
                "\"benchSeq\":{},\"eventVersion\"",
                round * LINES_PER_BODY + i
            ),
            1,
        );
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
    }
    body
}

struct Measurement {
    events: usize,
    bytes: usize,
    elapsed: Duration,
}

impl Measurement {
    /// Counts `deliver`'s deliveries of `bodies`, round and round, for `RUN_FOR`; `deliver`
    /// gives the events each delivery took.
    fn of(bodies: &[Vec<u8>], mut deliver: impl FnMut(&[u8]) -> usize) -> Measurement {
        let (mut events, mut bytes) = (0, 0);
        let start = Instant::now();
        for body in bodies.iter().cycle() {
            events += deliver(body);
            bytes += body.len();
            if start.elapsed() >= RUN_FOR {
                break;
            }
        }
        Measurement {
            events,
            bytes,
            elapsed: start.elapsed(),
        }
    }

    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn report(&self, name: &str) {
        println!(
            "{name:<28} {:>10.0} events/s {:>8.1} MB/s",
            self.events_per_second(),
            self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
        );
    }
}

fn baseline(dir: &std::path::Path, bodies: &[Vec<u8>]) -> Measurement {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline.log"))
        .unwrap();
    Measurement::of(bodies, |body| {
        file.write_all(body).unwrap();
        file.sync_data().unwrap();
        LINES_PER_BODY
    })
}

fn vigil(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    bodies: &[Vec<u8>],
) -> Measurement {
    let _context = runtime.enter();
    let bus = Arc::new(EmbeddedBus::open(dir.join("bus"), EmbeddedBusOptions::default()).unwrap());
    let ingestor = Ingestor::new(
        bus,
        Topics::default(),
        SourceCatalog::builtin(),
        IngestLimits::default(),
    );
    Measurement::of(bodies, |body| {
        let report = runtime
            .block_on(ingestor.ingest_lines("cloudtrail", body, None))
            .unwrap();
        assert_eq!(report.accepted, LINES_PER_BODY);
        report.accepted
    })
}

fn main() {
    // The `vigil` binary's allocator and options, so the figures are the binary's.
    vigil_allocator::configure();
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..64).map(body).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{} CloudTrail records per delivery, {} bytes per delivery",
        LINES_PER_BODY,
        bodies[0].len()
    );
    let base = baseline(dir.path(), &bodies);
    base.report("baseline: write + fdatasync");
    let ours = vigil(&runtime, dir.path(), &bodies);
    ours.report("vigil ingest -> embedded bus");
    println!(
        "vigil / baseline: {:.2}",
        ours.events_per_second() / base.events_per_second()
    );
}
