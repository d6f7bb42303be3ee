//! Sigma rule loading and matching: Vigil's detection stage as a pure library.
//!
//! Rules come in as YAML text ([`parse_rules`]), are compiled once into an [`Engine`], and
//! events go through [`Engine::evaluate`], which returns the rules they match. There is no I/O
//! here: reading rule files, feeding events and raising alerts belong to the callers.
//! [`explain()`] tells a rule author why one event did or did not match the rules of one file,
//! search by search, field by field and value by value.
//! [`Rule::matched_fields`] and [`Engine::matched_fields`] say, for the alert a match raises,
//! which fields and values of the event made it match.
//! [`explain_correlation`] tells whether the event counts towards a correlation, with the
//! group-by values the detector reads from it. [`from_yaml_str`] reads other YAML files (rule
//! test files) into serde types over the same YAML reader the rules use.
//!
//! The crate implements a subset of the Sigma 2.1 specification and refuses what it does not
//! implement (a rule with an unsupported modifier fails to load with a [`RuleError`] saying so)
//! rather than evaluating it wrongly. Where the specification is vague, it follows pySigma, the
//! reference implementation:
//!
//! - Values compare as case-insensitive strings; `*` and `?` are wildcards, and a backslash
//!   escapes `*`, `?` and itself, but is literal before anything else.
//! - Numbers and booleans in a rule match JSON numbers and booleans, and also strings that spell
//!   them (`200` matches `200` and `"200"`); under a string modifier (such as `contains`) they
//!   are matched as the text they are written as.
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
//!
//! # Correlations and filters
//!
//! Correlation rules and meta-filters refer to other rules by `id` or `name`, possibly in other
//! files, so every file goes to one [`RuleSetBuilder`], whose [`RuleSetBuilder::build`] resolves
//! the references and reports what cannot be resolved. [`Detector`] evaluates the correlations
//! over a stream of events with bounded state that snapshots to bytes. Choices made there:
//!
//! - **Filters** follow pySigma: the filter's condition is ANDed *as written* to the condition of
//!   each rule it names, so a filter that excludes says `condition: not selection`. (The
//!   specification's own example writes `condition: selection`; read with pySigma's semantics
//!   it would keep only the matches it seems meant to drop.) A filter applies only to rules
//!   whose logsource it contains, never to correlations; `rules: any` applies it to every rule
//!   of its logsource. An unknown target is an error, a logsource mismatch a warning.
//! - **Correlations**: the window is sliding and inclusive, each match resets its group, a
//!   condition may combine operators into a range (as the specification allows, though pySigma
//!   takes one), `group-by` may be left out (one group), timespans take pySigma's `w`, `M` and
//!   `y` too, and `value_percentile` takes pySigma's `percentile` key (default 50). See
//!   [`Detector`] for the evaluation model.
//! - **`generate`** follows pySigma: a rule referred to by any correlation without
//!   `generate: true` reports no matches of its own through [`Detector`];
//!   [`Engine::evaluate`] stays stateless and reports every match.
//!
//! # Field-mapping pipelines
//!
//! [`LoadOptions::pipelines`] rename the fields of rules (and add required searches) per
//! logsource at load time, so SigmaHQ rules written for another schema match Vigil's events
//! unedited; [`Pipeline`] describes the file format. The repository's `pipelines/` holds one
//! per source Vigil reads.
//!
//! # Evaluation
//!
//! [`Engine::matching`] works out, once per event logsource, which rules apply (most of a
//! SigmaHQ checkout is for Windows and never does) and how to find the few that may match an
//! event, in one of two ways:
//!
//! - **By key**, when nearly every rule names exact values of some field (`eventName:
//!   DeleteTrail`, as cloud rules do): a table per field from value to rules, so an event costs
//!   a lookup per field.
//! - **By literal** otherwise: the literals each rule needs at least one of, in one
//!   Aho-Corasick automaton that runs once over the event's strings (integers give their
//!   digits, regular expressions the runs every match holds).
//!
//! Only the candidates are evaluated; rules about which neither can say anything (negations,
//! `null`, comparisons, floats, field references) always are, and so, where rules are found
//! by key, are the few with literals but no exact value. Both are conservative: they
//! never change what matches, which tests check against evaluating every rule.
//! [`Engine::matching_record`] runs the literal prefilter over a record's text before parsing
//! it, and parses it only when some rule may match, with the same matches (a test checks that
//! over SigmaHQ's rules); by key, the record is parsed first, which costs less than a pass
//! over its text. The engine keeps its plans behind a lock for callers that share it; a
//! [`Detector`] keeps the ones its events use itself, and looks them up without it.
//!
//! # Value modifiers
//!
//! Every modifier of the Sigma 2.1 appendix is implemented. They apply in the order the key
//! gives them, as in pySigma, and a chain that pySigma would refuse is refused at load with the
//! line of the key (or of the value) and the reason.
//!
//! - `contains`, `startswith`, `endswith` put `*` around the value (not twice: `*a*` stays as
//!   it is). Only one of them per key.
//! - `all` ANDs the values of the list. A value that expands into variants (`windash`,
//!   `base64offset`, `expand`) still counts once: any of its variants meets it.
//! - `neq` negates the whole key, as pySigma's `neq` does: `f|neq: [a, b]` holds when `f` is
//!   neither `a` nor `b`, and when `f` is missing, exactly as `not` of the same selection would.
//!   It combines with every other modifier.
//! - `exists: true` holds when the field is present with any value, even null or an empty list;
//!   `exists: false` when it is absent. It takes no other modifier except `neq`, and needs a
//!   field.
//! - `cased` compares characters exactly instead of ignoring case.
//! - `windash` applies to each `-` or `/` that starts an option word (after a non-word character
//!   or at the start of the value, and before a word character, pySigma's `\B[-/]\b`); each
//!   becomes any of `-`, `/`, `–`, `—` and `―`. A value expanding into more than 4096 variants
//!   is refused.
//! - `re` is a regular expression of the `regex` crate (linear time, so no rule can make
//!   matching slow), searched anywhere in the text, like the Sigma examples assume; `^` and `$`
//!   anchor it. It is case-sensitive unless `i` is given; `m` and `s` are the multi-line and
//!   dot-all flags (`ignorecase`, `multiline`, `dotall` are pySigma's long names). `re` must be
//!   the first value modifier; `startswith` and `endswith` after it anchor it at the start or
//!   end of the text. Look-around and back-references, outside the specification's flavour,
//!   fail to load.
//! - `base64` encodes the value; `base64offset` yields its three forms for the three byte
//!   offsets it may sit at inside a longer encoded text, cut as pySigma cuts them, and is
//!   normally followed by `contains`. Neither can encode wildcards, and a value too short to
//!   leave a stable middle part is refused.
//! - `utf16le` (alias `wide`) and `utf16be` encode the value's text as UTF-16; `utf16` is
//!   little-endian after the byte order mark `FF FE`, as pySigma writes it. Their output is
//!   meant for `base64`/`base64offset`; used alone, they match text holding the NUL bytes of
//!   ASCII UTF-16, and a value whose UTF-16 bytes are not text is refused.
//! - `lt`, `lte`, `gt`, `gte` need a number in the rule. They match JSON numbers and strings
//!   written as decimal numbers; anything else does not match. Integers compare exactly.
//! - `minute`, `hour`, `day`, `week`, `month`, `year` need a whole number in the possible range
//!   of that part and match when the field's timestamp has that part. Timestamps are strings
//!   that start `YYYY-MM-DD`, then `T` or a space and `HH:MM` for the time, read as written
//!   without time zone conversion (as the specification warns); JSON numbers are Unix seconds
//!   in UTC. `week` is the ISO 8601 week (1 to 53). They combine with `neq` only.
//! - `cidr` takes an IPv4 or IPv6 network (a bare address is a single-host network). Field
//!   values that are not IP addresses do not match; IPv4-mapped IPv6 addresses
//!   (`::ffff:10.0.0.1`) match IPv4 networks.
//! - `expand` replaces `%name%` with each value configured for that placeholder in
//!   [`LoadOptions::placeholders`] (values are Sigma strings, wildcards allowed); several
//!   placeholders give every combination. `\%` is a plain percent sign. A placeholder with no
//!   configured values makes the rule fail to load, naming it. Without `expand`, `%name%` is
//!   plain text.
//! - `fieldref` compares the field with another field of the same event, named by the value,
//!   ignoring case and as text (numbers as written); `contains`, `startswith` or `endswith`
//!   after it place the other field's text inside this one's. A missing field on either side
//!   does not match. The name cannot hold wildcards.
//! - Keyword searches take the string modifiers and `re` (searched in every string of the
//!   event); the modifiers that need a field are refused there.

mod condition;
mod correlation;
mod detection;
mod detector;
mod engine;
mod error;
mod explain;
mod filter;
mod matcher;
mod meta;
mod modifier;
mod modifier_chain;
mod number_text;
mod path;
mod pattern;
mod pipeline;
mod prefilter;
mod regex_need;
mod rule;
mod ruleset;
mod time;
mod watermarks;
mod yaml;
mod yaml_serde;

pub use correlation::state::{Counters, Limits};
pub use correlation::{Alias, CompareOp, CorrelationRule, CorrelationType, Threshold, Timespan};
pub use detector::{
    CorrelationMatch, Detector, Evaluation, Finding, RestoreReport, SnapshotError, StateStats,
    DEFAULT_STREAM, SNAPSHOT_VERSION,
};
pub use engine::{Engine, RecordMatches};
pub use error::RuleError;
pub use explain::{
    explain, explain_correlation, AlternativeExplanation, CorrelationExplanation, Explained,
    FieldValues, ItemExplanation, MatchedRef, ReferenceExplanation, ReferenceKind, RuleExplanation,
    RuleLibrary, RuleVerdict, SearchExplanation, Skipped, ThresholdShown, ValueExplanation,
    MAX_MATCHED_CHARS, MAX_MATCHED_FIELDS, SEQUENCE_NOTE,
};
pub use filter::{Filter, FilterTargets};
pub use meta::{RuleMeta, Status};
pub use pipeline::Pipeline;
pub use rule::Rule;
pub use ruleset::{BuiltRules, RuleSetBuilder};
pub use yaml_serde::{from_yaml_str, PathPart, YamlDeError, YamlDeErrorKind};

use std::collections::HashMap;

use error::Problem;

/// Settings that change how rules load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The values of each placeholder that `expand` replaces: `%Servers%` in a rule is looked
    /// up as `Servers` here (names are case-sensitive). Each value is a Sigma string, so it may
    /// hold wildcards. A rule that expands a placeholder missing here fails to load.
    pub placeholders: HashMap<String, Vec<String>>,
    /// Field-mapping pipelines, applied in order to every rule and meta-filter whose logsource
    /// they name (see [`Pipeline`] for the format): they rename fields and may add a search
    /// that the rules must also satisfy.
    pub pipelines: Vec<Pipeline>,
}

/// What came of parsing one rule text: the documents that loaded and the errors of those that
/// did not. An error in one document never hides the valid documents of the same text.
///
/// Correlation rules and filters refer to other rules, possibly in other files: give every
/// file's [`ParsedRules`] to one [`RuleSetBuilder`] to resolve them.
#[derive(Debug, Clone, Default)]
pub struct ParsedRules {
    pub rules: Vec<Rule>,
    pub correlations: Vec<CorrelationRule>,
    pub filters: Vec<Filter>,
    pub errors: Vec<RuleError>,
}

impl ParsedRules {
    /// The detection rules if every document loaded, else all the errors.
    pub fn into_result(self) -> Result<Vec<Rule>, Vec<RuleError>> {
        if self.errors.is_empty() {
            Ok(self.rules)
        } else {
            Err(self.errors)
        }
    }
}

/// Parses every document in one YAML text (multi-document `---` files hold several): detection
/// rules, correlation rules (with a `correlation` section) and meta-filters (with a `filter`
/// section). `origin` is the file name to use in errors.
pub fn parse_rules(text: &str, origin: &str) -> ParsedRules {
    parse_rules_with(text, origin, &LoadOptions::default())
}

/// Refuses YAML whose lists and mappings nest deeper than any rule needs (64 levels), by
/// scanning the parser's events without building a tree. Rules, filters and pipelines are
/// checked as they load; this is for YAML that another loader reads afterwards (rule test
/// files), since a tree that deep overflows the stack of whatever walks or drops it.
pub fn check_yaml_depth(text: &str, origin: &str) -> Result<(), RuleError> {
    yaml::check_depth(text).map_err(|err| RuleError {
        origin: origin.to_owned(),
        line: err.line,
        message: err.message,
    })
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
        let document = match document {
            Ok(document) => document,
            Err(err) => {
                parsed.errors.push(to_error(Problem::from(err)));
                continue;
            }
        };
        let result = match document_kind(&document) {
            Kind::Correlation => correlation::parse::from_document(&document, origin)
                .map(|c| parsed.correlations.push(c)),
            Kind::Filter => {
                filter::from_document(&document, origin, options).map(|f| parsed.filters.push(f))
            }
            Kind::Rule => {
                rule::from_document(&document, origin, options).map(|r| parsed.rules.push(r))
            }
        };
        if let Err(problems) = result {
            parsed.errors.extend(problems.into_iter().map(to_error));
        }
    }
    parsed
}

enum Kind {
    Rule,
    Correlation,
    Filter,
}

/// What a document is, by its top-level keys (as pySigma tells them apart).
fn document_kind(document: &yaml::Document) -> Kind {
    let yaml::Value::Map(entries) = &document.root.value else {
        return Kind::Rule;
    };
    let has = |name: &str| entries.iter().any(|(key, _)| key.name == name);
    if has("correlation") {
        Kind::Correlation
    } else if has("filter") {
        Kind::Filter
    } else {
        Kind::Rule
    }
}
