//! Store throughput: indexing speed, index size, and the latency of typical analyst queries,
//! against a brute-force scan of the raw NDJSON in the same run.
//!
//! The scan is what an analyst without Vigil does (`grep`/`jq` over the delivered files):
//! read every line, parse it, test the predicate. The ratio says what the index buys per query.
//!
//! Events are the demo records (CloudTrail, Kubernetes audit, access log, Flask app), varied so
//! that ids are unique and users, addresses and times have realistic cardinality: times spread
//! over the 24 hours before the run, users drawn with a skew (a few busy principals, a long
//! tail of rare ones), addresses from a pool of a few thousand.
//!
//! `VIGIL_BENCH_EVENTS` sets the number of events (default 1,000,000);
//! `VIGIL_BENCH_REPEATS` the runs per indexed query (default 20) and `VIGIL_BENCH_SCAN_REPEATS`
//! the runs per scan (default 3, as one scan of a million events takes seconds).
//!
//! It then times the search page's server side (ui/src/search_page.rs): one render's search,
//! histogram and sidebar of top values, over `VIGIL_BENCH_PAGE_QUERIES` renders (default
//! 200) of five kinds of query with varied values. `VIGIL_BENCH_ONLY=search_page` times only
//! that, after indexing.
//!
//! Indexing goes in batches of 10,000 with one commit at the end, as a backfill would.
//! `VIGIL_BENCH_COMMIT_EVERY=N` commits after every N events instead, as a live pipeline does
//! at a moderate rate, and then counts the CPU until the merges those commits start have ended.
//!
//! Run with `cargo bench --bench store_throughput`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use vigil_event::{Event, EventId, Source};
use vigil_ingest::{normalise_line, SourceSpec};
use vigil_store::{interval_for, SearchRequest, Store};

mod search_page;
mod support;
use search_page::{search_page_case, TARGET_PAGE_P99};
use support::{cpu_seconds, env_usize, until_idle, Rng};

const DEMO_CLOUDTRAIL: &str = include_str!("../demo/cloudtrail.ndjson");
const DEMO_KUBERNETES: &str = include_str!("../demo/kubernetes-audit.ndjson");
const DEMO_ACCESS_LOG: &str = include_str!("../demo/flask-access.log");
const DEMO_FLASK_APP: &str = include_str!("../demo/flask-app.ndjson");

const BATCH: usize = 10_000;
const SEED: u64 = 0x5eed_0000_0006;
const HITS: usize = 50;
const TOP: usize = 10;
const DAY: i64 = 86_400;

const TARGET_INDEX_MB_S: f64 = 15.0;
const TARGET_SPEEDUP: f64 = 100.0;
const TARGET_P99: Duration = Duration::from_millis(100);

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "daniel", "erin", "farid", "grace", "hiro", "ines", "jamal", "kate",
    "li", "maria", "nikos", "olga", "priya", "quentin", "rosa", "sven", "tariq",
];
const LAST: &[&str] = &[
    "nguyen", "smith", "diaz", "kim", "patel", "chen", "okafor", "rossi", "novak", "shah",
    "garcia", "muller", "tanaka", "silva", "cohen", "haddad", "jensen", "kowalski", "moreau",
    "singh", "lopez", "ivanova", "brown", "ali", "costa",
];
const ROLES: &[&str] = &[
    "app-server-instance-role",
    "payments-api-task-role",
    "AWSReservedSSO_ReadOnlyAccess_3f9c2a71d0b4e865",
    "ci-deploy-role",
    "lambda-exec-role",
    "eks-node-role",
    "terraform-deployer",
    "AWSReservedSSO_AdministratorAccess_9a1c44e0b2d7f613",
    "OrgAdminRole",
    "db-admin",
];

struct Pools {
    users: Vec<String>,
    ips: Vec<String>,
}

impl Pools {
    fn new(rng: &mut Rng) -> Self {
        let mut users = vec!["ci-deploy".to_owned(), "atlantis".to_owned()];
        for first in FIRST {
            for last in LAST {
                users.push(format!("{first}.{last}"));
            }
        }
        let ips = (0..4000)
            .map(|i| match i % 4 {
                0 => format!(
                    "10.{}.{}.{}",
                    rng.below(64),
                    rng.below(256),
                    rng.below(254) + 1
                ),
                1 => format!("192.0.2.{}", rng.below(254) + 1),
                2 => format!("198.51.100.{}", rng.below(254) + 1),
                _ => format!(
                    "{}.{}.{}.{}",
                    rng.below(200) + 11,
                    rng.below(256),
                    rng.below(256),
                    rng.below(254) + 1
                ),
            })
            .collect();
        Pools { users, ips }
    }

    fn user<'a>(&'a self, rng: &mut Rng) -> &'a str {
        &self.users[rng.skewed(self.users.len())]
    }

    fn ip<'a>(&'a self, rng: &mut Rng) -> &'a str {
        &self.ips[rng.skewed(self.ips.len())]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    CloudTrail,
    Kubernetes,
    AccessLog,
    FlaskApp,
}

struct Templates {
    cloudtrail: Vec<Value>,
    kubernetes: Vec<Value>,
    access_log: Vec<&'static str>,
    flask_app: Vec<Value>,
    specs: [(SourceSpec, Source); 4],
}

fn objects(ndjson: &str) -> Vec<Value> {
    ndjson
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

impl Templates {
    fn new() -> Self {
        let spec = |spec: SourceSpec| {
            let source = Source {
                kind: spec.kind.clone(),
                name: "bench".to_owned(),
            };
            (spec, source)
        };
        Templates {
            cloudtrail: objects(DEMO_CLOUDTRAIL),
            kubernetes: objects(DEMO_KUBERNETES),
            access_log: DEMO_ACCESS_LOG
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect(),
            flask_app: objects(DEMO_FLASK_APP),
            specs: [
                spec(SourceSpec::cloudtrail()),
                spec(SourceSpec::kubernetes_audit()),
                spec(SourceSpec::access_log()),
                spec(SourceSpec::flask_app()),
            ],
        }
    }
}

fn set(value: &mut Value, pointer: &str, new: impl Into<Value>) {
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = new.into();
    }
}

fn is_ip(text: &str) -> bool {
    text.parse::<std::net::IpAddr>().is_ok()
}

/// One varied record of `kind` at `time`, as the source would deliver it.
fn record(t: &Templates, pools: &Pools, rng: &mut Rng, kind: Kind, time: DateTime<Utc>) -> String {
    match kind {
        Kind::CloudTrail => {
            let mut v = t.cloudtrail[rng.below(t.cloudtrail.len())].clone();
            set(&mut v, "/eventID", rng.uuid());
            set(&mut v, "/requestID", rng.uuid());
            set(
                &mut v,
                "/eventTime",
                time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            if v["sourceIPAddress"].as_str().is_some_and(is_ip) {
                set(&mut v, "/sourceIPAddress", pools.ip(rng));
            }
            let account = v["userIdentity"]["accountId"]
                .as_str()
                .unwrap_or("123456789012")
                .to_owned();
            match v["userIdentity"]["type"].as_str() {
                Some("IAMUser") => {
                    let user = pools.user(rng).to_owned();
                    set(
                        &mut v,
                        "/userIdentity/arn",
                        format!("arn:aws:iam::{account}:user/{user}"),
                    );
                    set(&mut v, "/userIdentity/userName", user);
                }
                Some("AssumedRole") => {
                    let role = ROLES[rng.skewed(ROLES.len())];
                    let session = pools.user(rng).to_owned();
                    set(
                        &mut v,
                        "/userIdentity/arn",
                        format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
                    );
                    set(
                        &mut v,
                        "/userIdentity/sessionContext/sessionIssuer/arn",
                        format!("arn:aws:iam::{account}:role/{role}"),
                    );
                    set(
                        &mut v,
                        "/userIdentity/sessionContext/sessionIssuer/userName",
                        role,
                    );
                }
                _ => {}
            }
            v.to_string()
        }
        Kind::Kubernetes => {
            let mut v = t.kubernetes[rng.below(t.kubernetes.len())].clone();
            set(&mut v, "/auditID", rng.uuid());
            set(
                &mut v,
                "/requestReceivedTimestamp",
                time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            );
            let done = time + chrono::Duration::microseconds(rng.below(50_000) as i64);
            set(
                &mut v,
                "/stageTimestamp",
                done.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            );
            let human = v["user"]["username"]
                .as_str()
                .is_some_and(|u| !u.starts_with("system:"));
            if human {
                let user = format!("{}@example.com", pools.user(rng));
                set(&mut v, "/user/username", user);
                set(&mut v, "/sourceIPs", vec![pools.ip(rng).to_owned()]);
            }
            if v.pointer("/objectRef/uid").is_some() {
                set(&mut v, "/objectRef/uid", rng.uuid());
            }
            v.to_string()
        }
        Kind::AccessLog => {
            let line = t.access_log[rng.below(t.access_log.len())];
            let (open, close) = (line.find('[').unwrap(), line.find(']').unwrap());
            format!(
                "{}{}[{}]{}",
                pools.ip(rng),
                &line[line.find(' ').unwrap()..open],
                time.format("%d/%b/%Y:%H:%M:%S +0000"),
                &line[close + 1..]
            )
        }
        Kind::FlaskApp => {
            let mut v = t.flask_app[rng.below(t.flask_app.len())].clone();
            set(
                &mut v,
                "/asctime",
                time.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
            );
            set(&mut v, "/request_id", rng.uuid());
            if v.get("remote_addr").is_some() {
                set(&mut v, "/remote_addr", pools.ip(rng));
            }
            if v.get("username").is_some() {
                let user = pools.user(rng).to_owned();
                set(&mut v, "/username", user);
            }
            v.to_string()
        }
    }
}

/// The share of each source: CloudTrail and Kubernetes audit dominate a cloud SIEM's volume.
fn kind(rng: &mut Rng) -> Kind {
    match rng.below(100) {
        0..35 => Kind::CloudTrail,
        35..65 => Kind::Kubernetes,
        65..85 => Kind::AccessLog,
        _ => Kind::FlaskApp,
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_size(&path);
        } else if let Ok(meta) = entry.metadata() {
            total += meta.len();
        }
    }
    total
}

struct Corpus {
    events: usize,
    raw_bytes: u64,
    generate: Duration,
    index_wall: Duration,
    index_cpu: Option<f64>,
    /// An eventID that occurs once, for the selective query.
    one_event_id: String,
    /// The least frequent CloudTrail IAM user, and how often it occurs.
    rare_user: (String, usize),
    /// IAM users from the most to the least frequent, a spread of 30, for the search page.
    users: Vec<String>,
}

fn build(
    n: usize,
    raw_path: &Path,
    store: &Store,
    from: DateTime<Utc>,
    commit_every: Option<usize>,
) -> Corpus {
    let templates = Templates::new();
    let mut rng = Rng(SEED);
    let pools = Pools::new(&mut rng);
    let mut raw = BufWriter::new(File::create(raw_path).unwrap());
    let received = Utc::now();
    let mut raw_bytes = 0u64;
    let mut one_event_id = String::new();
    let mut users: HashMap<String, usize> = HashMap::new();
    // Everything is generated before indexing starts: tantivy indexes on its own threads after
    // `index_events` returns, so interleaving generation would hide indexing work in it.
    let started = Instant::now();
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        let time = from + chrono::Duration::milliseconds((rng.unit() * (DAY * 1000) as f64) as i64);
        let kind = kind(&mut rng);
        let line = record(&templates, &pools, &mut rng, kind, time);
        if kind == Kind::CloudTrail {
            let v: Value = serde_json::from_str(&line).unwrap();
            if one_event_id.is_empty() && i >= n / 2 {
                one_event_id = v["eventID"].as_str().unwrap().to_owned();
            }
            if v["userIdentity"]["type"] == "IAMUser" {
                if let Some(user) = v["userIdentity"]["userName"].as_str() {
                    *users.entry(user.to_owned()).or_default() += 1;
                }
            }
        }
        let (spec, source) = &templates.specs[kind as usize];
        let id = EventId::derive("vigil bench event", &[&(i as u64).to_le_bytes()]);
        let event: Event = normalise_line(spec, source, line.as_bytes(), id, received, None)
            .unwrap_or_else(|e| panic!("{e}: {line}"));
        raw.write_all(line.as_bytes()).unwrap();
        raw.write_all(b"\n").unwrap();
        raw_bytes += line.len() as u64 + 1;
        events.push(event);
    }
    raw.flush().unwrap();
    let generate = started.elapsed();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    for batch in events.chunks(commit_every.unwrap_or(BATCH)) {
        store.index_events(batch).unwrap();
        if commit_every.is_some() {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
    let index_wall = started.elapsed();
    if commit_every.is_some() {
        // tantivy merges on threads of its own after a commit, and the store has no call that
        // waits for them: the CPU time is read once it stops growing (at most five minutes).
        until_idle(
            cpu_seconds,
            Duration::from_millis(1500),
            Duration::from_secs(300),
        );
    }
    let done = cpu_seconds();
    let index_cpu = cpu.zip(done).map(|(a, b)| b - a);
    drop(events);
    let mut by_count: Vec<(String, usize)> = users.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rare_user = by_count
        .iter()
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        .cloned()
        .unwrap_or_default();
    let step = (by_count.len() / 30).max(1);
    let users = by_count
        .iter()
        .step_by(step)
        .map(|(user, _)| user.clone())
        .collect();
    Corpus {
        events: n,
        raw_bytes,
        generate,
        index_wall,
        index_cpu,
        one_event_id,
        rare_user,
        users,
    }
}

// ---------------------------------------------------------------------------------------------
// The brute-force baseline.

type LinePredicate = Box<dyn Fn(&str, Option<&Value>) -> bool>;

/// What the scan computes for one line; the closure sees the raw line and, when it is JSON,
/// the parsed object.
enum Scan {
    Count(LinePredicate),
    Histogram,
    Top(&'static str),
}

fn line_time(line: &str, v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v {
        Some(v) => {
            for field in ["eventTime", "requestReceivedTimestamp"] {
                if let Some(t) = v[field].as_str() {
                    return DateTime::parse_from_rfc3339(t).ok().map(|t| t.to_utc());
                }
            }
            let t = v["asctime"].as_str()?;
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S,%3f")
                .ok()
                .map(|t| t.and_utc())
        }
        None => {
            let start = line.find('[')? + 1;
            let end = start + line[start..].find(']')?;
            DateTime::parse_from_str(&line[start..end], "%d/%b/%Y:%H:%M:%S %z")
                .ok()
                .map(|t| t.to_utc())
        }
    }
}

fn any_string(v: &Value, test: &dyn Fn(&str) -> bool) -> bool {
    match v {
        Value::String(s) => test(s),
        Value::Array(items) => items.iter().any(|i| any_string(i, test)),
        Value::Object(map) => map.values().any(|i| any_string(i, test)),
        _ => false,
    }
}

/// Runs one scan over the raw file; gives a number to check against the store (matches,
/// events in the histogram, or the top value's count).
fn scan(path: &Path, what: &Scan, from: DateTime<Utc>, interval: i64) -> u64 {
    let reader = BufReader::with_capacity(1 << 20, File::open(path).unwrap());
    let mut matches = 0u64;
    let mut buckets = vec![0u64; (DAY / interval + 1) as usize];
    let mut top: HashMap<String, u64> = HashMap::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let parsed: Option<Value> = if line.starts_with('{') {
            Some(serde_json::from_str(&line).unwrap())
        } else {
            None
        };
        match what {
            Scan::Count(test) => {
                if test(&line, parsed.as_ref()) {
                    matches += 1;
                }
            }
            Scan::Histogram => {
                if let Some(t) = line_time(&line, parsed.as_ref()) {
                    let slot = (t - from).num_milliseconds().div_euclid(interval * 1000);
                    if let Some(b) = usize::try_from(slot).ok().and_then(|s| buckets.get_mut(s)) {
                        *b += 1;
                    }
                }
            }
            Scan::Top(field) => {
                if let Some(value) = parsed.as_ref().and_then(|v| v[*field].as_str()) {
                    *top.entry(value.to_owned()).or_default() += 1;
                }
            }
        }
    }
    match what {
        Scan::Count(_) => matches,
        Scan::Histogram => buckets.iter().sum(),
        Scan::Top(_) => {
            let mut counts: Vec<(String, u64)> = top.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(TOP);
            counts.first().map_or(0, |c| c.1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Queries and the report.

enum Indexed {
    Search(String),
    Histogram,
    Facets(&'static str),
}

struct Case {
    name: &'static str,
    shown: String,
    indexed: Indexed,
    scan: Scan,
    /// Targets apply to selective queries; aggregations over every event are reported.
    selective: bool,
}

fn cases(corpus: &Corpus) -> Vec<Case> {
    let id = corpus.one_event_id.clone();
    let user = corpus.rare_user.0.clone();
    let lower = |s: &Value| s.as_str().map(str::to_lowercase);
    vec![
        Case {
            name: "selective term",
            shown: format!("eventID:{id}"),
            indexed: Indexed::Search(format!("eventID:{id}")),
            scan: Scan::Count(Box::new(move |_, v| {
                v.is_some_and(|v| v["eventID"].as_str() == Some(id.as_str()))
            })),
            selective: true,
        },
        Case {
            name: "rare user",
            shown: format!("userIdentity.userName:{user}"),
            indexed: Indexed::Search(format!("userIdentity.userName:{user}")),
            scan: Scan::Count(Box::new(move |_, v| {
                v.is_some_and(|v| v["userIdentity"]["userName"].as_str() == Some(user.as_str()))
            })),
            selective: true,
        },
        Case {
            name: "nested field",
            shown: "objectRef.resource:secrets".to_owned(),
            indexed: Indexed::Search("objectRef.resource:secrets".to_owned()),
            scan: Scan::Count(Box::new(move |_, v| {
                v.and_then(|v| v.pointer("/objectRef/resource"))
                    .and_then(lower)
                    .is_some_and(|r| r == "secrets")
            })),
            selective: true,
        },
        Case {
            name: "leading wildcard",
            shown: "userIdentity.arn:*admin*".to_owned(),
            indexed: Indexed::Search("userIdentity.arn:*admin*".to_owned()),
            scan: Scan::Count(Box::new(move |_, v| {
                v.and_then(|v| v.pointer("/userIdentity/arn"))
                    .and_then(lower)
                    .is_some_and(|a| a.contains("admin"))
            })),
            selective: true,
        },
        Case {
            name: "phrase",
            shown: "\"login failed\"".to_owned(),
            indexed: Indexed::Search("\"login failed\"".to_owned()),
            scan: Scan::Count(Box::new(|line, v| {
                let test = |s: &str| s.to_lowercase().contains("login failed");
                match v {
                    Some(v) => any_string(v, &test),
                    None => test(line),
                }
            })),
            selective: true,
        },
        Case {
            name: "histogram 24 h",
            shown: "* by time".to_owned(),
            indexed: Indexed::Histogram,
            scan: Scan::Histogram,
            selective: false,
        },
        Case {
            name: "top values",
            shown: format!("* top {TOP} eventName"),
            indexed: Indexed::Facets("eventName"),
            scan: Scan::Top("eventName"),
            selective: false,
        },
    ]
}

/// Runs the indexed form once; gives the number to check against the scan.
fn run_indexed(store: &Store, what: &Indexed, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    match what {
        Indexed::Search(q) => {
            let request = SearchRequest {
                from: Some(from),
                to: Some(to),
                ..SearchRequest::new(q.clone(), HITS)
            };
            store.search(&request).unwrap().total
        }
        Indexed::Histogram => store
            .histogram(
                "",
                &vigil_store::Visibility::everything(),
                Some(from),
                Some(to),
            )
            .unwrap()
            .buckets
            .iter()
            .map(|b| b.count)
            .sum(),
        Indexed::Facets(field) => store
            .facets(
                "",
                &vigil_store::Visibility::everything(),
                field,
                TOP,
                Some(from),
                Some(to),
            )
            .unwrap()
            .values
            .first()
            .map_or(0, |v| v.count),
    }
}

/// Nearest-rank percentile: with 20 runs, p99 is the slowest run.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn main() {
    // The `vigil` binary's allocator and options, so the figures are the binary's.
    vigil_allocator::configure();
    let n = env_usize("VIGIL_BENCH_EVENTS", 1_000_000).max(1);
    let repeats = env_usize("VIGIL_BENCH_REPEATS", 20).max(1);
    let scan_repeats = env_usize("VIGIL_BENCH_SCAN_REPEATS", 3).max(1);
    let only = std::env::var("VIGIL_BENCH_ONLY").ok();
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("raw.ndjson");
    let store_dir = dir.path().join("store");
    // The day before the run, so that the newest events land in today's partition and the
    // rest in yesterday's, as a live deployment sees them.
    // On a whole second: CloudTrail and access-log times have whole seconds, and an event in
    // the range's first second would otherwise be truncated to before it.
    let to = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let from = to - chrono::Duration::seconds(DAY);

    println!("store_throughput: {n} events over {from} .. {to}");
    let store = Store::open(&store_dir).unwrap();
    let commit_every = Some(env_usize("VIGIL_BENCH_COMMIT_EVERY", 0)).filter(|&n| n > 0);
    let corpus = build(n, &raw_path, &store, from, commit_every);
    assert_eq!(store.event_count().unwrap(), n as u64);

    let mb = corpus.raw_bytes as f64 / 1e6;
    let wall = corpus.index_wall.as_secs_f64();
    println!(
        "\ncorpus: {} events, {:.1} MB raw ({:.0} B/event), generated in {:.1} s (not counted)",
        corpus.events,
        mb,
        corpus.raw_bytes as f64 / n as f64,
        corpus.generate.as_secs_f64()
    );
    match commit_every {
        None => println!("\nindexing (index_events in batches of {BATCH}, one commit at the end)"),
        Some(every) => println!(
            "\nindexing (index_events and a commit every {every} events; CPU until merges end)"
        ),
    }
    println!(
        "  wall      {:>8.2} s {:>8.1} MB/s {:>10.0} events/s",
        wall,
        mb / wall,
        n as f64 / wall
    );
    match corpus.index_cpu {
        Some(cpu) if cpu > 0.0 => {
            let per_core = mb / cpu;
            println!(
                "  per core  {:>8.2} s {:>8.1} MB/s {:>10.0} events/s  (CPU time of all threads; \
                 target >= {TARGET_INDEX_MB_S} MB/s: {})",
                cpu,
                per_core,
                n as f64 / cpu,
                verdict(per_core >= TARGET_INDEX_MB_S)
            );
        }
        _ => println!("  per core  (no CPU time available on this platform)"),
    }

    if only.as_deref() == Some("search_page") {
        search_page_case(&store, &corpus, from, to);
        return;
    }

    let interval = interval_for(DAY);
    println!(
        "\nqueries over the 24 h range: indexed x{repeats} (first page of {HITS} hits), \
         scan of the raw file x{scan_repeats}"
    );
    println!(
        "  {:<17} {:<52} {:>9} {:>9} {:>10} {:>9} {:>9}  targets",
        "query", "text", "p50 ms", "p99 ms", "scan p50", "speed-up", "count"
    );
    let mut worst_p99 = Duration::ZERO;
    for case in cases(&corpus) {
        let mut times = Vec::with_capacity(repeats);
        let mut indexed_count = 0;
        for _ in 0..repeats {
            let started = Instant::now();
            indexed_count = std::hint::black_box(run_indexed(&store, &case.indexed, from, to));
            times.push(started.elapsed());
        }
        times.sort();
        let mut scans = Vec::with_capacity(scan_repeats);
        let mut scan_count = 0;
        for _ in 0..scan_repeats {
            let started = Instant::now();
            scan_count = std::hint::black_box(scan(&raw_path, &case.scan, from, interval));
            scans.push(started.elapsed());
        }
        scans.sort();
        let (p50, p99, scan_p50) = (
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&scans, 0.5),
        );
        worst_p99 = worst_p99.max(p99);
        let speedup = scan_p50.as_secs_f64() / p50.as_secs_f64();
        let count = if indexed_count == scan_count {
            format!("{indexed_count}")
        } else {
            format!("{indexed_count}!={scan_count}")
        };
        let targets = if case.selective {
            format!(
                "x100 {}, p99 {}",
                verdict(speedup >= TARGET_SPEEDUP),
                verdict(p99 < TARGET_P99)
            )
        } else {
            format!("p99 {}", verdict(p99 < TARGET_P99))
        };
        let mut shown = case.shown.clone();
        if shown.len() > 52 {
            shown.truncate(49);
            shown.push_str("...");
        }
        println!(
            "  {:<17} {:<52} {:>9.2} {:>9.2} {:>10.1} {:>8.0}x {:>9}  {}",
            case.name,
            shown,
            ms(p50),
            ms(p99),
            ms(scan_p50),
            speedup,
            count,
            targets
        );
    }
    println!(
        "  (count: hits, events in the histogram, or the top value's count; the store's and \
         the scan's agree unless shown as store!=scan. rare user occurs {} times.)",
        corpus.rare_user.1
    );

    let page_p99 = search_page_case(&store, &corpus, from, to);

    // Measured last, so that merges started by the commit have had the query phase to finish.
    let index_bytes = dir_size(&store_dir);
    println!(
        "\non disk: index {:.1} MB against {:.1} MB raw = {:.2}x raw",
        index_bytes as f64 / 1e6,
        mb,
        index_bytes as f64 / corpus.raw_bytes as f64
    );
    println!(
        "targets at {n} events: indexing >= {TARGET_INDEX_MB_S} MB/s per core, selective \
         queries >= {TARGET_SPEEDUP}x the scan, p99 < {} ms (worst p99 here {:.1} ms), \
         search page p99 < {} ms (here {:.1} ms)",
        TARGET_P99.as_millis(),
        ms(worst_p99),
        TARGET_PAGE_P99.as_millis(),
        ms(page_p99)
    );
}
