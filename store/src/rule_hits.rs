//! How often each rule fired: alerts raised in the last day and week, and the last one, per
//! rule id, for the rules pages.
//!
//! One pass over the alerts index's columns (rule id as term ordinals, detection time), with
//! per-ordinal counters kept per segment and turned into rule ids once at the end, so its cost
//! grows with the number of alerts but never loads a stored alert.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, Term};

use crate::alerts::fields;
use crate::query::Visibility;
use crate::{Store, StoreError};

/// A rule's alerts, counted by when Vigil raised them (not by the time of their events, so a
/// backfill of last month's events counts as today's hits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleHits {
    /// Alerts raised at or after the day's start given to [`Store::rule_hits`].
    pub last_24h: u64,
    /// Alerts raised at or after the week's start given to [`Store::rule_hits`].
    pub last_7d: u64,
    /// When the newest alert was raised, however long ago.
    pub last_hit: Option<DateTime<Utc>>,
}

impl Store {
    /// Per rule id (correlations included), its alerts raised since `since_24h` and since
    /// `since_7d`, and its last one. Rules that never fired are absent. Alerts raised on
    /// events `visibility` hides (Vigil's own audit log, for non-admins) are not counted, so
    /// the counts reveal nothing a search would not.
    pub fn rule_hits(
        &self,
        since_24h: DateTime<Utc>,
        since_7d: DateTime<Utc>,
        visibility: &Visibility,
    ) -> Result<BTreeMap<String, RuleHits>, StoreError> {
        let searcher = self.alerts.searcher();
        let source_kind = searcher.schema().get_field(fields::SOURCE_KIND)?;
        let query: Box<dyn Query> = if visibility.hidden_source_kinds.is_empty() {
            Box::new(AllQuery)
        } else {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(AllQuery))];
            for kind in &visibility.hidden_source_kinds {
                // Keyword fields hold lowercased values; see index::keyword.
                let term = Term::from_field_text(source_kind, &kind.to_lowercase());
                clauses.push((
                    Occur::MustNot,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                ));
            }
            Box::new(BooleanQuery::new(clauses))
        };
        let collector = HitsCollector {
            day: nanos(since_24h),
            week: nanos(since_7d),
        };
        searcher
            .search(query.as_ref(), &collector)
            .map_err(crate::query::search_error)
    }
}

fn nanos(time: DateTime<Utc>) -> i64 {
    crate::index::to_tantivy(&time).into_timestamp_nanos()
}

/// Counts per rule; the fruit is by rule id, merged across segments.
struct HitsCollector {
    day: i64,
    week: i64,
}

/// Per term ordinal of one segment's rule id column: the day's count, the week's, and the
/// newest detection time in nanoseconds.
#[derive(Clone, Copy, Default)]
struct Counts {
    day: u64,
    week: u64,
    newest: Option<i64>,
}

struct SegmentHits {
    rules: Option<StrColumn>,
    detected: Option<Column<tantivy::DateTime>>,
    day: i64,
    week: i64,
    by_ordinal: Vec<Counts>,
}

impl Collector for HitsCollector {
    type Fruit = BTreeMap<String, RuleHits>;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        // A segment written before any alert carries none of these columns.
        let rules = reader.fast_fields().str(fields::RULE_ID)?;
        let detected = reader.fast_fields().date(fields::DETECTED).ok();
        let terms = rules
            .as_ref()
            .map_or(0, |column| column.dictionary().num_terms());
        Ok(SegmentHits {
            rules,
            detected,
            day: self.day,
            week: self.week,
            by_ordinal: vec![Counts::default(); terms],
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<BTreeMap<String, RuleHits>>,
    ) -> tantivy::Result<BTreeMap<String, RuleHits>> {
        let mut merged: BTreeMap<String, RuleHits> = BTreeMap::new();
        for fruit in fruits {
            for (rule, hits) in fruit {
                let into = merged.entry(rule).or_default();
                into.last_24h += hits.last_24h;
                into.last_7d += hits.last_7d;
                into.last_hit = into.last_hit.max(hits.last_hit);
            }
        }
        Ok(merged)
    }
}

impl SegmentCollector for SegmentHits {
    type Fruit = BTreeMap<String, RuleHits>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let (Some(rules), Some(detected)) = (&self.rules, &self.detected) else {
            return;
        };
        let Some(time) = detected.first(doc).map(|t| t.into_timestamp_nanos()) else {
            return;
        };
        for ordinal in rules.ords().values_for_doc(doc) {
            let Some(counts) = usize::try_from(ordinal)
                .ok()
                .and_then(|i| self.by_ordinal.get_mut(i))
            else {
                continue;
            };
            counts.day += u64::from(time >= self.day);
            counts.week += u64::from(time >= self.week);
            counts.newest = counts.newest.max(Some(time));
        }
    }

    fn harvest(self) -> BTreeMap<String, RuleHits> {
        let mut out = BTreeMap::new();
        let Some(rules) = self.rules else {
            return out;
        };
        let mut name = String::new();
        for (ordinal, counts) in self.by_ordinal.into_iter().enumerate() {
            let Some(newest) = counts.newest else {
                continue;
            };
            match rules.ord_to_str(ordinal as u64, &mut name) {
                Ok(true) => {}
                _ => continue,
            }
            out.insert(
                name.clone(),
                RuleHits {
                    last_24h: counts.day,
                    last_7d: counts.week,
                    last_hit: Some(Utc.timestamp_nanos(newest)),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, SubsecRound};
    use vigil_event::{Alert, EventId, Level, LogSource, Source};

    fn alert(rule: &str, kind: &str, n: u8, detected: DateTime<Utc>) -> Alert {
        let event = EventId::from_bytes([n; 16]);
        Alert {
            id: Alert::derive_id(rule, &[event]),
            rule_id: rule.to_owned(),
            rule_title: format!("title of {rule}"),
            level: Level::High,
            tags: vec![],
            event_ids: vec![event],
            time: detected - Duration::days(40),
            detected,
            source: Source {
                kind: kind.to_owned(),
                name: kind.to_owned(),
            },
            logsource: LogSource::default(),
            group: Default::default(),
            matched: Vec::new(),
            event_position: None,
        }
    }

    #[test]
    fn counts_alerts_per_rule_by_when_they_were_raised() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let day = now - Duration::hours(24);
        let week = now - Duration::days(7);
        // Two commits, so the counts are merged across segments.
        store
            .index_alerts(&[
                alert("Rule-A", "cloudtrail", 1, now - Duration::hours(1)),
                alert("Rule-A", "cloudtrail", 2, now - Duration::days(3)),
                alert("rule-b", "cloudtrail", 3, now - Duration::days(30)),
            ])
            .unwrap();
        store.commit().unwrap();
        store
            .index_alerts(&[
                alert("Rule-A", "cloudtrail", 4, now - Duration::minutes(5)),
                alert("rule-audit", "vigil-audit", 5, now - Duration::minutes(5)),
            ])
            .unwrap();
        store.commit().unwrap();

        let hits = store
            .rule_hits(day, week, &Visibility::everything())
            .unwrap();
        assert_eq!(
            hits["Rule-A"],
            RuleHits {
                last_24h: 2,
                last_7d: 3,
                // The index keeps detection times to the microsecond.
                last_hit: Some((now - Duration::minutes(5)).trunc_subsecs(6)),
            }
        );
        assert_eq!(hits["rule-b"].last_24h, 0);
        assert_eq!(hits["rule-b"].last_7d, 0);
        assert_eq!(
            hits["rule-b"].last_hit,
            Some((now - Duration::days(30)).trunc_subsecs(6))
        );
        assert_eq!(hits["rule-audit"].last_24h, 1);
        assert_eq!(hits.len(), 3);

        let hidden = store
            .rule_hits(day, week, &Visibility::hiding(&["vigil-audit"]))
            .unwrap();
        assert!(!hidden.contains_key("rule-audit"));
        assert_eq!(hidden["Rule-A"].last_7d, 3);
    }
}
