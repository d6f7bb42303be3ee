//! A query whose scorer never seeks backwards, for the clauses a query excludes.
//!
//! Tantivy's exclusion asks the excluded scorer whether it holds the candidate document,
//! and asks before the scorer has been moved: a phrase scorer already sits on its first
//! match, which may lie past the candidate, and it asserts that nobody seeks behind it
//! (tantivy issue #2811). A negated phrase (`-message:"login failed"`, which the search
//! page's sidebar writes) then panicked the search. Answering a seek behind the current
//! document from that document, as the default `DocSet::seek_danger` does, is what the
//! exclusion needs, and it is what this wrapper does for any scorer.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader};

/// `inner`, with a scorer that answers seeks behind its current document without moving.
#[derive(Debug)]
pub(crate) struct ForwardOnlyQuery(pub(crate) Box<dyn Query>);

impl Clone for ForwardOnlyQuery {
    fn clone(&self) -> Self {
        ForwardOnlyQuery(self.0.box_clone())
    }
}

impl Query for ForwardOnlyQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ForwardOnlyWeight(self.0.weight(enable_scoring)?)))
    }
}

struct ForwardOnlyWeight(Box<dyn Weight>);

impl Weight for ForwardOnlyWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ForwardOnlyScorer {
            inner: self.0.scorer(reader, boost)?,
            valid: true,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

struct ForwardOnlyScorer {
    inner: Box<dyn Scorer>,
    /// False after a `seek_danger` that did not find its target: the inner scorer's document
    /// is then a lower bound, not a match.
    valid: bool,
}

impl DocSet for ForwardOnlyScorer {
    fn advance(&mut self) -> DocId {
        self.valid = true;
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.valid = true;
        let doc = self.inner.doc();
        if target <= doc {
            return doc;
        }
        self.inner.seek(target)
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        // Where the inner scorer sits is a lower bound of its next match even when a failed
        // `seek_danger` left it "invalid": every scorer here moves only forward, and a phrase
        // scorer sits on the first document holding all its words, which the next phrase
        // match cannot precede. A target before it is answered from it, never passed on.
        let doc = self.inner.doc();
        if target < doc {
            return SeekDangerResult::SeekLowerBound(doc);
        }
        if target == doc && self.valid {
            return SeekDangerResult::Found;
        }
        let result = self.inner.seek_danger(target);
        self.valid = result == SeekDangerResult::Found;
        result
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }
}

impl Scorer for ForwardOnlyScorer {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}
