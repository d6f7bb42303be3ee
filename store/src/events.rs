//! The events index.

use std::path::Path;

use std::ops::Bound;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{
    Field, JsonObjectOptions, NumericOptions, OwnedValue, Schema, TextOptions, Value, STORED,
    STRING,
};
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};

use vigil_event::{Event, EventId};

use crate::aggregate;
use crate::index::{self, IndexHandle};
use crate::query::translate::{QueryFields, Translator};
use crate::query::{self, Cursor, SearchRequest, SearchResults};
use crate::StoreError;

/// Field names of the events index. Queries name them directly (`source_kind:cloudtrail`), so
/// they are part of the search language and change only with it.
pub mod fields {
    pub const ID: &str = "id";
    pub const TIME: &str = "time";
    pub const SOURCE_KIND: &str = "source_kind";
    pub const SOURCE_NAME: &str = "source_name";
    pub const PRODUCT: &str = "product";
    pub const SERVICE: &str = "service";
    pub const CATEGORY: &str = "category";
    pub const RECORD: &str = "record";
    pub const TEXT: &str = "text";
    pub const DOC: &str = "doc";
    /// Orders events with the same time; see [`super::tiebreak`].
    pub const TIEBREAK: &str = "tiebreak";
}

/// Indexing is the hot path, so the events writer gets two threads (one per core here).
const WRITER_THREADS: usize = 2;
const WRITER_MEMORY: usize = 50_000_000;

#[derive(Clone, Copy)]
struct EventFields {
    id: Field,
    time: Field,
    source_kind: Field,
    source_name: Field,
    product: Field,
    service: Field,
    category: Field,
    record: Field,
    text: Field,
    doc: Field,
    tiebreak: Field,
}

fn schema() -> (Schema, EventFields) {
    let mut builder = Schema::builder();
    let keyword = index::keyword;
    // The record's words are lowercased and split like prose: `eventName:consolelogin` and
    // `userAgent:curl` match, and phrases (`"10.0.0.1"`) match runs of words.
    let record_options = JsonObjectOptions::default()
        .set_indexing_options(index::text_indexing())
        // Kubernetes annotation keys such as `authorization.k8s.io/decision` hold dots; expanding
        // them lets the same dotted path reach a nested object or a dotted key.
        .set_expand_dots_enabled()
        // The raw values as columns: numeric ranges, `field:*` and facets read them instead
        // of walking the term dictionary.
        .set_fast("raw");
    let fields = EventFields {
        id: builder.add_text_field(fields::ID, STRING | STORED),
        time: builder.add_date_field(fields::TIME, index::timestamp()),
        source_kind: builder.add_text_field(fields::SOURCE_KIND, keyword()),
        source_name: builder.add_text_field(fields::SOURCE_NAME, keyword()),
        product: builder.add_text_field(fields::PRODUCT, keyword()),
        service: builder.add_text_field(fields::SERVICE, keyword()),
        category: builder.add_text_field(fields::CATEGORY, keyword()),
        record: builder.add_json_field(fields::RECORD, record_options),
        text: builder.add_text_field(
            fields::TEXT,
            TextOptions::default().set_indexing_options(index::text_indexing()),
        ),
        doc: builder.add_text_field(fields::DOC, STORED),
        tiebreak: builder.add_u64_field(
            fields::TIEBREAK,
            NumericOptions::default().set_indexed().set_fast(),
        ),
    };
    (builder.build(), fields)
}

pub(crate) struct EventIndex {
    handle: IndexHandle,
    fields: EventFields,
    query_fields: QueryFields,
}

/// The second sort key after time, taken from the id: hits with equal times then come in a
/// fixed order, which a cursor needs to resume exactly where a page ended.
pub(crate) fn tiebreak(id: &EventId) -> u64 {
    let bytes = id.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(first)
}

pub(crate) fn query_fields(schema: &Schema) -> Result<QueryFields, StoreError> {
    let field = |name: &str| schema.get_field(name).map_err(StoreError::Index);
    Ok(QueryFields {
        record: field(fields::RECORD)?,
        record_name: fields::RECORD,
        text: field(fields::TEXT)?,
        text_name: fields::TEXT,
        time: field(fields::TIME)?,
        time_name: fields::TIME,
        keywords: [
            fields::ID,
            fields::SOURCE_KIND,
            fields::SOURCE_NAME,
            fields::PRODUCT,
            fields::SERVICE,
            fields::CATEGORY,
        ]
        .into_iter()
        .map(|name| Ok((name, field(name)?)))
        .collect::<Result<_, StoreError>>()?,
        hidden: vec![fields::DOC, fields::TIEBREAK],
        analyzer: index::text_analyzer(),
    })
}

impl EventIndex {
    pub(crate) fn open(dir: &Path) -> Result<EventIndex, StoreError> {
        let (schema, fields) = schema();
        let query_fields = query_fields(&schema)?;
        let handle = IndexHandle::open(dir, schema, WRITER_THREADS, WRITER_MEMORY)?;
        Ok(EventIndex {
            handle,
            fields,
            query_fields,
        })
    }

    pub(crate) fn index(&self, events: &[Event]) -> Result<(), StoreError> {
        // Documents are built before taking the writer so that serialization does not hold it.
        let docs = events
            .iter()
            .map(|event| Ok((event.id.to_string(), self.document(event)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let writer = self.handle.writer();
        for (id, doc) in docs {
            // Deleting first makes a replay an upsert; tantivy orders the delete after any
            // earlier add of the same id, committed or not, and before this add.
            writer.delete_term(Term::from_field_text(self.fields.id, &id));
            writer.add_document(doc)?;
        }
        Ok(())
    }

    fn document(&self, event: &Event) -> Result<TantivyDocument, StoreError> {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, event.id.to_string());
        doc.add_u64(f.tiebreak, tiebreak(&event.id));
        doc.add_date(f.time, index::to_tantivy(&event.time));
        doc.add_text(f.source_kind, &event.source.kind);
        doc.add_text(f.source_name, &event.source.name);
        let logsource = &event.logsource;
        for (field, value) in [
            (f.product, &logsource.product),
            (f.service, &logsource.service),
            (f.category, &logsource.category),
        ] {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        let mut text = String::new();
        match event.document() {
            Ok(object) => {
                for value in object.values() {
                    collect_text(value, &mut text);
                }
                let object = object
                    .into_iter()
                    .map(|(key, value)| (key, to_owned_value(value)))
                    .collect();
                doc.add_field_value(f.record, &OwnedValue::Object(object));
            }
            // A record that is not a JSON object can still arrive off the bus; it stays
            // findable by its words rather than failing the whole batch.
            Err(_) => text.push_str(event.record.as_str()),
        }
        doc.add_text(f.text, text);
        let stored = serde_json::to_string(event).map_err(StoreError::Serialize)?;
        doc.add_text(f.doc, stored);
        Ok(doc)
    }

    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.handle.commit()
    }

    pub(crate) fn count(&self) -> u64 {
        self.handle.reader.searcher().num_docs()
    }

    /// The query for a request: its text, its time range and, past the first page, the
    /// cursor's "older than" condition.
    pub(crate) fn request_query(
        &self,
        text: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Box<dyn Query>, StoreError> {
        let ast = query::parse(text)?;
        let mut translator = Translator::new(&self.query_fields, now);
        let matches = translator.query(&ast)?;
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
        Ok(Box::new(BooleanQuery::new(clauses)))
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
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Histogram, StoreError> {
        let query = self.request_query(text, from, to, Utc::now())?;
        aggregate::histogram(&[self.searcher()], query.as_ref(), fields::TIME, from, to)
    }

    pub(crate) fn facets(
        &self,
        text: &str,
        field: &str,
        n: usize,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<aggregate::Facets, StoreError> {
        let column = facet_column(field)?;
        let query = self.request_query(text, from, to, Utc::now())?;
        aggregate::facets(&[self.searcher()], query.as_ref(), &column, field, n)
    }

    pub(crate) fn searcher(&self) -> Searcher {
        self.handle.reader.searcher()
    }

    pub(crate) fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        let cursor = request.cursor.as_deref().map(Cursor::decode).transpose()?;
        let query = self.request_query(&request.query, request.from, request.to, Utc::now())?;
        let searcher = self.searcher();
        let total = searcher
            .search(&query, &Count)
            .map_err(query::search_error)? as u64;
        let page_query: Box<dyn Query> = match cursor {
            None => query,
            Some(cursor) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, query),
                (Occur::Must, self.after_cursor(cursor)),
            ])),
        };
        let page = self.page(&searcher, page_query.as_ref(), request.limit)?;
        let mut hits = Vec::with_capacity(page.len());
        for (_, address) in &page {
            let doc: TantivyDocument = searcher.doc(*address)?;
            hits.push(self.stored_event(&doc)?);
        }
        let next_cursor = match page.last() {
            Some((key, _)) if page.len() == request.limit => Some(key.encode()),
            _ => None,
        };
        Ok(SearchResults {
            total,
            total_is_lower_bound: false,
            hits,
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
        // Capping at the number of documents keeps a huge limit from sizing a huge heap.
        let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let newest = TopDocs::with_limit(limit).order_by((
            (
                SortByStaticFastValue::<tantivy::DateTime>::for_field(fields::TIME),
                Order::Desc,
            ),
            (
                SortByStaticFastValue::<u64>::for_field(fields::TIEBREAK),
                Order::Desc,
            ),
        ));
        let top = searcher
            .search(query, &newest)
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

    fn stored_event(&self, doc: &TantivyDocument) -> Result<Event, StoreError> {
        let id = || {
            doc.get_first(self.fields.id)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_owned()
        };
        let json = doc
            .get_first(self.fields.doc)
            .and_then(|v| v.as_str())
            .ok_or_else(|| StoreError::Corrupt {
                id: id(),
                message: "no stored event".into(),
            })?;
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            id: id(),
            message: e.to_string(),
        })
    }
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

/// Appends every string and number in `value` to `text`, one per line, for bare-word search.
fn collect_text(value: &Json, text: &mut String) {
    match value {
        Json::String(s) => push_line(text, s),
        Json::Number(n) => push_line(text, &n.to_string()),
        Json::Array(items) => items.iter().for_each(|item| collect_text(item, text)),
        Json::Object(map) => map.values().for_each(|item| collect_text(item, text)),
        Json::Null | Json::Bool(_) => {}
    }
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
}

/// Converts a record value for the JSON field.
///
/// Unlike tantivy's own conversion, strings stay strings even when they look like RFC 3339
/// dates: record timestamps then remain searchable by their words (`eventTime:"2024-05-01"`),
/// and ordering by time uses the `time` field anyway. It also never panics on a number.
fn to_owned_value(value: Json) -> OwnedValue {
    match value {
        Json::Null => OwnedValue::Null,
        Json::Bool(b) => OwnedValue::Bool(b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                OwnedValue::I64(i)
            } else if let Some(u) = n.as_u64() {
                OwnedValue::U64(u)
            } else if let Some(f) = n.as_f64() {
                OwnedValue::F64(f)
            } else {
                OwnedValue::Str(n.to_string())
            }
        }
        Json::String(s) => OwnedValue::Str(s),
        Json::Array(items) => OwnedValue::Array(items.into_iter().map(to_owned_value).collect()),
        Json::Object(map) => OwnedValue::Object(
            map.into_iter()
                .map(|(key, value)| (key, to_owned_value(value)))
                .collect(),
        ),
    }
}
