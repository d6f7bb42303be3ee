//! End-to-end throughput and alert latency of `vigil run` through Kafka next to the embedded
//! bus, in one run, on realistic CloudTrail records.
//!
//! Each run starts the release binary with every role in one process (so detection over our
//! rules and indexing are both on), and measures two things:
//!
//! 1. **Throughput:** it posts generated CloudTrail records (about 1.3 KB each, from
//!    `support::records`) over HTTP in batches of 5000, spread over eight sources that ingest
//!    reads as CloudTrail, and stops the clock when search finds the last one.
//! 2. **Latency:** once the alerts of that flood are raised and indexed (it says how long that
//!    took), it posts at half the rate it just reached, in batches of 500 ten or more times a
//!    second, each ending in a probe record that only a probe rule (written for the bench)
//!    matches, with a number of its own. A poller reads the probe rule's alerts raised since
//!    the oldest probe it has not seen yet (`since`) every 20 ms; each probe's latency is from
//!    the acknowledgement (the 202) of its batch to the first poll that lists its alert. It
//!    reports the p50, p99 and maximum, and the worst latency in each 5 s of the phase, which
//!    tells latency that grows as the phase goes on from a spike.
//!
//! Beside them, each run reports the CPU time Vigil's processes used (not the broker's): from
//! the first post until search finds the last record (what the throughput phase's rate cost),
//! and over the whole run until they fall idle (or a minute passes), per record posted in both
//! phases. The second counts work a change only moves, such as merges put off until after the
//! flood, which the first misses; it also counts what the bench itself asks of Vigil (the alert
//! poll every 20 ms, the searches and metrics while it waits) and what Vigil does while idle,
//! so it compares builds under the same bench rather than pricing a record. Neither figure is
//! steadier than the rate on a shared machine: there the CPU time an event rises and falls with
//! it. It also reports the process's peak resident memory (`VmHWM`). The Kafka run
//! uses a local tansu broker with in-memory storage, so it measures Vigil's Kafka path, not a
//! production cluster's disks; the broker shares the two cores, and its CPU time until search
//! finds the last record is reported apart, since a deployment's brokers run elsewhere.
//!
//! A third run puts each stage in a process of its own on Kafka (`--role ingest`, `detect` and
//! `index,ui`, as the Helm chart's role layout does), for each stage's peak memory;
//! `--no-roles` leaves it out.
//!
//! `cargo bench --bench bus_throughput -- --events 200000` (default 100000). The latency phase
//! lasts `--latency-seconds` (default 15), at `--latency-rate` events/s if given rather than
//! half the measured rate; the events index commits every
//! `--commit-interval-ms` (default: Vigil's own, `index.commit_interval_ms`).

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use common::tansu::Tansu;
use common::{wait_for, Vigil};
use support::records::cloudtrail_events;
use support::{cpu_seconds_of, until_idle, Rng};

const BATCH: usize = 5000;
const SOURCES: usize = 8;
const LATENCY_BATCH: usize = 500;
const POLL: Duration = Duration::from_millis(20);
const PROBE_RULE_ID: &str = "5b3a0e7e-6d1c-4f4e-9a51-b05b0b5e1a7e";
const PROBE_RULE: &str = r#"title: Bus bench probe
id: 5b3a0e7e-6d1c-4f4e-9a51-b05b0b5e1a7e
status: test
description: Matches only the bench's probe records.
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        requestParameters.benchProbe|startswith: 'probe-'
    condition: selection
level: low
"#;

fn main() {
    let events = arg("--events").unwrap_or(100_000);
    let latency_seconds = arg("--latency-seconds").unwrap_or(15);
    let latency_rate = arg("--latency-rate").map(|rate| {
        assert!(rate > 0, "--latency-rate must be at least 1 event/s");
        rate as f64
    });
    let commit_interval_ms = arg("--commit-interval-ms").map(|ms| ms.to_string());
    let mut rng = Rng(0xb05_b0b5);
    let lines: Vec<String> = cloudtrail_events(events, &mut rng)
        .into_iter()
        .map(|line| marked(&line))
        .collect();
    let batches = batches(&lines);
    let bytes: usize = batches.iter().map(|(_, body)| body.len()).sum();
    println!(
        "{events} CloudTrail records, {:.1} MB ({} bytes on average), in batches of {BATCH} over \
         {SOURCES} sources",
        bytes as f64 / 1e6,
        bytes / events
    );

    let dir = tempfile::tempdir().unwrap();
    // Every run starts in the directory above its data directory, and reads its vigil.toml.
    let presets: String = (0..SOURCES)
        .map(|n| format!("trail{n} = \"cloudtrail\"\n"))
        .collect();
    std::fs::write(
        dir.path().join("vigil.toml"),
        format!("[ingest.presets]\n{presets}"),
    )
    .unwrap();
    let probe_rules = dir.path().join("probe-rules");
    std::fs::create_dir_all(&probe_rules).unwrap();
    std::fs::write(probe_rules.join("probe.yml"), PROBE_RULE).unwrap();
    let setup = Setup {
        probe_rules: probe_rules.to_str().unwrap().to_owned(),
        latency: Duration::from_secs(latency_seconds as u64),
        latency_rate,
        commit_interval_ms,
        lines,
    };

    let embedded = run(
        &setup,
        "embedded",
        &dir.path().join("embedded"),
        &batches,
        None,
        &[],
    );

    let tansu_dir = dir.path().join("tansu");
    std::fs::create_dir_all(&tansu_dir).unwrap();
    let tansu = Tansu::start(&tansu_dir, "memory://tansu/");
    let brokers = tansu.brokers();
    let kafka = run(
        &setup,
        "kafka",
        &dir.path().join("kafka"),
        &batches,
        tansu.pid(),
        &[
            ("VIGIL_BUS__BACKEND", "kafka"),
            ("VIGIL_BUS__KAFKA__BROKERS", &brokers),
            ("VIGIL_BUS__KAFKA__PARTITIONS", "4"),
            ("VIGIL_BUS__KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ],
    );
    println!(
        "kafka / embedded end-to-end throughput: {:.2} (goal: at least 0.9); goal: 25000 \
         events/s or more",
        kafka / embedded
    );
    if !flag("--no-roles") {
        // The deployment's layout: each stage its own process, for each stage's memory.
        let roles_dir = dir.path().join("roles");
        std::fs::create_dir_all(&roles_dir).unwrap();
        // Each process reads the vigil.toml above its data directory: the same presets.
        std::fs::copy(dir.path().join("vigil.toml"), roles_dir.join("vigil.toml")).unwrap();
        let env = [
            ("VIGIL_BUS__BACKEND", "kafka"),
            ("VIGIL_BUS__KAFKA__BROKERS", brokers.as_str()),
            ("VIGIL_BUS__KAFKA__PARTITIONS", "4"),
            ("VIGIL_BUS__KAFKA__SESSION_TIMEOUT_MS", "6000"),
            // Topics of their own, so the groups start from the beginning of these only.
            ("VIGIL_BUS__TOPICS__EVENTS", "roles.events"),
            ("VIGIL_BUS__TOPICS__ALERTS", "roles.alerts"),
            ("VIGIL_BUS__TOPICS__QUARANTINE", "roles.quarantine"),
            ("VIGIL_BUS__KAFKA__STATE_TOPIC", "roles.state"),
        ];
        let start = |role: &str| {
            let data_dir = roles_dir.join(role.replace(',', "-"));
            std::fs::create_dir_all(&data_dir).unwrap();
            let mut env = env.to_vec();
            if let Some(ms) = &setup.commit_interval_ms {
                env.push(("VIGIL_INDEX__COMMIT_INTERVAL_MS", ms.as_str()));
            }
            // Every process loads the same rules, as a deployment's do: the console lists
            // alerts of the rules it knows.
            let args = ["--role", role, "--rules", setup.probe_rules.as_str()];
            Vigil::start_with(&data_dir, &args, &env)
        };
        let processes = [start("ingest"), start("detect"), start("index,ui")];
        let [ingest, detect, index] = &processes;
        run_with(
            &setup,
            "roles",
            Stages {
                ingest,
                index,
                all: &[("ingest", ingest), ("detect", detect), ("index,ui", index)],
                broker: tansu.pid(),
            },
            &batches,
        );
    }
}

/// Where a run posts, where it searches, and whose memory it reports.
struct Stages<'a> {
    ingest: &'a Vigil,
    index: &'a Vigil,
    all: &'a [(&'a str, &'a Vigil)],
    /// The Kafka broker's process, on the same cores: its CPU is reported apart from Vigil's.
    broker: Option<u32>,
}

struct Setup {
    probe_rules: String,
    latency: Duration,
    /// The latency phase's rate (`--latency-rate`), or half the throughput phase's: a fixed
    /// rate compares builds at the same load on a host whose speed drifts between runs.
    latency_rate: Option<f64>,
    /// The events index's `index.commit_interval_ms` (`--commit-interval-ms`), or Vigil's
    /// default.
    commit_interval_ms: Option<String>,
    /// The background records the latency phase draws from.
    lines: Vec<String>,
}

/// Adds the field the throughput phase searches for, so that its count is of these records.
fn marked(line: &str) -> String {
    format!("{{\"marker\":\"busbench\",{}", &line[1..])
}

/// Runs one Vigil through both phases; end-to-end events/s.
fn run(
    setup: &Setup,
    label: &str,
    data_dir: &Path,
    batches: &[(String, String)],
    broker: Option<u32>,
    env: &[(&str, &str)],
) -> f64 {
    std::fs::create_dir_all(data_dir).unwrap();
    let mut env = env.to_vec();
    if let Some(ms) = &setup.commit_interval_ms {
        env.push(("VIGIL_INDEX__COMMIT_INTERVAL_MS", ms.as_str()));
    }
    let vigil = Vigil::start_with(data_dir, &["--rules", &setup.probe_rules], &env);
    let stages = Stages {
        ingest: &vigil,
        index: &vigil,
        all: &[("every role", &vigil)],
        broker,
    };
    run_with(setup, label, stages, batches)
}

/// [`run`] over processes already started.
fn run_with(setup: &Setup, label: &str, stages: Stages<'_>, batches: &[(String, String)]) -> f64 {
    let events = setup.lines.len();
    let cpu_at_start = vigil_cpu(&stages);
    let broker_at_start = stages.broker.and_then(cpu_seconds_of);
    let start = Instant::now();
    for (source, body) in batches {
        let response = stages.ingest.post_ndjson(source, body.clone());
        assert_eq!(response.status(), 202, "{}", response.text().unwrap());
    }
    let accepted = start.elapsed();
    wait_for(
        "every event to be indexed",
        Duration::from_secs(1800),
        || (stages.index.search_total("marker:busbench") >= events as u64).then_some(()),
    );
    let total = start.elapsed();
    let cpu_at_searchable = vigil_cpu(&stages);
    let broker_at_searchable = stages.broker.and_then(cpu_seconds_of);
    let rate = events as f64 / total.as_secs_f64();
    println!(
        "{label:>8}: accepted in {:>6.2} s ({:>7.0} events/s); indexed in {:>6.2} s ({:>7.0} \
         events/s end to end)",
        accepted.as_secs_f64(),
        events as f64 / accepted.as_secs_f64(),
        total.as_secs_f64(),
        rate
    );
    if let Some((from, to)) = cpu_at_start.zip(cpu_at_searchable) {
        println!(
            "{label:>8}: Vigil's CPU until search found the last: {:.1} s, {:.0} us an event",
            to - from,
            (to - from) / events as f64 * 1e6
        );
    }
    if let Some((from, to)) = broker_at_start.zip(broker_at_searchable) {
        println!(
            "{label:>8}: the broker's CPU over the same time: {:.1} s, {:.0} us an event",
            to - from,
            (to - from) / events as f64 * 1e6
        );
    }
    // The commits the flood took, apart from the latency phase's, which are most of the
    // whole run's: each makes segments that are merged again later. And how far detection
    // and the alerts indexer had come, which says which of them the alerts' drain waits on.
    let texts = metrics_texts(&stages);
    let flood_commits: Vec<String> = texts
        .iter()
        .flat_map(|text| histogram_means(text, "vigil_index_commit_seconds"))
        .collect();
    println!(
        "{label:>8}: commits until search found the last, mean seconds: {}",
        flood_commits.join(", ")
    );
    let progress: Vec<String> = [
        "vigil_events_detected_total",
        "vigil_alerts_raised_total",
        "vigil_alerts_indexed_total",
    ]
    .iter()
    .map(|name| format!("{name} {:.0}", total_of(&texts, name)))
    .collect();
    println!(
        "{label:>8}: as search found the last: {}",
        progress.join(", ")
    );
    let (settled, raised) = settle(&stages);
    // Until the alerts are listed too: where detection trails the indexer (as it did on
    // Kafka), search finds the last event before the flood is done with.
    println!(
        "{label:>8}: the throughput phase's {raised:.0} alerts ({:.2} an event) drained {:.1} s \
         after its last event was searchable ({:.0} events/s until then)",
        raised / events as f64,
        settled.as_secs_f64(),
        events as f64 / (total + settled).as_secs_f64()
    );
    let sent = match setup.latency_rate {
        Some(fixed) => latency(setup, label, &stages, fixed, "set by --latency-rate"),
        None => latency(setup, label, &stages, rate / 2.0, "half the rate above"),
    };
    // Idle: together under 10% of a core over half a second, so what the run set in motion,
    // merges of the index included, is done and counted; at most a minute.
    let (waited, idle) = until_idle(
        || vigil_cpu(&stages),
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    if let Some((from, to)) = cpu_at_start.zip(vigil_cpu(&stages)) {
        let posted = events + sent;
        let until = if idle { "idle" } else { "still busy" };
        println!(
            "{label:>8}: Vigil's CPU over the whole run, until {until} {:.1} s after the \
             latency phase: {:.1} s for {posted} records, {:.0} us a record",
            waited.as_secs_f64(),
            to - from,
            (to - from) / posted as f64 * 1e6
        );
    }
    let memory: Vec<String> = stages
        .all
        .iter()
        .map(|(role, vigil)| {
            let mb = peak_rss_kb(vigil.pid()).map_or("?".into(), |kb| (kb / 1024).to_string());
            format!("{role} {mb} MB")
        })
        .collect();
    println!("{label:>8}: peak resident memory: {}", memory.join(", "));
    rate
}

/// The CPU time all of a run's Vigil processes have used so far, in seconds.
fn vigil_cpu(stages: &Stages<'_>) -> Option<f64> {
    stages
        .all
        .iter()
        .map(|(_, vigil)| cpu_seconds_of(vigil.pid()))
        .sum()
}

/// Waits until the alerts the throughput phase raised are all raised and indexed: until the
/// counts of both have stood still for half a second (at most 30 s), and says how long that
/// took and how many alerts were raised. Search finds the last event before detection and the
/// alerts indexer are done with the flood, and a latency phase started then measures its
/// first probes queueing behind that backlog (up to 0.9 s on Kafka), not latency at half the
/// rate.
fn settle(stages: &Stages<'_>) -> (Duration, f64) {
    let start = Instant::now();
    let counts = || {
        let texts = metrics_texts(stages);
        (
            total_of(&texts, "vigil_alerts_raised_total"),
            total_of(&texts, "vigil_alerts_indexed_total"),
        )
    };
    let mut last = counts();
    let mut still_since = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        let now = counts();
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() >= Duration::from_millis(500) {
            return (still_since - start, last.0);
        }
    }
    (start.elapsed(), last.0)
}

/// Posts at `rate` events/s with a probe at the end of each batch, and reports how long each
/// probe took from its batch's acknowledgement to its alert. Returns how many records it posted.
fn latency(setup: &Setup, label: &str, stages: &Stages<'_>, rate: f64, why: &str) -> usize {
    let vigil = stages.index;
    let interval = Duration::from_secs_f64(LATENCY_BATCH as f64 / rate);
    let acknowledged: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    // When each probe's batch was sent, by the wall clock: Vigil cannot raise its alert before.
    let sent_at: Arc<Mutex<BTreeMap<u64, DateTime<Utc>>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let poller = {
        let (sent_at, seen, done) = (Arc::clone(&sent_at), Arc::clone(&seen), Arc::clone(&done));
        let client = vigil.client.clone();
        let url = vigil.url(&format!("/api/v1/alerts?rule={PROBE_RULE_ID}&limit=1000"));
        std::thread::spawn(move || {
            // Only alerts raised since the oldest probe still unseen was sent, less a second
            // for the grain of the alerts' times: a poll for every probe alert so far made
            // Vigil fetch and send a growing list fifty times a second, a load of the bench's
            // own that grew with the phase (up to 1000 alerts a poll).
            let mut unseen = 0u64;
            while !done.load(Ordering::Relaxed) {
                let polled = Instant::now();
                {
                    let seen = seen.lock().unwrap();
                    while seen.contains_key(&unseen) {
                        unseen += 1;
                    }
                }
                let oldest = sent_at.lock().unwrap().get(&unseen).copied();
                let since = oldest.unwrap_or_else(Utc::now) - Duration::from_secs(1);
                let since = since.to_rfc3339_opts(SecondsFormat::Millis, true);
                let url = format!("{url}&since={since}");
                if let Ok(response) = client.get(&url).bearer_auth(common::TOKEN).send() {
                    let text = response.text().unwrap_or_default();
                    let mut seen = seen.lock().unwrap();
                    for probe in probes_in(&text) {
                        seen.entry(probe).or_insert(polled);
                    }
                }
                std::thread::sleep(POLL.saturating_sub(polled.elapsed()));
            }
        })
    };
    let mut probe = 0u64;
    let mut next = start;
    // Numbered, so that no record repeats one the throughput phase sent: a repeat is a replay,
    // which the store turns into a delete and an add, and which a live feed seldom sends.
    let mut background = setup
        .lines
        .iter()
        .cycle()
        .enumerate()
        .map(|(n, line)| format!("{{\"benchSeq\":{n},{}\n", &line[1..]));
    while start.elapsed() < setup.latency {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        let mut body: String = background.by_ref().take(LATENCY_BATCH - 1).collect();
        body.push_str(&probe_record(probe));
        let source = format!("trail{}", probe as usize % SOURCES);
        sent_at.lock().unwrap().insert(probe, Utc::now());
        let response = stages.ingest.post_ndjson(&source, body);
        assert_eq!(response.status(), 202, "{}", response.text().unwrap());
        acknowledged.lock().unwrap().insert(probe, Instant::now());
        probe += 1;
    }
    let sent = start.elapsed();
    let texts = metrics_texts(stages);
    // Which stage, if any, fell behind: the consumer groups' lag as the posting stops.
    let lags: Vec<String> = texts
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| line.starts_with("vigil_bus_lag{"))
        .map(|line| line.trim_start_matches("vigil_bus_lag").to_owned())
        .collect();
    println!("{label:>8}: lag as posting stops: {}", lags.join(", "));
    // Where an alert's latency goes: the store commits, and the alerts' wait for the events
    // index to make their events searchable. Means over the whole run, both phases.
    let means: Vec<String> = texts
        .iter()
        .flat_map(|text| {
            [
                "vigil_index_commit_seconds",
                "vigil_index_alert_wait_seconds",
            ]
            .into_iter()
            .flat_map(|name| histogram_means(text, name))
        })
        .collect();
    println!("{label:>8}: mean seconds: {}", means.join(", "));
    wait_for("every probe's alert", Duration::from_secs(300), || {
        (seen.lock().unwrap().len() as u64 >= probe).then_some(())
    });
    done.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    let seen = seen.lock().unwrap();
    // Each probe's latency, with the 5 s of posting it was acknowledged in: the worst of each
    // tells latency that grows as the phase goes on (merges of a growing index, say) from a
    // spike.
    let timed: Vec<(u64, f64)> = acknowledged
        .iter()
        .map(|(probe, at)| {
            let window = at.saturating_duration_since(start).as_secs() / 5;
            (
                window,
                seen[probe].saturating_duration_since(*at).as_secs_f64(),
            )
        })
        .collect();
    let mut latencies: Vec<f64> = timed.iter().map(|&(_, latency)| latency).collect();
    let mut windows: BTreeMap<u64, f64> = BTreeMap::new();
    for &(window, latency) in &timed {
        let worst = windows.entry(window).or_default();
        *worst = worst.max(latency);
    }
    let windows: Vec<String> = windows
        .iter()
        .map(|(window, worst)| format!("{} s {:.0}", window * 5, worst * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:>8}: at {:.0} events/s ({why}; {:.0} sent) for {:.1} s, {} probes: \
         acknowledgement to alert p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal: p99 under \
         1000 ms; polled every {} ms)",
        rate,
        (probe as usize * LATENCY_BATCH) as f64 / sent.as_secs_f64(),
        sent.as_secs_f64(),
        probe,
        quantile(0.5) * 1e3,
        quantile(0.99) * 1e3,
        latencies.last().copied().unwrap_or_default() * 1e3,
        POLL.as_millis()
    );
    println!(
        "{label:>8}: worst latency in each 5 s, ms: {}",
        windows.join(", ")
    );
    probe as usize * LATENCY_BATCH
}

/// Each process's `/metrics` text, read once, so that what is taken from them is of one moment.
fn metrics_texts(stages: &Stages<'_>) -> Vec<String> {
    stages
        .all
        .iter()
        .map(|(_, vigil)| vigil.metrics_text())
        .collect()
}

/// The sum of every series of `name`, labelled or not, over the processes' `/metrics` texts.
fn total_of(texts: &[String], name: &str) -> f64 {
    texts
        .iter()
        .flat_map(|text| text.lines())
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Each series of histogram `name` in a Prometheus text page, as `series mean (count)`.
fn histogram_means(text: &str, name: &str) -> Vec<String> {
    let value = |line: &str| -> Option<(String, f64)> {
        let (series, number) = line.rsplit_once(' ')?;
        Some((series.to_owned(), number.parse().ok()?))
    };
    let sums = text
        .lines()
        .filter(|line| line.starts_with(&format!("{name}_sum")))
        .filter_map(value);
    sums.filter_map(|(series, sum)| {
        let labels = series.trim_start_matches(&format!("{name}_sum"));
        let count_series = format!("{name}_count{labels}");
        let (_, count) = text
            .lines()
            .filter_map(value)
            .find(|(series, _)| *series == count_series)?;
        (count > 0.0).then(|| format!("{name}{labels} {:.3} ({count})", sum / count))
    })
    .collect()
}

/// A CloudTrail record only the probe rule matches, numbered.
fn probe_record(probe: u64) -> String {
    format!(
        "{{\"eventVersion\":\"1.09\",\"eventTime\":\"{}\",\"eventSource\":\"s3.amazonaws.com\",\
         \"eventName\":\"GetObject\",\"awsRegion\":\"eu-west-1\",\"sourceIPAddress\":\
         \"198.51.100.7\",\"userIdentity\":{{\"type\":\"IAMUser\",\"userName\":\"bench\"}},\
         \"requestParameters\":{{\"benchProbe\":\"probe-{probe}\"}},\"eventType\":\"AwsApiCall\"}}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The probe numbers named in an alerts listing.
fn probes_in(listing: &str) -> Vec<u64> {
    listing
        .split("probe-")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The peak resident set size of a process, from `/proc`, in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn batches(lines: &[String]) -> Vec<(String, String)> {
    lines
        .chunks(BATCH)
        .enumerate()
        .map(|(n, chunk)| {
            let body = chunk
                .iter()
                .flat_map(|line| [line.as_str(), "\n"])
                .collect();
            (format!("trail{}", n % SOURCES), body)
        })
        .collect()
}

fn flag(name: &str) -> bool {
    std::env::args().any(|arg| arg == name)
}

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
}
