//! The CloudWatch Logs pull source: polls log groups with `FilterLogEvents`.
//!
//! - **Windows.** Each poll reads a time window per log group that ends `lag` before now, so
//!   events CloudWatch has not made searchable yet are not skipped for good. The next window
//!   starts `overlap` before the previous one ended, to catch events that still arrived late.
//!   A log group far behind (a first start, or after downtime) is walked in windows of at most
//!   `max_window` each, so its checkpoint moves forward while it catches up.
//! - **De-duplication.** The overlap reads some events twice; the ids seen at or after the
//!   start of the next window are kept in the checkpoint and skipped when they come again.
//!   Event ids on the bus derive from the log group, the CloudWatch `eventId` and the event's
//!   content, so even an event read again after a crash is the same event, and the index
//!   keeps one copy. (CloudWatch never changes an event under its id; should anything else
//!   answer with other content under a known id, that is kept as another event, never
//!   written over the first.)
//! - **Checkpoints.** One file per log group, replaced atomically, and only after the bus
//!   acknowledged every event of the window. A crash re-reads at most the unfinished window.
//! - **Limits.** `nextToken` is followed through empty pages, since CloudWatch may return an
//!   empty page before the search is done. Throttling and other transient errors are retried
//!   by the SDK, then by our own loop with exponential backoff and jitter.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use chrono::{TimeZone, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{LogGroupOverride, LogGroupRecogniser};
use crate::checkpoint::write_json_atomically;
use crate::{IncomingRecord, IngestError, Ingestor, SourceSpec};

#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    /// Names this source in logs; the checkpoint directory is its own.
    pub name: String,
    /// Log groups read by exact name.
    pub log_groups: Vec<String>,
    /// Every log group whose name starts with one of these is read too.
    pub log_group_prefixes: Vec<String>,
    /// Overrides the region of the standard AWS chain.
    pub region: Option<String>,
    /// Sends requests here instead of the region's endpoint (a proxy, a VPC endpoint, moto).
    pub endpoint_url: Option<String>,
    pub poll_interval: Duration,
    /// How far behind now every window ends.
    pub lag: Duration,
    /// How far each window reaches back into the one before.
    pub overlap: Duration,
    /// Where a log group without a checkpoint starts, before now.
    pub start_lookback: Duration,
    /// The most new time one window covers.
    pub max_window: Duration,
    /// How often prefixes are listed again to find new log groups.
    pub discovery_interval: Duration,
    /// The most events per `FilterLogEvents` page (1 to 10,000); the API's default if unset.
    pub page_size: Option<i32>,
    pub checkpoint_dir: PathBuf,
    pub overrides: Vec<LogGroupOverride>,
}

impl CloudWatchConfig {
    /// A config with the default timings, for `name`'s log groups.
    pub fn new(name: impl Into<String>, checkpoint_dir: PathBuf) -> Self {
        CloudWatchConfig {
            name: name.into(),
            log_groups: Vec::new(),
            log_group_prefixes: Vec::new(),
            region: None,
            endpoint_url: None,
            poll_interval: Duration::from_secs(10),
            lag: Duration::from_secs(15),
            overlap: Duration::from_secs(60),
            start_lookback: Duration::from_secs(15 * 60),
            max_window: Duration::from_secs(5 * 60),
            discovery_interval: Duration::from_secs(60),
            page_size: None,
            checkpoint_dir,
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("CloudWatch source {0:?}: configure at least one log group or prefix")]
    NoLogGroups(String),
    #[error("invalid log group name or prefix {0:?}")]
    InvalidLogGroup(String),
    #[error("CloudWatch source {name:?}: {message}")]
    InvalidConfig { name: String, message: String },
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is unreadable: {message}")]
    CorruptCheckpoint { path: PathBuf, message: String },
}

/// Window timings in milliseconds, as the CloudWatch API counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowPolicy {
    lag_ms: i64,
    overlap_ms: i64,
    start_lookback_ms: i64,
    max_window_ms: i64,
}

impl WindowPolicy {
    fn from_config(config: &CloudWatchConfig) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        WindowPolicy {
            lag_ms: ms(config.lag),
            overlap_ms: ms(config.overlap),
            start_lookback_ms: ms(config.start_lookback),
            max_window_ms: ms(config.max_window).max(1),
        }
    }
}

/// A time range to search, both ends inclusive as `FilterLogEvents` treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start_ms: i64,
    end_ms: i64,
}

/// How far a log group has been read: what a checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct GroupProgress {
    /// The end of the last window whose events the bus acknowledged.
    end_ms: Option<i64>,
    /// Ids of events at or after the next window's start, with their timestamps.
    seen: HashMap<String, i64>,
}

impl GroupProgress {
    /// The next window to read at `now_ms`, or none while there is no new time to cover.
    fn next_window(&self, now_ms: i64, policy: WindowPolicy) -> Option<Window> {
        let target_end = now_ms.saturating_sub(policy.lag_ms);
        match self.end_ms {
            Some(previous_end) => {
                let end = target_end.min(previous_end.saturating_add(policy.max_window_ms));
                // A clock that stepped back leaves nothing new to read yet.
                (end > previous_end).then(|| Window {
                    start_ms: previous_end.saturating_sub(policy.overlap_ms),
                    end_ms: end,
                })
            }
            None => {
                let start = target_end.saturating_sub(policy.start_lookback_ms);
                // Even an empty first window records where reading began.
                Some(Window {
                    start_ms: start,
                    end_ms: target_end.min(start.saturating_add(policy.max_window_ms)),
                })
            }
        }
    }
}

/// One window being read: which events are new, and the progress once it is done.
struct WindowWalk {
    window: Window,
    overlap_ms: i64,
    /// Ids from the previous window's overlap and those read in this one.
    known: HashMap<String, i64>,
}

impl WindowWalk {
    fn new(window: Window, progress: &GroupProgress, overlap_ms: i64) -> Self {
        WindowWalk {
            window,
            overlap_ms,
            known: progress.seen.clone(),
        }
    }

    /// True the first time an event id comes up.
    fn admit(&mut self, id: &str, timestamp_ms: i64) -> bool {
        if self.known.contains_key(id) {
            return false;
        }
        self.known.insert(id.to_owned(), timestamp_ms);
        true
    }

    /// The progress after every admitted event was acknowledged.
    fn finish(self) -> GroupProgress {
        let next_start = self.window.end_ms.saturating_sub(self.overlap_ms);
        let mut seen = self.known;
        seen.retain(|_, timestamp| *timestamp >= next_start);
        GroupProgress {
            end_ms: Some(self.window.end_ms),
            seen,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    log_group: String,
    window_end_ms: i64,
    /// `[eventId, timestamp]` pairs.
    seen: Vec<(String, i64)>,
}

/// Why one log group could not be read this time; the next poll tries again.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("shutting down")]
    Stopped,
    #[error("{0}")]
    Api(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Our own attempts per call, each after the SDK's own retries gave up.
const MAX_ATTEMPTS: u32 = 6;
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Reads CloudWatch log groups into the bus.
pub struct CloudWatchSource {
    config: CloudWatchConfig,
    policy: WindowPolicy,
    ingestor: Arc<Ingestor>,
    recogniser: LogGroupRecogniser,
    progress: HashMap<String, GroupProgress>,
    /// Log groups found under the prefixes at the last successful listing of each.
    discovered: HashMap<String, BTreeSet<String>>,
}

impl CloudWatchSource {
    /// Checks the config and loads the checkpoints. A corrupt checkpoint is an error rather
    /// than a silent restart from the lookback, which could skip events.
    pub fn new(config: CloudWatchConfig, ingestor: Arc<Ingestor>) -> Result<Self, CloudWatchError> {
        if config.log_groups.is_empty() && config.log_group_prefixes.is_empty() {
            return Err(CloudWatchError::NoLogGroups(config.name.clone()));
        }
        for name in config.log_groups.iter().chain(&config.log_group_prefixes) {
            if !valid_log_group_name(name) {
                return Err(CloudWatchError::InvalidLogGroup(name.clone()));
            }
        }
        let invalid = |message: &str| CloudWatchError::InvalidConfig {
            name: config.name.clone(),
            message: message.to_owned(),
        };
        if config.max_window.is_zero() {
            return Err(invalid("max_window must be positive"));
        }
        if config
            .page_size
            .is_some_and(|size| !(1..=10_000).contains(&size))
        {
            return Err(invalid("page_size must be 1 to 10000"));
        }
        let progress = load_checkpoints(&config.checkpoint_dir)?;
        Ok(CloudWatchSource {
            policy: WindowPolicy::from_config(&config),
            recogniser: LogGroupRecogniser::new(config.overrides.clone()),
            config,
            ingestor,
            progress,
            discovered: HashMap::new(),
        })
    }

    /// Polls until `shutdown` turns true. Errors reading one log group are logged, counted
    /// and retried on the next poll; they never stop the source.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), CloudWatchError> {
        let client = self.client().await;
        let mut last_discovery: Option<Instant> = None;
        while !*shutdown.borrow() {
            if last_discovery.is_none_or(|at| at.elapsed() >= self.config.discovery_interval) {
                if let Err(PollError::Stopped) = self.discover(&client, &mut shutdown).await {
                    return Ok(());
                }
                last_discovery = Some(Instant::now());
            }
            for group in self.log_groups() {
                match self.poll_group(&client, &group, &mut shutdown).await {
                    Ok(()) => {}
                    Err(PollError::Stopped) => return Ok(()),
                    Err(error) => {
                        tracing::warn!(source = %self.config.name, log_group = %group, %error, "cannot read log group; will retry");
                        metrics::counter!("vigil_source_errors_total", "source" => crate::source_label(&group))
                            .increment(1);
                    }
                }
            }
            if !sleep_or_stop(self.config.poll_interval, &mut shutdown).await {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn client(&self) -> aws_sdk_cloudwatchlogs::Client {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
        if let Some(region) = &self.config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.config.endpoint_url {
            loader = loader.endpoint_url(endpoint.clone());
        }
        aws_sdk_cloudwatchlogs::Client::new(&loader.load().await)
    }

    fn log_groups(&self) -> Vec<String> {
        let mut groups: BTreeSet<String> = self.config.log_groups.iter().cloned().collect();
        groups.extend(self.discovered.values().flatten().cloned());
        groups.into_iter().collect()
    }

    /// Lists the log groups under each prefix. A prefix that cannot be listed keeps the
    /// groups it had, so a throttled listing does not pause their reading.
    async fn discover(
        &mut self,
        client: &aws_sdk_cloudwatchlogs::Client,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PollError> {
        for prefix in self.config.log_group_prefixes.clone() {
            let mut found = BTreeSet::new();
            let mut token: Option<String> = None;
            let listed = loop {
                let page = with_backoff(&prefix, shutdown, || {
                    client
                        .describe_log_groups()
                        .log_group_name_prefix(&prefix)
                        .set_next_token(token.clone())
                        .send()
                })
                .await;
                let page = match page {
                    Ok(page) => page,
                    Err(error) => break Err(error),
                };
                for group in page.log_groups() {
                    match group.log_group_name() {
                        Some(name) if valid_log_group_name(name) => {
                            found.insert(name.to_owned());
                        }
                        Some(name) => {
                            tracing::warn!(
                                log_group = name,
                                "skipping a log group Vigil cannot name a source after"
                            )
                        }
                        None => {}
                    }
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break Ok(());
                }
            };
            match listed {
                Ok(()) => {
                    self.discovered.insert(prefix, found);
                }
                Err(PollError::Stopped) => return Err(PollError::Stopped),
                Err(error) => {
                    tracing::warn!(source = %self.config.name, %prefix, %error, "cannot list log groups; keeping the last list");
                    metrics::counter!("vigil_source_errors_total", "source" => crate::source_label(&self.config.name))
                        .increment(1);
                }
            }
        }
        Ok(())
    }

    /// Reads `group` window by window until it is caught up to `lag` before now.
    async fn poll_group(
        &mut self,
        client: &aws_sdk_cloudwatchlogs::Client,
        group: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PollError> {
        loop {
            let now_ms = Utc::now().timestamp_millis();
            let progress = self.progress.entry(group.to_owned()).or_default();
            if let Some(end) = progress.end_ms {
                set_lag(group, now_ms, end);
            }
            let Some(window) = progress.next_window(now_ms, self.policy) else {
                return Ok(());
            };
            let mut walk = WindowWalk::new(window, progress, self.policy.overlap_ms);
            let mut token: Option<String> = None;
            loop {
                let page = with_backoff(group, shutdown, || {
                    client
                        .filter_log_events()
                        .log_group_name(group)
                        .start_time(window.start_ms)
                        .end_time(window.end_ms)
                        .set_limit(self.config.page_size)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
                let fresh: Vec<&FilteredLogEvent> = page
                    .events()
                    .iter()
                    .filter(|event| walk.admit(&dedupe_id(event), event.timestamp().unwrap_or(0)))
                    .collect();
                self.deliver(group, &fresh).await?;
                // An empty page with a token only means this part of the search found nothing.
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let progress = walk.finish();
            if let Err(source) = save_checkpoint(&self.config.checkpoint_dir, group, &progress) {
                // Kept in memory; a restart before the next save re-reads without duplicates.
                tracing::error!(log_group = group, error = %source, "cannot write the CloudWatch checkpoint");
                metrics::counter!("vigil_source_errors_total", "source" => crate::source_label(group))
                    .increment(1);
            }
            self.progress.insert(group.to_owned(), progress);
            set_lag(group, now_ms, window.end_ms);
            if window.end_ms >= now_ms.saturating_sub(self.policy.lag_ms) {
                return Ok(());
            }
            if *shutdown.borrow() {
                return Err(PollError::Stopped);
            }
        }
    }

    /// Hands one page's new events to the ingestor, returning once they are durable.
    async fn deliver(&self, group: &str, events: &[&FilteredLogEvent]) -> Result<(), PollError> {
        // Consecutive events of one kind go together, as the records of one delivery.
        let mut batches: Vec<(SourceSpec, Vec<IncomingRecord>)> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let message = event.message().unwrap_or_default();
            let stream = event.log_stream_name().unwrap_or_default();
            let spec = self.recogniser.recognise(group, stream, message);
            let mut key = group.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(dedupe_id(event).as_bytes());
            let record = IncomingRecord {
                bytes: message.as_bytes(),
                position: index as u64 + 1,
                key: Some(key),
                time: event
                    .timestamp()
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            };
            match batches.last_mut() {
                Some((batch_spec, records)) if *batch_spec == spec => records.push(record),
                _ => batches.push((spec, vec![record])),
            }
        }
        for (spec, records) in batches {
            self.ingestor.ingest_records(group, &spec, records).await?;
        }
        Ok(())
    }
}

/// The event's CloudWatch id. CloudWatch always sends one; should it not, an id made of
/// the stream, time and content keeps the event apart from others and stable across reads.
fn dedupe_id(event: &FilteredLogEvent) -> String {
    match event.event_id() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            let content = vigil_event::Id::derive(
                "vigil cloudwatch event without id v1",
                &[event.message().unwrap_or_default().as_bytes()],
            );
            format!(
                "{}/{}/{content}",
                event.log_stream_name().unwrap_or_default(),
                event.timestamp().unwrap_or(0)
            )
        }
    }
}

fn set_lag(group: &str, now_ms: i64, end_ms: i64) {
    metrics::gauge!("vigil_source_checkpoint_lag_seconds", "source" => crate::source_label(group))
        .set(now_ms.saturating_sub(end_ms) as f64 / 1000.0);
}

/// Sleeps for `duration`; false when shutdown was asked for meanwhile.
async fn sleep_or_stop(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => !*shutdown.borrow(),
        changed = shutdown.changed() => changed.is_ok() && !*shutdown.borrow(),
    }
}

/// Calls the API, retrying transient errors with backoff and jitter.
async fn with_backoff<T, E, F, Fut>(
    what: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut call: F,
) -> Result<T, PollError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut attempt = 0;
    loop {
        if *shutdown.borrow() {
            return Err(PollError::Stopped);
        }
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        attempt += 1;
        if !is_transient(&error) || attempt >= MAX_ATTEMPTS {
            return Err(PollError::Api(DisplayErrorContext(&error).to_string()));
        }
        let delay = backoff_delay(attempt, &mut rand::rng());
        tracing::info!(%what, attempt, ?delay, error = %DisplayErrorContext(&error), "CloudWatch call failed; backing off");
        metrics::counter!("vigil_cloudwatch_retries_total", "source" => crate::source_label(what))
            .increment(1);
        if !sleep_or_stop(delay, shutdown).await {
            return Err(PollError::Stopped);
        }
    }
}

fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            matches!(
                context.err().code(),
                Some(
                    "ThrottlingException"
                        | "ServiceUnavailableException"
                        | "LimitExceededException"
                        | "RequestLimitExceeded"
                        | "TooManyRequestsException"
                )
            ) || context.raw().status().is_server_error()
                || context.raw().status().as_u16() == 429
        }
        _ => false,
    }
}

/// Exponential backoff with "equal jitter": at least half the step, so retries from many
/// log groups spread out without any of them hammering the API right away.
fn backoff_delay(attempt: u32, rng: &mut impl Rng) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let half = step / 2;
    half + half.mul_f64(rng.random::<f64>())
}

/// Log group names as CloudWatch allows them, which are also valid source names.
fn valid_log_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'#'))
}

/// A file name for a log group's checkpoint: readable, and unique through a hash since
/// log group names may be longer than file names and hold `/`.
fn checkpoint_file_name(group: &str) -> String {
    let readable: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = vigil_event::Id::derive("vigil cloudwatch checkpoint v1", &[group.as_bytes()]);
    format!("{}-{}.json", readable.trim_start_matches('_'), hash)
}

fn save_checkpoint(dir: &Path, group: &str, progress: &GroupProgress) -> io::Result<()> {
    let Some(end) = progress.end_ms else {
        return Ok(());
    };
    let mut seen: Vec<(String, i64)> = progress
        .seen
        .iter()
        .map(|(id, ts)| (id.clone(), *ts))
        .collect();
    seen.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let checkpoint = CheckpointFile {
        version: 1,
        log_group: group.to_owned(),
        window_end_ms: end,
        seen,
    };
    write_json_atomically(&dir.join(checkpoint_file_name(group)), &checkpoint)
}

fn load_checkpoints(dir: &Path) -> Result<HashMap<String, GroupProgress>, CloudWatchError> {
    let io_error = |source| CloudWatchError::Checkpoint {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut progress = HashMap::new();
    for entry in entries {
        let path = entry.map_err(io_error)?.path();
        // Leftover `.tmp` files are writes that never completed.
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(|source| CloudWatchError::Checkpoint {
            path: path.clone(),
            source,
        })?;
        let corrupt = |message: String| CloudWatchError::CorruptCheckpoint {
            path: path.clone(),
            message,
        };
        let file: CheckpointFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.version != 1 {
            return Err(corrupt(format!("unknown version {}", file.version)));
        }
        progress.insert(
            file.log_group,
            GroupProgress {
                end_ms: Some(file.window_end_ms),
                seen: file.seen.into_iter().collect(),
            },
        );
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: WindowPolicy = WindowPolicy {
        lag_ms: 1_000,
        overlap_ms: 5_000,
        start_lookback_ms: 60_000,
        max_window_ms: 30_000,
    };

    #[test]
    fn first_window_starts_at_the_lookback_and_is_capped() {
        let window = GroupProgress::default()
            .next_window(1_000_000, POLICY)
            .unwrap();
        assert_eq!(
            window,
            Window {
                start_ms: 1_000_000 - 1_000 - 60_000,
                end_ms: 1_000_000 - 1_000 - 30_000,
            }
        );
        // With no lookback the first window is empty, but it fixes where reading starts.
        let none_back = WindowPolicy {
            start_lookback_ms: 0,
            ..POLICY
        };
        let window = GroupProgress::default()
            .next_window(1_000_000, none_back)
            .unwrap();
        assert_eq!(window.start_ms, window.end_ms);
    }

    #[test]
    fn windows_overlap_and_end_lag_before_now() {
        let progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let window = progress.next_window(110_000, POLICY).unwrap();
        assert_eq!(
            window,
            Window {
                start_ms: 95_000,
                end_ms: 109_000
            }
        );
        // Far behind: the new time covered is capped, the overlap is not.
        let window = progress.next_window(1_000_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (95_000, 130_000));
        // Nothing new, or a clock that went back: no window.
        assert_eq!(progress.next_window(101_000, POLICY), None);
        assert_eq!(progress.next_window(50_000, POLICY), None);
    }

    #[test]
    fn overlap_reads_are_deduplicated_and_only_the_overlap_is_kept() {
        let progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let window = progress.next_window(120_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (95_000, 119_000));
        let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
        assert!(walk.admit("a", 96_000));
        assert!(walk.admit("b", 114_000));
        assert!(walk.admit("c", 119_000));
        assert!(!walk.admit("a", 96_000), "an id repeated within a window");
        let progress = walk.finish();
        assert_eq!(progress.end_ms, Some(119_000));
        let mut kept: Vec<&str> = progress.seen.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"], "only ids the next window reads again");

        // The next window reads b and c again, plus a late event d, and a new event e.
        let window = progress.next_window(130_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (114_000, 129_000));
        let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
        assert!(!walk.admit("b", 114_000));
        assert!(!walk.admit("c", 119_000));
        assert!(walk.admit("d", 115_000));
        assert!(walk.admit("e", 126_000));
        let progress = walk.finish();
        let mut kept: Vec<&str> = progress.seen.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["e"]);
    }

    #[test]
    fn short_windows_keep_ids_from_earlier_windows_still_inside_the_overlap() {
        // Polls more often than the overlap: ids from two windows back are still read again.
        let mut progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let mut admitted = Vec::new();
        for (now, events) in [
            (102_000, vec![("x", 100_500)]),
            (103_000, vec![("x", 100_500), ("y", 101_500)]),
            (
                104_000,
                vec![("x", 100_500), ("y", 101_500), ("z", 102_900)],
            ),
        ] {
            let window = progress.next_window(now, POLICY).unwrap();
            let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
            for (id, ts) in events {
                if walk.admit(id, ts) {
                    admitted.push(id);
                }
            }
            progress = walk.finish();
        }
        assert_eq!(admitted, ["x", "y", "z"]);
    }

    #[test]
    fn checkpoints_round_trip_and_corrupt_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let progress = GroupProgress {
            end_ms: Some(42),
            seen: [("id-1".to_owned(), 40)].into_iter().collect(),
        };
        save_checkpoint(dir.path(), "/aws/eks/prod/cluster", &progress).unwrap();
        save_checkpoint(dir.path(), "/app/flask", &GroupProgress::default()).unwrap();
        let loaded = load_checkpoints(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded["/aws/eks/prod/cluster"], progress);
        assert!(fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().path().extension().unwrap() == "json"));

        fs::write(dir.path().join("broken.json"), b"{\"version\":1").unwrap();
        assert!(matches!(
            load_checkpoints(dir.path()),
            Err(CloudWatchError::CorruptCheckpoint { .. })
        ));
        assert!(load_checkpoints(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn checkpoint_names_are_distinct_and_safe() {
        let a = checkpoint_file_name("/app/flask");
        let b = checkpoint_file_name("/app_flask");
        assert_ne!(a, b);
        assert!(!a.contains('/') && !a.starts_with('.'));
        assert!(checkpoint_file_name(&"x".repeat(512)).len() < 200);
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut rng = rand::rng();
        for attempt in 1..20 {
            let delay = backoff_delay(attempt, &mut rng);
            let step = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP);
            assert!(delay >= step / 2 && delay <= step, "{attempt}: {delay:?}");
        }
    }

    fn service_error(
        code: &str,
        status: u16,
    ) -> SdkError<aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError> {
        use aws_sdk_cloudwatchlogs::error::ErrorMetadata;
        use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;
        let raw = aws_sdk_cloudwatchlogs::config::http::HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(status).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        let error = FilterLogEventsError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(error, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(is_transient(&service_error("ThrottlingException", 400)));
        assert!(is_transient(&service_error(
            "ServiceUnavailableException",
            503
        )));
        assert!(is_transient(&service_error("InternalFailure", 500)));
        assert!(!is_transient(&service_error(
            "ResourceNotFoundException",
            400
        )));
        assert!(!is_transient(&service_error("AccessDeniedException", 400)));
    }

    #[tokio::test]
    async fn throttled_calls_are_retried_and_others_are_not() {
        let (_stop, mut shutdown) = watch::channel(false);
        let mut calls = 0;
        let result = with_backoff("g", &mut shutdown, || {
            calls += 1;
            let outcome = if calls < 3 {
                Err(service_error("ThrottlingException", 400))
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: Result<(), _> = with_backoff("g", &mut shutdown, || {
            calls += 1;
            async { Err(service_error("ResourceNotFoundException", 400)) }
        })
        .await;
        assert!(matches!(result, Err(PollError::Api(_))));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_backoff() {
        let (stop, mut shutdown) = watch::channel(false);
        let started = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop.send(true);
            stop
        });
        let result: Result<(), _> = with_backoff("g", &mut shutdown, || async {
            Err(service_error("ThrottlingException", 400))
        })
        .await;
        assert!(matches!(result, Err(PollError::Stopped)));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(stopper.await);
    }

    #[test]
    fn log_group_names_are_checked() {
        assert!(valid_log_group_name("/aws/eks/prod/cluster"));
        assert!(valid_log_group_name("aws-waf-logs-prod#1"));
        assert!(!valid_log_group_name(""));
        assert!(!valid_log_group_name("bad group"));
        assert!(!valid_log_group_name(&"a".repeat(513)));
    }
}
