//! The events index.

use std::path::Path;

use serde_json::Value as Json;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{
    Field, JsonObjectOptions, OwnedValue, Schema, TextOptions, Value, STORED, STRING,
};
use tantivy::{Order, TantivyDocument, Term};

use vigil_event::Event;

use crate::index::{self, IndexHandle};
use crate::query::{self, SearchRequest, SearchResults};
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
        .set_expand_dots_enabled();
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
    };
    (builder.build(), fields)
}

pub(crate) struct EventIndex {
    handle: IndexHandle,
    fields: EventFields,
    parser: QueryParser,
}

impl EventIndex {
    pub(crate) fn open(dir: &Path) -> Result<EventIndex, StoreError> {
        let (schema, fields) = schema();
        let handle = IndexHandle::open(dir, schema, WRITER_THREADS, WRITER_MEMORY)?;
        // With `record` among the default fields, a field name that is not in the schema is
        // read as a path inside the record, so `eventName:ConsoleLogin` works without the
        // `record.` prefix. Bare words go to `text` (and the record root, which holds nothing).
        let mut parser = QueryParser::for_index(&handle.index, vec![fields.text, fields.record]);
        // Each added word should narrow a search, as in most log search tools.
        parser.set_conjunction_by_default();
        Ok(EventIndex {
            handle,
            fields,
            parser,
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

    pub(crate) fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        let query = query::parse(&self.parser, &request.query)?;
        let searcher = self.handle.reader.searcher();
        // Capping at the number of documents keeps a huge limit from sizing a huge heap.
        let limit = request
            .limit
            .min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        let (total, top) = if limit == 0 {
            let total = searcher
                .search(&query, &Count)
                .map_err(query::search_error)?;
            (total, Vec::new())
        } else {
            let newest = TopDocs::with_limit(limit)
                .order_by_fast_field::<tantivy::DateTime>(fields::TIME, Order::Desc);
            searcher
                .search(&query, &(Count, newest))
                .map_err(query::search_error)?
        };
        let mut hits = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            hits.push(self.stored_event(&doc)?);
        }
        Ok(SearchResults { total, hits })
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
