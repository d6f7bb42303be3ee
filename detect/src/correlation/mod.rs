//! Sigma correlation rules: the model, how a document becomes one ([`parse`]), and the
//! windowed state that evaluates them over a stream of matches ([`state`]).
//!
//! Correlation rules are evaluated as a stream, event by event, with the event time supplied by
//! the caller; see [`crate::Detector`] for the evaluation model and its documented choices.

pub(crate) mod parse;
pub(crate) mod state;

use std::fmt;
use std::ops::Deref;

use crate::meta::RuleMeta;

/// A loaded correlation rule.
#[derive(Debug, Clone)]
pub struct CorrelationRule {
    /// What the rule states about itself (id, title, level...), as a detection rule does; the
    /// id is derived like a detection rule's when it states none. `correlation.title` reads
    /// through to it.
    pub meta: RuleMeta,
    pub kind: CorrelationType,
    /// The rules it correlates, by `id` or `name`, as written.
    pub rules: Vec<String>,
    /// Field names (or aliases) whose values separate groups. Empty means one group for all.
    pub group_by: Vec<String>,
    pub timespan: Timespan,
    /// Every threshold must hold (the spec allows a range such as `gt` plus `lte`).
    pub condition: Vec<Threshold>,
    /// The `field` of the condition for the `value_*` types; several fields are counted as one
    /// combined value by `value_count`.
    pub fields: Vec<String>,
    /// For `value_percentile`: which percentile (0 to 100) is compared. 50 for `value_median`.
    pub percentile: Option<f64>,
    pub aliases: Vec<Alias>,
    /// Whether the referenced rules still produce matches of their own.
    pub generate: bool,
    pub origin: String,
    pub line: usize,
}

/// A correlation's attributes read as its own (`correlation.id`), as callers always have.
impl Deref for CorrelationRule {
    type Target = RuleMeta;

    fn deref(&self) -> &RuleMeta {
        &self.meta
    }
}

/// One entry of `aliases`: the alias name, and for each referenced rule (by id or name, as
/// written) the field it stands for in that rule's events.
pub type Alias = (String, Vec<(String, String)>);

/// The correlation types of Sigma 2.1, plus pySigma's `value_median`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
    ValueSum,
    ValueAvg,
    ValuePercentile,
    ValueMedian,
}

impl CorrelationType {
    pub const ALL: [CorrelationType; 8] = [
        CorrelationType::EventCount,
        CorrelationType::ValueCount,
        CorrelationType::Temporal,
        CorrelationType::TemporalOrdered,
        CorrelationType::ValueSum,
        CorrelationType::ValueAvg,
        CorrelationType::ValuePercentile,
        CorrelationType::ValueMedian,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
            CorrelationType::ValueSum => "value_sum",
            CorrelationType::ValueAvg => "value_avg",
            CorrelationType::ValuePercentile => "value_percentile",
            CorrelationType::ValueMedian => "value_median",
        }
    }

    /// Whether the type aggregates a `field` of the events.
    pub fn needs_field(&self) -> bool {
        matches!(
            self,
            CorrelationType::ValueCount
                | CorrelationType::ValueSum
                | CorrelationType::ValueAvg
                | CorrelationType::ValuePercentile
                | CorrelationType::ValueMedian
        )
    }

    /// Whether the field must hold numbers.
    pub fn is_numeric(&self) -> bool {
        self.needs_field() && *self != CorrelationType::ValueCount
    }

    pub fn is_temporal(&self) -> bool {
        matches!(
            self,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        )
    }
}

impl fmt::Display for CorrelationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `timespan` such as `5m`, kept with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timespan {
    pub text: String,
    pub millis: i64,
}

/// A comparison operator of a correlation condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CompareOp {
    pub const ALL: [CompareOp; 6] = [
        CompareOp::Gt,
        CompareOp::Gte,
        CompareOp::Lt,
        CompareOp::Lte,
        CompareOp::Eq,
        CompareOp::Neq,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CompareOp::Gt => "gt",
            CompareOp::Gte => "gte",
            CompareOp::Lt => "lt",
            CompareOp::Lte => "lte",
            CompareOp::Eq => "eq",
            CompareOp::Neq => "neq",
        }
    }
}

/// One criterion of a correlation condition: the aggregate `op` the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: CompareOp,
    pub value: f64,
}

impl Threshold {
    pub fn holds(&self, aggregate: f64) -> bool {
        match self.op {
            CompareOp::Gt => aggregate > self.value,
            CompareOp::Gte => aggregate >= self.value,
            CompareOp::Lt => aggregate < self.value,
            CompareOp::Lte => aggregate <= self.value,
            CompareOp::Eq => aggregate == self.value,
            CompareOp::Neq => aggregate != self.value,
        }
    }
}

impl CorrelationRule {
    /// Whether the aggregate meets every threshold of the condition.
    pub fn condition_holds(&self, aggregate: f64) -> bool {
        self.condition
            .iter()
            .all(|threshold| threshold.holds(aggregate))
    }

    /// The field an event matched by the referenced rule `reference` (an id or name, as written
    /// in `rules`) has for `field`, a group-by field or alias.
    pub(crate) fn alias_for<'a>(&'a self, field: &'a str, names: &[&str]) -> &'a str {
        self.aliases
            .iter()
            .find(|(alias, _)| alias == field)
            .and_then(|(_, mapping)| {
                mapping
                    .iter()
                    .find(|(reference, _)| names.contains(&reference.as_str()))
            })
            .map_or(field, |(_, source)| source.as_str())
    }
}
