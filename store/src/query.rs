//! Turning the search box's text into a tantivy query.
//!
//! This is tantivy's query language for now; a later Vigil query language will be parsed here
//! and lowered to the same tantivy queries.

use std::panic::{self, AssertUnwindSafe};

use serde::{Deserialize, Serialize};
use tantivy::query::{AllQuery, Occur, Query, QueryParser};
use tantivy::query_grammar::{self, UserInputAst, UserInputLeaf};
use tantivy::TantivyError;

use vigil_event::Event;

use crate::StoreError;

/// Longest query accepted. Far above anything typed by hand; it bounds the parser's work on
/// whatever reaches the HTTP endpoint.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Most nesting accepted, counting parenthesis levels plus `NOT` operators. The parser recurses
/// for each, and a stack overflow aborts the whole process rather than failing one request
/// (a debug build overflows a 2 MiB thread stack at about 200 parentheses or 1000 `NOT`s).
pub const MAX_QUERY_DEPTH: usize = 32;

/// A search over events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The query text; blank means every event.
    pub query: String,
    /// The most hits to return.
    pub limit: usize,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// How many events match in all, not only those returned.
    pub total: usize,
    /// The newest matching events, newest first.
    pub hits: Vec<Event>,
}

/// Parses `text`; a blank query matches every document.
pub(crate) fn parse(parser: &QueryParser, text: &str) -> Result<Box<dyn Query>, StoreError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Box::new(AllQuery));
    }
    if text.len() > MAX_QUERY_LEN {
        return Err(StoreError::query(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_LEN}",
            text.len()
        )));
    }
    if nesting_depth(text) > MAX_QUERY_DEPTH {
        return Err(StoreError::query(format!(
            "the query nests deeper than {MAX_QUERY_DEPTH} levels"
        )));
    }
    // The parser has panicked on malformed input in past tantivy releases; a typo in the
    // search box must come back as an error, not take down the caller's thread.
    let parsed = panic::catch_unwind(AssertUnwindSafe(|| {
        let ast = query_grammar::parse_query(text).map_err(|_| syntax_error(text))?;
        parser
            .build_query_from_user_input_ast(complete_negations(ast))
            .map_err(|err| StoreError::query(err.to_string()))
    }));
    parsed.unwrap_or_else(|_| Err(StoreError::query("the query could not be parsed")))
}

/// Describes a syntax error, with the lenient parser's hint and position when it has one
/// (the strict parser only says that parsing failed).
fn syntax_error(text: &str) -> StoreError {
    let (_, errors) = query_grammar::parse_query_lenient(text);
    match errors.first() {
        Some(err) => StoreError::query(format!(
            "syntax error at character {}: {}",
            text.get(..err.pos).map_or(err.pos, |s| s.chars().count()),
            err.message
        )),
        None => StoreError::query("syntax error"),
    }
}

/// Gives every purely negative group something to subtract from.
///
/// Tantivy matches nothing for a boolean query made only of exclusions, so on its own
/// `a AND NOT b` finds nothing (the `NOT b` group is empty) and `NOT b` is refused. Adding
/// "all documents" to such groups gives them their everyday meaning.
fn complete_negations(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(clauses) => {
            let mut clauses: Vec<_> = clauses
                .into_iter()
                .map(|(occur, sub)| (occur, complete_negations(sub)))
                .collect();
            if !clauses.is_empty()
                && clauses
                    .iter()
                    .all(|(occur, _)| *occur == Some(Occur::MustNot))
            {
                clauses.push((
                    Some(Occur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(sub, boost) => {
            UserInputAst::Boost(Box::new(complete_negations(*sub)), boost)
        }
        leaf @ UserInputAst::Leaf(_) => leaf,
    }
}

/// Classifies an error raised while running a query: those caused by what the query asks
/// for (a field that does not exist or cannot serve that kind of query) are the user's to fix.
pub(crate) fn search_error(err: TantivyError) -> StoreError {
    match err {
        TantivyError::FieldNotFound(_)
        | TantivyError::SchemaError(_)
        | TantivyError::InvalidArgument(_) => StoreError::query(err.to_string()),
        other => StoreError::Index(other),
    }
}

/// How deeply the parser will recurse at most: the deepest parenthesis nesting plus every
/// `NOT`, since a chain of them nests too. Overestimates, which only matters past the limit.
fn nesting_depth(text: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for byte in text.bytes() {
        match byte {
            b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let nots = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|word| *word == "NOT")
        .count();
    deepest + nots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_parentheses_and_nots() {
        assert_eq!(nesting_depth("a"), 0);
        assert_eq!(nesting_depth("(a OR (b AND c)) AND (d)"), 2);
        assert_eq!(nesting_depth("))((("), 3);
        assert_eq!(nesting_depth("a AND NOT (b OR NOT c)"), 3);
        assert_eq!(nesting_depth("NOTE not NOTNOT"), 0);
    }
}
