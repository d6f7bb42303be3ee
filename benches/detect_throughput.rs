//! Detection throughput over the whole SigmaHQ `rules/` corpus, against JSON parsing alone, in
//! the same run and on the same events.
//!
//! Every event reaches the detect stage as JSON text, so parsing it into a map is the floor the
//! stage pays per event; the ratio says how much of the stage's time detection adds on top.
//! The target is parse + detect reaching at least half of parse-only throughput, on one
//! thread.
//!
//! The corpus comes from `VIGIL_SIGMA_CORPUS`, else `../shared/corpus/sigma/rules` beside the
//! checkout. The pipelines in `pipelines/` are loaded as `vigil` loads them, so the webserver
//! and Kubernetes rules see the fields of our events. Events are the demo records, varied
//! (ids, addresses, users, paths) so no two are identical.
//!
//! It then measures each logsource's events alone, for where detection's time goes: the
//! parse, the parse with detection, and how many rules were evaluated an event.
//!
//! Run with `cargo bench --bench detect_throughput`.
//!
//! To compare two builds of one change, measure one lane one way instead:
//! `VIGIL_BENCH_LANE=cloudtrail VIGIL_BENCH_MEASURE=detect` (the lane by a part of its name as
//! printed, `cloudtrail`, `audit` or `webserver`; the measurement `parse`, `detect` for (b) or
//! `record` for (c)) prints the fastest of 40 rounds of 200 ms, in microseconds an event. On
//! these shared cores it moves by about 1% from run to run, where the medians above move by
//! 5% to 10%; run the two builds in turn, pinned to one core (`taskset -c 1`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use vigil_detect::{Engine, LoadOptions, RuleSetBuilder};
use vigil_event::{Document, LogSource};

mod support;
use support::records::{objects, DEMO_CLOUDTRAIL, DEMO_KUBERNETES};
use support::{corpus_dir, repo, Rng};

const DEMO_ACCESS_LOG: &str = include_str!("../demo/flask-access.log");
const EVENTS: usize = 3000;
/// Each measurement runs this long; they alternate for several rounds so that drift in the
/// machine's load (other builds share these cores) hits them alike, and each ratio is taken
/// within a round, between measurements close in time, rather than between medians of rounds
/// (benches/RESULTS.md says why).
const ROUND: Duration = Duration::from_millis(300);
/// Odd, so that the median is one round's figure.
const ROUNDS: usize = 9;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
}

fn load_options() -> LoadOptions {
    let mut options = LoadOptions::default();
    let mut files = Vec::new();
    yaml_files(&repo().join("pipelines"), &mut files);
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let pipeline = vigil_detect::Pipeline::parse(&text, &file.display().to_string())
            .unwrap_or_else(|err| panic!("{err}"));
        options.pipelines.push(pipeline);
    }
    options
}

fn load_engine(dir: &Path, options: &LoadOptions) -> (Engine, usize, usize) {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no rules under {}", dir.display());
    let mut builder = RuleSetBuilder::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        builder.add_parsed(vigil_detect::parse_rules_with(
            &text,
            &file.display().to_string(),
            options,
        ));
    }
    let built = builder.build();
    let errors = built.errors.len();
    let loaded = built.engine.rules().len();
    (built.engine, loaded, errors)
}

/// Values for the varied events, from the shared seeded generator.
impl Rng {
    fn ip(&mut self) -> String {
        let n = self.next();
        format!("198.51.{}.{}", (n >> 8) % 256, n % 254 + 1)
    }

    fn hex(&mut self, len: usize) -> String {
        let mut out = String::new();
        while out.len() < len {
            out.push_str(&format!("{:016x}", self.next()));
        }
        out.truncate(len);
        out
    }
}

const USERS: &[&str] = &["alice.nguyen", "bob", "carol.diaz", "deploy-bot", "erin"];
const PATHS: &[&str] = &[
    "/users",
    "/login",
    "/api/v1/orders?page=2",
    "/static/app.js",
    "/users/42/edit",
    "/search?q=shoes&sort=price",
    "/admin/roles",
    "/health",
];

/// Demo records with their identifying values varied; each is JSON text, as the detect stage
/// receives it.
fn events() -> Vec<(LogSource, String)> {
    let cloudtrail = objects(DEMO_CLOUDTRAIL);
    let kubernetes = objects(DEMO_KUBERNETES);
    let access: Vec<Map<String, Value>> = DEMO_ACCESS_LOG
        .lines()
        .filter_map(|line| {
            let mut parsed = vigil_ingest::parse::parse_access_log(line).ok()?;
            parsed
                .fields
                .insert("message".into(), Value::String(line.to_owned()));
            Some(parsed.fields)
        })
        .collect();
    let ct_source = LogSource::new(Some("aws"), Some("cloudtrail"), None);
    // As ingest labels these events (`SourceSpec::kubernetes_audit`), so the rules that name
    // the category apply too.
    let k8s_source = LogSource::new(Some("kubernetes"), Some("audit"), Some("application"));
    let web_source = LogSource::new(None, None, Some("webserver"));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let (source, doc) = match i % 10 {
            0..=3 => {
                let mut doc = cloudtrail[rng.below(cloudtrail.len())].clone();
                doc.insert("eventID".into(), Value::String(rng.hex(32)));
                if doc.contains_key("sourceIPAddress") && rng.below(2) == 0 {
                    doc.insert("sourceIPAddress".into(), Value::String(rng.ip()));
                }
                if let Some(Value::Object(identity)) = doc.get_mut("userIdentity") {
                    if identity.contains_key("userName") {
                        let user = USERS[rng.below(USERS.len())];
                        identity.insert("userName".into(), Value::String(user.into()));
                    }
                }
                (&ct_source, doc)
            }
            4..=6 => {
                let mut doc = kubernetes[rng.below(kubernetes.len())].clone();
                doc.insert("auditID".into(), Value::String(rng.hex(32)));
                doc.insert("sourceIPs".into(), Value::from(vec![rng.ip()]));
                (&k8s_source, doc)
            }
            _ => {
                let mut doc = access[rng.below(access.len())].clone();
                let ip = rng.ip();
                doc.insert("client_address".into(), Value::String(ip.clone()));
                if rng.below(3) == 0 {
                    let target = PATHS[rng.below(PATHS.len())];
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    doc.insert("target".into(), Value::String(target.into()));
                    doc.insert("path".into(), Value::String(path.into()));
                    if query.is_empty() {
                        doc.remove("query");
                    } else {
                        doc.insert("query".into(), Value::String(query.into()));
                    }
                }
                (&web_source, doc)
            }
        };
        out.push((source.clone(), serde_json::to_string(&doc).unwrap()));
    }
    out
}

/// Runs `work` over the events, cycling, for at least `round`; returns events per second.
fn measure(
    events: &[(LogSource, String)],
    round: Duration,
    mut work: impl FnMut(&LogSource, &str),
) -> f64 {
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        for (source, text) in events {
            work(source, text);
        }
        done += events.len();
        if start.elapsed() >= round {
            break;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // The `vigil` binary's allocator and options, so the figures are the binary's.
    vigil_allocator::configure();
    let dir = corpus_dir();
    let options = load_options();
    let start = Instant::now();
    let (engine, loaded, errors) = load_engine(&dir, &options);
    println!(
        "corpus {}: {loaded} rules loaded, {errors} documents failed, {} pipelines, in {:.2?}",
        dir.display(),
        options.pipelines.len(),
        start.elapsed()
    );
    let events = events();
    let bytes: usize = events.iter().map(|(_, text)| text.len()).sum();
    let (mut matched, mut ruled_out) = (0usize, 0usize);
    // The events no rule matches: most of a real stream, where the text prefilter saves the
    // parse for sources whose rules it serves (the demo's records are mostly attacks, so most
    // of them match something; cloud sources find rules by key and always parse).
    let mut quiet: Vec<(LogSource, String)> = Vec::new();
    for (source, text) in &events {
        let doc: Map<String, Value> = serde_json::from_str(text).unwrap();
        let hits = engine.matching(source, &doc);
        let parse = || Document::parse(text);
        let record = engine.matching_record(source, text, parse).unwrap();
        assert_eq!(record.hits, hits, "{text}");
        ruled_out += usize::from(record.document.is_none());
        if hits.is_empty() {
            quiet.push((source.clone(), text.clone()));
        }
        matched += hits.len();
    }
    println!(
        "{} events ({} bytes on average), {matched} rule matches in one pass; {ruled_out} \
         ruled out by the prefilter over their text, without a parse",
        events.len(),
        bytes / events.len()
    );

    // Detection reads a record through its tape (`vigil_event::Document`), so that is the
    // parse it is held against; the map `serde_json` builds is shown for comparison.
    let map_only = |_: &LogSource, text: &str| {
        let doc: Map<String, Value> = serde_json::from_str(text).unwrap();
        black_box(doc);
    };
    let parse_only = |_: &LogSource, text: &str| {
        black_box(Document::parse(text).unwrap());
    };
    let parse_and_detect = |source: &LogSource, text: &str| {
        let doc = Document::parse(text).unwrap();
        black_box(engine.matching(source, &doc));
    };
    // As the pipeline's detect stage and `vigil detect` run (`Engine::matching_record`): where
    // rules are found by literal, the text scanned first and parsed only when some rule may
    // match; where by key, parsed and looked up.
    let record_first = |source: &LogSource, text: &str| {
        let parse = || Document::parse(text);
        black_box(engine.matching_record(source, text, parse).unwrap());
    };
    if let Ok(lane) = std::env::var("VIGIL_BENCH_LANE") {
        let measurement = std::env::var("VIGIL_BENCH_MEASURE").unwrap_or_default();
        let subset: Vec<(LogSource, String)> = events
            .iter()
            .filter(|(source, _)| lane_name(source).contains(&lane))
            .cloned()
            .collect();
        assert!(!subset.is_empty(), "no lane's name holds {lane:?}");
        let fastest = match measurement.as_str() {
            "parse" => fastest_round(&subset, parse_only),
            "detect" => fastest_round(&subset, parse_and_detect),
            "record" => fastest_round(&subset, record_first),
            other => panic!("VIGIL_BENCH_MEASURE is parse, detect or record, not {other:?}"),
        };
        println!(
            "{} {measurement}: {fastest:.3} us an event (fastest of {FASTEST_OF} rounds)",
            lane_name(&subset[0].0)
        );
        return;
    }
    let (mut parse_rates, mut detect_rates, mut record_rates) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut map_rates = Vec::new();
    let (mut quiet_detect_rates, mut quiet_record_rates) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        map_rates.push(measure(&events, ROUND, map_only));
        parse_rates.push(measure(&events, ROUND, parse_only));
        detect_rates.push(measure(&events, ROUND, parse_and_detect));
        record_rates.push(measure(&events, ROUND, record_first));
        quiet_detect_rates.push(measure(&quiet, ROUND, parse_and_detect));
        quiet_record_rates.push(measure(&quiet, ROUND, record_first));
    }
    let detect_ratios = ratios(&detect_rates, &parse_rates);
    let record_ratios = ratios(&record_rates, &parse_rates);
    let record_detect_ratios = ratios(&record_rates, &detect_rates);
    let parse = median(&mut parse_rates);
    let detect = median(&mut detect_rates);
    let map = median(&mut map_rates);
    println!("    serde_json map parse only: {map:>10.0} events/s (one thread)");
    println!("(a) JSON parse only (tape):   {parse:>10.0} events/s (one thread)");
    println!("(b) parse + routed detection: {detect:>10.0} events/s (one thread)");
    let record = median(&mut record_rates);
    println!("(c) as a record (matching_record): {record:>7.0} events/s (one thread)");
    println!(
        "(b) / (a): {}; target: at least 0.50",
        spread(detect_ratios)
    );
    println!(
        "(c) / (a): {}; (c) / (b): {}",
        spread(record_ratios),
        spread(record_detect_ratios)
    );
    // Where detection's time goes, by source: each source's events alone, as microseconds an
    // event for the parse and for the parse with detection (as a record).
    let mut sources: Vec<&LogSource> = Vec::new();
    for (source, _) in &events {
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    for source in sources {
        let subset: Vec<(LogSource, String)> = events
            .iter()
            .filter(|(other, _)| other == source)
            .cloned()
            .collect();
        let micros = |rate: f64| 1e6 / rate;
        let (mut parse_rates, mut detect_rates, mut record_rates) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            parse_rates.push(measure(&subset, ROUND, parse_only));
            detect_rates.push(measure(&subset, ROUND, parse_and_detect));
            record_rates.push(measure(&subset, ROUND, record_first));
        }
        let (parse, detect, record) = (
            median(&mut parse_rates),
            median(&mut detect_rates),
            median(&mut record_rates),
        );
        let evaluated: usize = subset
            .iter()
            .map(|(source, text)| {
                let parse = || Document::parse(text);
                engine
                    .matching_record(source, text, parse)
                    .unwrap()
                    .evaluated
            })
            .sum();
        let name = lane_name(source);
        println!(
            "{name} ({} events of {} bytes, {:.1} rules evaluated an event): parse {:.2} us; \
             (b) {:.2} us, detection {:.2} us; as a record {:.2} us, detection {:.2} us an event",
            subset.len(),
            subset.iter().map(|(_, text)| text.len()).sum::<usize>() / subset.len(),
            evaluated as f64 / subset.len() as f64,
            micros(parse),
            micros(detect),
            micros(detect) - micros(parse),
            micros(record),
            micros(record) - micros(parse)
        );
    }
    let quiet_ratios = ratios(&quiet_record_rates, &quiet_detect_rates);
    let quiet_detect = median(&mut quiet_detect_rates);
    let quiet_record = median(&mut quiet_record_rates);
    println!(
        "the {} events no rule matches: (b) {quiet_detect:.0}, (c) {quiet_record:.0} events/s; \
         (c) / (b) {}",
        quiet.len(),
        spread(quiet_ratios)
    );
}

/// A lane's name: its logsource's product, service and category.
fn lane_name(source: &LogSource) -> String {
    [&source.product, &source.service, &source.category]
        .map(|part| part.as_deref().unwrap_or("-"))
        .join("/")
}

/// Rounds [`fastest_round`] takes the fastest of.
const FASTEST_OF: usize = 40;

/// Runs `work` over the events, cycling, for [`FASTEST_OF`] rounds of 200 ms; returns the
/// fastest round's microseconds an event. The fastest, not the median: what a busy neighbour
/// adds to a round is never negative, so the fastest moves least between runs.
fn fastest_round(events: &[(LogSource, String)], mut work: impl FnMut(&LogSource, &str)) -> f64 {
    (0..FASTEST_OF)
        .map(|_| 1e6 / measure(events, Duration::from_millis(200), &mut work))
        .fold(f64::MAX, f64::min)
}

/// The median of the rounds: one round slowed by a neighbour's build does not decide.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `over[i] / under[i]` for each round.
fn ratios(over: &[f64], under: &[f64]) -> Vec<f64> {
    over.iter().zip(under).map(|(o, u)| o / u).collect()
}

/// Ratios taken round by round, as their median and range.
fn spread(mut by_round: Vec<f64>) -> String {
    let (low, high) = by_round
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), r| {
            (low.min(*r), high.max(*r))
        });
    format!(
        "{:.2} ({low:.2} to {high:.2} over {} rounds)",
        median(&mut by_round),
        by_round.len()
    )
}
