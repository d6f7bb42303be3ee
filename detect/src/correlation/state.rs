//! The compiled correlation graph (which matches feed which correlation) and the windowed,
//! bounded state that evaluates correlations as matches arrive.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vigil_event::Id;

use super::{CorrelationRule, CorrelationType};
use crate::path::FieldPath;

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
    Event(&'a Map<String, Value>),
    Match(&'a [(String, String)]),
}

impl Source<'_> {
    /// The first non-null value of a field, as text.
    fn text(&self, lookup: &Lookup) -> Option<String> {
        match self {
            Source::Event(doc) => {
                let mut found = None;
                lookup.path.any(doc, &mut |value| match value {
                    Some(Value::Null) | None => false,
                    Some(value) => {
                        found = Some(match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                        true
                    }
                });
                found
            }
            Source::Match(pairs) => pairs
                .iter()
                .find(|(name, _)| *name == lookup.name)
                .map(|(_, value)| value.clone()),
        }
    }

    /// The first value of a field that is a number, or a string that spells one.
    fn number(&self, lookup: &Lookup) -> Option<f64> {
        let parse = |s: &str| s.trim().parse::<f64>().ok().filter(|n| n.is_finite());
        match self {
            Source::Event(doc) => {
                let mut found = None;
                lookup.path.any(doc, &mut |value| {
                    found = match value {
                        Some(Value::Number(n)) => n.as_f64().filter(|n| n.is_finite()),
                        Some(Value::String(s)) => parse(s),
                        _ => None,
                    };
                    found.is_some()
                });
                found
            }
            Source::Match(_) => self.text(lookup).and_then(|s| parse(&s)),
        }
    }
}

/// Limits on the memory correlation state may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Groups (distinct group-by values) kept per correlation; beyond it the group whose newest
    /// input is oldest is evicted.
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 10_000,
            max_entries: 1_000,
            max_ids: 32,
            max_streams: 1_024,
            max_stream_lag: 24 * 60 * 60 * 1000,
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
    /// Position in the eviction order: (newest time, sequence number).
    pub order: (i64, u64),
}

/// The state of one correlation: its groups and what it had to drop.
#[derive(Debug, Clone, Default)]
pub(crate) struct CorrelationWindow {
    pub groups: HashMap<Vec<String>, Group>,
    /// Groups by (newest time, sequence): the first is the stalest, evicted or expired first.
    pub order: BTreeMap<(i64, u64), Vec<String>>,
    pub seq: u64,
    pub counters: Counters,
    /// The streams that have offered inputs to this correlation (and are still known): its
    /// windows are judged against their watermarks.
    pub streams: Vec<String>,
}

/// What the state had to drop or did, per correlation or in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Groups evicted because a correlation had `max_groups` groups already.
    pub evicted_groups: u64,
    /// Inputs evicted because their group had `max_entries` inputs already.
    pub evicted_entries: u64,
    /// Inputs dropped because they were older than their group's window (or, for a new group,
    /// older than their stream's watermark minus the timespan).
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
            self.groups.remove(&key);
        }
    }

    /// Offers one input; returns the match if the correlation's condition now holds, after
    /// which the group starts afresh. An input for a new group older than `late_before` is
    /// late (its window is already over for the stream it came from).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        rule: &CorrelationRule,
        spec: &SlotSpec,
        slot: usize,
        source: &Source<'_>,
        time: i64,
        ids: &[Id],
        late_before: i64,
        limits: &Limits,
    ) -> Option<Fired> {
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
        let span = rule.timespan.millis;
        let seq = self.seq;
        self.seq += 1;

        if !self.groups.contains_key(&key) {
            if time < late_before {
                self.counters.late += 1;
                return None;
            }
            if limits.max_groups == 0 {
                self.counters.evicted_groups += 1;
                return None;
            }
            while self.groups.len() >= limits.max_groups {
                let Some((_, stale)) = self.order.pop_first() else {
                    break;
                };
                self.groups.remove(&stale);
                self.counters.evicted_groups += 1;
            }
            let order = (time, seq);
            self.order.insert(order, key.clone());
            self.groups.insert(
                key.clone(),
                Group {
                    entries: Vec::new(),
                    order,
                },
            );
        }
        let group = self.groups.get_mut(&key)?;
        let newest = group.order.0;
        if time < newest.saturating_sub(span) {
            self.counters.late += 1;
            return None;
        }
        let at = group.entries.partition_point(|entry| entry.time <= time);
        let mut kept_ids = ids.to_vec();
        if kept_ids.len() > limits.max_ids {
            kept_ids.drain(..kept_ids.len() - limits.max_ids);
        }
        group.entries.insert(
            at,
            Entry {
                time,
                slot,
                value,
                ids: kept_ids,
            },
        );
        if time > newest {
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
        if group.entries.is_empty() {
            return None;
        }
        let aggregate = aggregate(rule, &group.entries);
        if !rule.condition_holds(aggregate) {
            return None;
        }
        // The group starts afresh, so one burst raises one match rather than one per event.
        let group = self.groups.remove(&key)?;
        self.order.remove(&group.order);
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
        Some(Fired {
            group: rule.group_by.iter().cloned().zip(key).collect(),
            entries,
            aggregate,
        })
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
