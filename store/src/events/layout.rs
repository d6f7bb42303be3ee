//! The layouts of event partitions: the schema each was written with, and how a query is cut
//! for it.
//!
//! # Why old layouts are read as they are, not rewritten on open
//!
//! A store reads seven layouts ([`Layout::READABLE`]). The term-dictionary upgrade
//! (`index::TERMS_FILE`) rewrites old indices when a writing store opens them, and the same
//! could be done here, leaving one layout to read. It is not, for these reasons:
//!
//! - **It cannot be done in place.** The term-dictionary upgrade keeps each index's schema and
//!   swaps all its segments in one commit, so a crash leaves the old index whole. A layout is
//!   a schema (tokenizer names, which fields are indexed, the `time_suspect` field, the `received` column), and
//!   tantivy fixes the schema when an index is created. Moving a partition to the current
//!   layout means building a second index beside it and swapping directories, which is not
//!   one atomic step and would need a recovery protocol of its own, and takes the
//!   partition's space twice while it runs.
//! - **It would re-index everything kept, before the store opens.** Every partition written
//!   before the current layout (with retention, up to all of the data) would go through the
//!   indexer again at start-up, where today opening reads no documents. At the store
//!   benchmark's 15.7 to 19.1 MB of records per CPU second (benches/RESULTS.md), and an index
//!   of 0.81x its records, that is at least 11 to 13 CPU minutes per 10 GB of partitions,
//!   before reading the stored copies back, while nothing is indexed or searchable.
//! - **It would change answers.** A partition of an older layout answers as its words were
//!   cut: `requestID:648f0f94` (part of a UUID) finds events in partitions of the first two
//!   layouts, and those partitions were cut by event time rather than arrival. Rewriting
//!   would change what searches over kept data return, which the tests below pin down.
//! - **What the branching costs is small and confined.** What differs by layout is decided
//!   here, by methods of [`Layout`] (`text_indexing`, `analyzer`, `whole_words`,
//!   `ids_by_tiebreak`, `flags_suspect_times`, `ids_query`) and by [`schema`]. Elsewhere only
//!   three places ask: a search translates its query once per layout it meets (`search.rs`,
//!   only those layouts, so a store holding only current partitions translates once), and
//!   finding or deleting an id and building a partition's id filter use the tiebreak or the
//!   id term (`write.rs`).
//!
//! Partitions are removed whole by retention, so old layouts disappear as their data ages
//! out. Once a Vigil no longer expects any, a layout can leave [`Layout::READABLE`] with its
//! branches, and such partitions be refused with the advice given for unpartitioned indices:
//! move them aside and replay the bus.

use tantivy::query::Query;
use tantivy::schema::{
    Field, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing, TextOptions, STORED,
    STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;

use vigil_event::EventId;

use super::fields;
use crate::index;
use crate::query::eventid::EventIdQuery;
use crate::query::translate::{EventIdFields, QueryFields, WholeWords};
use crate::StoreError;

#[derive(Clone, Copy)]
pub(super) struct EventFields {
    pub(super) id: Field,
    pub(super) time: Field,
    pub(super) source_kind: Field,
    pub(super) source_name: Field,
    pub(super) product: Field,
    pub(super) service: Field,
    pub(super) category: Field,
    pub(super) record: Field,
    pub(super) text: Field,
    pub(super) doc: Field,
    pub(super) tiebreak: Field,
    /// Only in partitions of [`Layout::SuspectTimes`] and later.
    pub(super) time_suspect: Field,
    /// Only in partitions of [`Layout::Arrivals`].
    pub(super) received: Field,
}

/// The layouts of event partitions, oldest first. Partitions are written once and kept, so a
/// partition cut by an earlier Vigil keeps its layout, and each new layout keeps the fields,
/// their order and their types, changing only how they are indexed. Queries are translated
/// for each layout they meet (see [`LayoutQueries`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Layout {
    /// Time and tiebreak were also indexed as terms.
    First,
    /// Time and tiebreak are columns only: range queries read a fast field's column whether
    /// or not it is indexed, so the terms were never read, and they cost two unique terms
    /// per event in every term dictionary.
    ColumnsOnly,
    /// As `ColumnsOnly`, with record and text words cut by [`index::WORDS_TOKENIZER`]: a
    /// UUID is one word rather than five. The parts of UUIDs were nine in ten of the distinct
    /// record words of the store benchmark's partitions.
    Words,
    /// As `Words`, with the id stored but not indexed, and the tiebreak (its first eight
    /// bytes) indexed in its place; ids are found as [`EventIdQuery`] explains.
    IdsByTiebreak,
    /// As `IdsByTiebreak`, with record and text words cut by
    /// [`index::VALUE_WORDS_TOKENIZER`]: an RFC 3339 time and an IPv4 address are one word
    /// each, as a UUID is. Cut apart, they gave four to six words each, nearly all of them
    /// words every event has; whole, the store benchmark needed 1.02x to 1.05x less CPU per
    /// event (three runs beside the build before).
    WholeValues,
    /// As `WholeValues`, with a `time_suspect` keyword after the other fields, set on events
    /// whose own time is implausible; partitions are cut by arrival from this layout on
    /// (partitions of earlier layouts were cut by event time, and may still be written when
    /// their period is the current one).
    SuspectTimes,
    /// As `SuspectTimes`, with each event's arrival (the time partitions are cut by) as a
    /// column after the other fields. Event times are the sender's to choose, so rates and
    /// "last seen" figures read arrivals; partitions without the column answer those by
    /// event time (see `EventIndex::arrivals`).
    Arrivals,
}

impl Layout {
    /// Every layout this store reads, the one new partitions get first.
    pub(super) const READABLE: [Layout; 7] = [
        Layout::Arrivals,
        Layout::SuspectTimes,
        Layout::WholeValues,
        Layout::IdsByTiebreak,
        Layout::Words,
        Layout::ColumnsOnly,
        Layout::First,
    ];
    pub(super) const CURRENT: Layout = Layout::READABLE[0];

    /// This layout's place in [`Layout::READABLE`], and in tables that follow it.
    pub(super) fn slot(self) -> usize {
        Layout::READABLE
            .iter()
            .position(|layout| *layout == self)
            .expect("every layout is readable")
    }

    /// How record and text values are cut into words when indexed. [`Layout::analyzer`] must
    /// cut a query the same way, so the two choose side by side.
    fn text_indexing(self) -> TextFieldIndexing {
        match self {
            Layout::First | Layout::ColumnsOnly => index::text_indexing(),
            Layout::Words | Layout::IdsByTiebreak => index::words_indexing(),
            Layout::WholeValues | Layout::SuspectTimes | Layout::Arrivals => {
                index::value_words_indexing()
            }
        }
    }

    /// The words of record and text values: how the index cut them, and so how a query must.
    fn analyzer(self) -> TextAnalyzer {
        match self {
            Layout::First | Layout::ColumnsOnly => index::text_analyzer(),
            Layout::Words | Layout::IdsByTiebreak => index::words_analyzer(),
            Layout::WholeValues | Layout::SuspectTimes | Layout::Arrivals => {
                index::value_words_analyzer()
            }
        }
    }

    /// The id has no term; the tiebreak's term and the stored id find it.
    pub(super) fn ids_by_tiebreak(self) -> bool {
        matches!(
            self,
            Layout::IdsByTiebreak | Layout::WholeValues | Layout::SuspectTimes | Layout::Arrivals
        )
    }

    /// Whether the layout has the `time_suspect` field.
    pub(super) fn flags_suspect_times(self) -> bool {
        matches!(self, Layout::SuspectTimes | Layout::Arrivals)
    }

    /// Whether the layout has the `received` column of arrivals.
    pub(super) fn has_arrivals(self) -> bool {
        matches!(self, Layout::Arrivals)
    }

    /// Which values [`Layout::analyzer`] keeps as one word.
    fn whole_words(self) -> WholeWords {
        match self {
            Layout::First | Layout::ColumnsOnly => WholeWords::None,
            Layout::Words | Layout::IdsByTiebreak => WholeWords::Uuids,
            Layout::WholeValues | Layout::SuspectTimes | Layout::Arrivals => {
                WholeWords::UuidsTimesAndAddresses
            }
        }
    }

    /// A query for exactly these events in a partition of this layout.
    pub(super) fn ids_query<'a>(
        self,
        fields: &EventFields,
        ids: impl IntoIterator<Item = &'a EventId>,
    ) -> Box<dyn Query> {
        if self.ids_by_tiebreak() {
            Box::new(EventIdQuery::ids(fields.tiebreak, fields.id, ids))
        } else {
            let terms = ids
                .into_iter()
                .map(|id| Term::from_field_text(fields.id, &id.to_string()));
            Box::new(tantivy::query::TermSetQuery::new(terms))
        }
    }
}

/// The schemas of every readable layout, the current one first.
pub(super) fn readable_schemas() -> Vec<Schema> {
    Layout::READABLE
        .iter()
        .map(|layout| schema(*layout).0)
        .collect()
}

pub(super) fn schema(layout: Layout) -> (Schema, EventFields) {
    let mut builder = Schema::builder();
    let keyword = index::keyword;
    // The record's words are lowercased and split like prose: `eventName:consolelogin` and
    // `userAgent:curl` match, and phrases (`"10.0.0.1"`) match runs of words.
    let text_indexing = layout.text_indexing();
    let record_options = JsonObjectOptions::default()
        .set_indexing_options(text_indexing.clone())
        // Kubernetes annotation keys such as `authorization.k8s.io/decision` hold dots; expanding
        // them lets the same dotted path reach a nested object or a dotted key.
        .set_expand_dots_enabled()
        // The raw values as columns: numeric ranges, `field:*` and facets read them instead
        // of walking the term dictionary.
        .set_fast("raw");
    let (time, tiebreak) = match layout {
        Layout::First => (
            index::timestamp(),
            NumericOptions::default().set_indexed().set_fast(),
        ),
        Layout::ColumnsOnly | Layout::Words => (
            index::fast_timestamp(),
            NumericOptions::default().set_fast(),
        ),
        Layout::IdsByTiebreak | Layout::WholeValues | Layout::SuspectTimes | Layout::Arrivals => (
            index::fast_timestamp(),
            NumericOptions::default().set_indexed().set_fast(),
        ),
    };
    let id: TextOptions = if layout.ids_by_tiebreak() {
        STORED.into()
    } else {
        STRING | STORED
    };
    let fields = EventFields {
        id: builder.add_text_field(fields::ID, id),
        time: builder.add_date_field(fields::TIME, time),
        source_kind: builder.add_text_field(fields::SOURCE_KIND, keyword()),
        source_name: builder.add_text_field(fields::SOURCE_NAME, keyword()),
        product: builder.add_text_field(fields::PRODUCT, keyword()),
        service: builder.add_text_field(fields::SERVICE, keyword()),
        category: builder.add_text_field(fields::CATEGORY, keyword()),
        record: builder.add_json_field(fields::RECORD, record_options),
        text: builder.add_text_field(
            fields::TEXT,
            TextOptions::default().set_indexing_options(text_indexing),
        ),
        doc: builder.add_text_field(fields::DOC, STORED),
        tiebreak: builder.add_u64_field(fields::TIEBREAK, tiebreak),
        // Every layout has the fields above, in that order. Only the fields of the current
        // layout are written, and this stands in for a field that older layouts lack.
        time_suspect: Field::from_field_id(u32::MAX),
        received: Field::from_field_id(u32::MAX),
    };
    let fields = if layout.flags_suspect_times() {
        EventFields {
            time_suspect: builder.add_text_field(fields::TIME_SUSPECT, index::keyword()),
            ..fields
        }
    } else {
        fields
    };
    let fields = if layout.has_arrivals() {
        // A column only: aggregations and sorts read it, no query names it, so a record's
        // own `received` field keeps its name in queries.
        EventFields {
            received: builder.add_date_field(fields::RECEIVED, index::fast_timestamp()),
            ..fields
        }
    } else {
        fields
    };
    (builder.build(), fields)
}

/// The layout a partition was written with, if this store reads it.
pub(super) fn layout_of(written: &Schema) -> Option<Layout> {
    Layout::READABLE
        .into_iter()
        .find(|layout| schema(*layout).0 == *written)
}

pub(super) fn query_fields(layout: Layout) -> Result<QueryFields, StoreError> {
    let schema = schema(layout).0;
    let field = |name: &str| schema.get_field(name).map_err(StoreError::Index);
    let mut keywords = vec![
        fields::SOURCE_KIND,
        fields::SOURCE_NAME,
        fields::PRODUCT,
        fields::SERVICE,
        fields::CATEGORY,
    ];
    let event_ids = if layout.ids_by_tiebreak() {
        Some(EventIdFields {
            name: fields::ID,
            tiebreak: field(fields::TIEBREAK)?,
            id: field(fields::ID)?,
        })
    } else {
        keywords.insert(0, fields::ID);
        None
    };
    if layout.flags_suspect_times() {
        keywords.push(fields::TIME_SUSPECT);
    }
    Ok(QueryFields {
        record: field(fields::RECORD)?,
        record_name: fields::RECORD,
        text: field(fields::TEXT)?,
        text_name: fields::TEXT,
        bare_terms_in_record: true,
        time: field(fields::TIME)?,
        time_name: fields::TIME,
        keywords: keywords
            .into_iter()
            .map(|name| Ok((name, field(name)?)))
            .collect::<Result<_, StoreError>>()?,
        hidden: vec![fields::DOC, fields::TIEBREAK],
        analyzer: layout.analyzer(),
        whole_words: layout.whole_words(),
        event_ids,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Duration, TimeZone};
    use serde_json::json;
    use vigil_event::{LogSource, Record, Source};

    use super::*;
    use crate::events::EventIndex;
    use crate::partition::PartitionScheme;
    use crate::query::Visibility;
    use crate::query::{SearchRequest, SearchResults};
    use chrono::Utc;
    use vigil_event::Event;

    const REQUEST_ID: &str = "648f0f94-0271-4c20-91ac-8d2e43787313";

    fn login(n: u32) -> Event {
        login_on(20, n)
    }

    fn login_on(day: u32, n: u32) -> Event {
        let time = Utc.with_ymd_and_hms(2026, 11, day, 9, 0, n).unwrap();
        let record = json!({
            "eventName": "ConsoleLogin",
            "n": n,
            "requestID": REQUEST_ID,
            "eventTime": format!("2026-11-{day}T09:00:{n:02}Z"),
            "sourceIPAddress": "203.0.113.66",
        });
        Event {
            id: EventId::derive("layout test", &[&n.to_le_bytes()]),
            time,
            received: time + Duration::seconds(1),
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail".into(),
            },
            logsource: LogSource::default(),
            record: Record::json(&record.to_string()).unwrap(),
            fields: serde_json::Map::new(),
        }
    }

    /// The layout of each partition, newest first.
    fn layouts(index: &EventIndex) -> Vec<Layout> {
        index
            .plan(None, None)
            .unwrap()
            .into_iter()
            .map(|(key, _)| index.partition(key).unwrap().layout)
            .collect()
    }

    fn ns(results: &SearchResults) -> Vec<i64> {
        results
            .hits
            .iter()
            .map(|e| e.document().unwrap()["n"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn partitions_of_the_first_layout_are_searched_paged_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            // New partitions get the first schema listed: here, the first layout.
            index.schemas.reverse();
            index.index(&[login(1), login(2)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        let key = scheme.key(login(1).time);
        let written = index::open_index(&index.partition_dir(key), &index.schemas, false)
            .unwrap()
            .schema();
        assert!(written == schema(Layout::First).0 && written != schema(Layout::CURRENT).0);

        // A late event lands in the old partition, in its layout.
        index.index(&[login(3)]).unwrap();
        index.commit().unwrap();
        let from = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 2).unwrap();
        let request = SearchRequest {
            query: "eventName:consolelogin".into(),
            from: Some(from),
            to: None,
            limit: 1,
            cursor: None,
            visibility: Default::default(),
        };
        let first = index.search(&request).unwrap();
        assert_eq!(ns(&first), [3]);
        // Its words were cut as they were then: a UUID is five words there.
        let parts = SearchRequest {
            query: "requestID:648f0f94".into(),
            limit: 10,
            ..request.clone()
        };
        assert_eq!(ns(&index.search(&parts).unwrap()), [3, 2]);
        let after = |page: &SearchResults| {
            index
                .search(&SearchRequest {
                    cursor: page.next_cursor.clone(),
                    ..request.clone()
                })
                .unwrap()
        };
        let second = after(&first);
        assert_eq!(ns(&second), [2]);
        assert_eq!(ns(&after(&second)), Vec::<i64>::new());
    }

    /// Each partition is searched with the query cut the way its layout cut the words.
    #[test]
    fn one_query_reaches_partitions_of_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        for (layout, day) in [
            (Layout::First, 20),
            (Layout::ColumnsOnly, 21),
            (Layout::Words, 22),
            (Layout::IdsByTiebreak, 23),
            (Layout::WholeValues, 24),
            (Layout::SuspectTimes, 25),
        ] {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            index.schemas.retain(|s| *s == schema(layout).0);
            index.index(&[login_on(day, day)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        index.index(&[login_on(26, 26)]).unwrap();
        index.commit().unwrap();
        assert_eq!(layouts(&index), Layout::READABLE, "newest first");

        let days = |query: &str| -> Vec<u32> {
            let request = SearchRequest {
                query: query.into(),
                from: None,
                to: None,
                limit: 10,
                cursor: None,
                visibility: Default::default(),
            };
            let results = index.search(&request).unwrap();
            assert_eq!(results.total, results.hits.len() as u64, "{query}");
            results.hits.iter().map(|e| e.time.day()).collect()
        };
        for query in [
            format!("requestID:{REQUEST_ID}"),
            format!("requestID:{}", REQUEST_ID.to_uppercase()),
            REQUEST_ID.to_owned(),
            "requestID:648f0f94*".into(),
            "requestID:*8d2e43787313".into(),
            "requestID:648f0f94-0271*".into(),
            "*-4c20-91ac-*".into(),
            "sourceIPAddress:203.0.113.66".into(),
            "203.0.113.66".into(),
            "\"203.0.113.66\"".into(),
            "sourceIPAddress:203.0.113.*".into(),
            "sourceIPAddress:*.113.66".into(),
            "*.0.113.6?".into(),
            "eventTime:2026-11-2*".into(),
            "eventTime:2026-11-2?T09*".into(),
        ] {
            assert_eq!(days(&query), [26, 25, 24, 23, 22, 21, 20], "{query}");
        }
        // Only where a UUID was cut into words is a part of one a word.
        assert_eq!(days("requestID:648f0f94"), [21, 20]);
        assert_eq!(days("requestID:/648f0f94-.*/"), [26, 25, 24, 23, 22]);
        // So too for times and addresses.
        assert_eq!(days("sourceIPAddress:113"), [23, 22, 21, 20]);
        assert_eq!(days("sourceIPAddress:/203\\.0\\..*/"), [26, 25, 24]);
        assert_eq!(days("eventTime:\"2026-11-25T09:00:25Z\""), [25]);
        assert_eq!(days("eventTime:\"2026-11-24T09:00:24Z\""), [24]);
        assert_eq!(days("eventTime:\"2026-11-23T09:00:23Z\""), [23]);

        // Ids, whether indexed as terms or found through their tiebreak.
        let events: Vec<Event> = (20..=26).map(|day| login_on(day, day)).collect();
        for event in &events {
            let id = event.id.to_string();
            let day = event.time.day();
            assert_eq!(days(&format!("id:{id}")), [day]);
            assert_eq!(days(&format!("id:{}", id.to_uppercase())), [day]);
            assert_eq!(days(&format!("id:{}*", &id[..8])), [day]);
            assert_eq!(days(&format!("id:{}*", &id[..20])), [day]);
        }
        assert_eq!(days("id:*"), [26, 25, 24, 23, 22, 21, 20]);
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let until = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        assert_eq!(index.by_ids(&ids, until).unwrap(), events);

        let histogram = index
            .histogram(
                &format!("requestID:{REQUEST_ID}"),
                &Visibility::everything(),
                None,
                None,
            )
            .unwrap();
        let counted: u64 = histogram.buckets.iter().map(|b| b.count).sum();
        assert_eq!(counted, 7);
        let facets = index
            .facets(
                &format!("{REQUEST_ID} eventName:consolelogin"),
                &Visibility::everything(),
                "eventName",
                5,
                None,
                None,
            )
            .unwrap();
        assert_eq!(facets.values.len(), 1);
        assert_eq!(facets.values[0].count, 7);
    }

    /// An event resent on another day arrives in another partition, while its id is stored
    /// in a partition of an older layout, whose ids are terms rather than tiebreaks: the copy
    /// stored first stays and the resend adds nothing. (Before partitions were cut by arrival,
    /// a timeless resend replaced its copy; keeping the first is what stops a resend from
    /// rewriting an event, and needs no writer on the old partition.)
    #[test]
    fn a_resend_on_another_day_keeps_its_copy_in_an_older_layout() {
        let dir = tempfile::tempdir().unwrap();
        let scheme = PartitionScheme::default();
        let timeless = |day: u32| {
            let mut event = login_on(day, 7);
            event.received = event.time;
            event
        };
        {
            let mut index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
            index.schemas.retain(|s| *s == schema(Layout::Words).0);
            index.index(&[timeless(20)]).unwrap();
            index.commit().unwrap();
        }
        let index = EventIndex::open(dir.path(), scheme, false, 8).unwrap();
        index.index(&[login_on(21, 8)]).unwrap();
        index.index(&[timeless(21)]).unwrap();
        index.commit().unwrap();
        assert_eq!(layouts(&index), [Layout::CURRENT, Layout::Words]);
        let request = SearchRequest {
            query: String::new(),
            from: None,
            to: None,
            limit: 10,
            cursor: None,
            visibility: Default::default(),
        };
        let found: Vec<(u32, i64)> = index
            .search(&request)
            .unwrap()
            .hits
            .iter()
            .map(|e| (e.time.day(), e.document().unwrap()["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            found,
            [(21, 8), (20, 7)],
            "one copy of the resent event, the first, and the other event"
        );
        assert_eq!(index.stats().unwrap().duplicates_skipped, 1);
    }

    #[test]
    fn a_query_that_cannot_be_translated_fails_without_partitions_too() {
        let dir = tempfile::tempdir().unwrap();
        let index = EventIndex::open(dir.path(), PartitionScheme::default(), false, 8).unwrap();
        let request = SearchRequest {
            query: "verb:/(unclosed/".into(),
            from: None,
            to: None,
            limit: 10,
            cursor: None,
            visibility: Default::default(),
        };
        assert!(matches!(
            index.search(&request),
            Err(StoreError::Query { .. })
        ));
        assert!(index
            .histogram("verb:/(unclosed/", &Visibility::everything(), None, None)
            .is_err());
    }
}
