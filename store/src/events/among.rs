//! Which of some events, named by id, match a query: the live tail asks this of the events
//! committed since it last looked (see [`crate::tail`]).

use std::collections::BTreeMap;

use chrono::Utc;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query};
use tantivy::TantivyDocument;
use vigil_event::{Event, EventId};

use super::EventIndex;
use crate::index::lock;
use crate::query::{self, Visibility};
use crate::StoreError;

impl EventIndex {
    /// The events among `ids` that match `text` and that `visibility` shows, in no order.
    /// Every partition may hold one (events are stored by arrival, and the caller does not
    /// know when these arrived); the id filters, where built, rule most out.
    pub(crate) fn matching_among(
        &self,
        ids: &[EventId],
        text: &str,
        visibility: &Visibility,
    ) -> Result<Vec<Event>, StoreError> {
        if ids.is_empty() {
            // Still parsed, so that a bad query fails whether or not anything arrived.
            self.request_query(text, visibility, None, None, Utc::now(), [])?;
            return Ok(Vec::new());
        }
        let mut plan = self.plan(None, None)?;
        {
            let filters = lock(&self.id_filters);
            plan.retain(|(key, _)| {
                filters
                    .get(key)
                    .is_none_or(|filter| ids.iter().any(|id| filter.may_contain(id)))
            });
        }
        let mut partitions = Vec::with_capacity(plan.len());
        for (key, _) in plan {
            partitions.push(self.partition(key)?);
        }
        let queries = self.request_query(
            text,
            visibility,
            None,
            None,
            Utc::now(),
            partitions.iter().map(|p| p.layout),
        )?;
        let mut found: BTreeMap<String, Event> = BTreeMap::new();
        for partition in partitions {
            let query = BooleanQuery::new(vec![
                (Occur::Must, queries.get(partition.layout).box_clone()),
                (
                    Occur::Must,
                    partition.layout.ids_query(&self.fields, ids.iter()),
                ),
            ]);
            let searcher = partition.reader.searcher();
            let top = searcher
                .search(
                    &query as &dyn Query,
                    &TopDocs::with_limit(ids.len()).order_by_score(),
                )
                .map_err(query::search_error)?;
            for (_, address) in top {
                let doc: TantivyDocument = searcher.doc(address)?;
                let event = self.stored_event(&doc)?;
                found.entry(event.id.to_string()).or_insert(event);
            }
        }
        Ok(found.into_values().collect())
    }
}
