//! Vigil's query language: one grammar for the API, the CLI and the UI.
//!
//! Text is lexed ([`lexer`]), parsed into an [`ast::Ast`] by recursive descent ([`parser`]),
//! and lowered to tantivy queries against an index's fields ([`translate`]). The grammar and
//! how each form matches are documented on those modules and in `store/QUERY.md`.

mod anypath;
pub(crate) mod ast;
pub(crate) mod eventid;
mod forward_only;
mod lexer;
mod parser;
mod time;
pub(crate) mod translate;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tantivy::TantivyError;

use vigil_event::Event;

use crate::StoreError;

pub use time::parse_time;

/// Longest query accepted. Far above anything typed by hand; it bounds the parser's work on
/// whatever reaches the HTTP endpoint.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Most nesting accepted, counting parenthesis levels plus `NOT`/`-` operators. The parser
/// recurses for each, and a stack overflow aborts the whole process rather than failing one
/// request.
pub const MAX_QUERY_DEPTH: usize = 32;

/// A search over events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The query text; blank means every event.
    pub query: String,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time (exclusive, so consecutive ranges do not overlap).
    pub to: Option<DateTime<Utc>>,
    /// The most hits to return.
    pub limit: usize,
    /// Where the previous page ended ([`SearchResults::next_cursor`]); `None` for the first.
    pub cursor: Option<String>,
    /// What the caller may not see, whatever the query says.
    #[serde(default)]
    pub visibility: Visibility,
}

/// Events a caller may not see. Vigil's own audit log reaches the index as events, so that
/// rules can watch it, but only admins may read it: a search, histogram or facet count for
/// anyone else leaves it out. The restriction is added to the parsed query, never spliced
/// into its text, so nothing a user types can escape it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visibility {
    /// Source kinds left out of every result.
    pub hidden_source_kinds: Vec<String>,
}

impl Visibility {
    /// Every event.
    pub fn everything() -> Visibility {
        Visibility::default()
    }

    /// Every event except those of these source kinds.
    pub fn hiding(kinds: &[&str]) -> Visibility {
        Visibility {
            hidden_source_kinds: kinds.iter().map(|kind| (*kind).to_owned()).collect(),
        }
    }
}

impl SearchRequest {
    /// A first page of `query` over all time.
    pub fn new(query: impl Into<String>, limit: usize) -> Self {
        SearchRequest {
            query: query.into(),
            limit,
            ..SearchRequest::default()
        }
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// How many events match in all (in the time range, ignoring the cursor).
    pub total: u64,
    /// True when some partitions could not be searched, so `total` only counts the others.
    pub total_is_lower_bound: bool,
    /// The newest matching events after the cursor, newest first.
    pub hits: Vec<Event>,
    /// Pass as [`SearchRequest::cursor`] to get the next page; `None` after the last page.
    pub next_cursor: Option<String>,
}

/// A parse failure: where, and what the parser expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) position: usize,
    pub(crate) expected: String,
    pub(crate) at_end: bool,
}

impl SyntaxError {
    pub(crate) fn new(position: usize, expected: impl Into<String>) -> Self {
        SyntaxError {
            position,
            expected: expected.into(),
            at_end: false,
        }
    }

    pub(crate) fn at_end(position: usize, expected: impl Into<String>) -> Self {
        SyntaxError {
            at_end: true,
            ..SyntaxError::new(position, expected)
        }
    }
}

impl From<SyntaxError> for StoreError {
    fn from(err: SyntaxError) -> Self {
        let place = if err.at_end {
            "at the end of the query".to_owned()
        } else {
            format!("at byte {}", err.position)
        };
        StoreError::query_at(
            format!("syntax error {place}: expected {}", err.expected),
            err.position,
        )
    }
}

/// Parses `text` into its syntax tree; a blank query matches every document.
pub(crate) fn parse(text: &str) -> Result<ast::Ast, StoreError> {
    if text.len() > MAX_QUERY_LEN {
        return Err(StoreError::query(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_LEN}",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Ok(ast::Ast::All);
    }
    Ok(parser::parse(text)?)
}

/// Checks a query's syntax without running it, for clients that validate as the user types.
pub fn check_query(text: &str) -> Result<(), StoreError> {
    parse(text).map(drop)
}

/// Classifies an error raised while running a query: those caused by what the query asks
/// for (a field that cannot serve that kind of query) are the user's to fix.
pub(crate) fn search_error(err: TantivyError) -> StoreError {
    match err {
        TantivyError::FieldNotFound(_)
        | TantivyError::SchemaError(_)
        | TantivyError::InvalidArgument(_) => StoreError::query(err.to_string()),
        other => StoreError::Index(other),
    }
}

/// Where a page ended: the last hit's indexed time and tie-breaker.
///
/// Encoded as hex so that it is opaque, URL-safe and round-trips exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) time_nanos: i64,
    pub(crate) tiebreak: u64,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        format!("{:016x}{:016x}", self.time_nanos as u64, self.tiebreak)
    }

    pub(crate) fn decode(text: &str) -> Result<Cursor, StoreError> {
        let invalid = || StoreError::query("the cursor is not one this server returned");
        if text.len() != 32 || !text.is_ascii() {
            return Err(invalid());
        }
        let time = u64::from_str_radix(&text[..16], 16).map_err(|_| invalid())?;
        let tiebreak = u64::from_str_radix(&text[16..], 16).map_err(|_| invalid())?;
        Ok(Cursor {
            time_nanos: time as i64,
            tiebreak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_at(text: &str) -> (usize, String) {
        match parse(text) {
            Err(StoreError::Query {
                position: Some(p),
                message,
            }) => (p, message),
            other => panic!("{text:?}: expected a positioned error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_say_where_and_what_was_expected() {
        let (pos, message) = error_at("eventName:ConsoleLogin AND (");
        assert_eq!(pos, 28);
        assert!(message.contains("at the end"), "{message}");
        let (pos, message) = error_at("a AND AND b");
        assert_eq!(pos, 6);
        assert!(message.contains("between two clauses"), "{message}");
        let (pos, message) = error_at("status:[500 599]");
        assert_eq!(pos, 12);
        assert!(message.contains("`TO`"), "{message}");
        let (pos, _) = error_at("a)");
        assert_eq!(pos, 1);
        let (pos, message) = error_at("verb:");
        assert_eq!(pos, 5);
        assert!(message.contains("a value after `verb:`"), "{message}");
        let (pos, message) = error_at(r#"x "open"#);
        assert_eq!(pos, 7);
        assert!(message.contains("closing `\"`"), "{message}");
        let (pos, _) = error_at("[1 TO 2]");
        assert_eq!(pos, 0);
        let (pos, _) = error_at(":a");
        assert_eq!(pos, 0);
        let (pos, _) = error_at("bytes:[1 TO 2");
        assert_eq!(pos, 13);
        let (pos, message) = error_at(&"(".repeat(40));
        assert_eq!(pos, MAX_QUERY_DEPTH);
        assert!(message.contains("nesting"), "{message}");
    }

    #[test]
    fn the_grammar_builds_the_expected_tree() {
        use ast::{Ast, Value};
        let tree = parse("a b OR NOT c:d").expect("parses");
        let Ast::Or(alternatives) = tree else {
            panic!("OR binds loosest: {tree:?}")
        };
        assert!(matches!(&alternatives[0], Ast::And(c) if c.len() == 2));
        assert!(matches!(&alternatives[1], Ast::Not(_)));
        let tree = parse("userIdentity.arn:arn:aws:iam::1:root").expect("parses");
        assert!(
            matches!(&tree, Ast::Leaf { field: Some(f), value: Value::Word(w), .. }
                if f == "userIdentity.arn" && w.literal() == "arn:aws:iam::1:root"),
            "{tree:?}"
        );
        let tree = parse("status:(200 OR 204)").expect("parses");
        assert!(
            matches!(&tree, Ast::Or(a) if a.iter().all(|l| matches!(l, Ast::Leaf { field: Some(f), .. } if f == "status"))),
            "{tree:?}"
        );
        assert_eq!(parse("  ").expect("blank"), Ast::All);
        assert_eq!(parse("*").expect("star"), Ast::All);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            time_nanos: -5,
            tiebreak: u64::MAX,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor));
        for bad in ["", "zz", &"g".repeat(32), &"é".repeat(16)] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
