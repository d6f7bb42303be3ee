//! Lowering the AST to tantivy queries against one index's fields.
//!
//! How a value matches depends on the kind of field it names:
//!
//! - **Keyword fields** (`source_kind`, `source_name`, `product`, `service`, `category`, `id`)
//!   hold one lowercased token per value, so terms, wildcards and regexes match the *whole
//!   value*, ignoring case: `source_kind:kube*` finds `kubernetes-audit`.
//! - **Record paths** (any other name, with or without the `record.` prefix) and **bare
//!   terms** (the `text` field) are split into lowercased words (with the partition's own
//!   analyzer: see [`QueryFields::analyzer`]), so matching is per *word*:
//!   `userIdentity.arn:*admin*` finds `arn:aws:iam::1:role/OrgAdmin` because `orgadmin` is one
//!   of its words. A term or wildcard that spans separators (`*role/admin*`, `db-password`)
//!   becomes a phrase of its words, which must then be adjacent and in order. (For a wildcard
//!   phrase on a record path, each word must be under the path and the adjacency is checked
//!   in the full text, since tantivy has no regex phrases over JSON fields.)
//!   Regexes (`/.../`) match one word, are anchored at both ends, and ignore case.
//! - Numbers in records are indexed as numbers as well, so `status:401` matches the number
//!   401 and the word "401", and ranges (`bytes:>1000`) compare numerically. Ranges over words
//!   compare the raw values byte-wise.
//! - `field:*` matches documents where the path holds a non-null value, at that path or
//!   beneath it (`objectRef:*`).
//! - **Event ids** in partitions that index no term for them (see [`EventIdFields`]) match a
//!   whole id, or its first hex digits followed by `*`, ignoring case.

use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tantivy::query::{
    AllQuery, AutomatonWeight, BooleanQuery, EmptyQuery, EnableScoring, ExistsQuery,
    InvertedIndexRangeQuery, Occur, PhraseQuery, Query, RangeQuery, RegexPhraseQuery, RegexQuery,
    TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption, Type};
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::Term;
use tantivy_fst::Regex;

use super::anypath::{any_path_prefix, number_term, AnyPathQuery, WordsPhraseQuery};
use super::ast::{Ast, Part, Value, Word};
use super::eventid::{tiebreak_range, EventIdQuery};
use super::forward_only::ForwardOnlyQuery;
use super::time::parse_time;
use crate::StoreError;

/// Longest regex accepted, before compiling; the compiler has its own size limit as well.
const MAX_REGEX_LEN: usize = 1024;

/// What the query language needs to know about an index's schema.
pub(crate) struct QueryFields {
    /// The JSON field holding the record; unknown field names are paths inside it.
    pub(crate) record: Field,
    pub(crate) record_name: &'static str,
    /// Full text searched by bare terms. For events it only holds records that are not JSON
    /// objects (and every record of partitions written before bare terms were served from
    /// the record's own words); see [`QueryFields::bare_terms_in_record`].
    pub(crate) text: Field,
    pub(crate) text_name: &'static str,
    /// Bare terms also search the words of every path of the record. Indexing the record's
    /// strings a second time into the text field cost a third of the events' indexing time;
    /// the JSON field's words with their positions answer the same terms and phrases.
    pub(crate) bare_terms_in_record: bool,
    /// The event time.
    pub(crate) time: Field,
    pub(crate) time_name: &'static str,
    /// Whole-value, lowercased fields.
    pub(crate) keywords: Vec<(&'static str, Field)>,
    /// Fields that exist but cannot be searched (the stored document).
    pub(crate) hidden: Vec<&'static str>,
    /// How the index cut record and text values into words; a query's words are cut the same
    /// way, so an index written with another analyzer needs its own `QueryFields`.
    pub(crate) analyzer: TextAnalyzer,
    /// Values the analyzer keeps as one word although they hold separators.
    pub(crate) whole_words: WholeWords,
    /// Set where the id field holds no term: ids are found through the tiebreak's term and
    /// checked against the stored id (see [`EventIdQuery`]).
    pub(crate) event_ids: Option<EventIdFields>,
}

/// Which values an analyzer keeps as one word although they hold separators (see
/// [`crate::word_tokenizer`]): a wildcard may then need to match across those separators within one
/// word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WholeWords {
    None,
    Uuids,
    UuidsTimesAndAddresses,
}

impl WholeWords {
    /// Whether `c` can be part of such a word.
    fn may_hold(self, c: char) -> bool {
        match self {
            WholeWords::None => false,
            WholeWords::Uuids => c == '-' || c.is_ascii_hexdigit(),
            WholeWords::UuidsTimesAndAddresses => {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '+')
            }
        }
    }
}

/// The fields that find an event by id where the id has no term.
pub(crate) struct EventIdFields {
    pub(crate) name: &'static str,
    pub(crate) tiebreak: Field,
    pub(crate) id: Field,
}

enum Target<'f> {
    EventId(&'f EventIdFields),
    Keyword(Field),
    Time(Field),
    Text(Field),
    Json { path: String },
}

pub(crate) struct Translator<'a> {
    fields: &'a QueryFields,
    analyzer: TextAnalyzer,
    now: DateTime<Utc>,
}

impl<'a> Translator<'a> {
    pub(crate) fn new(fields: &'a QueryFields, now: DateTime<Utc>) -> Self {
        Translator {
            fields,
            analyzer: fields.analyzer.clone(),
            now,
        }
    }

    /// The query for a clause to exclude: its scorer may be asked about documents behind
    /// the one it sits on (see [`ForwardOnlyQuery`]).
    fn excluded(&mut self, ast: &Ast) -> Result<Box<dyn Query>, StoreError> {
        Ok(Box::new(ForwardOnlyQuery(self.query(ast)?)))
    }

    pub(crate) fn query(&mut self, ast: &Ast) -> Result<Box<dyn Query>, StoreError> {
        match ast {
            Ast::All => Ok(Box::new(AllQuery)),
            Ast::Not(inner) => Ok(Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, self.excluded(inner)?),
            ]))),
            Ast::And(clauses) => {
                let mut parts = Vec::with_capacity(clauses.len() + 1);
                for clause in clauses {
                    // Subtracting directly, rather than intersecting with a complement, lets
                    // tantivy skip through the excluded postings.
                    parts.push(match clause {
                        Ast::Not(inner) => (Occur::MustNot, self.excluded(inner)?),
                        other => (Occur::Must, self.query(other)?),
                    });
                }
                if parts.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    parts.push((Occur::Must, Box::new(AllQuery)));
                }
                Ok(Box::new(BooleanQuery::new(parts)))
            }
            Ast::Or(alternatives) => {
                let parts = alternatives
                    .iter()
                    .map(|a| Ok((Occur::Should, self.query(a)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok(Box::new(BooleanQuery::new(parts)))
            }
            Ast::Leaf { field, value, pos } => self
                .leaf(field.as_deref(), value, *pos)
                .map_err(|message| StoreError::query_at(message, *pos)),
        }
    }

    fn target(&self, field: Option<&str>) -> Result<Target<'a>, String> {
        let f = self.fields;
        let Some(name) = field else {
            return Ok(Target::Text(f.text));
        };
        if name == f.text_name {
            return Ok(Target::Text(f.text));
        }
        if name == f.time_name {
            return Ok(Target::Time(f.time));
        }
        if let Some(ids) = f.event_ids.as_ref().filter(|ids| ids.name == name) {
            return Ok(Target::EventId(ids));
        }
        if let Some((_, field)) = f.keywords.iter().find(|(n, _)| *n == name) {
            return Ok(Target::Keyword(*field));
        }
        if f.hidden.contains(&name) || name == f.record_name {
            return Err(format!("`{name}` cannot be searched; name a path inside the record, such as `{}.eventName`", f.record_name));
        }
        let path = name
            .strip_prefix(f.record_name)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(name);
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!("`{name}` is not a valid field path"));
        }
        Ok(Target::Json {
            path: path.to_owned(),
        })
    }

    fn leaf(
        &mut self,
        field: Option<&str>,
        value: &Value,
        _pos: usize,
    ) -> Result<Box<dyn Query>, String> {
        match self.target(field)? {
            Target::EventId(ids) => event_id_query(ids, value),
            Target::Keyword(field) => keyword_query(field, value),
            Target::Time(field) => self.time_query(field, value),
            Target::Text(field) => self.bare_query(field, value),
            Target::Json { path } => self.json_query(&path, value),
        }
    }

    fn time_query(&self, field: Field, value: &Value) -> Result<Box<dyn Query>, String> {
        let Value::Range { lower, upper } = value else {
            return Err("`time` takes a range, as in `time:>now-1h` or `time:[2024-05-01T00:00:00Z TO now]`".into());
        };
        let to_term = |text: &String| {
            parse_time(text, self.now)
                .map(|t| Term::from_field_date(field, crate::index::to_tantivy(&t)))
                .map_err(|e| e.to_string())
        };
        let (lower, upper) = (map_bound(lower, to_term)?, map_bound(upper, to_term)?);
        if lower == Bound::Unbounded && upper == Bound::Unbounded {
            return Ok(Box::new(AllQuery));
        }
        Ok(Box::new(RangeQuery::new(lower, upper)))
    }

    /// On layouts that keep some values as one word, a wildcard split at separators
    /// (`648f0f94-0271*`, `10.0.*`) could also match inside one of them: the regex of the
    /// whole pattern as one word, when it has separators and no characters such a word cannot
    /// hold.
    fn whole_word_pattern(&self, word: &Word, pieces: usize) -> Option<String> {
        let whole_words = self.fields.whole_words;
        if whole_words == WholeWords::None || pieces < 2 {
            return None;
        }
        let holdable = word.0.iter().all(|part| match part {
            Part::Char(c) => whole_words.may_hold(*c),
            Part::Star | Part::Question => true,
        });
        holdable.then(|| wildcard_regex(&word.0))
    }

    fn tokens(&mut self, text: &str) -> Vec<String> {
        let mut stream = self.analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn text_query(&mut self, field: Field, value: &Value) -> Result<Box<dyn Query>, String> {
        let term = |token: &str| Term::from_field_text(field, token);
        match value {
            Value::Word(word) if word.has_wildcard() => {
                let pieces = word_pieces(word);
                let patterns: Vec<String> = pieces.iter().map(|p| piece_regex(p)).collect();
                let words = regex_terms_query(field, &patterns, "")?;
                Ok(match self.whole_word_pattern(word, pieces.len()) {
                    Some(whole) => either(
                        words,
                        Box::new(RegexQuery::from_regex(compile(&whole)?, field)),
                    ),
                    None => words,
                })
            }
            Value::Word(word) => {
                let tokens = self.tokens(&word.literal());
                Ok(phrase_of(tokens.iter().map(|t| term(t)).collect()))
            }
            Value::Phrase(text) => {
                let tokens = self.tokens(text);
                Ok(phrase_of(tokens.iter().map(|t| term(t)).collect()))
            }
            Value::Regex(pattern) => {
                let regex = compile(&format!("(?i:{})", checked_regex(pattern)?))?;
                Ok(Box::new(RegexQuery::from_regex(regex, field)))
            }
            Value::Range { .. } => {
                Err("a range needs a field path, as in `bytes:[100 TO 200]`".into())
            }
            Value::Exists => Ok(Box::new(AllQuery)),
        }
    }

    /// A bare term: the text field, and when the record serves bare terms, its words at any
    /// path. Numbers match numbers too, as they would in text; booleans, never in the text,
    /// do not.
    fn bare_query(&mut self, field: Field, value: &Value) -> Result<Box<dyn Query>, String> {
        let text = self.text_query(field, value)?;
        if !self.fields.bare_terms_in_record {
            return Ok(text);
        }
        let record = self.fields.record;
        let any = any_path_prefix();
        let in_record: Box<dyn Query> = match value {
            Value::Exists | Value::Range { .. } => return Ok(text),
            Value::Word(word) if word.has_wildcard() => {
                let regexes = word_pieces(word)
                    .iter()
                    .map(|piece| compile(&format!("{any}{}", piece_regex(piece))).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                let whole = self.whole_word_pattern(word, regexes.len());
                let words: Box<dyn Query> = match regexes.len() {
                    0 => Box::new(EmptyQuery),
                    1 => Box::new(RegexQuery::from_regex(
                        regexes.into_iter().next().expect("one regex"),
                        record,
                    )),
                    _ => Box::new(WordsPhraseQuery::new(record, None, regexes)),
                };
                match whole {
                    Some(whole) => either(
                        words,
                        Box::new(RegexQuery::from_regex(
                            compile(&format!("{any}{whole}"))?,
                            record,
                        )),
                    ),
                    None => words,
                }
            }
            Value::Word(word) => self.any_path_literal(record, &word.literal())?,
            Value::Phrase(text) => self.any_path_literal(record, text)?,
            Value::Regex(pattern) => {
                let regex = compile(&format!("{any}(?i:{})", checked_regex(pattern)?))?;
                Box::new(RegexQuery::from_regex(regex, record))
            }
        };
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Should, text),
            (Occur::Should, in_record),
        ])))
    }

    fn any_path_literal(&mut self, record: Field, literal: &str) -> Result<Box<dyn Query>, String> {
        let words = self.tokens(literal);
        let first = match words.first() {
            Some(word) => {
                let mut pattern = any_path_prefix();
                word.chars().for_each(|c| push_escaped(&mut pattern, c));
                Some(Arc::new(compile(&pattern)?))
            }
            None => None,
        };
        // Whether it reads as a number is decided per path (the helper needs one), so only
        // the text is kept.
        let probe = Term::from_field_json_path(record, "n", true);
        let number = number_term(&probe, literal).map(|_| literal.to_owned());
        if first.is_none() && number.is_none() {
            return Ok(Box::new(EmptyQuery));
        }
        Ok(Box::new(AnyPathQuery::new(record, words, first, number)))
    }

    fn json_query(&mut self, path: &str, value: &Value) -> Result<Box<dyn Query>, String> {
        let record = self.fields.record;
        let path_term = Term::from_field_json_path(record, path, true);
        let str_term = |token: &str| {
            let mut term = path_term.clone();
            term.append_type_and_str(token);
            term
        };
        match value {
            Value::Word(word) if word.has_wildcard() => {
                let prefix = json_key_prefix(&path_term);
                let pieces = word_pieces(word);
                if let [piece] = pieces.as_slice() {
                    let regex = compile(&format!("{prefix}{}", piece_regex(piece)))?;
                    return Ok(Box::new(JsonRegexQuery {
                        field: record,
                        key_prefix: path_term.serialized_value_bytes().to_vec(),
                        regex: Arc::new(regex),
                    }));
                }
                // Tantivy's regex phrases refuse JSON fields; this one compares the positions
                // of the words under the path itself.
                let regexes = pieces
                    .iter()
                    .map(|piece| compile(&format!("{prefix}{}", piece_regex(piece))).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                let words = Box::new(WordsPhraseQuery::new(
                    record,
                    Some(path_term.serialized_value_bytes().to_vec()),
                    regexes,
                ));
                Ok(match self.whole_word_pattern(word, pieces.len()) {
                    Some(whole) => either(
                        words,
                        Box::new(JsonRegexQuery {
                            field: record,
                            key_prefix: path_term.serialized_value_bytes().to_vec(),
                            regex: Arc::new(compile(&format!("{prefix}{whole}"))?),
                        }),
                    ),
                    None => words,
                })
            }
            Value::Word(word) => {
                let literal = word.literal();
                let tokens = self.tokens(&literal);
                let words = phrase_of(tokens.iter().map(|t| str_term(t)).collect());
                let mut alternatives: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, words)];
                if let Some(number) = number_term(&path_term, &literal) {
                    alternatives.push((Occur::Should, term_query(number)));
                }
                if let Ok(flag) = literal.parse::<bool>() {
                    let mut term = path_term.clone();
                    term.append_type_and_fast_value(flag);
                    alternatives.push((Occur::Should, term_query(term)));
                }
                Ok(if alternatives.len() == 1 {
                    alternatives.remove(0).1
                } else {
                    Box::new(BooleanQuery::new(alternatives))
                })
            }
            Value::Phrase(text) => {
                let tokens = self.tokens(text);
                Ok(phrase_of(tokens.iter().map(|t| str_term(t)).collect()))
            }
            Value::Regex(pattern) => {
                let prefix = json_key_prefix(&path_term);
                let regex = compile(&format!("{prefix}(?i:{})", checked_regex(pattern)?))?;
                Ok(Box::new(JsonRegexQuery {
                    field: record,
                    key_prefix: path_term.serialized_value_bytes().to_vec(),
                    regex: Arc::new(regex),
                }))
            }
            Value::Range { lower, upper } => json_range(&path_term, lower, upper),
            Value::Exists => Ok(Box::new(ExistsQuery::new(
                format!("{}.{path}", self.fields.record_name),
                true,
            ))),
        }
    }
}

fn event_id_query(ids: &EventIdFields, value: &Value) -> Result<Box<dyn Query>, String> {
    let exact = |text: &str| -> Box<dyn Query> {
        match text.parse::<vigil_event::EventId>() {
            Ok(id) => Box::new(EventIdQuery::ids(ids.tiebreak, ids.id, [&id])),
            // Not an id, so no event has it.
            Err(_) => Box::new(EmptyQuery),
        }
    };
    let unsupported = || {
        format!(
            "`{}` takes an event id, or its first hex digits followed by `*`",
            ids.name
        )
    };
    match value {
        Value::Word(word) if word.has_wildcard() => {
            let literal = word.literal();
            let prefix = literal
                .strip_suffix('*')
                .filter(|_| {
                    word.0
                        .iter()
                        .rev()
                        .skip(1)
                        .all(|p| matches!(p, Part::Char(_)))
                })
                .ok_or_else(unsupported)?;
            if let Some((low, high)) = tiebreak_range(prefix) {
                return Ok(Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(ids.tiebreak, low)),
                    Bound::Included(Term::from_field_u64(ids.tiebreak, high)),
                )));
            }
            match EventIdQuery::prefix(ids.tiebreak, ids.id, prefix) {
                Some(query) => Ok(Box::new(query)),
                None => Err(unsupported()),
            }
        }
        Value::Word(word) => Ok(exact(&word.literal())),
        Value::Phrase(text) => Ok(exact(text)),
        // Every event has an id.
        Value::Exists => Ok(Box::new(AllQuery)),
        Value::Regex(_) | Value::Range { .. } => Err(unsupported()),
    }
}

fn keyword_query(field: Field, value: &Value) -> Result<Box<dyn Query>, String> {
    let term = |text: &str| Term::from_field_text(field, &text.to_lowercase());
    match value {
        Value::Word(word) if word.has_wildcard() => {
            let regex = compile(&wildcard_regex(&word.0))?;
            Ok(Box::new(RegexQuery::from_regex(regex, field)))
        }
        Value::Word(word) => Ok(term_query(term(&word.literal()))),
        Value::Phrase(text) => Ok(term_query(term(text))),
        Value::Regex(pattern) => {
            let regex = compile(&format!("(?i:{})", checked_regex(pattern)?))?;
            Ok(Box::new(RegexQuery::from_regex(regex, field)))
        }
        Value::Range { lower, upper } => {
            let (lower, upper) = (
                map_bound(lower, |t| Ok::<_, String>(term(t)))?,
                map_bound(upper, |t| Ok::<_, String>(term(t)))?,
            );
            if lower == Bound::Unbounded && upper == Bound::Unbounded {
                return Ok(Box::new(RegexQuery::from_regex(compile(".+")?, field)));
            }
            Ok(Box::new(InvertedIndexRangeQuery::new(lower, upper)))
        }
        // Keyword fields have few distinct values, so scanning their terms is cheap.
        Value::Exists => Ok(Box::new(RegexQuery::from_regex(compile(".+")?, field))),
    }
}

/// A numeric range when both bounds are numbers (floating point if either is), else a
/// byte-wise range over the raw string values.
fn json_range(
    path_term: &Term,
    lower: &Bound<String>,
    upper: &Bound<String>,
) -> Result<Box<dyn Query>, String> {
    let texts: Vec<&String> = [lower, upper]
        .into_iter()
        .filter_map(|b| match b {
            Bound::Included(t) | Bound::Excluded(t) => Some(t),
            Bound::Unbounded => None,
        })
        .collect();
    if texts.is_empty() {
        return Err("a range needs at least one bound".into());
    }
    let all_int = texts.iter().all(|t| t.parse::<i64>().is_ok());
    let all_num = texts
        .iter()
        .all(|t| t.parse::<f64>().is_ok_and(f64::is_finite));
    let make = |text: &String| -> Result<Term, String> {
        let mut term = path_term.clone();
        if all_int {
            term.append_type_and_fast_value(text.parse::<i64>().map_err(|e| e.to_string())?);
        } else if all_num {
            term.append_type_and_fast_value(text.parse::<f64>().map_err(|e| e.to_string())?);
        } else {
            term.append_type_and_str(text);
        }
        Ok(term)
    };
    Ok(Box::new(RangeQuery::new(
        map_bound(lower, make)?,
        map_bound(upper, make)?,
    )))
}

fn map_bound<T, E>(
    bound: &Bound<String>,
    f: impl Fn(&String) -> Result<T, E>,
) -> Result<Bound<T>, E> {
    Ok(match bound {
        Bound::Included(t) => Bound::Included(f(t)?),
        Bound::Excluded(t) => Bound::Excluded(f(t)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}

fn term_query(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// One term, a phrase of several, or nothing for text without words (`field:::`).
/// Documents matching either query.
fn either(a: Box<dyn Query>, b: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, a),
        (Occur::Should, b),
    ]))
}

fn phrase_of(terms: Vec<Term>) -> Box<dyn Query> {
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => term_query(terms.into_iter().next().expect("one term")),
        _ => Box::new(PhraseQuery::new(terms)),
    }
}

/// One regex over a single word, or a phrase of regexes when the pattern spans separators.
/// `key_prefix` anchors each word regex to a JSON path (empty for plain text fields).
fn regex_terms_query(
    field: Field,
    patterns: &[String],
    key_prefix: &str,
) -> Result<Box<dyn Query>, String> {
    let compiled = patterns
        .iter()
        .map(|p| compile(&format!("{key_prefix}{p}")).map(|r| (p.clone(), Arc::new(r))))
        .collect::<Result<Vec<_>, _>>()?;
    match compiled.len() {
        0 => Ok(Box::new(EmptyQuery)),
        1 => {
            let (_, regex) = compiled.into_iter().next().expect("one regex");
            Ok(Box::new(RegexQuery::from_regex(regex, field)))
        }
        _ => Ok(Box::new(RegexPhraseQuery::from_regexes(
            field,
            compiled
                .into_iter()
                .enumerate()
                .map(|(offset, (pattern, regex))| (offset, pattern, regex))
                .collect(),
            0,
        ))),
    }
}

/// Splits a wildcard term where the word tokenizer would split its text, so each piece
/// matches one indexed word.
fn word_pieces(word: &Word) -> Vec<Vec<Part>> {
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    for part in &word.0 {
        match part {
            Part::Char(c) if !c.is_alphanumeric() => {
                if !current.is_empty() {
                    pieces.push(std::mem::take(&mut current));
                }
            }
            other => current.push(*other),
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn piece_regex(piece: &[Part]) -> String {
    wildcard_regex(piece)
}

/// The regex for a wildcard pattern over lowercased values.
fn wildcard_regex(parts: &[Part]) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Star => out.push_str(".*"),
            Part::Question => out.push('.'),
            Part::Char(c) => c.to_lowercase().for_each(|c| push_escaped(&mut out, c)),
        }
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        | '#' | '&' | '-' | '~' => {
            out.push('\\');
            out.push(c);
        }
        c if c.is_control() => out.push_str(&format!("\\x{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// The regex matching the start of every string term key under a JSON path: the path with
/// its separators, the end-of-path byte and the string type code.
fn json_key_prefix(path_term: &Term) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(path_term.serialized_value_bytes()).chars() {
        push_escaped(&mut out, c);
    }
    out.push(Type::Str.to_code() as char);
    out
}

fn checked_regex(pattern: &str) -> Result<&str, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "the regex is {} bytes long; the limit is {MAX_REGEX_LEN}",
            pattern.len()
        ));
    }
    Ok(pattern)
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))
}

/// A regex over the words under one JSON path. Tantivy's own regex query scans the whole
/// field; this one starts the term scan at the path, so only that path's words are visited.
#[derive(Debug, Clone)]
struct JsonRegexQuery {
    field: Field,
    key_prefix: Vec<u8>,
    regex: Arc<Regex>,
}

impl Query for JsonRegexQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<Regex>::new_for_json_path(
            self.field,
            self.regex.clone(),
            &self.key_prefix,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_escape_everything_but_the_wildcards() {
        let parts = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '*' => Part::Star,
                    '?' => Part::Question,
                    c => Part::Char(c),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(wildcard_regex(&parts("*Admin*")), ".*admin.*");
        assert_eq!(wildcard_regex(&parts("a.b?")), "a\\.b.");
        assert_eq!(wildcard_regex(&parts("x-(y)")), "x\\-\\(y\\)");
        let pieces = word_pieces(&Word(parts("*role/admin*")));
        assert_eq!(pieces, vec![parts("*role"), parts("admin*")]);
    }
}
