//! Sigma rule loading and matching: Vigil's detection stage as a pure library.
//!
//! Rules come in as YAML text ([`parse_rules`]), are compiled once into an [`Engine`], and
//! events go through [`Engine::evaluate`], which returns the rules they match. There is no I/O
//! here: reading rule files, feeding events and raising alerts belong to the callers.
//!
//! The crate implements a subset of the Sigma 2.1 specification and refuses what it does not
//! implement (a rule with an unsupported modifier fails to load with a [`RuleError`] saying so)
//! rather than evaluating it wrongly. Where the specification is vague, it follows pySigma, the
//! reference implementation:
//!
//! - Values compare as case-insensitive strings; `*` and `?` are wildcards, and a backslash
//!   escapes `*`, `?` and itself, but is literal before anything else.
//! - Numbers and booleans in a rule match JSON numbers and booleans, and also strings that spell
//!   them (`200` matches `200` and `"200"`); with `contains`, `startswith` or `endswith` they are
//!   matched as text.
//! - A list of plain values under a search identifier is a keyword search, which looks for each
//!   value inside every string of the event. Such a list may also hold mappings, ORed together.
//! - `null` matches a field that is missing or JSON null.
//! - In conditions, operators are lowercase, `any of` means `1 of`, and `them` leaves out
//!   identifiers that start with `_`. A list of conditions means any of them.
//!
//! Vigil's own choices where Sigma leaves the field to backends:
//!
//! - Dotted field names (`userIdentity.arn`) step into nested objects, and into every element of
//!   an array; a key that itself contains the dots matches too. A list-valued field matches when
//!   any element does.
//! - A rule without an `id` gets one derived from its origin and title ([`Rule::derive_id`]).
//! - Duplicate keys, YAML anchors and aliases are refused.

mod chain;
mod condition;
mod detection;
mod engine;
mod error;
mod modifier;
mod path;
mod pattern;
mod rule;
mod time;
mod value;
mod yaml;

pub use engine::Engine;
pub use error::RuleError;
pub use rule::{Rule, RuleLogSource, Status};

use std::collections::HashMap;

use error::Problem;

/// Settings that change how rules load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The values of each placeholder that `expand` replaces: `%Servers%` in a rule is looked
    /// up as `Servers` here (names are case-sensitive). Each value is a Sigma string, so it may
    /// hold wildcards. A rule that expands a placeholder missing here fails to load.
    pub placeholders: HashMap<String, Vec<String>>,
}

/// What came of parsing one rule text: the rules that loaded and the errors of those that did
/// not. An error in one document never hides the valid documents of the same text.
#[derive(Debug, Clone, Default)]
pub struct ParsedRules {
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
}

impl ParsedRules {
    /// The rules if every document loaded, else all the errors.
    pub fn into_result(self) -> Result<Vec<Rule>, Vec<RuleError>> {
        if self.errors.is_empty() {
            Ok(self.rules)
        } else {
            Err(self.errors)
        }
    }
}

/// Parses every rule document in one YAML text (multi-document `---` files hold several rules).
/// `origin` is the file name to use in errors.
pub fn parse_rules(text: &str, origin: &str) -> ParsedRules {
    parse_rules_with(text, origin, &LoadOptions::default())
}

/// [`parse_rules`] with [`LoadOptions`], such as the values of placeholders.
pub fn parse_rules_with(text: &str, origin: &str, options: &LoadOptions) -> ParsedRules {
    let mut parsed = ParsedRules::default();
    let to_error = |problem: Problem| RuleError {
        origin: origin.to_owned(),
        line: problem.line,
        message: problem.message,
    };
    for document in yaml::load_documents(text) {
        let result = document
            .map_err(|err| vec![Problem::from(err)])
            .and_then(|document| rule::from_document(&document, origin, options));
        match result {
            Ok(rule) => parsed.rules.push(rule),
            Err(problems) => parsed.errors.extend(problems.into_iter().map(to_error)),
        }
    }
    parsed
}
