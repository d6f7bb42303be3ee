//! The alerts index.

use std::path::Path;

use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::TopDocs;
use tantivy::query::AllQuery;
use tantivy::schema::{Field, Schema, TextOptions, Value, STORED, STRING};
use tantivy::{Order, TantivyDocument, Term};

use vigil_event::Alert;

use crate::index::{self, IndexHandle};
use crate::StoreError;

/// Field names of the alerts index.
pub mod fields {
    pub const ID: &str = "id";
    pub const RULE_ID: &str = "rule_id";
    pub const RULE_TITLE: &str = "rule_title";
    pub const LEVEL: &str = "level";
    pub const TAGS: &str = "tags";
    pub const DETECTED: &str = "detected";
    pub const TIME: &str = "time";
    pub const DOC: &str = "doc";
}

/// Alerts are few next to events; one thread at tantivy's minimum budget is plenty.
const WRITER_THREADS: usize = 1;
const WRITER_MEMORY: usize = 20_000_000;

#[derive(Clone, Copy)]
struct AlertFields {
    id: Field,
    rule_id: Field,
    rule_title: Field,
    level: Field,
    tags: Field,
    detected: Field,
    time: Field,
    doc: Field,
}

fn schema() -> (Schema, AlertFields) {
    let mut builder = Schema::builder();
    let fields = AlertFields {
        id: builder.add_text_field(fields::ID, STRING | STORED),
        rule_id: builder.add_text_field(fields::RULE_ID, index::keyword()),
        rule_title: builder.add_text_field(
            fields::RULE_TITLE,
            TextOptions::default().set_indexing_options(index::text_indexing()),
        ),
        level: builder.add_text_field(fields::LEVEL, index::keyword()),
        tags: builder.add_text_field(fields::TAGS, index::keyword()),
        detected: builder.add_date_field(fields::DETECTED, index::timestamp()),
        time: builder.add_date_field(fields::TIME, index::timestamp()),
        doc: builder.add_text_field(fields::DOC, STORED),
    };
    (builder.build(), fields)
}

pub(crate) struct AlertIndex {
    handle: IndexHandle,
    fields: AlertFields,
}

impl AlertIndex {
    pub(crate) fn open(dir: &Path, read_only: bool) -> Result<AlertIndex, StoreError> {
        let (schema, fields) = schema();
        let handle = IndexHandle::open(dir, schema, WRITER_THREADS, WRITER_MEMORY, read_only)?;
        Ok(AlertIndex { handle, fields })
    }

    pub(crate) fn index(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        let docs = alerts
            .iter()
            .map(|alert| Ok((alert.id.to_string(), self.document(alert)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let writer = self.handle.writer()?;
        for (id, doc) in docs {
            // Same upsert as for events: a re-raised alert replaces its earlier copy.
            writer.delete_term(Term::from_field_text(self.fields.id, &id));
            writer.add_document(doc)?;
        }
        Ok(())
    }

    fn document(&self, alert: &Alert) -> Result<TantivyDocument, StoreError> {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, alert.id.to_string());
        doc.add_text(f.rule_id, &alert.rule_id);
        doc.add_text(f.rule_title, &alert.rule_title);
        doc.add_text(f.level, alert.level.as_str());
        for tag in &alert.tags {
            doc.add_text(f.tags, tag);
        }
        doc.add_date(f.detected, index::to_tantivy(&alert.detected));
        doc.add_date(f.time, index::to_tantivy(&alert.time));
        let stored = serde_json::to_string(alert).map_err(StoreError::Serialize)?;
        doc.add_text(f.doc, stored);
        Ok(doc)
    }

    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.handle.commit()
    }

    pub(crate) fn counts_by_rule(&self, n: usize) -> Result<crate::Facets, StoreError> {
        crate::aggregate::facets(
            &[self.handle.reader.searcher()],
            &AllQuery,
            fields::RULE_ID,
            fields::RULE_ID,
            n,
        )
    }

    /// The newest alerts, by detection time and then by the time of their last event.
    pub(crate) fn newest(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let searcher = self.handle.reader.searcher();
        let limit = limit.min(usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let newest = TopDocs::with_limit(limit).order_by((
            (
                SortByStaticFastValue::<tantivy::DateTime>::for_field(fields::DETECTED),
                Order::Desc,
            ),
            (
                SortByStaticFastValue::<tantivy::DateTime>::for_field(fields::TIME),
                Order::Desc,
            ),
        ));
        let top = searcher.search(&AllQuery, &newest)?;
        let mut alerts = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            alerts.push(self.stored_alert(&doc)?);
        }
        Ok(alerts)
    }

    fn stored_alert(&self, doc: &TantivyDocument) -> Result<Alert, StoreError> {
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
                message: "no stored alert".into(),
            })?;
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            id: id(),
            message: e.to_string(),
        })
    }
}
