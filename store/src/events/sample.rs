//! A stride sample of a partition's documents, for aggregations that may count a sample of
//! their matches rather than all of them (the search page's sidebar of top values).
//!
//! Every `step`th document of each segment is in the sample. Documents are numbered in the
//! order they were indexed, which is their arrival, so the sample spreads evenly over the
//! range searched and follows no field's values. It is deterministic: the same query over
//! the same segments counts the same sample.

use tantivy::query::{ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

/// Matches every `step`th document; intersected with a query, it thins its matches.
#[derive(Debug, Clone, Copy)]
pub(super) struct StrideQuery {
    pub(super) step: u32,
}

impl Query for StrideQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(*self))
    }
}

impl Weight for StrideQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let stride = Stride {
            doc: 0,
            step: self.step.max(1),
            max_doc: reader.max_doc(),
        };
        let stride = if stride.max_doc == 0 {
            Stride {
                doc: TERMINATED,
                ..stride
            }
        } else {
            stride
        };
        Ok(Box::new(ConstScorer::new(stride, boost)))
    }

    fn explain(&self, _: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if doc.is_multiple_of(self.step.max(1)) {
            Ok(Explanation::new("in the sample", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} is not in the sample"
            )))
        }
    }
}

struct Stride {
    doc: DocId,
    step: u32,
    max_doc: DocId,
}

impl DocSet for Stride {
    fn advance(&mut self) -> DocId {
        self.doc = match self.doc.checked_add(self.step) {
            Some(next) if next < self.max_doc => next,
            _ => TERMINATED,
        };
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if target <= self.doc {
            return self.doc;
        }
        // The first multiple of the step at or after the target.
        self.doc = match target.div_ceil(self.step).checked_mul(self.step) {
            Some(next) if next < self.max_doc => next,
            _ => TERMINATED,
        };
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.max_doc.div_ceil(self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(mut stride: Stride) -> Vec<DocId> {
        let mut seen = Vec::new();
        while stride.doc() != TERMINATED {
            seen.push(stride.doc());
            stride.advance();
        }
        seen
    }

    #[test]
    fn a_stride_holds_every_step_th_document_and_seeks_to_the_next() {
        let stride = |max_doc| Stride {
            doc: 0,
            step: 4,
            max_doc,
        };
        assert_eq!(docs(stride(10)), [0, 4, 8]);
        assert_eq!(docs(stride(9)), [0, 4, 8]);
        assert_eq!(docs(stride(8)), [0, 4]);
        let mut seeking = stride(10);
        assert_eq!(seeking.seek(5), 8);
        assert_eq!(seeking.seek(8), 8);
        assert_eq!(seeking.seek(3), 8);
        assert_eq!(seeking.seek(9), TERMINATED);
        assert_eq!(stride(10).size_hint(), 3);
    }
}
