//! The compiled correlation graph (which matches feed which correlation) and the windowed,
//! bounded state that evaluates correlations as matches arrive.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use vigil_event::{Id, Object};

use super::{CorrelationRule, CorrelationType};
use crate::path::{parse_number, FieldPath};

/// Where the matches of one detection rule or correlation go: slot `slot` of correlation
/// `correlation` (the slot is the position in that correlation's `rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Feed {
    pub correlation: usize,
    pub slot: usize,
}

/// How a correlation reads the inputs arriving in one slot: the field behind each group-by
/// entry (after aliases) and behind each condition field.
#[derive(Debug, Clone)]
pub(crate) struct SlotSpec {
    pub group: Vec<Lookup>,
    pub values: Vec<Lookup>,
}

/// A field to read from an input: a path into an event, or a name in the group key of an
/// inner correlation's match.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub name: String,
    pub path: FieldPath,
}

/// Links between rules and correlations, resolved when the rule set is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    /// Per detection rule: the correlation slots its matches feed.
    pub rule_feeds: Vec<Vec<Feed>>,
    /// Per correlation: the slots of outer correlations its matches feed.
    pub correlation_feeds: Vec<Vec<Feed>>,
    /// Per detection rule: whether its own matches are reported. A rule missing here (an
    /// engine built without correlations) reports.
    pub rule_emits: Vec<bool>,
    pub correlation_emits: Vec<bool>,
    /// Per correlation, per slot.
    pub slots: Vec<Vec<SlotSpec>>,
}

/// What arrives at a correlation: an event matched by a detection rule, or the match of an
/// inner correlation (whose fields are its group key).
pub(crate) enum Source<'a> {
    Event(Object<'a>),
    Match(&'a [(String, String)]),
}

impl Source<'_> {
    /// The first non-null value of a field, as text.
    fn text(&self, lookup: &Lookup) -> Option<String> {
        match self {
            Source::Event(doc) => lookup.path.first_text(*doc),
            Source::Match(pairs) => pairs
                .iter()
                .find(|(name, _)| *name == lookup.name)
                .map(|(_, value)| value.clone()),
        }
    }

    /// The first value of a field that is a number, or a string that spells one.
    fn number(&self, lookup: &Lookup) -> Option<f64> {
        match self {
            Source::Event(doc) => lookup.path.first_number(*doc),
            Source::Match(_) => self.text(lookup).and_then(|s| parse_number(&s)),
        }
    }
}

/// Limits on the memory correlation state may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Groups (distinct group-by values) kept per correlation. Beyond it the least recently
    /// updated group is evicted, groups that have had a single input before those that have
    /// had more (see [`crate::Detector`]), so a flood of one-off groups cannot push out a
    /// group that is counting up.
    pub max_groups: usize,
    /// Inputs kept per group; beyond it the oldest input is evicted.
    pub max_entries: usize,
    /// Contributing event ids reported with a correlation match (the most recent are kept).
    pub max_ids: usize,
    /// Input streams (sources) whose watermark is kept; beyond it the stream furthest behind
    /// is forgotten.
    pub max_streams: usize,
    /// How far, in milliseconds, a stream may lag the newest time seen on any stream and still
    /// have its correlation windows judged by its own watermark. A stream further behind is
    /// stale: it is forgotten, and windows are expired by the newest time less this lag.
    pub max_stream_lag: i64,
    /// Groups kept per correlation for inputs that arrive too late for the live windows (see
    /// [`crate::Detector`]): those are correlated among themselves, apart from the live
    /// windows, in at most this many groups. 0 drops late inputs instead.
    pub max_late_groups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 10_000,
            max_entries: 1_000,
            max_ids: 32,
            max_streams: 1_024,
            max_stream_lag: 24 * 60 * 60 * 1000,
            max_late_groups: 1_000,
        }
    }
}

/// One input held in a group's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Event time, in milliseconds.
    pub time: i64,
    /// Which referenced rule it came from (position in `rules`).
    pub slot: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Aggregated>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Id>,
}

/// The field value a `value_*` correlation aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Aggregated {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    /// Sorted by time; inputs with equal times stay in arrival order.
    pub entries: Vec<Entry>,
    /// Position in the expiry order: (newest time, sequence number).
    pub order: (i64, u64),
    /// Position in the eviction order: (protected, sequence number of the last update).
    pub recency: (bool, u64),
}

/// Which windows an input is offered to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lane {
    /// The live windows, expired by the watermarks. An input for a new group older than
    /// `late_before`, or for an existing group older than its window, is late: it is handed
    /// back (and counted in [`Counters::late`]) rather than placed.
    Live { late_before: i64 },
    /// The windows of inputs that were late for the live ones. Nothing is late here: an input
    /// older than its group's window starts the group afresh, since a late burst arrives
    /// together and is judged by its own times. These groups are bounded by
    /// [`Limits::max_late_groups`], never expired by watermarks.
    Late,
}

/// An input read from an event or match: its group key and the value it aggregates.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub key: Vec<String>,
    pub value: Option<Aggregated>,
}

/// The state of one correlation: its groups and what it had to drop.
///
/// Eviction, when a new group finds `max_groups` groups already, is segmented LRU: a group
/// starts on probation and is protected once it holds two inputs. The least recently updated
/// group on probation goes first, and a protected one only when none is on probation. At most
/// three quarters of the groups are protected; beyond that the least recently updated
/// protected group goes back on probation. So one-off groups (a flood of made-up users) only
/// ever push out each other, and a group that is counting up survives them.
#[derive(Debug, Clone, Default)]
pub(crate) struct CorrelationWindow {
    pub groups: HashMap<Vec<String>, Group>,
    /// Groups by (newest time, sequence): the first is the stalest, expired first.
    pub order: BTreeMap<(i64, u64), Vec<String>>,
    /// Groups by (protected, sequence of the last update): the first is evicted first.
    pub recency: BTreeMap<(bool, u64), Vec<String>>,
    /// How many groups are protected.
    pub protected: usize,
    pub seq: u64,
    pub counters: Counters,
    /// The streams that have offered inputs to this correlation (and are still known): its
    /// windows are judged against their watermarks.
    pub streams: Vec<String>,
}

/// What the state had to drop or did, per correlation or in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Groups evicted because a correlation had `max_groups` groups already (or, for late
    /// inputs, `max_late_groups`).
    pub evicted_groups: u64,
    /// Inputs evicted because their group had `max_entries` inputs already, or because a late
    /// input older than its group's window started the group afresh.
    pub evicted_entries: u64,
    /// Inputs that were late for the live windows: older than their group's window (or, for a
    /// new group, older than their stream's watermark minus the timespan). They are
    /// correlated apart, among late inputs, unless `max_late_groups` is 0.
    pub late: u64,
    /// Inputs skipped because a group-by or condition field was missing or not a number.
    pub missing_fields: u64,
    /// Times the correlation matched.
    pub matches: u64,
}

impl Counters {
    pub(crate) fn add(&mut self, other: &Counters) {
        self.evicted_groups += other.evicted_groups;
        self.evicted_entries += other.evicted_entries;
        self.late += other.late;
        self.missing_fields += other.missing_fields;
        self.matches += other.matches;
    }
}

/// A correlation that met its condition, before it is dressed up for the caller.
pub(crate) struct Fired {
    pub group: Vec<(String, String)>,
    pub entries: Vec<Entry>,
    pub aggregate: f64,
}

impl CorrelationWindow {
    /// Drops the groups whose newest input is older than `horizon`.
    pub fn expire(&mut self, horizon: i64) {
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 >= horizon {
                break;
            }
            let key = entry.remove();
            if let Some(group) = self.groups.remove(&key) {
                self.forget_recency(group.recency);
            }
        }
    }

    /// The most groups that may be protected when at most `max_groups` are kept: three
    /// quarters, so that new groups always have room on probation.
    fn protected_cap(max_groups: usize) -> usize {
        max_groups - max_groups / 4
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    fn forget_recency(&mut self, recency: (bool, u64)) {
        self.recency.remove(&recency);
        if recency.0 {
            self.protected = self.protected.saturating_sub(1);
        }
    }

    /// Removes one group from every index.
    fn remove(&mut self, key: &[String]) -> Option<Group> {
        let group = self.groups.remove(key)?;
        self.order.remove(&group.order);
        self.forget_recency(group.recency);
        Some(group)
    }

    /// Evicts groups until there is room for one more within `max_groups`: the least recently
    /// updated on probation first. False when no group may be kept at all.
    fn make_room(&mut self, max_groups: usize) -> bool {
        if max_groups == 0 {
            return false;
        }
        while self.groups.len() >= max_groups {
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            if let Some(group) = self.groups.remove(&key) {
                if group.recency.0 {
                    self.protected = self.protected.saturating_sub(1);
                }
                self.order.remove(&group.order);
            }
            self.counters.evicted_groups += 1;
        }
        true
    }

    /// Adds a group whose newest input is at `newest`, holding `entries` (sorted by time), on
    /// probation unless `protected`, making room for it first. False when `max_groups` is 0.
    pub fn place(
        &mut self,
        key: Vec<String>,
        entries: Vec<Entry>,
        newest: i64,
        protected: bool,
        max_groups: usize,
    ) -> bool {
        self.remove(&key);
        if !self.make_room(max_groups) {
            return false;
        }
        let seq = self.next_seq();
        let group = Group {
            entries,
            order: (newest, seq),
            recency: (false, seq),
        };
        self.order.insert(group.order, key.clone());
        self.recency.insert(group.recency, key.clone());
        self.groups.insert(key.clone(), group);
        if protected {
            self.touch(&key, true, max_groups);
        }
        true
    }

    /// Marks `key` as just updated, protecting it if `protect`, and keeps the protected
    /// groups within their share by putting the least recently updated back on probation.
    fn touch(&mut self, key: &[String], protect: bool, max_groups: usize) {
        let seq = self.next_seq();
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        let was = group.recency;
        let protected = was.0 || protect;
        group.recency = (protected, seq);
        let now = group.recency;
        // The stored key moves to its new place rather than being copied.
        let stored = self.recency.remove(&was).unwrap_or_else(|| key.to_vec());
        self.recency.insert(now, stored);
        if protected && !was.0 {
            self.protected += 1;
            if self.protected > Self::protected_cap(max_groups) {
                let demoted = self
                    .recency
                    .range((true, 0)..)
                    .next()
                    .map(|(&recency, key)| (recency, key.clone()));
                if let Some((recency, demoted)) = demoted {
                    let seq = self.next_seq();
                    self.recency.remove(&recency);
                    self.recency.insert((false, seq), demoted.clone());
                    self.protected = self.protected.saturating_sub(1);
                    if let Some(group) = self.groups.get_mut(&demoted) {
                        group.recency = (false, seq);
                    }
                }
            }
        }
    }

    /// Reads an input's group key and aggregated value; `None` (counted) when a field is
    /// missing.
    pub fn read(
        &mut self,
        rule: &CorrelationRule,
        spec: &SlotSpec,
        source: &Source<'_>,
    ) -> Option<Input> {
        let mut key = Vec::with_capacity(spec.group.len());
        for lookup in &spec.group {
            match source.text(lookup) {
                Some(value) => key.push(value),
                None => {
                    self.counters.missing_fields += 1;
                    return None;
                }
            }
        }
        let value = if rule.kind.is_numeric() {
            match spec.values.first().and_then(|lookup| source.number(lookup)) {
                Some(n) => Some(Aggregated::Number(n)),
                None => {
                    self.counters.missing_fields += 1;
                    return None;
                }
            }
        } else if rule.kind.needs_field() {
            let mut parts = Vec::with_capacity(spec.values.len());
            for lookup in &spec.values {
                match source.text(lookup) {
                    Some(part) => parts.push(part),
                    None => {
                        self.counters.missing_fields += 1;
                        return None;
                    }
                }
            }
            // Unit separator: combined values of several fields stay distinct.
            Some(Aggregated::Text(parts.join("\u{1f}")))
        } else {
            None
        };
        Some(Input { key, value })
    }

    /// Offers one input at `time` to the lane's windows; gives the match if the correlation's
    /// condition now holds, after which the group starts afresh. In the live lane, a late
    /// input is handed back as `Err` (and counted) for the caller to offer to the late lane.
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        rule: &CorrelationRule,
        slot: usize,
        input: Input,
        time: i64,
        ids: &[Id],
        lane: Lane,
        limits: &Limits,
    ) -> Result<Option<Fired>, Input> {
        let span = rule.timespan.millis;
        let max_groups = match lane {
            Lane::Live { .. } => limits.max_groups,
            Lane::Late => limits.max_late_groups,
        };
        let Input { key, value } = input;
        let existing = self.groups.get(&key).map(|group| group.order.0);
        match (existing, lane) {
            (None, Lane::Live { late_before }) if time < late_before => {
                self.counters.late += 1;
                return Err(Input { key, value });
            }
            (Some(newest), Lane::Live { .. }) if time < newest.saturating_sub(span) => {
                self.counters.late += 1;
                return Err(Input { key, value });
            }
            (Some(newest), Lane::Late) if time < newest.saturating_sub(span) => {
                // A late burst older than this group's window: it starts the group afresh.
                if let Some(old) = self.remove(&key) {
                    self.counters.evicted_entries += old.entries.len() as u64;
                }
            }
            _ => {}
        }
        if !self.groups.contains_key(&key)
            && !self.place(key.clone(), Vec::new(), time, false, max_groups)
        {
            self.counters.evicted_groups += 1;
            return Ok(None);
        }
        let mut kept_ids = ids.to_vec();
        if kept_ids.len() > limits.max_ids {
            kept_ids.drain(..kept_ids.len() - limits.max_ids);
        }
        let seq = self.next_seq();
        let Some(group) = self.groups.get_mut(&key) else {
            return Ok(None);
        };
        let at = group.entries.partition_point(|entry| entry.time <= time);
        group.entries.insert(
            at,
            Entry {
                time,
                slot,
                value,
                ids: kept_ids,
            },
        );
        if time > group.order.0 {
            self.order.remove(&group.order);
            group.order = (time, seq);
            self.order.insert(group.order, key.clone());
        }
        let horizon = group.order.0.saturating_sub(span);
        let expired = group.entries.partition_point(|entry| entry.time < horizon);
        group.entries.drain(..expired);
        if group.entries.len() > limits.max_entries {
            let excess = group.entries.len() - limits.max_entries;
            group.entries.drain(..excess);
            self.counters.evicted_entries += excess as u64;
        }
        let held = group.entries.len();
        let aggregate = (held > 0).then(|| aggregate(rule, &group.entries));
        self.touch(&key, held >= 2, max_groups);
        let Some(aggregate) = aggregate else {
            return Ok(None);
        };
        if !rule.condition_holds(aggregate) {
            return Ok(None);
        }
        // The group starts afresh, so one burst raises one match rather than one per event.
        let Some(group) = self.remove(&key) else {
            return Ok(None);
        };
        self.counters.matches += 1;
        let mut entries = group.entries;
        if rule.kind == CorrelationType::TemporalOrdered {
            // What contributed is the sequence itself, not inputs it stepped over.
            let mut next = 0;
            entries.retain(|entry| {
                let step = entry.slot == next;
                if step {
                    next += 1;
                }
                step
            });
        }
        Ok(Some(Fired {
            group: rule.group_by.iter().cloned().zip(key).collect(),
            entries,
            aggregate,
        }))
    }
}

/// The value the condition compares, over the inputs of one window.
pub(crate) fn aggregate(rule: &CorrelationRule, entries: &[Entry]) -> f64 {
    let numbers = || {
        entries.iter().filter_map(|entry| match entry.value {
            Some(Aggregated::Number(n)) => Some(n),
            _ => None,
        })
    };
    match rule.kind {
        CorrelationType::EventCount => entries.len() as f64,
        CorrelationType::ValueCount => entries
            .iter()
            .filter_map(|entry| match &entry.value {
                Some(Aggregated::Text(text)) => Some(text.as_str()),
                _ => None,
            })
            .collect::<HashSet<_>>()
            .len() as f64,
        CorrelationType::Temporal => entries
            .iter()
            .map(|entry| entry.slot)
            .collect::<HashSet<_>>()
            .len() as f64,
        CorrelationType::TemporalOrdered => {
            // How many of the rules, from the first, matched in their order: each step takes
            // the earliest input of the next rule after the previous step, which finds the
            // sequence whenever one exists.
            let mut next = 0;
            for entry in entries {
                if entry.slot == next {
                    next += 1;
                }
            }
            next as f64
        }
        CorrelationType::ValueSum => numbers().sum(),
        CorrelationType::ValueAvg => {
            let (sum, count) = numbers().fold((0.0, 0usize), |(s, c), n| (s + n, c + 1));
            if count == 0 {
                0.0
            } else {
                sum / count as f64
            }
        }
        CorrelationType::ValuePercentile | CorrelationType::ValueMedian => {
            let mut sorted: Vec<f64> = numbers().collect();
            sorted.sort_by(f64::total_cmp);
            percentile(&sorted, rule.percentile.unwrap_or(50.0))
        }
    }
}

/// The `p`th percentile of sorted values, interpolating linearly between the two closest ranks
/// (so the median of an even count is the mean of the middle two).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted {
        [] => 0.0,
        [only] => *only,
        _ => {
            let rank = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            let (a, b) = (
                sorted[low.min(sorted.len() - 1)],
                sorted[high.min(sorted.len() - 1)],
            );
            a + (b - a) * (rank - low as f64)
        }
    }
}
