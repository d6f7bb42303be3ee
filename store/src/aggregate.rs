//! Aggregations over matching events: a date histogram and the top values of a field.
//!
//! Both read fast fields (columns) rather than stored documents, so their cost grows with
//! the number of matches but not with document size, and they never load a record. They take
//! one searcher per partition and merge, so a time range that spans partitions is answered
//! the same way as one that does not.

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::Query;
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use crate::query;
use crate::StoreError;

/// The most buckets a histogram is cut into; the interval is the smallest step from
/// [`INTERVALS`] that keeps within it.
pub const MAX_BUCKETS: i64 = 120;

/// Bucket widths in seconds, from one second to 30 days: steps people read easily.
const INTERVALS: &[i64] = &[
    1,
    5,
    10,
    30,
    60,
    300,
    600,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    7 * 86_400,
    30 * 86_400,
];

/// The most distinct values a facet returns.
pub const MAX_FACET_VALUES: usize = 1000;

/// One bar of a histogram: events with `start <= time < start + interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

/// A date histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// Width of every bucket, in seconds.
    pub interval_seconds: i64,
    /// Consecutive buckets covering the range, empty ones included.
    pub buckets: Vec<Bucket>,
}

/// One value of a field and how many matching events hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacetValue {
    /// The value as indexed: text as sent, numbers as JSON numbers.
    pub value: serde_json::Value,
    pub count: u64,
}

/// The top values of a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facets {
    pub field: String,
    pub values: Vec<FacetValue>,
    /// Matching events holding some other value of the field.
    pub other_count: u64,
    /// Set when the values were counted in a sample of the matches, not all of them: the
    /// counts above are then the sample's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<FacetSample>,
}

/// When [`crate::Store::facets_of_fields`] counts a sample of the matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleAbove {
    /// Past this many matches, an even sample of about this many is counted.
    pub limit: u64,
    /// How many events match, when the caller knows it exactly (a search of the same query
    /// and range gave its total); otherwise they are counted first.
    pub matches: Option<u64>,
}

/// Which matches a sampled facet counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FacetSample {
    /// One match in every `one_in` was counted (by the order they were indexed).
    pub one_in: u64,
    /// How many events matched.
    pub matches: u64,
}

/// The bucket width for a range: the smallest of [`INTERVALS`] that needs at most
/// [`MAX_BUCKETS`] buckets, or whole multiples of 30 days beyond that.
pub fn interval_for(span_seconds: i64) -> i64 {
    let span = span_seconds.max(1);
    INTERVALS
        .iter()
        .copied()
        .find(|step| ceil_div(span, *step) <= MAX_BUCKETS)
        .unwrap_or_else(|| {
            let month = 30 * 86_400;
            (span / MAX_BUCKETS / month + 1) * month
        })
}

/// One searcher's part of a histogram: its query, and the column of times it is cut by
/// (partitions of older layouts lack the arrivals column, and give their event times).
pub(crate) type TimedSearch<'a> = (&'a Searcher, &'a dyn Query, &'a str);

pub(crate) fn histogram(
    searches: &[TimedSearch<'_>],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Histogram, StoreError> {
    // Without an explicit range the histogram spans the matches themselves.
    let (lo, hi) = match (from, to) {
        (Some(from), Some(to)) => (nanos(&from), nanos(&to).saturating_sub(1)),
        _ => {
            let mut seen: Option<(i64, i64)> = None;
            for (searcher, query, time_field) in searches {
                let found = searcher
                    .search(
                        *query,
                        &MinMax {
                            field: (*time_field).to_owned(),
                        },
                    )
                    .map_err(query::search_error)?;
                seen = merge_min_max(seen, found);
            }
            let Some((min, max)) = seen else {
                return Ok(Histogram {
                    interval_seconds: 1,
                    buckets: Vec::new(),
                });
            };
            (
                from.as_ref().map_or(min, nanos),
                to.as_ref().map_or(max, |t| nanos(t).saturating_sub(1)),
            )
        }
    };
    if hi < lo {
        return Ok(Histogram {
            interval_seconds: 1,
            buckets: Vec::new(),
        });
    }
    let span_nanos = hi.saturating_sub(lo).saturating_add(1);
    let interval = interval_for(ceil_div(span_nanos, 1_000_000_000));
    let step = interval.saturating_mul(1_000_000_000);
    let first = lo.div_euclid(step).saturating_mul(step);
    // The interval keeps this near MAX_BUCKETS; the cap only guards against arithmetic that
    // saturated at the ends of the time range.
    let count = usize::try_from(hi.saturating_sub(first) / step + 1)
        .unwrap_or(0)
        .min(MAX_BUCKETS as usize * 2);
    let mut counts = vec![0u64; count];
    for (searcher, query, time_field) in searches {
        let collector = TimeBuckets {
            field: (*time_field).to_owned(),
            first,
            step,
            lo,
            hi,
            count,
        };
        let part = searcher
            .search(*query, &collector)
            .map_err(query::search_error)?;
        counts.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    let buckets = counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| Bucket {
            start: Utc.timestamp_nanos(first.saturating_add(step.saturating_mul(i as i64))),
            count,
        })
        .collect();
    Ok(Histogram {
        interval_seconds: interval,
        buckets,
    })
}

/// Top values of a fast field, merged across partitions exactly: each partition returns
/// intermediate counts that tantivy merges before picking the top `n`.
pub(crate) fn facets(
    searches: &[(&Searcher, &dyn Query)],
    column: &str,
    label: &str,
    n: usize,
) -> Result<Facets, StoreError> {
    let mut all = facets_of_columns(searches, &[(column.to_owned(), label.to_owned())], n)?;
    Ok(all.pop().expect("one facet per column"))
}

/// Top values of several fast fields (column and label each), in one pass over the matches:
/// the query runs once and each match's columns are read together, where a pass per field
/// would run the query and walk the matches once per field.
pub(crate) fn facets_of_columns(
    searches: &[(&Searcher, &dyn Query)],
    columns: &[(String, String)],
    n: usize,
) -> Result<Vec<Facets>, StoreError> {
    let n = n.clamp(1, MAX_FACET_VALUES);
    let empty = || {
        columns
            .iter()
            .map(|(_, label)| Facets {
                field: label.clone(),
                values: Vec::new(),
                other_count: 0,
                sample: None,
            })
            .collect()
    };
    if columns.is_empty() {
        return Ok(empty());
    }
    let named: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .enumerate()
        .map(|(i, (column, _))| {
            (
                facet_name(i),
                serde_json::json!({"terms": {
                    "field": column,
                    "size": n,
                    "segment_size": n.saturating_mul(10).max(100),
                }}),
            )
        })
        .collect();
    let request: Aggregations =
        serde_json::from_value(serde_json::Value::Object(named)).map_err(|e| {
            let labels: Vec<&str> = columns.iter().map(|(_, label)| label.as_str()).collect();
            StoreError::query(format!(
                "cannot aggregate on `{}`: {e}",
                labels.join("`, `")
            ))
        })?;
    let context = || {
        AggContextParams::new(
            AggregationLimitsGuard::default(),
            TokenizerManager::default(),
        )
    };
    let mut merged: Option<IntermediateAggregationResults> = None;
    for (searcher, query) in searches {
        let collector = DistributedAggregationCollector::from_aggs(request.clone(), context());
        let part = searcher
            .search(*query, &collector)
            .map_err(query::search_error)?;
        match merged.as_mut() {
            None => merged = Some(part),
            Some(all) => all.merge_fruits(part)?,
        }
    }
    let Some(merged) = merged else {
        return Ok(empty());
    };
    let result = merged.into_final_result(request, AggregationLimitsGuard::default())?;
    let json = serde_json::to_value(&result).map_err(StoreError::Serialize)?;
    Ok(columns
        .iter()
        .enumerate()
        .map(|(i, (_, label))| {
            let facet = &json[facet_name(i)];
            let values = facet["buckets"]
                .as_array()
                .map(|buckets| {
                    buckets
                        .iter()
                        .map(|b| FacetValue {
                            value: b["key"].clone(),
                            count: b["doc_count"].as_u64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Facets {
                field: label.clone(),
                values,
                other_count: facet["sum_other_doc_count"].as_u64().unwrap_or(0),
                sample: None,
            }
        })
        .collect())
}

/// The name of the `i`th facet in an aggregation request: never a field's own text, which
/// the sender of an event chose.
fn facet_name(i: usize) -> String {
    format!("facet{i}")
}

/// Division rounding up, for positive operands.
fn ceil_div(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

fn nanos(time: &DateTime<Utc>) -> i64 {
    crate::index::to_tantivy(time).into_timestamp_nanos()
}

fn merge_min_max(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (a, None) => a,
        (None, b) => b,
    }
}

fn time_column(reader: &SegmentReader, field: &str) -> tantivy::Result<Column<tantivy::DateTime>> {
    reader.fast_fields().date(field)
}

/// The earliest and latest time among the matches.
struct MinMax {
    field: String,
}

struct SegmentMinMax {
    column: Column<tantivy::DateTime>,
    seen: Option<(i64, i64)>,
}

impl Collector for MinMax {
    type Fruit = Option<(i64, i64)>;
    type Child = SegmentMinMax;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentMinMax> {
        Ok(SegmentMinMax {
            column: time_column(reader, &self.field)?,
            seen: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Option<(i64, i64)>>) -> tantivy::Result<Option<(i64, i64)>> {
        Ok(fruits.into_iter().fold(None, merge_min_max))
    }
}

impl SegmentCollector for SegmentMinMax {
    type Fruit = Option<(i64, i64)>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(time) = self.column.first(doc) {
            let t = time.into_timestamp_nanos();
            self.seen = merge_min_max(self.seen, Some((t, t)));
        }
    }

    fn harvest(self) -> Option<(i64, i64)> {
        self.seen
    }
}

/// Counts matches per bucket of `step` nanoseconds starting at `first`, within `lo..=hi`.
struct TimeBuckets {
    field: String,
    first: i64,
    step: i64,
    lo: i64,
    hi: i64,
    count: usize,
}

struct SegmentTimeBuckets {
    column: Column<tantivy::DateTime>,
    first: i64,
    step: i64,
    lo: i64,
    hi: i64,
    counts: Vec<u64>,
}

impl Collector for TimeBuckets {
    type Fruit = Vec<u64>;
    type Child = SegmentTimeBuckets;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTimeBuckets> {
        Ok(SegmentTimeBuckets {
            column: time_column(reader, &self.field)?,
            first: self.first,
            step: self.step,
            lo: self.lo,
            hi: self.hi,
            counts: vec![0; self.count],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut total = vec![0u64; self.count];
        for fruit in fruits {
            total.iter_mut().zip(fruit).for_each(|(a, b)| *a += b);
        }
        Ok(total)
    }
}

impl SegmentCollector for SegmentTimeBuckets {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let Some(time) = self.column.first(doc) else {
            return;
        };
        let t = time.into_timestamp_nanos();
        if t < self.lo || t > self.hi {
            return;
        }
        let index = usize::try_from(t.saturating_sub(self.first) / self.step).unwrap_or(usize::MAX);
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_keep_bucket_counts_readable() {
        assert_eq!(interval_for(0), 1);
        assert_eq!(interval_for(60), 1);
        assert_eq!(interval_for(15 * 60), 10);
        assert_eq!(interval_for(3600), 30);
        assert_eq!(interval_for(24 * 3600), 1800);
        assert_eq!(interval_for(7 * 86_400), 3 * 3600);
        assert_eq!(interval_for(365 * 86_400), 7 * 86_400);
        let decade = interval_for(3650 * 86_400);
        assert!(ceil_div(3650 * 86_400, decade) <= MAX_BUCKETS);
        for span in [1, 59, 61, 3599, 86_401, 10_000_000, i64::MAX / 2] {
            assert!(ceil_div(span, interval_for(span)) <= MAX_BUCKETS, "{span}");
        }
    }
}
