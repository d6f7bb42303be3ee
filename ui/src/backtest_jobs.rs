//! Backtests as background jobs: a rule (stored, or pasted YAML) run over the stored events of
//! a time range, with progress to read while it runs and its results once done.
//!
//! The ui crate does not depend on the detection engine: the process that loads rules
//! implements [`Backtester`], and this module only keeps the jobs. Everything here is bounded,
//! since a request's author chooses the range and the rule: a job scans at most
//! [`BacktestLimits::max_events`] events and keeps at most so many matches and alerts (the
//! totals are still counted); a person runs at most [`BacktestLimits::per_owner`] jobs at once
//! and the process [`BacktestLimits::running`]; finished jobs are forgotten after
//! [`BacktestLimits::keep_finished`], and at most [`BacktestLimits::kept`] are kept at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use vigil_event::{Event, Level};
use vigil_store::{Store, Visibility};

/// The longest pasted rule text taken, in bytes: rules are a few kilobytes.
pub const MAX_YAML_BYTES: usize = 256 * 1024;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacktestRule {
    /// A loaded rule or correlation, by id (disabled ones included: a backtest is how one
    /// decides to enable a rule).
    Stored(String),
    /// Rule text, as a rule file holds it (one or more documents).
    Yaml(String),
}

/// The few fields a matched event is shown by; given by the pages, so a backtest's rows read
/// like the search page's.
pub type Summariser = fn(&Event, &Map<String, Value>) -> Vec<(String, String)>;

/// One backtest's parameters.
#[derive(Debug, Clone)]
pub struct BacktestRequest {
    /// Events with `from <= time < to`, oldest first.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// What the requester may see: a backtest never reads events a search would hide.
    pub visibility: Visibility,
    pub max_events: u64,
    pub max_matches: usize,
    pub summarise: Summariser,
}

/// A rule document that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub line: usize,
    pub reason: String,
}

/// Why a backtest could not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BacktestError {
    #[error("the rule does not load")]
    Rule { problems: Vec<RuleProblem> },
    #[error("no loaded rule has id {id:?}")]
    UnknownRule { id: String },
    #[error("{message}")]
    Invalid { message: String },
    /// Something on our side failed; details went to the log.
    #[error("the backtest failed; see the server's log")]
    Failed,
}

/// A stored event one of the rules matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedEvent {
    pub id: String,
    pub time: DateTime<Utc>,
    pub source_kind: String,
    pub source_name: String,
    /// Ids of the rules that matched it.
    pub rules: Vec<String>,
    /// Its key fields, as [`BacktestRequest::summarise`] picked them.
    pub fields: Vec<(String, String)>,
}

/// An alert the rule would have raised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WouldAlert {
    pub rule_id: String,
    pub rule_title: String,
    pub level: Level,
    /// The time of its (last) event.
    pub time: DateTime<Utc>,
    /// A correlation's group-by values.
    pub group: BTreeMap<String, String>,
    pub event_ids: Vec<String>,
}

/// What a finished backtest found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BacktestReport {
    /// Ids of the rules and correlations that ran (a correlation brings the rules it counts).
    pub rules: Vec<String>,
    pub events_scanned: u64,
    /// Whether the range held more events than the backtest may scan.
    pub scan_truncated: bool,
    /// Events any of the rules matched, all counted.
    pub matched_events: u64,
    /// The first of them, at most the request's `max_matches`.
    pub matches: Vec<MatchedEvent>,
    pub matches_truncated: bool,
    /// Alerts it would have raised, all counted.
    pub alerts_total: u64,
    /// The first of them, at most the request's `max_matches`.
    pub alerts: Vec<WouldAlert>,
    pub alerts_truncated: bool,
    pub elapsed_ms: u64,
}

/// How far a running backtest is; shared between the job and whoever reads it.
#[derive(Debug, Default)]
pub struct BacktestProgress {
    scanned: AtomicU64,
    estimated_total: AtomicU64,
}

impl BacktestProgress {
    pub fn set_estimated_total(&self, total: u64) {
        self.estimated_total.store(total, Ordering::Relaxed);
    }

    pub fn add_scanned(&self, events: u64) {
        self.scanned.fetch_add(events, Ordering::Relaxed);
    }

    pub fn scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    pub fn estimated_total(&self) -> u64 {
        self.estimated_total.load(Ordering::Relaxed)
    }
}

/// A rule made ready to run: parsed, checked, and with whatever it refers to.
pub trait PreparedBacktest: Send {
    /// Ids of the rules and correlations it runs.
    fn rules(&self) -> Vec<String>;
    /// Runs it to the end (blocking: call it off the async workers).
    fn run(
        self: Box<Self>,
        store: &Store,
        request: &BacktestRequest,
        progress: &BacktestProgress,
    ) -> Result<BacktestReport, BacktestError>;
}

/// Prepares backtests from the rules of the process that detects.
pub trait Backtester: Send + Sync {
    /// Parses pasted rule text, or finds a loaded rule; errors say which line and why.
    fn prepare(&self, rule: &BacktestRule) -> Result<Box<dyn PreparedBacktest>, BacktestError>;
}

/// How many jobs may run, and how much each may do and keep.
#[derive(Debug, Clone, Copy)]
pub struct BacktestLimits {
    pub max_events: u64,
    pub max_matches: usize,
    /// Jobs one person (or token) may have running at once.
    pub per_owner: usize,
    /// Jobs the process runs at once.
    pub running: usize,
    pub keep_finished: Duration,
    /// Jobs kept in all, running or finished.
    pub kept: usize,
}

impl Default for BacktestLimits {
    fn default() -> Self {
        BacktestLimits {
            max_events: 1_000_000,
            max_matches: 500,
            per_owner: 2,
            running: 4,
            keep_finished: Duration::from_secs(3600),
            kept: 200,
        }
    }
}

/// What a job says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub owner: String,
    /// What it runs: a rule id, or `pasted rule`.
    pub rule: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub started: DateTime<Utc>,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    pub events_scanned: u64,
    /// How many events the range held when the job started.
    pub estimated_total: u64,
    /// The rules it runs.
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<BacktestReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BacktestError>,
}

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error("{0}")]
    Busy(String),
}

struct Job {
    id: String,
    owner: String,
    rule: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    started: DateTime<Utc>,
    rules: Vec<String>,
    progress: BacktestProgress,
    outcome: Mutex<Option<(Instant, Result<BacktestReport, BacktestError>)>>,
    running: AtomicBool,
}

/// The jobs of one process.
pub struct BacktestJobs {
    backtester: Arc<dyn Backtester>,
    limits: BacktestLimits,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// A poisoned lock only means a panic elsewhere while it was held; the map is always whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl BacktestJobs {
    pub fn new(backtester: Arc<dyn Backtester>, limits: BacktestLimits) -> Self {
        BacktestJobs {
            backtester,
            limits,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> BacktestLimits {
        self.limits
    }

    /// Prepares `rule` and starts running it on a thread of its own; gives the job's id.
    /// Blocking (it parses the rule): call it off the async workers.
    pub fn start(
        &self,
        store: Arc<Store>,
        owner: &str,
        rule: BacktestRule,
        request: BacktestRequest,
    ) -> Result<String, StartError> {
        if request.to <= request.from {
            return Err(BacktestError::Invalid {
                message: "`to` must be after `from`".into(),
            }
            .into());
        }
        if let BacktestRule::Yaml(text) = &rule {
            if text.len() > MAX_YAML_BYTES {
                return Err(BacktestError::Invalid {
                    message: format!("the rule text is over {MAX_YAML_BYTES} bytes"),
                }
                .into());
            }
        }
        // Refused before the rule is parsed, so that a busy caller costs nothing.
        self.admit(&mut lock(&self.jobs), owner)?;
        let prepared = self.backtester.prepare(&rule)?;
        let job = Arc::new(Job {
            id: new_id(),
            owner: owner.to_owned(),
            rule: match &rule {
                BacktestRule::Stored(id) => id.clone(),
                BacktestRule::Yaml(_) => "pasted rule".to_owned(),
            },
            from: request.from,
            to: request.to,
            started: Utc::now(),
            rules: prepared.rules(),
            progress: BacktestProgress::default(),
            outcome: Mutex::new(None),
            running: AtomicBool::new(true),
        });
        {
            // Checked again: others may have started jobs while this one was prepared.
            let mut jobs = lock(&self.jobs);
            self.admit(&mut jobs, owner)?;
            jobs.insert(job.id.clone(), job.clone());
        }
        let worker = job.clone();
        let spawned = std::thread::Builder::new()
            .name("backtest".into())
            .spawn(move || {
                // A panic must still end the job, or it would hold its place for good.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prepared.run(&store, &request, &worker.progress)
                }))
                .unwrap_or(Err(BacktestError::Failed));
                if let Err(error) = &outcome {
                    tracing::warn!(job = %worker.id, %error, "backtest failed");
                }
                *lock(&worker.outcome) = Some((Instant::now(), outcome));
                worker.running.store(false, Ordering::Release);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a backtest thread");
            lock(&self.jobs).remove(&job.id);
            return Err(BacktestError::Failed.into());
        }
        Ok(job.id.clone())
    }

    /// The job `id` as `reader` may see it: their own, or any for an admin. Another's job
    /// and an unknown one look the same, so ids cannot be probed.
    pub fn get(&self, id: &str, reader: &str, admin: bool) -> Option<JobView> {
        let job = lock(&self.jobs).get(id).cloned()?;
        if !admin && job.owner != reader {
            return None;
        }
        let outcome = lock(&job.outcome)
            .as_ref()
            .map(|(_, result)| result.clone());
        let (state, report, error) = match outcome {
            None => ("running", None, None),
            Some(Ok(report)) => ("done", Some(report), None),
            Some(Err(error)) => ("failed", None, Some(error)),
        };
        Some(JobView {
            id: job.id.clone(),
            owner: job.owner.clone(),
            rule: job.rule.clone(),
            from: job.from,
            to: job.to,
            started: job.started,
            state,
            events_scanned: job.progress.scanned(),
            estimated_total: job.progress.estimated_total(),
            rules: job.rules.clone(),
            report,
            error,
        })
    }

    /// Whether `owner` may start another job now; forgets finished jobs kept long enough.
    fn admit(&self, jobs: &mut HashMap<String, Arc<Job>>, owner: &str) -> Result<(), StartError> {
        self.forget_old(jobs);
        let running: Vec<&Arc<Job>> = jobs
            .values()
            .filter(|job| job.running.load(Ordering::Acquire))
            .collect();
        if running.iter().filter(|job| job.owner == owner).count() >= self.limits.per_owner {
            return Err(StartError::Busy(format!(
                "you already have {} backtests running; wait for one to finish",
                self.limits.per_owner
            )));
        }
        if running.len() >= self.limits.running {
            return Err(StartError::Busy(
                "the server is running as many backtests as it may; try again shortly".into(),
            ));
        }
        if jobs.len() >= self.limits.kept {
            return Err(StartError::Busy(
                "too many backtests are kept; try again later".into(),
            ));
        }
        Ok(())
    }

    fn forget_old(&self, jobs: &mut HashMap<String, Arc<Job>>) {
        let keep = self.limits.keep_finished;
        jobs.retain(|_, job| match lock(&job.outcome).as_ref() {
            Some((finished, _)) => finished.elapsed() < keep,
            None => true,
        });
    }
}

/// A job id: 16 random bytes in hex, so ids cannot be guessed.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness ids only need to be distinct; the owner check still holds.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Runs until the test drops (or sends on) the job's channel.
    struct Waiting(Mutex<Vec<mpsc::Receiver<()>>>);

    struct WaitingRun(mpsc::Receiver<()>);

    impl Backtester for Waiting {
        fn prepare(&self, _: &BacktestRule) -> Result<Box<dyn PreparedBacktest>, BacktestError> {
            let receiver = lock(&self.0).pop().expect("a channel per job");
            Ok(Box::new(WaitingRun(receiver)))
        }
    }

    impl PreparedBacktest for WaitingRun {
        fn rules(&self) -> Vec<String> {
            vec!["r".into()]
        }

        fn run(
            self: Box<Self>,
            _: &Store,
            _: &BacktestRequest,
            progress: &BacktestProgress,
        ) -> Result<BacktestReport, BacktestError> {
            progress.add_scanned(1);
            let _ = self.0.recv();
            Ok(BacktestReport::default())
        }
    }

    fn request() -> BacktestRequest {
        BacktestRequest {
            from: Utc::now() - chrono::Duration::hours(1),
            to: Utc::now(),
            visibility: Visibility::everything(),
            max_events: 10,
            max_matches: 10,
            summarise: |_, _| Vec::new(),
        }
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{what}");
    }

    #[test]
    fn each_owner_and_the_process_run_a_bounded_number_of_jobs() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..8).map(|_| mpsc::channel()).unzip();
        let jobs = BacktestJobs::new(
            Arc::new(Waiting(Mutex::new(receivers))),
            BacktestLimits {
                per_owner: 2,
                running: 3,
                keep_finished: Duration::ZERO,
                ..BacktestLimits::default()
            },
        );
        let start = |owner: &str| {
            jobs.start(
                store.clone(),
                owner,
                BacktestRule::Yaml("x".into()),
                request(),
            )
        };
        let first = start("alice").unwrap();
        start("alice").unwrap();
        assert!(matches!(start("alice"), Err(StartError::Busy(_))));
        start("bob").unwrap();
        // Three running in all: bob may not start a second.
        assert!(matches!(start("bob"), Err(StartError::Busy(_))));
        // Alice's job is hers and an admin's only.
        let view = jobs.get(&first, "alice", false).unwrap();
        assert_eq!(view.state, "running");
        assert!(jobs.get(&first, "bob", false).is_none());
        assert!(jobs.get(&first, "bob", true).is_some());
        assert!(jobs.get("no-such-job", "alice", true).is_none());
        // A backwards range is refused before anything runs.
        let mut backwards = request();
        backwards.to = backwards.from;
        assert!(matches!(
            jobs.start(
                store.clone(),
                "carol",
                BacktestRule::Yaml("x".into()),
                backwards
            ),
            Err(StartError::Backtest(BacktestError::Invalid { .. }))
        ));

        drop(senders);
        wait_until("the jobs to finish", || {
            jobs.get(&first, "alice", false)
                .is_some_and(|view| view.state == "done")
        });
        // Finished jobs free their places, and are forgotten once kept long enough.
        wait_until("alice's jobs to free their places", || {
            start("alice").is_ok()
        });
        assert!(jobs.get(&first, "alice", false).is_none());
    }
}
