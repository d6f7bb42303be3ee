//! The alerts index: the detections, with a searchable copy of their lifecycle state.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use chrono::Utc;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, OwnedValue, Schema, TextOptions, STORED, STRING,
};
use tantivy::{TantivyDocument, Term};

use vigil_event::Alert;

use crate::index::{self, IndexHandle};
use crate::query::translate::{QueryFields, Translator, WholeWords};
use crate::triage::AlertState;
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
    pub const STATUS: &str = "status";
    pub const REASON: &str = "reason";
    pub const ASSIGNEE: &str = "assignee";
    pub const SOURCE_KIND: &str = "source_kind";
    /// The rule title and correlation group as a JSON object, so `rule_title:"stop logging"`
    /// and `group.user:alice` work like record paths do for events.
    pub const RECORD: &str = "record";
    pub const TEXT: &str = "text";
    pub const DOC: &str = "doc";
}

/// Filters of an alert listing, all optional and combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Query language over alerts: `rule_title:`, `tags:`, `status:`, `level:`, `assignee:`,
    /// `rule_id:`, `group.<key>:`, or bare words.
    pub query: String,
    pub status: Option<crate::AlertStatus>,
    pub level: Option<vigil_event::Level>,
    /// A rule id.
    pub rule: Option<String>,
    /// Who the alert is assigned to, exactly (case-insensitive).
    pub assignee: Option<String>,
    /// One of the alert's tags, exactly (case-insensitive).
    pub tag: Option<String>,
    /// The kind of source whose events raised it: `cloudtrail`, `kubernetes_audit`, ...
    pub source_kind: Option<String>,
    /// The alert's time (that of its last event) from `from`, inclusive, to `to`, exclusive.
    pub from: Option<chrono::DateTime<Utc>>,
    pub to: Option<chrono::DateTime<Utc>>,
    /// Raised by Vigil at or after this time (whatever the time of its events).
    pub detected_from: Option<chrono::DateTime<Utc>>,
    pub limit: usize,
}

/// Alerts are few next to events; one thread at tantivy's minimum budget is plenty.
const WRITER_THREADS: usize = 1;
const WRITER_MEMORY: usize = 20_000_000;

#[derive(Clone, Copy)]
struct AlertFields {
    id: Field,
    rule_id: Field,
    level: Field,
    tags: Field,
    detected: Field,
    time: Field,
    status: Field,
    reason: Field,
    assignee: Field,
    source_kind: Field,
    record: Field,
    text: Field,
    doc: Field,
}

fn schema() -> (Schema, AlertFields) {
    let mut builder = Schema::builder();
    let text = || TextOptions::default().set_indexing_options(index::text_indexing());
    let fields = AlertFields {
        id: builder.add_text_field(fields::ID, STRING | STORED),
        rule_id: builder.add_text_field(fields::RULE_ID, index::keyword()),
        level: builder.add_text_field(fields::LEVEL, index::keyword()),
        tags: builder.add_text_field(fields::TAGS, index::keyword()),
        detected: builder.add_date_field(fields::DETECTED, index::timestamp()),
        time: builder.add_date_field(fields::TIME, index::timestamp()),
        status: builder.add_text_field(fields::STATUS, index::keyword()),
        reason: builder.add_text_field(fields::REASON, index::keyword()),
        assignee: builder.add_text_field(fields::ASSIGNEE, index::keyword()),
        source_kind: builder.add_text_field(fields::SOURCE_KIND, index::keyword()),
        record: builder.add_json_field(
            fields::RECORD,
            JsonObjectOptions::default()
                .set_indexing_options(index::text_indexing())
                .set_fast("raw"),
        ),
        text: builder.add_text_field(fields::TEXT, text()),
        doc: builder.add_text_field(fields::DOC, STORED),
    };
    (builder.build(), fields)
}

fn query_fields(schema: &Schema) -> Result<QueryFields, StoreError> {
    let field = |name: &str| schema.get_field(name).map_err(StoreError::Index);
    Ok(QueryFields {
        record: field(fields::RECORD)?,
        record_name: fields::RECORD,
        text: field(fields::TEXT)?,
        text_name: fields::TEXT,
        bare_terms_in_record: false,
        time: field(fields::TIME)?,
        time_name: fields::TIME,
        keywords: [
            fields::ID,
            fields::RULE_ID,
            fields::LEVEL,
            fields::TAGS,
            fields::STATUS,
            fields::REASON,
            fields::ASSIGNEE,
            fields::SOURCE_KIND,
        ]
        .into_iter()
        .map(|name| Ok((name, field(name)?)))
        .collect::<Result<_, StoreError>>()?,
        hidden: vec![fields::DOC, fields::DETECTED],
        analyzer: index::text_analyzer(),
        whole_words: WholeWords::None,
        event_ids: None,
    })
}

pub(crate) struct AlertIndex {
    dir: PathBuf,
    handle: IndexHandle,
    fields: AlertFields,
    query_fields: QueryFields,
}

impl AlertIndex {
    pub(crate) fn open(dir: &Path, read_only: bool) -> Result<AlertIndex, StoreError> {
        let (schema, fields) = schema();
        let query_fields = query_fields(&schema)?;
        let handle = IndexHandle::open(dir, schema, WRITER_THREADS, WRITER_MEMORY, read_only)?;
        if read_only && !index::terms_readable(dir) {
            return Err(StoreError::NeedsRewrite {
                path: dir.to_path_buf(),
            });
        }
        Ok(AlertIndex {
            dir: dir.to_path_buf(),
            handle,
            fields,
            query_fields,
        })
    }

    /// Whether the index holds term dictionaries this Vigil cannot read, so that it must be
    /// rewritten ([`AlertIndex::rewrite`]) before anything searches it.
    pub(crate) fn needs_rewrite(&self) -> bool {
        !index::terms_readable(&self.dir)
    }

    /// Rewrites every alert from its stored copy, with the state `state_of` gives it, and
    /// commits; see [`index::TERMS_FILE`]. Returns how many alerts it rewrote.
    pub(crate) fn rewrite(
        &self,
        mut state_of: impl FnMut(&Alert) -> Result<AlertState, StoreError>,
    ) -> Result<u64, StoreError> {
        let searcher = self.handle.reader.searcher();
        let rewritten = {
            let writer = self.handle.writer()?;
            index::rewrite_documents(&writer, &searcher, |doc| {
                let alert = self.stored_alert(doc)?;
                self.document(&alert, &state_of(&alert)?)
            })?
        };
        self.handle.commit()?;
        index::mark_terms_readable(&self.dir)?;
        Ok(rewritten)
    }

    /// Upserts alerts with their lifecycle state.
    pub(crate) fn index(&self, alerts: &[(&Alert, &AlertState)]) -> Result<(), StoreError> {
        self.add(alerts, &HashSet::new())
    }

    /// Upserts alerts with their lifecycle state, but adds those whose ids are in `new`
    /// without looking for an earlier copy. The commit looks each replaced id up in every
    /// segment, which made committing a batch of a few thousand alerts take half a second;
    /// an alert the triage database registered just now cannot have a copy to replace.
    ///
    /// That holds while `alerts.sqlite` is never older than this index, as everything in Vigil
    /// keeps it (an alert is registered before it is added; a backup copies the indices
    /// first). A database replaced or rolled back on its own would make replayed alerts
    /// second copies.
    pub(crate) fn add(
        &self,
        alerts: &[(&Alert, &AlertState)],
        new: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let docs = alerts
            .iter()
            .map(|(alert, state)| Ok((alert.id.to_string(), self.document(alert, state)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let writer = self.handle.writer()?;
        let mut added = HashSet::new();
        for (id, doc) in docs {
            // Same upsert as for events: a re-raised alert replaces its earlier copy, which
            // may be one added just before, in this very call.
            let first_copy = new.contains(&id) && added.insert(id.clone());
            if !first_copy {
                writer.delete_term(Term::from_field_text(self.fields.id, &id));
            }
            writer.add_document(doc)?;
        }
        Ok(())
    }

    fn document(&self, alert: &Alert, state: &AlertState) -> Result<TantivyDocument, StoreError> {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, alert.id.to_string());
        doc.add_text(f.rule_id, &alert.rule_id);
        doc.add_text(f.level, alert.level.as_str());
        for tag in &alert.tags {
            doc.add_text(f.tags, tag);
        }
        doc.add_date(f.detected, index::to_tantivy(&alert.detected));
        doc.add_date(f.time, index::to_tantivy(&alert.time));
        doc.add_text(f.status, state.status.as_str());
        if let Some(reason) = state.reason {
            doc.add_text(f.reason, reason.as_str());
        }
        if let Some(assignee) = &state.assignee {
            doc.add_text(f.assignee, assignee);
        }
        doc.add_text(f.source_kind, &alert.source.kind);
        let group = alert
            .group
            .iter()
            .map(|(k, v)| (k.clone(), OwnedValue::Str(v.clone())))
            .collect();
        doc.add_field_value(
            f.record,
            &OwnedValue::Object(vec![
                (
                    fields::RULE_TITLE.to_owned(),
                    OwnedValue::Str(alert.rule_title.clone()),
                ),
                ("group".to_owned(), OwnedValue::Object(group)),
            ]),
        );
        let mut text = vec![alert.rule_title.as_str(), alert.rule_id.as_str()];
        text.extend(alert.tags.iter().map(String::as_str));
        text.extend(alert.group.values().map(String::as_str));
        text.extend(state.assignee.as_deref());
        doc.add_text(f.text, text.join("\n"));
        let stored = serde_json::to_string(alert).map_err(StoreError::Serialize)?;
        doc.add_text(f.doc, stored);
        Ok(doc)
    }

    /// The alert with this id, if indexed.
    pub(crate) fn get(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let searcher = self.handle.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        match top.first() {
            Some((_, address)) => Ok(Some(self.stored_alert(&searcher.doc(*address)?)?)),
            None => Ok(None),
        }
    }

    /// Alerts matching `filter`, newest first like [`AlertIndex::newest`].
    pub(crate) fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        self.top(&self.filter_query(filter)?, filter.limit)
    }

    /// A searcher over the committed alerts, for aggregations of their columns.
    pub(crate) fn searcher(&self) -> tantivy::Searcher {
        self.handle.reader.searcher()
    }

    /// How many alerts match `filter`, whatever its limit.
    pub(crate) fn count(&self, filter: &AlertFilter) -> Result<usize, StoreError> {
        let searcher = self.handle.reader.searcher();
        Ok(searcher.search(&self.filter_query(filter)?, &Count)?)
    }

    fn filter_query(&self, filter: &AlertFilter) -> Result<BooleanQuery, StoreError> {
        let ast = crate::query::parse(&filter.query)?;
        let mut translator = Translator::new(&self.query_fields, Utc::now());
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, translator.query(&ast)?)];
        let keyword = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            // Keyword fields hold lowercased values; see index::keyword.
            let term = Term::from_field_text(field, &value.to_lowercase());
            (
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            )
        };
        if let Some(status) = filter.status {
            clauses.push(keyword(self.fields.status, status.as_str()));
        }
        if let Some(level) = filter.level {
            clauses.push(keyword(self.fields.level, level.as_str()));
        }
        if let Some(rule) = &filter.rule {
            clauses.push(keyword(self.fields.rule_id, rule));
        }
        if let Some(assignee) = &filter.assignee {
            clauses.push(keyword(self.fields.assignee, assignee));
        }
        if let Some(tag) = &filter.tag {
            clauses.push(keyword(self.fields.tags, tag));
        }
        if let Some(kind) = &filter.source_kind {
            clauses.push(keyword(self.fields.source_kind, kind));
        }
        if filter.from.is_some() || filter.to.is_some() {
            let bound = |time: Option<chrono::DateTime<Utc>>, inclusive: bool| match time {
                Some(time) => {
                    let term = Term::from_field_date(self.fields.time, index::to_tantivy(&time));
                    if inclusive {
                        Bound::Included(term)
                    } else {
                        Bound::Excluded(term)
                    }
                }
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(filter.from, true),
                    bound(filter.to, false),
                )),
            ));
        }
        if let Some(from) = filter.detected_from {
            let term = Term::from_field_date(self.fields.detected, index::to_tantivy(&from));
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(Bound::Included(term), Bound::Unbounded)),
            ));
        }
        Ok(BooleanQuery::new(clauses))
    }

    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.handle.commit()
    }

    pub(crate) fn counts_by_rule(&self, n: usize) -> Result<crate::Facets, StoreError> {
        let searcher = self.handle.reader.searcher();
        crate::aggregate::facets(
            &[(&searcher, &AllQuery)],
            fields::RULE_ID,
            fields::RULE_ID,
            n,
        )
    }

    /// The newest alerts, by detection time and then by the time of their last event.
    pub(crate) fn newest(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.top(&AllQuery, limit)
    }

    fn top(&self, query: &dyn Query, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let searcher = self.handle.reader.searcher();
        let top = index::greatest_by::<tantivy::DateTime, tantivy::DateTime>(
            &searcher,
            query,
            limit,
            fields::DETECTED,
            fields::TIME,
        )
        .map_err(crate::query::search_error)?;
        let mut alerts = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            alerts.push(self.stored_alert(&doc)?);
        }
        Ok(alerts)
    }

    fn stored_alert(&self, doc: &TantivyDocument) -> Result<Alert, StoreError> {
        index::stored_json(doc, self.fields.id, self.fields.doc, "alert")
    }
}
