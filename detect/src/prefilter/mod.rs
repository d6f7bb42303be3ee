//! Prefiltering: skipping rules that cannot match an event without evaluating them, by the
//! literals of its text (here) or by the values of a few fields ([`keys`], which the engine
//! prefers where nearly every rule names exact values).
//!
//! Most values in rules are strings with a literal part (`*\\mimikatz.exe`, `DeleteTrail`), and
//! a string pattern can only match a text that contains its literal. So each rule gets a
//! [`Need`]: a set of literals of which at least one must occur somewhere in the event's text
//! for the rule to have any chance. The engine gathers the literals of every rule that an
//! event's logsource routes to into one Aho-Corasick automaton, runs it once over every string
//! of the event, and evaluates only the rules whose need is met. Integers need their digits and
//! regular expressions the runs every match holds (see `regex_need.rs`). A rule about which
//! nothing can be said (a `not` at the top, `null`, comparisons, floats, field references...)
//! has no need and is always evaluated, so the prefilter never changes what matches.
//!
//! A JSON record can be scanned from its text, before it is parsed
//! ([`Prefilter::scan_record`], in [`record`]): an event none of whose rules can match is then
//! never parsed at all. Events usually match nothing, so where the literals decide, that is
//! most of them.
//!
//! Case needs care. Patterns hold their literals lowercased (unless `cased`), and compare with
//! the text's characters lowercased; a few non-ASCII characters lowercase to ASCII ones (the
//! Kelvin sign to `k`). So the scan is ASCII-case-insensitive, and a text with non-ASCII
//! characters is scanned twice: as written (for `cased` literals) and lowercased.
//!
//! Speed: the scan is most of what detection costs, so the automaton is a DFA stepped through
//! byte by byte here (its match states list every literal ending there, which is the overlapping
//! search without `AhoCorasick`'s per-byte dynamic dispatch), and texts shorter than the
//! shortest literal are skipped. `benches/detect_throughput.rs` measures it.

use std::cell::RefCell;

use aho_corasick::automaton::{Automaton as _, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, Anchored};
use vigil_event::{JsonRef, Object};

use crate::number_text::with_number_text;
use crate::path::MAX_DEPTH;

mod key_table;
mod keys;
mod record;

pub(crate) use keys::{fold, union as union_keys, KeyIndex, KeyNeed};
pub(crate) use record::Unreadable;

/// What an event must hold for part of a rule to match, and how the parts' needs combine
/// through a condition: [`Need`] (literals of its text) and [`KeyNeed`] (values of fields).
pub(crate) trait Narrowing: Sized {
    /// The need of a conjunction of parts with these needs; `None` is "nothing known".
    fn all(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self>;
    /// The need of a disjunction of parts with these needs.
    fn any(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self>;
}

impl Narrowing for Need {
    fn all(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        all(parts)
    }

    fn any(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        any(parts)
    }
}

/// Literals shorter than this say too little to be worth a need: they occur in most events.
const MIN_LITERAL: usize = 3;

/// At least one of these literals must occur in the event's text. `None` (as `Option<Need>`)
/// stands for "nothing is known", which every event meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Need(pub Vec<String>);

impl Need {
    pub fn literal(literal: String) -> Option<Need> {
        (literal.len() >= MIN_LITERAL).then(|| Need(vec![literal]))
    }

    /// How much the need narrows: its commonest literal decides, then fewer alternatives. A
    /// literal is the rarer the longer it is, and the more of it is punctuation other than
    /// what every URL, path and sentence holds: `={{` is far rarer than `get`, though as long.
    fn strength(&self) -> (usize, std::cmp::Reverse<usize>) {
        let weakest = self.0.iter().map(|literal| rarity(literal)).min();
        (weakest.unwrap_or(0), std::cmp::Reverse(self.0.len()))
    }
}

/// A literal's rarity: a point for each letter, digit, space and common separator, two for
/// any other byte.
fn rarity(literal: &str) -> usize {
    literal
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => 1,
            b' ' | b'/' | b'.' | b'-' | b'_' | b':' | b',' => 1,
            _ => 2,
        })
        .sum()
}

/// The need of a conjunction: every part must hold, so any one part's need is the whole's; the
/// strongest is kept.
pub(crate) fn all(needs: impl IntoIterator<Item = Option<Need>>) -> Option<Need> {
    needs
        .into_iter()
        .flatten()
        .max_by_key(|need| need.strength())
}

/// The need of a disjunction: any part may hold, so the literals of all of them, and nothing at
/// all if one part has no need. An empty disjunction never holds, which no literal can say, so
/// it gets no need either.
pub(crate) fn any(needs: impl IntoIterator<Item = Option<Need>>) -> Option<Need> {
    let mut literals = Vec::new();
    for need in needs {
        literals.extend(need?.0);
    }
    literals.sort_unstable();
    literals.dedup();
    (!literals.is_empty()).then_some(Need(literals))
}

/// The literals of a set of rules, and which of them each rule needs.
#[derive(Debug)]
pub(crate) struct Prefilter {
    automaton: Option<Literals>,
    literals: usize,
    /// The length in bytes of the shortest literal: shorter texts hold none.
    shortest: usize,
    /// Per rule, the literal ids one of which must be found; `None` for rules always evaluated.
    needs: Vec<Option<Box<[u32]>>>,
    /// Whether some rule is always evaluated.
    some_rule_always: bool,
}

impl Prefilter {
    /// Builds the prefilter of the rules whose needs are given, in order.
    pub fn new(needs: &[Option<Need>]) -> Prefilter {
        let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        let mut literals: Vec<&str> = Vec::new();
        let needs: Vec<Option<Box<[u32]>>> = needs
            .iter()
            .map(|need| {
                need.as_ref().map(|need| {
                    need.0
                        .iter()
                        .map(|literal| {
                            *ids.entry(literal).or_insert_with(|| {
                                literals.push(literal);
                                (literals.len() - 1) as u32
                            })
                        })
                        .collect()
                })
            })
            .collect();
        let automaton = if literals.is_empty() {
            None
        } else {
            // A DFA scans fastest: the scan is most of what detection costs, and a plan's
            // literals are few enough (hundreds) for its table. Should it be too large, the
            // builder's own choice; an automaton too large to build at all leaves every rule
            // evaluated, which is only slower.
            let dfa = DFA::builder()
                .ascii_case_insensitive(true)
                .build(&literals)
                .ok()
                .and_then(|dfa| {
                    let start = dfa.start_state(Anchored::No).ok()?;
                    Some(Literals::Dfa {
                        dfa: Box::new(dfa),
                        start,
                        longest: literals.iter().map(|l| l.len()).max().unwrap_or(0),
                    })
                });
            dfa.or_else(|| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&literals)
                    .ok()
                    .map(Literals::General)
            })
        };
        let shortest = literals.iter().map(|l| l.len()).min().unwrap_or(0);
        let needs = if automaton.is_some() {
            needs
        } else {
            vec![None; needs.len()]
        };
        Prefilter {
            automaton,
            literals: literals.len(),
            shortest,
            some_rule_always: needs.iter().any(Option::is_none),
            needs,
        }
    }

    /// The literals in the strings, numbers and booleans of `doc`.
    pub fn scan_document(&self, doc: Object<'_>) -> Found {
        let mut found = Found(vec![0; self.literals.div_ceil(64)]);
        let Some(automaton) = &self.automaton else {
            return found;
        };
        FOLDED.with(|folded| {
            // Borrowed already only if this runs inside itself; a fresh buffer then.
            let mut fresh = String::new();
            let mut borrowed = folded.try_borrow_mut();
            let folded = match &mut borrowed {
                Ok(folded) => &mut **folded,
                Err(_) => &mut fresh,
            };
            let scanner = Scanner {
                automaton,
                shortest: self.shortest,
            };
            for (_, value) in doc.members() {
                scanner.scan(value, 0, &mut found.0, folded);
            }
        });
        found
    }

    /// The literals in the text of a JSON record (an object), found without parsing it: at
    /// least those [`Prefilter::scan_document`] finds in its document. [`Unreadable`] when the
    /// text holds what only the document can tell (see [`record`]).
    pub fn scan_record(&self, record: &str) -> Result<Found, Unreadable> {
        let mut found = Found(vec![0; self.literals.div_ceil(64)]);
        match &self.automaton {
            None => {}
            Some(Literals::Dfa {
                dfa,
                start,
                longest,
            }) => {
                let bits = &mut found.0;
                let mut matcher = record::Matcher {
                    dfa,
                    start: *start,
                    shortest: self.shortest,
                    longest: *longest,
                    hit: |id: usize| bits[id / 64] |= 1 << (id % 64),
                };
                record::scan(&mut matcher, record.as_bytes())?;
            }
            // Too many literals for a DFA: rare enough to leave to the document scan.
            Some(Literals::General(_)) => return Err(Unreadable),
        }
        Ok(found)
    }

    /// Calls `evaluate` with the position (in the order given to [`Prefilter::new`]) of each
    /// rule whose need `found` meets.
    pub fn each_candidate(&self, found: &Found, mut evaluate: impl FnMut(usize)) {
        for (position, need) in self.needs.iter().enumerate() {
            if found.meets(need) {
                evaluate(position);
            }
        }
    }

    /// Whether `found` meets the need of any rule: if not, no rule can match.
    pub fn any_candidate(&self, found: &Found) -> bool {
        // Every literal is some rule's, so any literal found meets a need, and a rule without a
        // need is always a candidate.
        self.some_rule_always || found.0.iter().any(|bits| *bits != 0)
    }
}

/// The literals found in one event, a bit each.
#[derive(Debug)]
pub(crate) struct Found(Vec<u64>);

impl Found {
    fn meets(&self, need: &Option<Box<[u32]>>) -> bool {
        need.as_ref().is_none_or(|ids| {
            ids.iter()
                .any(|&id| self.0[id as usize / 64] & (1 << (id % 64)) != 0)
        })
    }
}

thread_local! {
    /// The lowercased form of a non-ASCII text, reused across events.
    static FOLDED: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Calls `hit` with the id of every literal of `dfa` in `text`, overlapping ones included (some
/// perhaps twice): the one loop both the document scan and the record scan step the automaton
/// with. `longest` is the length of the longest literal.
///
/// Each step waits on the last one's transition, so a long text is stepped as two halves side
/// by side, one byte of each at a time, and the waits overlap. The second half starts early by
/// the longest literal's length but one, so a literal that ends in it is found whole, and one
/// that ends before it is found in the first.
#[inline]
fn dfa_each_in(dfa: &DFA, start: StateID, longest: usize, text: &[u8], mut hit: impl FnMut(usize)) {
    let overlap = longest.saturating_sub(1);
    if text.len() >= 2 * overlap + SPLIT_TEXTS_FROM {
        let middle = (text.len() + overlap) / 2;
        let (first, second) = (&text[..middle], &text[middle - overlap..]);
        let (mut one, mut two) = (start, start);
        // The first half is never the longer: it takes the overlap's half.
        let (both, rest) = second.split_at(first.len());
        for (&a, &b) in first.iter().zip(both) {
            one = dfa.next_state(Anchored::No, one, a);
            two = dfa.next_state(Anchored::No, two, b);
            report_matches(dfa, one, &mut hit);
            report_matches(dfa, two, &mut hit);
        }
        for &byte in rest {
            two = dfa.next_state(Anchored::No, two, byte);
            report_matches(dfa, two, &mut hit);
        }
        return;
    }
    // A standard-semantics automaton's match states hold every literal that ends there, so
    // stepping through every byte finds them all.
    let mut state = start;
    for &byte in text {
        state = dfa.next_state(Anchored::No, state, byte);
        report_matches(dfa, state, &mut hit);
    }
}

/// Texts at least this much longer than twice the overlap are stepped as two halves.
const SPLIT_TEXTS_FROM: usize = 64;

/// Calls `hit` with each literal that ends at `state`, if it is a match state.
#[inline(always)]
fn report_matches(dfa: &DFA, state: StateID, hit: &mut impl FnMut(usize)) {
    if dfa.is_special(state) && dfa.is_match(state) {
        for index in 0..dfa.match_len(state) {
            hit(dfa.match_pattern(state, index).as_usize());
        }
    }
}

/// The automaton over a plan's literals.
#[derive(Debug)]
enum Literals {
    /// Stepped through directly, byte by byte: `AhoCorasick`'s overlapping search goes through
    /// a trait object for every byte, which made it most of the cost of detection.
    Dfa {
        dfa: Box<DFA>,
        start: StateID,
        /// The length in bytes of the longest literal.
        longest: usize,
    },
    General(AhoCorasick),
}

impl Literals {
    /// Calls `hit` with the id of every literal in `text`, ignoring ASCII case, overlapping
    /// ones included (once or more each).
    #[inline]
    fn each_in(&self, text: &str, mut hit: impl FnMut(usize)) {
        match self {
            Literals::Dfa {
                dfa,
                start,
                longest,
            } => dfa_each_in(dfa, *start, *longest, text.as_bytes(), hit),
            Literals::General(automaton) => {
                for found in automaton.find_overlapping_iter(text) {
                    hit(found.pattern().as_usize());
                }
            }
        }
    }
}

struct Scanner<'a> {
    automaton: &'a Literals,
    shortest: usize,
}

impl Scanner<'_> {
    /// Records the literals in every string of `value`, and in the text of its numbers and
    /// booleans (which string patterns also match).
    fn scan(&self, value: JsonRef<'_>, depth: usize, found: &mut [u64], folded: &mut String) {
        // Deeper than matching ever looks (which stops at `MAX_DEPTH` levels of objects and
        // arrays, the record parser's own limit), so everything a rule can see is scanned.
        if depth > 2 * MAX_DEPTH {
            return;
        }
        let mut mark = |text: &str| {
            // A text shorter than every literal holds none (most values of an event are short).
            if text.len() < self.shortest {
                return;
            }
            self.automaton
                .each_in(text, |id| found[id / 64] |= 1 << (id % 64));
        };
        match value {
            JsonRef::String(text) => {
                mark(text);
                if !text.is_ascii() {
                    folded.clear();
                    folded.extend(text.chars().flat_map(char::to_lowercase));
                    mark(folded);
                }
            }
            JsonRef::Number(number) => with_number_text(number, |text| mark(text)),
            JsonRef::Bool(true) => mark("true"),
            JsonRef::Bool(false) => mark("false"),
            JsonRef::Null => {}
            JsonRef::Array(items) => items
                .items()
                .for_each(|item| self.scan(item, depth + 1, found, folded)),
            JsonRef::Object(object) => object
                .members()
                .for_each(|(_, item)| self.scan(item, depth + 1, found, folded)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    /// Long texts are stepped as two halves: each literal is found wherever it ends, at every
    /// place around the middle and the start of the second half, and no literal that is not
    /// there, as a search for each literal on its own finds them.
    #[test]
    fn halves_find_every_literal_wherever_it_sits() {
        let long = "ab".repeat(30);
        let literals = ["ab", "abcab", "bca", "aXc", &long];
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .build(literals)
            .unwrap();
        let start = dfa.start_state(Anchored::No).unwrap();
        let overlap = long.len() - 1;
        let found_in = |text: &[u8]| {
            let mut found = vec![false; literals.len()];
            dfa_each_in(&dfa, start, long.len(), text, |id| found[id] = true);
            found
        };
        let texts = (2 * overlap + SPLIT_TEXTS_FROM - 2..2 * overlap + SPLIT_TEXTS_FROM + 3)
            .chain([0, 1, 59, 60, 61, 300, 301]);
        for len in texts {
            let middle = (len + overlap) / 2;
            let ends = (0..len).filter(|&end| {
                [0, len - 1, middle, middle - overlap.min(middle)]
                    .iter()
                    .any(|&near| end.abs_diff(near) <= 3)
                    || len < 64
            });
            for end in ends {
                for literal in literals {
                    let Some(at) = (end + 1).checked_sub(literal.len()) else {
                        continue;
                    };
                    let mut text = vec![b'z'; len];
                    text[at..=end].copy_from_slice(literal.as_bytes());
                    let lower = text.to_ascii_lowercase();
                    let want: Vec<bool> = literals
                        .iter()
                        .map(|literal| {
                            let literal = literal.to_ascii_lowercase();
                            lower
                                .windows(literal.len())
                                .any(|w| w == literal.as_bytes())
                        })
                        .collect();
                    assert!(want.iter().any(|&w| w));
                    assert_eq!(
                        found_in(&text),
                        want,
                        "{len} bytes, {literal} ending at {end}"
                    );
                }
            }
        }
    }

    /// The positions of the rules that may match `doc`, as the engine evaluates them.
    fn candidates(filter: &Prefilter, doc: &Map<String, Value>) -> Vec<usize> {
        let mut seen = Vec::new();
        filter.each_candidate(&filter.scan_document(doc.into()), |i| seen.push(i));
        seen
    }

    fn need(literals: &[&str]) -> Option<Need> {
        Some(Need(literals.iter().map(|l| l.to_string()).collect()))
    }

    #[test]
    fn conjunctions_keep_the_strongest_and_disjunctions_union() {
        assert_eq!(
            all([need(&["abc"]), None, need(&["abcdef"])]),
            need(&["abcdef"])
        );
        assert_eq!(all([None, None]), None);
        assert_eq!(
            any([need(&["abc"]), need(&["xyz", "abc"])]),
            need(&["abc", "xyz"])
        );
        assert_eq!(any([need(&["abc"]), None]), None);
        assert_eq!(any(Vec::new()), None);
        assert_eq!(Need::literal("ab".into()), None);
    }

    /// Of a conjunction's parts, the one whose literals are rarer is kept, though they are no
    /// longer: an access log's method `GET` is in nearly every request, `={{` in hardly any.
    #[test]
    fn conjunctions_keep_the_part_with_rarer_literals() {
        assert_eq!(
            all([need(&["get"]), need(&["={{", "=${", "freemarker"])]),
            need(&["={{", "=${", "freemarker"])
        );
    }

    /// An event has a candidate when it holds any literal, or when some rule has no need.
    #[test]
    fn any_candidate_is_any_literal_found_or_a_rule_without_a_need() {
        let literals = Prefilter::new(&[need(&["abc"]), need(&["xyz", "uvw"])]);
        let any = |filter: &Prefilter, record: &str| {
            filter.any_candidate(&filter.scan_record(record).unwrap())
        };
        assert!(!any(&literals, r#"{"a":"nothing","abc":1}"#));
        assert!(any(&literals, r#"{"a":"...UVW"}"#));
        assert!(any(&literals, r#"{"a":["x","ABC"]}"#));
        let always = Prefilter::new(&[need(&["abc"]), None]);
        assert!(any(&always, r#"{"a":"nothing"}"#));
    }

    #[test]
    fn candidates_are_rules_whose_literal_occurs_anywhere_ignoring_case() {
        let filter = Prefilter::new(&[
            need(&["mimikatz"]),
            None,
            need(&["deletetrail", "stoplogging"]),
            need(&["kill"]),
            need(&["école"]),
            need(&["1234"]),
            need(&["true"]),
        ]);
        let doc = json!({
            "a": {"b": ["x", "Running MIMIKATZ.exe"]},
            "name": "StopLogging",
            "who": "\u{212a}ILL",
            "where": "ÉCOLE",
            "n": 991234,
            "t": true,
        });
        assert_eq!(
            candidates(&filter, doc.as_object().unwrap()),
            [0, 1, 2, 3, 4, 5, 6]
        );
        let nothing = json!({"k": "nothing"});
        assert_eq!(candidates(&filter, nothing.as_object().unwrap()), [1]);
    }

    /// A literal is found at any depth a parsed record keeps, and in the text of what the
    /// parser kept as raw JSON below its limit: padding a record deep never hides it.
    #[test]
    fn literals_are_found_at_every_depth_the_record_parser_keeps() {
        let filter = Prefilter::new(&[need(&["mimikatz"])]);
        for depth in [vigil_event::json::MAX_DEPTH - 2, 5000] {
            let doc = crate::path::nested_record(depth, "MIMIKATZ");
            assert_eq!(candidates(&filter, &doc), [0], "{depth}");
        }
    }
}
