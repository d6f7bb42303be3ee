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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use chrono::{TimeZone, Utc};
use tokio::sync::watch;
use vigil_retry::sleep_or_stop;

use super::api::{self, with_backoff, PollError};
use super::checkpoints::{load_checkpoints, save_checkpoint};
use super::config::valid_log_group_name;
use super::window::{GroupProgress, WindowPolicy, WindowWalk};
use super::{CloudWatchConfig, CloudWatchError, LogGroupRecogniser};
use crate::{IncomingRecord, Ingestor, SourceSpec};

impl CloudWatchConfig {
    /// The source, its checkpoints in `data_dir`'s `checkpoints/cloudwatch-<name>/`.
    pub fn build(
        &self,
        data_dir: &Path,
        ingestor: Arc<Ingestor>,
    ) -> Result<CloudWatchSource, CloudWatchError> {
        let checkpoint_dir = data_dir
            .join("checkpoints")
            .join(format!("cloudwatch-{}", self.name));
        CloudWatchSource::new(self.clone(), checkpoint_dir, ingestor)
    }
}

/// How often prefixes are listed again to find new log groups.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(60);

/// Reads CloudWatch log groups into the bus.
pub struct CloudWatchSource {
    config: CloudWatchConfig,
    checkpoint_dir: PathBuf,
    policy: WindowPolicy,
    ingestor: Arc<Ingestor>,
    recogniser: LogGroupRecogniser,
    progress: HashMap<String, GroupProgress>,
    /// Log groups found under the prefixes at the last successful listing of each.
    discovered: HashMap<String, BTreeSet<String>>,
}

impl CloudWatchSource {
    /// Checks the config and loads the checkpoints from `checkpoint_dir`. A corrupt
    /// checkpoint is an error rather than a silent restart from the lookback, which could
    /// skip events.
    pub fn new(
        config: CloudWatchConfig,
        checkpoint_dir: PathBuf,
        ingestor: Arc<Ingestor>,
    ) -> Result<Self, CloudWatchError> {
        let overrides = config.log_group_overrides()?;
        let progress = load_checkpoints(&checkpoint_dir)?;
        Ok(CloudWatchSource {
            policy: WindowPolicy::from_config(&config),
            recogniser: LogGroupRecogniser::new(overrides),
            config,
            checkpoint_dir,
            ingestor,
            progress,
            discovered: HashMap::new(),
        })
    }

    /// Polls until `shutdown` turns true. Errors reading one log group are logged, counted
    /// and retried on the next poll; they never stop the source.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), CloudWatchError> {
        let client = api::client(&self.config).await;
        let mut last_discovery: Option<Instant> = None;
        while !*shutdown.borrow() {
            if last_discovery.is_none_or(|at| at.elapsed() >= DISCOVERY_INTERVAL) {
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
            if !sleep_or_stop(self.config.poll_interval(), &shutdown).await {
                return Ok(());
            }
        }
        Ok(())
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
            if let Err(source) = save_checkpoint(&self.checkpoint_dir, group, &progress) {
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
