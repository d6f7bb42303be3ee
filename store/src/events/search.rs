//! Reading the events index: searches merged across partitions a page at a time, histograms
//! and facets, counts, and events by id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use vigil_event::{Event, EventId};

use super::fields;
use super::layout::Layout;
use super::partitions::Partition;
use super::sample::StrideQuery;
use super::EventIndex;
use crate::aggregate;
use crate::index::{self, lock};
use crate::partition::{PartitionKey, TimeSpan};
use crate::query::ast::{Ast, Part, Value, Word};
use crate::query::translate::Translator;
use crate::query::{self, Cursor, SearchRequest, SearchResults, Visibility};
use crate::StoreError;

/// A request's query translated for each layout its partitions have, since each cuts words
/// its own way. Only those are translated: compiling a wildcard's automaton takes
/// milliseconds, which a leading wildcard's search time showed three times over.
pub(super) struct LayoutQueries {
    /// In [`Layout::READABLE`] order; `None` for layouts not searched.
    queries: Vec<Option<Box<dyn Query>>>,
}

impl LayoutQueries {
    pub(super) fn get(&self, layout: Layout) -> &dyn Query {
        self.queries[layout.slot()]
            .as_deref()
            .expect("the query is translated for every layout searched")
    }

    /// Each query with `more` as a further condition.
    fn and(&self, more: &dyn Query) -> LayoutQueries {
        LayoutQueries {
            queries: self
                .queries
                .iter()
                .map(|query| {
                    query.as_ref().map(|query| {
                        Box::new(BooleanQuery::new(vec![
                            (Occur::Must, query.box_clone()),
                            (Occur::Must, more.box_clone()),
                        ])) as Box<dyn Query>
                    })
                })
                .collect(),
        }
    }
}

impl EventIndex {
    /// Searchers over the partitions a range touches, newest first, with their layouts.
    fn searchers(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Searcher, Layout)>, StoreError> {
        self.plan(from, to)?
            .into_iter()
            .map(|(key, _)| {
                self.partitions_searched.fetch_add(1, Ordering::Relaxed);
                let partition = self.partition(key)?;
                Ok((partition.reader.searcher(), partition.layout))
            })
            .collect()
    }

    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .searchers(None, None)?
            .iter()
            .map(|(searcher, _)| searcher.num_docs())
            .sum())
    }

    /// Events by id, looking back from `until` (inclusive) one partition at a time and
    /// stopping once all are found. An alert's events all happened at or before its time.
    pub(crate) fn by_ids(
        &self,
        ids: &[EventId],
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let wanted: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
        let mut found: BTreeMap<String, Event> = BTreeMap::new();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        // An id may be in any partition: events are stored by arrival, and a suspect time is
        // indexed at its arrival, so neither `until` nor the spans can rule one out. The
        // partitions whose span reaches `until` come first, as an alert's events arrived
        // shortly before it was raised; the id filters, where built, skip the rest.
        let mut plan = self.plan(None, None)?;
        plan.sort_by_key(|(key, span)| (span.min > until, std::cmp::Reverse(*key)));
        let filtered: HashMap<PartitionKey, bool> = {
            let filters = lock(&self.id_filters);
            plan.iter()
                .filter_map(|(key, _)| {
                    let filter = filters.get(key)?;
                    Some((*key, ids.iter().any(|id| filter.may_contain(id))))
                })
                .collect()
        };
        for (key, _) in plan {
            if filtered.get(&key) == Some(&false) {
                continue;
            }
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let partition = self.partition(key)?;
            let query = partition.layout.ids_query(&self.fields, ids);
            let searcher = partition.reader.searcher();
            let top = searcher
                .search(&query, &TopDocs::with_limit(wanted.len()).order_by_score())
                .map_err(query::search_error)?;
            for (_, address) in top {
                let doc: TantivyDocument = searcher.doc(address)?;
                let event = self.stored_event(&doc)?;
                found.entry(event.id.to_string()).or_insert(event);
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        // In the order asked for, which for an alert is oldest first.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(&id.to_string()).cloned())
            .collect())
    }

    /// The query for a request, its text and its time range, for each of `layouts`. The
    /// current layout is always translated, so that a query that cannot be translated fails
    /// whether or not any partition is searched.
    pub(super) fn request_query(
        &self,
        text: &str,
        visibility: &Visibility,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        layouts: impl IntoIterator<Item = Layout>,
    ) -> Result<LayoutQueries, StoreError> {
        let ast = restrict(query::parse(text)?, visibility);
        let mut queries: Vec<Option<Box<dyn Query>>> =
            Layout::READABLE.iter().map(|_| None).collect();
        for layout in std::iter::once(Layout::CURRENT).chain(layouts) {
            let slot = &mut queries[layout.slot()];
            if slot.is_none() {
                let matches =
                    Translator::new(&self.query_fields[layout.slot()], now).query(&ast)?;
                *slot = Some(self.in_range(matches, from, to));
            }
        }
        Ok(LayoutQueries { queries })
    }

    fn in_range(
        &self,
        matches: Box<dyn Query>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Box<dyn Query> {
        let mut clauses = vec![(Occur::Must, matches)];
        if from.is_some() || to.is_some() {
            let time =
                |t: &DateTime<Utc>| Term::from_field_date(self.fields.time, index::to_tantivy(t));
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    from.as_ref()
                        .map_or(Bound::Unbounded, |t| Bound::Included(time(t))),
                    to.as_ref()
                        .map_or(Bound::Unbounded, |t| Bound::Excluded(time(t))),
                )),
            ));
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// Events strictly after `cursor` in newest-first order.
    fn after_cursor(&self, cursor: Cursor) -> Box<dyn Query> {
        let time = |nanos| {
            Term::from_field_date(
                self.fields.time,
                tantivy::DateTime::from_timestamp_nanos(nanos),
            )
        };
        let older = RangeQuery::new(Bound::Unbounded, Bound::Excluded(time(cursor.time_nanos)));
        let same_time = RangeQuery::new(
            Bound::Included(time(cursor.time_nanos)),
            Bound::Included(time(cursor.time_nanos)),
        );
        let lower_tiebreak = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_u64(self.fields.tiebreak, cursor.tiebreak)),
        );
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, Box::new(older) as Box<dyn Query>),
            (
                Occur::Should,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, Box::new(same_time) as Box<dyn Query>),
                    (Occur::Must, Box::new(lower_tiebreak)),
                ])),
            ),
        ]))
    }

    pub(crate) fn histogram(
        &self,
        text: &str,
        visibility: &Visibility,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Histogram, StoreError> {
        let searchers = self.searchers(from, to)?;
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let queries = self.request_query(text, visibility, from, to, Utc::now(), layouts)?;
        let timed: Vec<aggregate::TimedSearch<'_>> = with_queries(&searchers, &queries)
            .into_iter()
            .map(|(searcher, query)| (searcher, query, fields::TIME))
            .collect();
        aggregate::histogram(&timed, from, to)
    }

    pub(crate) fn facets(
        &self,
        text: &str,
        visibility: &Visibility,
        field: &str,
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Facets, StoreError> {
        let column = facet_column(field)?;
        let searchers = self.searchers(from, to)?;
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let queries = self.request_query(text, visibility, from, to, Utc::now(), layouts)?;
        aggregate::facets(&with_queries(&searchers, &queries), &column, field, n)
    }

    /// The top values of each of `fields` in one pass over the matches (see
    /// [`aggregate::facets_of_columns`]). A field that cannot be counted gets its error and
    /// the others their values; a query that cannot be translated fails them all.
    ///
    /// With `sample_above`, when more events match than that, the values are counted in an
    /// even sample of about that many matches (see [`super::sample`]), and each facet says
    /// so: counting every match costs time in proportion to the matches and the fields.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn facets_of_fields(
        &self,
        text: &str,
        visibility: &Visibility,
        fields: &[String],
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        sample_above: Option<aggregate::SampleAbove>,
    ) -> Result<Vec<Result<aggregate::Facets, StoreError>>, StoreError> {
        let searchers = self.searchers(from, to)?;
        let layouts = searchers.iter().map(|(_, layout)| *layout);
        let queries = self.request_query(text, visibility, from, to, Utc::now(), layouts)?;
        let mut sample = None;
        let queries = match sample_above {
            // Fewer documents than the limit cannot match more than it: no count needed.
            Some(aggregate::SampleAbove { limit, matches })
                if searchers
                    .iter()
                    .map(|(searcher, _)| searcher.num_docs())
                    .sum::<u64>()
                    > limit =>
            {
                let matches = match matches {
                    Some(known) => known,
                    None => {
                        let mut counted = 0u64;
                        for (searcher, query) in with_queries(&searchers, &queries) {
                            counted += searcher
                                .search(query, &Count)
                                .map_err(query::search_error)?
                                as u64;
                        }
                        counted
                    }
                };
                if matches > limit {
                    let one_in = matches.div_ceil(limit.max(1));
                    sample = Some(aggregate::FacetSample { one_in, matches });
                    let step = u32::try_from(one_in).unwrap_or(u32::MAX);
                    queries.and(&StrideQuery { step })
                } else {
                    queries
                }
            }
            _ => queries,
        };
        let searches = with_queries(&searchers, &queries);
        let columns: Vec<Result<String, StoreError>> =
            fields.iter().map(|field| facet_column(field)).collect();
        let countable: Vec<(String, String)> = fields
            .iter()
            .zip(&columns)
            .filter_map(|(field, column)| Some((column.as_ref().ok()?.clone(), field.clone())))
            .collect();
        let mut counted = match aggregate::facets_of_columns(&searches, &countable, n) {
            Ok(counted) => counted.into_iter().map(Ok).collect::<Vec<_>>(),
            // One column tantivy refuses should not cost the others their values: each is
            // then counted on its own, and only the refused one fails.
            Err(_) => countable
                .iter()
                .map(|(column, label)| aggregate::facets(&searches, column, label, n))
                .collect(),
        }
        .into_iter();
        Ok(columns
            .into_iter()
            .map(|column| match column {
                Ok(_) => counted
                    .next()
                    .expect("one count per countable field")
                    .map(|facets| aggregate::Facets { sample, ..facets }),
                Err(error) => Err(error),
            })
            .collect())
    }

    pub(crate) fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        let cursor = request.cursor.as_deref().map(Cursor::decode).transpose()?;
        // A partition that cannot be opened (damaged, or removed by retention just now)
        // should not hide the others; the total says it is incomplete instead.
        let partitions: Vec<(TimeSpan, Option<Arc<Partition>>)> = self
            .plan(request.from, request.to)?
            .into_iter()
            .map(|(key, span)| (span, self.partition(key).ok()))
            .collect();
        let layouts = partitions
            .iter()
            .flat_map(|(_, p)| p.as_ref().map(|p| p.layout));
        let queries = self.request_query(
            &request.query,
            &request.visibility,
            request.from,
            request.to,
            Utc::now(),
            layouts,
        )?;
        let page_queries = cursor.map(|cursor| queries.and(self.after_cursor(cursor).as_ref()));
        let mut total = 0;
        let mut total_is_lower_bound = false;
        // Newest first, at most `limit`.
        let mut page: Vec<(Cursor, Event)> = Vec::new();
        let order = |c: &Cursor| (c.time_nanos, c.tiebreak);
        let nanos = |t: &DateTime<Utc>| index::to_tantivy(t).into_timestamp_nanos();
        for (span, partition) in partitions {
            let Some(partition) = partition else {
                total_is_lower_bound = true;
                continue;
            };
            self.partitions_searched.fetch_add(1, Ordering::Relaxed);
            let searcher = partition.reader.searcher();
            let query = queries.get(partition.layout);
            total += searcher
                .search(query, &Count)
                .map_err(query::search_error)? as u64;
            // Spans may overlap (events arrive out of time), so each partition's newest hits
            // are merged into the page. A partition whose every event is newer than the
            // cursor holds nothing past it; one whose every event is older than a full
            // page's oldest hit cannot change the page. Partitions come newest first by
            // their latest event, so in a stream the rest are skipped once a page is full.
            let past_cursor = cursor.is_some_and(|c| nanos(&span.min) > c.time_nanos);
            let full = page.len() >= request.limit;
            let cannot_improve = full
                && page
                    .last()
                    .is_some_and(|(c, _)| c.time_nanos > nanos(&span.max));
            if request.limit == 0 || past_cursor || cannot_improve {
                continue;
            }
            let page_query = page_queries
                .as_ref()
                .map_or(query, |q| q.get(partition.layout));
            for (key, address) in self.page(&searcher, page_query, request.limit)? {
                if page.len() >= request.limit
                    && page
                        .last()
                        .is_some_and(|(last, _)| order(&key) <= order(last))
                {
                    // Its hits come newest first, so none of the rest makes the page either.
                    break;
                }
                let doc: TantivyDocument = searcher.doc(address)?;
                let at = page.partition_point(|(other, _)| order(other) > order(&key));
                page.insert(at, (key, self.stored_event(&doc)?));
                page.truncate(request.limit);
            }
        }
        let next_cursor = match page.last() {
            Some((key, _)) if page.len() == request.limit => Some(key.encode()),
            _ => None,
        };
        Ok(SearchResults {
            total,
            total_is_lower_bound,
            hits: page.into_iter().map(|(_, event)| event).collect(),
            next_cursor,
        })
    }

    /// The newest `limit` matches with the sort keys a cursor is made of.
    fn page(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        limit: usize,
    ) -> Result<Vec<(Cursor, DocAddress)>, StoreError> {
        let top = index::greatest_by::<tantivy::DateTime, u64>(
            searcher,
            query,
            limit,
            fields::TIME,
            fields::TIEBREAK,
        )
        .map_err(query::search_error)?;
        Ok(top
            .into_iter()
            .map(|((time, tiebreak), address)| {
                let cursor = Cursor {
                    time_nanos: time.map_or(i64::MIN, |t| t.into_timestamp_nanos()),
                    tiebreak: tiebreak.unwrap_or(0),
                };
                (cursor, address)
            })
            .collect())
    }

    pub(super) fn stored_event(&self, doc: &TantivyDocument) -> Result<Event, StoreError> {
        index::stored_json(doc, self.fields.id, self.fields.doc, "event")
    }
}

/// Each searcher with the query for its partition's layout.
fn with_queries<'q>(
    searchers: &'q [(Searcher, Layout)],
    queries: &'q LayoutQueries,
) -> Vec<(&'q Searcher, &'q dyn Query)> {
    searchers
        .iter()
        .map(|(searcher, layout)| (searcher, queries.get(*layout)))
        .collect()
}

/// The fast column behind a facet: a keyword field, or a path inside the record.
fn facet_column(field: &str) -> Result<String, StoreError> {
    let keywords = [
        fields::SOURCE_KIND,
        fields::SOURCE_NAME,
        fields::PRODUCT,
        fields::SERVICE,
        fields::CATEGORY,
    ];
    if keywords.contains(&field) {
        return Ok(field.to_owned());
    }
    let not_a_facet = [
        fields::ID,
        fields::TIME,
        fields::TEXT,
        fields::DOC,
        fields::TIEBREAK,
        fields::RECORD,
    ];
    if not_a_facet.contains(&field) {
        return Err(StoreError::query(format!(
            "`{field}` has no values to count; use a source field or a path in the record"
        )));
    }
    let path = field
        .strip_prefix(fields::RECORD)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(field);
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(StoreError::query(format!(
            "`{field}` is not a valid field path"
        )));
    }
    Ok(format!("{}.{path}", fields::RECORD))
}

/// `ast`, restricted to the events `visibility` lets the caller see. The restriction is a
/// clause of its own beside the parsed query, so no query text can undo it.
fn restrict(ast: Ast, visibility: &Visibility) -> Ast {
    if visibility.hidden_source_kinds.is_empty() {
        return ast;
    }
    let mut clauses = vec![ast];
    for kind in &visibility.hidden_source_kinds {
        clauses.push(Ast::Not(Box::new(Ast::Leaf {
            field: Some(fields::SOURCE_KIND.to_owned()),
            value: Value::Word(Word(kind.chars().map(Part::Char).collect())),
            pos: 0,
        })));
    }
    Ast::And(clauses)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde_json::json;
    use vigil_event::{EventId, LogSource, Record, Source};

    use super::*;
    use crate::partition::PartitionScheme;

    fn event(n: u32, record: serde_json::Value) -> Event {
        let time =
            Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap() + Duration::seconds(n.into());
        Event {
            id: EventId::derive("facets test", &[&n.to_le_bytes()]),
            time,
            received: time,
            source: Source {
                kind: if n.is_multiple_of(3) {
                    "k8s"
                } else {
                    "cloudtrail"
                }
                .into(),
                name: "bench".into(),
            },
            logsource: LogSource::default(),
            record: Record::json(&record.to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    /// Counted in one pass, every field has the values and counts a pass of its own gives,
    /// and a field that cannot be counted fails alone.
    fn above(limit: u64, matches: Option<u64>) -> aggregate::SampleAbove {
        aggregate::SampleAbove { limit, matches }
    }

    #[test]
    fn facets_of_fields_count_as_one_field_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), PartitionScheme::default(), false, 8).unwrap();
        const NAMES: [&str; 3] = ["ConsoleLogin", "GetObject", "AssumeRole"];
        let events: Vec<Event> = (0..60)
            .map(|n| {
                event(
                    n,
                    json!({
                        "eventName": NAMES[n as usize % 3],
                        "user": {"name": format!("user{}", n % 7)},
                        "bytes": n % 4,
                        "tags": ["a", format!("t{}", n % 2)],
                    }),
                )
            })
            .collect();
        index.index(&events).unwrap();
        index.commit().unwrap();
        let everyone = Visibility::everything();
        let fields: Vec<String> = [
            "source_kind",
            "eventName",
            "user.name",
            "time",
            "bytes",
            "tags",
            "absent",
            "a..b",
        ]
        .map(String::from)
        .to_vec();
        for query in ["", "-eventName:getobject", "user.name:user3"] {
            let together = index
                .facets_of_fields(query, &everyone, &fields, 3, None, None, None)
                .unwrap();
            assert_eq!(together.len(), fields.len());
            for (field, together) in fields.iter().zip(together) {
                let alone = index.facets(query, &everyone, field, 3, None, None);
                match (alone, together) {
                    (Ok(alone), Ok(together)) => assert_eq!(alone, together, "{query} {field}"),
                    (Err(_), Err(_)) => {}
                    (alone, together) => panic!("{query} {field}: {alone:?} {together:?}"),
                }
            }
        }
        let together = index
            .facets_of_fields("", &everyone, &fields, 3, None, None, None)
            .unwrap();
        assert_eq!(together[1].as_ref().unwrap().values[0].count, 20);
        assert_eq!(together[0].as_ref().unwrap().values[0].count, 40);
        assert!(together[3].is_err() && together[7].is_err());

        // Over the limit, an even sample is counted, and each facet says which.
        let sampled = index
            .facets_of_fields("", &everyone, &fields, 3, None, None, Some(above(10, None)))
            .unwrap();
        let kinds = sampled[0].as_ref().unwrap();
        let counted: u64 = kinds.values.iter().map(|v| v.count).sum::<u64>() + kinds.other_count;
        assert_eq!(counted, 10);
        assert_eq!(
            kinds.sample,
            Some(aggregate::FacetSample {
                one_in: 6,
                matches: 60
            })
        );
        // A count the caller knows is taken as given.
        let told = index
            .facets_of_fields(
                "",
                &everyone,
                &fields,
                3,
                None,
                None,
                Some(above(10, Some(30))),
            )
            .unwrap();
        let kinds = told[0].as_ref().unwrap();
        let counted: u64 = kinds.values.iter().map(|v| v.count).sum::<u64>() + kinds.other_count;
        assert_eq!((counted, kinds.sample.unwrap().one_in), (20, 3));
        // Under it, all are counted.
        let whole = index
            .facets_of_fields("", &everyone, &fields, 3, None, None, Some(above(60, None)))
            .unwrap();
        assert_eq!(whole[0].as_ref().unwrap().sample, None);
        assert_eq!(whole[0].as_ref().unwrap(), together[0].as_ref().unwrap());
        assert!(index
            .facets_of_fields("verb:/(unclosed/", &everyone, &fields, 3, None, None, None)
            .is_err());
    }
}
