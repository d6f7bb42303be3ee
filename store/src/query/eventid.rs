//! Events by id in partitions where the id has no term of its own (the `IdsByTiebreak`
//! layout in events/layout.rs).
//!
//! An id as a term was one unique 32-byte key per event in the term dictionary, and building
//! those keys into the dictionary took about 8% of indexing CPU. The tiebreak (the id's first
//! eight bytes, see [`crate::events::fields::tiebreak`]) is indexed instead: an eight-byte key. A
//! match on it is checked against the id the document stores, so two events sharing their
//! first eight bytes are still told apart, at the cost of reading the stored documents the
//! tiebreak finds: one per id asked for, in practice.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tantivy::query::{
    BitSetDocSet, ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{BitSet, DocId, DocSet, Score, SegmentReader, TantivyDocument, Term, TERMINATED};

use vigil_event::EventId;

use super::anypath::explain_by_seek;
use crate::events::fields::tiebreak;

/// Hex digits in a tiebreak.
const TIEBREAK_DIGITS: usize = 16;

/// Events whose id starts with one of a set of lowercase hex prefixes, each at least
/// [`TIEBREAK_DIGITS`] long so that it fixes the tiebreak. A whole id is its own prefix.
#[derive(Clone)]
pub(crate) struct EventIdQuery {
    tiebreak: Field,
    id: Field,
    wanted: Arc<BTreeMap<u64, Vec<String>>>,
}

impl fmt::Debug for EventIdQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventIdQuery")
            .field("ids", &self.wanted.values().flatten().collect::<Vec<_>>())
            .finish()
    }
}

impl EventIdQuery {
    /// Exactly these ids.
    pub(crate) fn ids<'a>(
        tiebreak_field: Field,
        id: Field,
        ids: impl IntoIterator<Item = &'a EventId>,
    ) -> EventIdQuery {
        let mut wanted: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for event_id in ids {
            wanted
                .entry(tiebreak(event_id))
                .or_default()
                .push(event_id.to_string());
        }
        EventIdQuery {
            tiebreak: tiebreak_field,
            id,
            wanted: Arc::new(wanted),
        }
    }

    /// Ids starting with `prefix`, or `None` when it is not hex or too short to fix a
    /// tiebreak (a shorter one is a range of tiebreaks, see [`tiebreak_range`]).
    pub(crate) fn prefix(tiebreak_field: Field, id: Field, prefix: &str) -> Option<EventIdQuery> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < TIEBREAK_DIGITS || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u64::from_str_radix(&prefix[..TIEBREAK_DIGITS], 16).ok()?;
        Some(EventIdQuery {
            tiebreak: tiebreak_field,
            id,
            wanted: Arc::new(BTreeMap::from([(value, vec![prefix])])),
        })
    }
}

/// The tiebreaks of ids starting with a hex prefix shorter than a tiebreak, or `None` when it
/// is not hex or not shorter.
pub(crate) fn tiebreak_range(prefix: &str) -> Option<(u64, u64)> {
    if prefix.is_empty()
        || prefix.len() >= TIEBREAK_DIGITS
        || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let free_bits = 4 * (TIEBREAK_DIGITS - prefix.len()) as u32;
    let high = u64::from_str_radix(prefix, 16).ok()?;
    let low = high << free_bits;
    Some((low, low | ((1u64 << free_bits) - 1)))
}

impl Query for EventIdQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for EventIdQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let inverted = reader.inverted_index(self.tiebreak)?;
        let mut store = None;
        let mut found: Option<BitSet> = None;
        for (value, prefixes) in self.wanted.iter() {
            let term = Term::from_field_u64(self.tiebreak, *value);
            let Some(mut postings) = inverted.read_postings(&term, IndexRecordOption::Basic)?
            else {
                continue;
            };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                let store = match &mut store {
                    Some(store) => store,
                    None => store.insert(reader.get_store_reader(1)?),
                };
                let stored: TantivyDocument = store.get(doc)?;
                let id = stored.get_first(self.id).and_then(|v| v.as_str());
                if id.is_some_and(|id| prefixes.iter().any(|p| id.starts_with(p.as_str()))) {
                    found
                        .get_or_insert_with(|| BitSet::with_max_value(reader.max_doc()))
                        .insert(doc);
                }
                doc = postings.advance();
            }
        }
        Ok(match found {
            Some(found) => Box::new(ConstScorer::new(BitSetDocSet::from(found), boost)),
            None => Box::new(EmptyScorer),
        })
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        explain_by_seek(self.scorer(reader, 1.0)?, doc, "an event id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_prefix_is_the_range_of_tiebreaks_it_starts() {
        assert_eq!(
            tiebreak_range("648f"),
            Some((0x648f_0000_0000_0000, 0x648f_ffff_ffff_ffff))
        );
        assert_eq!(
            tiebreak_range("648f0f940271a4c"),
            Some((0x648f_0f94_0271_a4c0, 0x648f_0f94_0271_a4cf))
        );
        assert_eq!(tiebreak_range("648f0f940271a4c2"), None, "fixes a tiebreak");
        assert_eq!(tiebreak_range("648g"), None);
        assert_eq!(tiebreak_range(""), None);
    }
}
