//! Stateful detection: rules and correlations over a stream of events.
//!
//! [`Detector`] wraps an [`Engine`] with the state its correlation rules need. It is still pure:
//! the caller supplies each event's time, and nothing here reads a clock or does I/O.
//!
//! # Windows
//!
//! - A correlation's `timespan` is a **sliding** window, anchored on each group's newest input:
//!   the inputs that count are those whose time is at least `newest - timespan` (both ends
//!   included). So with `timespan: 5m`, inputs exactly five minutes apart correlate and inputs
//!   five minutes and one millisecond apart do not, wherever the clock's minutes fall.
//! - The condition is checked each time an input enters a group. When it holds, the correlation
//!   matches once and the group starts afresh: a burst of 500 failed logins against `gte: 100`
//!   raises five matches, not four hundred. A consequence is that `lt`, `lte` and `neq` hold as
//!   soon as the first input arrives; a streaming engine cannot wait for the absence of events.
//! - `temporal` counts the distinct referenced rules in the window; `temporal_ordered` counts
//!   how many referenced rules, from the first, matched in the order given (ties in time keep
//!   arrival order). Without a condition both need every rule.
//! - `value_count` counts distinct values of its field(s); `value_sum`, `value_avg`,
//!   `value_percentile` and `value_median` aggregate a numeric field (numbers, or strings that
//!   spell numbers). The percentile interpolates linearly between ranks; pySigma's `percentile`
//!   key in the condition picks it (default 50, which is also `value_median`).
//! - An input lacking a group-by field, or the condition's field, does not count (as search
//!   backends drop events with a null group-by value); it is counted in
//!   [`Counters::missing_fields`]. Group-by values are compared exactly, as text.
//! - Chained correlations: a correlation's match is an input to the correlations that refer to
//!   it, at the time of the match's newest input, with the inner group key as its fields.
//! - `generate`: as in pySigma, a rule (or correlation) referred to by any correlation without
//!   `generate: true` reports no matches of its own; it still feeds its correlations.
//!
//! # Time, order and streams
//!
//! Events come in **streams**, named by the caller: [`Detector::evaluate`] takes the
//! stream's name, [`Detector::process_event`] uses the event's source name (in Kafka mode,
//! events are partitioned by that source key, so a stream is also what one partition carries),
//! and [`Detector::process`] puts everything in one unnamed stream ([`DEFAULT_STREAM`]).
//! Each stream has a **watermark**, the newest event time seen on it; the newest over all
//! streams is the global watermark ([`Detector::watermark`]). Sources are roughly in time
//! order each but not in step with each other (a CloudTrail export hours ahead of a Flask log
//! being replayed, a Kafka partition catching up), so windows are never judged by the global
//! watermark alone:
//!
//! - **Lateness.** An input for a group that has no window yet is late when it is older than
//!   *its own stream's* watermark minus the timespan. An input for an existing group is late
//!   when it is older than the group's newest input minus the timespan, whichever stream it
//!   comes from. An input within the window is placed in time order and counts.
//! - **Late inputs** are counted in [`Counters::late`] and reported per event by
//!   [`Detector::evaluate`]. They never enter the live windows, so backdated events can
//!   neither add to a live count nor close a live window. Instead each correlation has a
//!   second set of windows for late inputs alone, with the same sliding windows judged by the
//!   inputs' own times, so a burst that arrives late together (six failed logins stamped three
//!   days back, a log shipper catching up) still correlates. Nothing is late there: an input
//!   older than its late group's window starts that group afresh, since late bursts arrive
//!   together. These windows are not expired by watermarks; at most
//!   [`Limits::max_late_groups`] groups are kept per correlation (0: late inputs are dropped).
//!   Rules match late events as any other: only their correlation windows differ.
//! - **Expiry.** Each correlation remembers which streams have fed it. Its groups expire when
//!   their newest input is older than the *lowest* watermark of those streams minus the
//!   timespan: a group stays open until every stream that feeds the correlation has moved past
//!   it, so a correlation across sources (a `temporal` over CloudTrail and Kubernetes audit)
//!   still sees the lagging source's inputs. The choice is per correlation rather than per
//!   group because a group may be completed by a stream that has not fed it yet, and because
//!   one horizon per correlation keeps expiry a scan of the stalest groups.
//! - **Stale streams.** A stream more than [`Limits::max_stream_lag`] (24 hours by default)
//!   behind the global watermark is stale and forgotten, and no correlation's horizon is ever
//!   older than the global watermark less the timespan and that lag. So a stream that stops
//!   holds windows open for at most that long, and an input older than that is late in any
//!   stream. At most [`Limits::max_streams`] streams are kept (the one furthest behind goes).
//! - A wildly future timestamp moves its stream's watermark (and the global one) and expires
//!   that stream's windows, and after the allowed lag every other stream's, so callers should
//!   pass a trusted time (such as the receive time, or the event time clamped to it).
//!
//! # Memory
//!
//! Each correlation keeps at most [`Limits::max_groups`] groups and each group at most
//! [`Limits::max_entries`] inputs (evicting its oldest). Matches carry at most
//! [`Limits::max_ids`] contributing event ids. Evictions are counted.
//!
//! Group-by values are chosen by the sender, who can make up a new group with each event. So
//! eviction is a segmented LRU: a group with a single input is on probation, one with two or
//! more is protected. The least recently updated group on probation is evicted first, a
//! protected one only when none is on probation, and at most three quarters of the groups are
//! protected (beyond that, the least recently updated protected group goes back on probation).
//! A flood of one-off groups therefore only evicts other one-off groups, and a group that is
//! counting up keeps its count. A real group's very first input is still on probation: it is
//! lost if more than a quarter of `max_groups` new groups arrive before its second.

use serde::{Deserialize, Serialize};
use vigil_event::{Event, Id, LogSource, Object};

use std::collections::BTreeMap;

use crate::correlation::state::{CorrelationWindow, Counters, Entry, Lane, Limits, Source};
use crate::correlation::CorrelationRule;
use crate::engine::OwnPlans;
use crate::watermarks::{Observed, Streams};
use crate::Engine;

mod record;

/// The stream of [`Detector::process`] and [`Detector::advance`]'s callers that do not name
/// streams, and of snapshots written before streams existed.
pub const DEFAULT_STREAM: &str = "";

/// The engine and the correlation state, fed one event at a time.
#[derive(Debug, Clone)]
pub struct Detector {
    engine: Engine,
    /// The engine's plans for the logsources seen, kept here so that an event's is found
    /// without a lock.
    plans: OwnPlans,
    windows: Vec<CorrelationWindow>,
    /// Per correlation, the windows of inputs late for `windows` (see the module docs).
    late_windows: Vec<CorrelationWindow>,
    streams: Streams,
    limits: Limits,
}

/// Something to raise an alert for.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The event matched the rule at this index of [`Engine::rules`].
    Rule { rule: usize },
    /// A correlation rule matched, completed by this event.
    Correlation(CorrelationMatch),
}

/// A correlation that met its condition.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationMatch {
    /// Index into [`Engine::correlations`].
    pub correlation: usize,
    /// The group-by fields (or aliases) and their values, in `group-by` order.
    pub group: Vec<(String, String)>,
    /// The value the condition compared: the event count, distinct value count, number of
    /// rules matched, sum, average or percentile.
    pub aggregate: f64,
    /// How many inputs were in the window (events, or inner matches for a chained correlation).
    pub inputs: usize,
    /// Time of the window's oldest and newest input, in milliseconds.
    pub first_time: i64,
    pub last_time: i64,
    /// Ids of the contributing events, oldest first; at most [`Limits::max_ids`] (the most
    /// recent), and only those the caller supplied.
    pub event_ids: Vec<Id>,
    /// Whether more events contributed than `event_ids` holds.
    pub event_ids_truncated: bool,
}

/// What [`Detector::evaluate`] made of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// As [`Detector::evaluate`] returns them.
    pub detections: Vec<Finding>,
    /// How many inputs to correlations (this event, or matches it completed) came too late
    /// for the live windows. They were correlated among late inputs instead, or dropped when
    /// [`Limits::max_late_groups`] is 0. Rules still matched the event as usual.
    pub late_inputs: usize,
}

/// The size of the correlation state and what it dropped so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Groups of the live windows.
    pub groups: usize,
    /// Groups of inputs that came late for the live windows.
    pub late_groups: usize,
    /// Inputs held, in either.
    pub entries: usize,
    pub counters: Counters,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("the correlation snapshot is malformed: {0}")]
    Malformed(String),
    #[error("the correlation snapshot has format version {found}; this build reads version {SNAPSHOT_VERSION}")]
    Version { found: u32 },
}

/// What restoring a snapshot kept and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub groups: usize,
    /// Ids of snapshot correlations left out: no longer loaded, or changed in type, rules,
    /// group-by or fields since the snapshot.
    pub dropped_correlations: Vec<String>,
}

/// The snapshot format version. Bump it when the layout changes incompatibly.
///
/// Version 1 gained the per-stream watermarks (`streams`, and each correlation's `streams`)
/// as optional fields: a snapshot without them restores with everything in
/// [`DEFAULT_STREAM`] at the global watermark, as it was meant, and a build without streams
/// ignores them and reads the rest.
pub const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_FORMAT: &str = "vigil-detect correlation state";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    /// The global watermark.
    #[serde(default)]
    watermark: Option<i64>,
    /// Each stream's watermark.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    streams: BTreeMap<String, i64>,
    #[serde(default)]
    correlations: Vec<SnapshotCorrelation>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotCorrelation {
    id: String,
    fingerprint: String,
    /// The counters of its live and late windows together.
    #[serde(default)]
    counters: Counters,
    /// The streams that fed it, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    streams: Vec<String>,
    #[serde(default)]
    groups: Vec<SnapshotGroup>,
    /// The groups of inputs late for the live windows (added within version 1: older
    /// snapshots have none, and older builds ignore them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    late_groups: Vec<SnapshotGroup>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotGroup {
    key: Vec<String>,
    entries: Vec<Entry>,
    /// Whether the group was protected from eviction (added within version 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    protected: bool,
}

/// What must not change for saved windows to keep their meaning.
fn fingerprint(rule: &CorrelationRule) -> String {
    format!(
        "{}|{}|{}|{}",
        rule.kind,
        rule.rules.join(","),
        rule.group_by.join(","),
        rule.fields.join(",")
    )
}

impl Detector {
    pub fn new(engine: Engine) -> Self {
        Self::with_limits(engine, Limits::default())
    }

    pub fn with_limits(engine: Engine, limits: Limits) -> Self {
        let windows = vec![CorrelationWindow::default(); engine.correlations().len()];
        Detector {
            engine,
            plans: OwnPlans::default(),
            late_windows: windows.clone(),
            windows,
            streams: Streams::new(),
            limits,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The newest event time seen on any stream (the global watermark), in milliseconds.
    pub fn watermark(&self) -> Option<i64> {
        self.streams.global()
    }

    /// The newest event time seen on `stream`, in milliseconds; `None` for a stream never
    /// seen, or forgotten as stale.
    pub fn stream_watermark(&self, stream: &str) -> Option<i64> {
        self.streams.get(stream)
    }

    /// Evaluates one event at `time` (milliseconds since the epoch), in [`DEFAULT_STREAM`]:
    /// [`Detector::evaluate`] for callers with a single stream, keeping only the findings.
    pub fn process<'d>(
        &mut self,
        time: i64,
        event_id: Option<Id>,
        logsource: &LogSource,
        doc: impl Into<Object<'d>>,
    ) -> Vec<Finding> {
        self.evaluate(DEFAULT_STREAM, time, event_id, logsource, doc)
            .detections
    }

    /// Evaluates one event of `stream` (such as its source name) at `time` (milliseconds since
    /// the epoch): correlation windows are judged by the watermarks of the streams that feed
    /// them, so a stream lagging behind others still correlates (see the module docs).
    /// `event_id` is handed back in the matches of the correlations it contributes to. Rule
    /// detections come first, in rule order, then correlation matches in the order they
    /// happened; the evaluation also tells how many of the event's correlation inputs came
    /// late for the live windows.
    pub fn evaluate<'d>(
        &mut self,
        stream: &str,
        time: i64,
        event_id: Option<Id>,
        logsource: &LogSource,
        doc: impl Into<Object<'d>>,
    ) -> Evaluation {
        let doc = doc.into();
        let plan = self.plans.get(&self.engine, logsource);
        let hits = self.engine.matching_planned(plan, doc);
        self.evaluate_hits(stream, time, event_id, hits, doc)
    }

    /// What the rules at `hits` matching `doc` raise, correlations included.
    fn evaluate_hits(
        &mut self,
        stream: &str,
        time: i64,
        event_id: Option<Id>,
        hits: Vec<usize>,
        doc: Object<'_>,
    ) -> Evaluation {
        self.advance_stream(stream, time);
        let mut evaluation = Evaluation {
            detections: hits
                .iter()
                .filter(|&&rule| self.engine.rule_generates(rule))
                .map(|&rule| Finding::Rule { rule })
                .collect(),
            late_inputs: 0,
        };
        let Detector {
            engine,
            windows,
            late_windows,
            limits,
            streams,
            plans: _,
        } = self;
        let graph = engine.graph();
        if graph.slots.is_empty() {
            return evaluation;
        }
        let mut state = State {
            engine,
            windows,
            late_windows,
        };
        let at = Arrival {
            stream,
            streams,
            limits,
        };
        let ids: Vec<Id> = event_id.into_iter().collect();
        let event = Source::Event(doc);
        // Matches of correlations waiting to feed the correlations that refer to them. The
        // graph has no cycles, so this ends.
        let mut pending: Vec<CorrelationMatch> = Vec::new();
        for &rule in &hits {
            for feed in graph.rule_feeds.get(rule).into_iter().flatten() {
                let offered = state.offer(&at, (feed.correlation, feed.slot), &event, time, &ids);
                evaluation.late_inputs += usize::from(offered.late);
                pending.extend(offered.matched);
            }
        }
        let mut next = 0;
        while next < pending.len() {
            let inner = pending[next].clone();
            next += 1;
            let source = Source::Match(&inner.group);
            for feed in graph
                .correlation_feeds
                .get(inner.correlation)
                .into_iter()
                .flatten()
            {
                let offered = state.offer(
                    &at,
                    (feed.correlation, feed.slot),
                    &source,
                    inner.last_time,
                    &inner.event_ids,
                );
                evaluation.late_inputs += usize::from(offered.late);
                pending.extend(offered.matched);
            }
        }
        evaluation.detections.extend(
            pending
                .into_iter()
                .filter(|m| engine.correlation_generates(m.correlation))
                .map(Finding::Correlation),
        );
        evaluation
    }

    /// [`Detector::evaluate`] for an [`Event`]: in the stream of its source name, at its own
    /// time, with its own id and document.
    pub fn process_event(&mut self, event: &Event) -> Result<Vec<Finding>, serde_json::Error> {
        let time = event.time.timestamp_millis();
        let (evaluation, _) = self.evaluate_event(&event.source.name, time, event)?;
        Ok(evaluation.detections)
    }

    /// Moves every stream's watermark, and the global one, to `now` (if later) and expires the
    /// windows they leave behind. Call it when time passes without events (`now` being a time
    /// every stream has reached), so idle groups free their memory.
    pub fn advance(&mut self, now: i64) {
        let observed = self.streams.advance_all(now, &self.limits);
        self.after_moving(observed);
    }

    /// Moves `stream`'s watermark to `now` (if later) and expires the windows it leaves behind.
    pub fn advance_stream(&mut self, stream: &str, now: i64) {
        let observed = self.streams.observe(stream, now, &self.limits);
        self.after_moving(observed);
    }

    fn after_moving(&mut self, observed: Observed) {
        if !observed.dropped.is_empty() {
            for window in &mut self.windows {
                window
                    .streams
                    .retain(|name| !observed.dropped.contains(name));
            }
        }
        if !observed.moved {
            return;
        }
        for (window, rule) in self.windows.iter_mut().zip(self.engine.correlations()) {
            if !window.groups.is_empty() {
                let horizon = horizon(&self.streams, &self.limits, window, rule.timespan.millis);
                window.expire(horizon);
            }
        }
    }

    /// The streams known, with their watermarks (in no particular order).
    pub fn streams(&self) -> impl Iterator<Item = (&str, i64)> {
        self.streams.iter()
    }

    pub fn stats(&self) -> StateStats {
        let held = |window: &CorrelationWindow| -> usize {
            window
                .groups
                .values()
                .map(|group| group.entries.len())
                .sum()
        };
        let mut stats = StateStats::default();
        for (window, late) in self.windows.iter().zip(&self.late_windows) {
            stats.groups += window.groups.len();
            stats.late_groups += late.groups.len();
            stats.entries += held(window) + held(late);
            stats.counters.add(&window.counters);
            stats.counters.add(&late.counters);
        }
        stats
    }

    /// The counters of the correlation at `index` of [`Engine::correlations`], its live and
    /// late windows together.
    pub fn counters(&self, index: usize) -> Option<Counters> {
        let mut counters = self.windows.get(index)?.counters;
        if let Some(late) = self.late_windows.get(index) {
            counters.add(&late.counters);
        }
        Some(counters)
    }

    /// The correlation state as bytes (versioned JSON), to persist and [`Detector::restore`]
    /// after a restart. Correlations are keyed by id, so a snapshot survives rule changes.
    pub fn snapshot(&self) -> Vec<u8> {
        // Stalest first, so that a restore under a smaller limit keeps the newest.
        let groups = |window: &CorrelationWindow| -> Vec<SnapshotGroup> {
            window
                .order
                .values()
                .filter_map(|key| {
                    window.groups.get(key).map(|group| SnapshotGroup {
                        key: key.clone(),
                        entries: group.entries.clone(),
                        protected: group.recency.0,
                    })
                })
                .collect()
        };
        let snapshot = Snapshot {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: SNAPSHOT_VERSION,
            watermark: self.streams.global(),
            streams: self
                .streams
                .iter()
                .map(|(name, watermark)| (name.to_owned(), watermark))
                .collect(),
            correlations: self
                .windows
                .iter()
                .zip(&self.late_windows)
                .zip(self.engine.correlations())
                .map(|((window, late), rule)| {
                    let mut streams = window.streams.clone();
                    streams.sort();
                    let mut counters = window.counters;
                    counters.add(&late.counters);
                    SnapshotCorrelation {
                        id: rule.id.clone(),
                        fingerprint: fingerprint(rule),
                        counters,
                        streams,
                        groups: groups(window),
                        late_groups: groups(late),
                    }
                })
                .collect(),
        };
        // Serialising plain data to JSON cannot fail; an empty snapshot restores as empty.
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    /// Replaces the correlation state with a snapshot's. Correlations no longer loaded, or whose
    /// type, rules, group-by or fields changed, are left out; the current [`Limits`] apply.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<RestoreReport, SnapshotError> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)
            .map_err(|err| SnapshotError::Malformed(err.to_string()))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Malformed(format!(
                "unknown format {:?}",
                snapshot.format
            )));
        }
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version {
                found: snapshot.version,
            });
        }
        // Before streams, everything was one stream at the global watermark.
        let legacy = snapshot.streams.is_empty() && snapshot.watermark.is_some();
        let saved_streams = if legacy {
            let watermark = snapshot.watermark.unwrap_or_default();
            vec![(DEFAULT_STREAM.to_owned(), watermark)]
        } else {
            snapshot.streams.into_iter().collect()
        };
        let streams = Streams::restore(snapshot.watermark, saved_streams, &self.limits);
        let mut windows = vec![CorrelationWindow::default(); self.engine.correlations().len()];
        let mut late_windows = windows.clone();
        let mut report = RestoreReport::default();
        for saved in snapshot.correlations {
            let Some(index) = self
                .engine
                .correlations()
                .iter()
                .position(|rule| rule.id == saved.id && fingerprint(rule) == saved.fingerprint)
            else {
                report.dropped_correlations.push(saved.id);
                continue;
            };
            let rule = &self.engine.correlations()[index];
            let window = &mut windows[index];
            window.counters = saved.counters;
            window.streams = if legacy {
                vec![DEFAULT_STREAM.to_owned()]
            } else {
                saved.streams
            };
            window.streams.retain(|name| streams.contains(name));
            window.streams.sort();
            window.streams.dedup();
            let horizon = horizon(&streams, &self.limits, window, rule.timespan.millis);
            let limits = &self.limits;
            restore_groups(
                window,
                saved.groups,
                rule,
                limits,
                limits.max_groups,
                horizon,
            );
            // Late groups are bounded by count, never expired by the watermarks.
            let late = &mut late_windows[index];
            let max_late = limits.max_late_groups;
            restore_groups(late, saved.late_groups, rule, limits, max_late, i64::MIN);
            report.groups += window.groups.len();
        }
        self.windows = windows;
        self.late_windows = late_windows;
        self.streams = streams;
        Ok(report)
    }
}

/// Puts saved groups (stalest first) back into `window`, as far as the current limits allow
/// and leaving out those whose newest input is older than `horizon`.
fn restore_groups(
    window: &mut CorrelationWindow,
    saved: Vec<SnapshotGroup>,
    rule: &CorrelationRule,
    limits: &Limits,
    max_groups: usize,
    horizon: i64,
) {
    // The newest are kept when the limit shrank.
    let skip = saved.len().saturating_sub(max_groups);
    for saved_group in saved.into_iter().skip(skip) {
        if saved_group.key.len() != rule.group_by.len() {
            continue;
        }
        let mut entries: Vec<Entry> = saved_group
            .entries
            .into_iter()
            .filter(|entry| entry.slot < rule.rules.len())
            .collect();
        entries.sort_by_key(|entry| entry.time);
        let Some(newest) = entries.last().map(|entry| entry.time) else {
            continue;
        };
        if newest < horizon {
            continue;
        }
        let start = entries
            .partition_point(|entry| entry.time < newest.saturating_sub(rule.timespan.millis));
        entries.drain(..start);
        let excess = entries.len().saturating_sub(limits.max_entries);
        entries.drain(..excess);
        for entry in &mut entries {
            let excess = entry.ids.len().saturating_sub(limits.max_ids);
            entry.ids.drain(..excess);
        }
        window.place(
            saved_group.key,
            entries,
            newest,
            saved_group.protected,
            max_groups,
        );
    }
}

/// The oldest time a correlation's groups may have as their newest input and stay open: the
/// lowest watermark of the streams that fed it, less the timespan, but never older than the
/// global watermark less the timespan and the allowed lag.
fn horizon(streams: &Streams, limits: &Limits, window: &CorrelationWindow, span: i64) -> i64 {
    let floor = floor(streams, limits, span);
    window
        .streams
        .iter()
        .filter_map(|name| streams.get(name))
        .min()
        .map_or(floor, |lowest| floor.max(lowest.saturating_sub(span)))
}

/// The oldest horizon of any window with this timespan: the global watermark less the timespan
/// and the allowed lag.
fn floor(streams: &Streams, limits: &Limits, span: i64) -> i64 {
    streams.global().map_or(i64::MIN, |global| {
        global
            .saturating_sub(span)
            .saturating_sub(limits.max_stream_lag.max(0))
    })
}

/// Where an input comes from: its stream, and the watermarks to judge it by.
struct Arrival<'a> {
    stream: &'a str,
    streams: &'a Streams,
    limits: &'a Limits,
}

/// The parts of a [`Detector`] an input changes.
struct State<'a> {
    engine: &'a Engine,
    windows: &'a mut [CorrelationWindow],
    late_windows: &'a mut [CorrelationWindow],
}

/// What offering one input did.
#[derive(Default)]
struct Offered {
    matched: Option<CorrelationMatch>,
    /// The input came too late for the live windows.
    late: bool,
}

impl State<'_> {
    /// Offers one input to one correlation slot: to the live windows, or to the late ones if it
    /// is late for those. Dresses up the match if there is one.
    fn offer(
        &mut self,
        at: &Arrival<'_>,
        (correlation, slot): (usize, usize),
        source: &Source<'_>,
        time: i64,
        ids: &[Id],
    ) -> Offered {
        let limits = at.limits;
        let (Some(rule), Some(spec), Some(window)) = (
            self.engine.correlations().get(correlation),
            self.engine
                .graph()
                .slots
                .get(correlation)
                .and_then(|slots| slots.get(slot)),
            self.windows.get_mut(correlation),
        ) else {
            return Offered::default();
        };
        let span = rule.timespan.millis;
        if at.streams.contains(at.stream) && !window.streams.iter().any(|name| name == at.stream) {
            window.streams.push(at.stream.to_owned());
        }
        let Some(input) = window.read(rule, spec, source) else {
            return Offered::default();
        };
        // A new group is late when its window is already over for the input's own stream (or,
        // for a stream forgotten as stale, for every stream).
        let floor = floor(at.streams, limits, span);
        let late_before = at
            .streams
            .get(at.stream)
            .map_or(floor, |own| floor.max(own.saturating_sub(span)));
        let live = Lane::Live { late_before };
        let (fired, late) = match window.offer(rule, slot, input, time, ids, live, limits) {
            Ok(fired) => (fired, false),
            Err(_) if limits.max_late_groups == 0 => (None, true),
            Err(input) => {
                let fired = self.late_windows.get_mut(correlation).and_then(|late| {
                    // The late lane hands nothing back: nothing is late there.
                    late.offer(rule, slot, input, time, ids, Lane::Late, limits)
                        .ok()
                        .flatten()
                });
                (fired, true)
            }
        };
        let matched = fired.map(|fired| {
            let total: usize = fired.entries.iter().map(|entry| entry.ids.len()).sum();
            let mut event_ids: Vec<Id> = fired
                .entries
                .iter()
                .flat_map(|entry| entry.ids.iter().copied())
                .collect();
            if event_ids.len() > limits.max_ids {
                event_ids.drain(..event_ids.len() - limits.max_ids);
            }
            CorrelationMatch {
                correlation,
                group: fired.group,
                aggregate: fired.aggregate,
                inputs: fired.entries.len(),
                first_time: fired.entries.first().map_or(time, |entry| entry.time),
                last_time: fired.entries.last().map_or(time, |entry| entry.time),
                event_ids_truncated: total > event_ids.len(),
                event_ids,
            }
        });
        Offered { matched, late }
    }
}
