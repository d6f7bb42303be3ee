//! Queries over the words of a JSON field at any path, or over several word patterns that must
//! be adjacent under one path.
//!
//! Bare terms search the record's words wherever they sit. Tantivy has no such query: its
//! JSON terms start with the path, and its regex phrases refuse JSON fields. The queries here
//! look at each segment's term dictionary to find the paths involved, then run ordinary
//! term and phrase queries on them, or compare positions themselves for patterns.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use tantivy::postings::{Postings, TermInfo};
use tantivy::query::{
    BitSetDocSet, BooleanQuery, ConstScorer, EmptyScorer, EnableScoring, Explanation, Occur,
    PhraseQuery, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption, Type};
use tantivy::{BitSet, DocId, DocSet, InvertedIndexReader, Score, SegmentReader, Term, TERMINATED};
use tantivy_fst::Regex;

/// Ends every JSON path in a term key; the value's type code follows it.
const END_OF_PATH: u8 = 0;

/// The regex that, put before a word's pattern, matches a string term at any path.
pub(crate) fn any_path_prefix() -> String {
    format!("[^\\x00]*\\x00{}", Type::Str.to_code() as char)
}

/// The numeric term for `literal` under a JSON path term, when `literal` is a plain decimal
/// number: record numbers are indexed as numbers, so a query for one looks for the number as
/// well as the words.
pub(crate) fn number_term(path_term: &Term, literal: &str) -> Option<Term> {
    // Only plain decimal numbers: the helper would also read RFC 3339 text as a date term,
    // and record dates are indexed as words, never as dates.
    let looks_numeric = literal
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
    if !looks_numeric || literal.parse::<f64>().is_err() {
        return None;
    }
    tantivy::json_utils::convert_to_fast_value_and_append_to_json_term(path_term, literal, false)
}

/// A JSON path term (path and end marker) from the path bytes of a term key.
fn path_term(field: Field, path: &[u8]) -> Term {
    let mut term = Term::from_field_json_path(field, "", true);
    term.truncate_value_bytes(0);
    term.append_bytes(path);
    term
}

/// The path of a term key, end marker included.
fn key_path(key: &[u8]) -> Option<&[u8]> {
    let end = key.iter().position(|&b| b == END_OF_PATH)?;
    Some(&key[..=end])
}

/// Every path with at least one term in the segment. Each step seeks past all terms of the
/// path just found, so the cost follows the number of paths, not of terms.
fn all_paths(inverted: &InvertedIndexReader) -> tantivy::Result<Vec<Vec<u8>>> {
    let mut paths = Vec::new();
    let mut from = Vec::new();
    loop {
        let mut stream = inverted.terms().range().ge(&from).into_stream()?;
        if !stream.advance() {
            break;
        }
        let Some(path) = key_path(stream.key()) else {
            break;
        };
        // Type codes are ASCII, so nothing of this path sorts after its end marker and 0xff.
        from = path.to_vec();
        from.push(0xff);
        paths.push(path.to_vec());
    }
    Ok(paths)
}

/// The words of a literal (a bare term or phrase, as the analyzer cut it) at any path, and
/// the literal as a number at any path when it reads as one.
#[derive(Clone)]
pub(crate) struct AnyPathQuery {
    field: Field,
    words: Vec<String>,
    /// Finds the paths holding the first word in one pass over the term dictionary.
    first: Option<Arc<Regex>>,
    /// Builds the literal's number term under a path, if it is a number.
    number: Option<String>,
}

impl fmt::Debug for AnyPathQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyPathQuery")
            .field("field", &self.field)
            .field("words", &self.words)
            .field("number", &self.number)
            .finish()
    }
}

impl AnyPathQuery {
    pub(crate) fn new(
        field: Field,
        words: Vec<String>,
        first: Option<Arc<Regex>>,
        number: Option<String>,
    ) -> AnyPathQuery {
        AnyPathQuery {
            field,
            words,
            first,
            number,
        }
    }

    /// The per-path queries for one segment.
    fn clauses(&self, reader: &SegmentReader) -> tantivy::Result<Vec<(Occur, Box<dyn Query>)>> {
        let inverted = reader.inverted_index(self.field)?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(first) = &self.first {
            let mut stream = inverted.terms().search(first.as_ref()).into_stream()?;
            let mut paths: Vec<Vec<u8>> = Vec::new();
            while stream.advance() {
                if let Some(path) = key_path(stream.key()) {
                    if paths.last().map(Vec::as_slice) != Some(path) {
                        paths.push(path.to_vec());
                    }
                }
            }
            for path in paths {
                let base = path_term(self.field, &path);
                let terms: Vec<Term> = self
                    .words
                    .iter()
                    .map(|word| {
                        let mut term = base.clone();
                        term.append_type_and_str(word);
                        term
                    })
                    .collect();
                let query: Box<dyn Query> = if terms.len() == 1 {
                    Box::new(TermQuery::new(
                        terms.into_iter().next().expect("one term"),
                        IndexRecordOption::Basic,
                    ))
                } else {
                    Box::new(PhraseQuery::new(terms))
                };
                clauses.push((Occur::Should, query));
            }
        }
        if let Some(literal) = &self.number {
            for path in all_paths(&inverted)? {
                let base = path_term(self.field, &path);
                let Some(term) = number_term(&base, literal) else {
                    continue;
                };
                if inverted
                    .terms()
                    .get(term.serialized_value_bytes())?
                    .is_some()
                {
                    clauses.push((
                        Occur::Should,
                        Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                    ));
                }
            }
        }
        Ok(clauses)
    }
}

impl Query for AnyPathQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for AnyPathQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let clauses = self.clauses(reader)?;
        if clauses.is_empty() {
            return Ok(Box::new(EmptyScorer));
        }
        // Hits are ordered by time, never by score, so the per-path queries need no statistics.
        BooleanQuery::new(clauses)
            .weight(EnableScoring::disabled_from_schema(reader.schema()))?
            .scorer(reader, boost)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        explain_by_seek(self.scorer(reader, 1.0)?, doc, "a word at any path")
    }
}

/// Word patterns that must match adjacent words, in order, under one path: `path` when
/// given, else any path. Each regex matches whole term keys, path included.
#[derive(Clone)]
pub(crate) struct WordsPhraseQuery {
    field: Field,
    path: Option<Vec<u8>>,
    regexes: Vec<Arc<Regex>>,
}

impl fmt::Debug for WordsPhraseQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WordsPhraseQuery")
            .field("field", &self.field)
            .field("path", &self.path.as_deref().map(String::from_utf8_lossy))
            .field("patterns", &self.regexes.len())
            .finish()
    }
}

impl WordsPhraseQuery {
    pub(crate) fn new(
        field: Field,
        path: Option<Vec<u8>>,
        regexes: Vec<Arc<Regex>>,
    ) -> WordsPhraseQuery {
        WordsPhraseQuery {
            field,
            path,
            regexes,
        }
    }

    /// The matching terms of each pattern, grouped by path.
    fn terms_by_path(
        &self,
        inverted: &InvertedIndexReader,
    ) -> tantivy::Result<BTreeMap<Vec<u8>, Vec<Vec<TermInfo>>>> {
        let mut by_path: BTreeMap<Vec<u8>, Vec<Vec<TermInfo>>> = BTreeMap::new();
        for (index, regex) in self.regexes.iter().enumerate() {
            let mut builder = inverted.terms().search(regex.as_ref());
            if let Some(path) = &self.path {
                builder = builder.ge(path);
                let mut end = path.clone();
                end.push(0xff);
                builder = builder.lt(end);
            }
            let mut stream = builder.into_stream()?;
            while stream.advance() {
                let Some(path) = key_path(stream.key()) else {
                    continue;
                };
                // A path missing an earlier pattern cannot match.
                let slots = match by_path.get_mut(path) {
                    Some(slots) => slots,
                    None if index == 0 => by_path
                        .entry(path.to_vec())
                        .or_insert_with(|| vec![Vec::new(); self.regexes.len()]),
                    None => continue,
                };
                slots[index].push(stream.value().clone());
            }
            by_path.retain(|_, slots| !slots[index].is_empty());
        }
        Ok(by_path)
    }

    fn docs(&self, reader: &SegmentReader) -> tantivy::Result<BitSet> {
        let inverted = reader.inverted_index(self.field)?;
        let mut docs = BitSet::with_max_value(reader.max_doc());
        let mut positions = Vec::new();
        for slots in self.terms_by_path(&inverted)?.values() {
            // Where the phrase may start in each document, narrowed pattern by pattern.
            let mut starts: Option<HashMap<DocId, Vec<u32>>> = None;
            for (offset, infos) in slots.iter().enumerate() {
                let offset = u32::try_from(offset).unwrap_or(u32::MAX);
                let mut here: HashMap<DocId, Vec<u32>> = HashMap::new();
                for info in infos {
                    let mut postings = inverted.read_postings_from_terminfo(
                        info,
                        IndexRecordOption::WithFreqsAndPositions,
                    )?;
                    let mut doc = postings.doc();
                    while doc != TERMINATED {
                        if starts.as_ref().is_none_or(|s| s.contains_key(&doc)) {
                            positions.clear();
                            postings.positions(&mut positions);
                            here.entry(doc)
                                .or_default()
                                .extend(positions.iter().filter_map(|p| p.checked_sub(offset)));
                        }
                        doc = postings.advance();
                    }
                }
                if let Some(previous) = &starts {
                    here.retain(|doc, at| {
                        let before = &previous[doc];
                        at.retain(|p| before.contains(p));
                        !at.is_empty()
                    });
                }
                let done = here.is_empty();
                starts = Some(here);
                if done {
                    break;
                }
            }
            for doc in starts.into_iter().flat_map(|s| s.into_keys()) {
                docs.insert(doc);
            }
        }
        Ok(docs)
    }
}

impl Query for WordsPhraseQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for WordsPhraseQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let docs = self.docs(reader)?;
        if docs.len() == 0 {
            return Ok(Box::new(EmptyScorer));
        }
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        explain_by_seek(self.scorer(reader, 1.0)?, doc, "adjacent word patterns")
    }
}

pub(super) fn explain_by_seek(
    mut scorer: Box<dyn Scorer>,
    doc: DocId,
    what: &'static str,
) -> tantivy::Result<Explanation> {
    if scorer.doc() > doc || scorer.seek(doc) != doc {
        return Err(tantivy::TantivyError::InvalidArgument(format!(
            "document {doc} does not match"
        )));
    }
    Ok(Explanation::new(what, scorer.score()))
}
