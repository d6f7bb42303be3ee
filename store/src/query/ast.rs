//! The parsed form of a query, before it meets an index.

use std::ops::Bound;

/// One character of a term, or a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Char(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    Question,
}

/// A term as typed, with escapes resolved: `\*` is a literal star, `*` a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) Vec<Part>);

impl Word {
    pub(crate) fn has_wildcard(&self) -> bool {
        self.0.iter().any(|p| !matches!(p, Part::Char(_)))
    }

    /// The term with wildcards read as the characters `*` and `?`.
    pub(crate) fn literal(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Char(c) => *c,
                Part::Star => '*',
                Part::Question => '?',
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Word(Word),
    Phrase(String),
    Regex(String),
    /// Bounds as typed; `*` is unbounded. Their type (number, time, text) is decided by the
    /// field they apply to.
    Range {
        lower: Bound<String>,
        upper: Bound<String>,
    },
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ast {
    /// Every document (a blank query or a bare `*`).
    All,
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Not(Box<Ast>),
    Leaf {
        /// `None` for a bare term, which searches the full text.
        field: Option<String>,
        value: Value,
        /// Byte offset where the clause starts, for errors found after parsing.
        pos: usize,
    },
}
