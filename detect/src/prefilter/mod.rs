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
//! Speed: the scan is most of what detection costs, so the automaton is a table of transitions
//! stepped through byte by byte ([`dense`]; its match states list every literal ending there,
//! which is the overlapping search without `AhoCorasick`'s per-byte dynamic dispatch), and texts
//! shorter than the shortest literal are skipped. `benches/detect_throughput.rs` measures it.

use std::cell::Cell;

use aho_corasick::AhoCorasick;
use smallvec::SmallVec;
use vigil_event::{JsonRef, Object};

use crate::number_text::with_number_text;
use crate::path::MAX_DEPTH;

mod dense;
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

/// The most bytes of a literal the automaton looks for: see [`scanned_part`].
const MAX_SCANNED: usize = 16;

/// The part of `literal` the automaton looks for: all of it, or its rarest [`MAX_SCANNED`]
/// bytes (starting and ending on characters). A text holding the literal holds any part of
/// it, so a rule is still a candidate wherever its literal is found. Shorter literals let the
/// automaton step a text in more places at once (see `dense`), each part starting only the
/// longest literal's length before the last ends.
fn scanned_part(literal: &str) -> &str {
    if literal.len() <= MAX_SCANNED {
        return literal;
    }
    let mut best = &literal[..0];
    for (start, _) in literal.char_indices() {
        let rest = &literal[start..];
        let mut end = rest.len().min(MAX_SCANNED);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let part = &rest[..end];
        if rarity(part) > rarity(best) {
            best = part;
        }
    }
    best
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
    /// Per literal id, the positions of the rules that need it, ascending.
    needed_by: Vec<Box<[u32]>>,
    /// The positions of the rules always evaluated, as bits.
    always: Box<[u64]>,
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
                        .map(|literal| scanned_part(literal))
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
            // A table of transitions scans fastest (see `dense`): the scan is most of what
            // detection costs, and a plan's literals are few enough (hundreds) for one. Should
            // there be too many, `aho_corasick`'s own choice; an automaton too large to build
            // at all leaves every rule evaluated, which is only slower.
            dense::Literals::new(&literals)
                .map(|automaton| Literals::Dense(Box::new(automaton)))
                .or_else(|| {
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
        let mut needed_by = vec![Vec::new(); literals.len()];
        let mut always = vec![0u64; needs.len().div_ceil(64)];
        for (position, need) in needs.iter().enumerate() {
            match need {
                Some(ids) => ids
                    .iter()
                    .for_each(|&id| needed_by[id as usize].push(position as u32)),
                None => always[position / 64] |= 1 << (position % 64),
            }
        }
        Prefilter {
            automaton,
            literals: literals.len(),
            shortest,
            needed_by: needed_by.into_iter().map(Vec::into_boxed_slice).collect(),
            some_rule_always: always.iter().any(|bits| *bits != 0),
            always: always.into_boxed_slice(),
        }
    }

    /// The literals in the strings, numbers and booleans of `doc`.
    pub fn scan_document(&self, doc: Object<'_>) -> Found {
        let mut found = Found(smallvec::smallvec![0; self.literals.div_ceil(64)]);
        let Some(automaton) = &self.automaton else {
            return found;
        };
        with_texts(|texts| {
            let mut gatherer = Gatherer {
                shortest: self.shortest,
                texts,
            };
            // A tape's values are read slot by slot, repeated keys' earlier values too: more
            // literals can only add candidates, never hide a match. One loop, each value gathered
            // inline: this beats scanning the record's text again, as `scan_record` does before
            // a parse (access-log records parsed and detected through their document in 1.32
            // to 1.53 us against 1.42 to 1.54), where values read through an iterator, with
            // calls for each, lost to it.
            if !doc.for_each_tape_scalar(|value| gatherer.scalar(value)) {
                doc.members()
                    .for_each(|(_, value)| gatherer.gather(value, 0));
            }
            gatherer.lowercase_wide_texts();
            // One pass over all the texts rather than one per text: most values are too short
            // to be stepped in several places at once on their own (see `dense`).
            automaton.each_in(texts, |id| found.0[id / 64] |= 1 << (id % 64));
        });
        found
    }

    /// The literals in the text of a JSON record (an object), found without parsing it: at
    /// least those [`Prefilter::scan_document`] finds in its document. [`Unreadable`] when the
    /// text holds what only the document can tell (see [`record`]).
    pub fn scan_record(&self, record: &str) -> Result<Found, Unreadable> {
        let mut found = Found(smallvec::smallvec![0; self.literals.div_ceil(64)]);
        match &self.automaton {
            None => {}
            Some(Literals::Dense(automaton)) => {
                let bits = &mut found.0;
                with_texts(|texts| {
                    let mut matcher = record::Matcher {
                        automaton,
                        shortest: self.shortest,
                        texts,
                        hit: |id: usize| bits[id / 64] |= 1 << (id % 64),
                    };
                    record::scan(&mut matcher, record.as_bytes())
                })?;
            }
            // Too many literals for a table: rare enough to leave to the document scan.
            Some(Literals::General(_)) => return Err(Unreadable),
        }
        Ok(found)
    }

    /// Calls `evaluate` with the position (in the order given to [`Prefilter::new`]) of each
    /// rule whose need `found` meets.
    pub fn each_candidate(&self, found: &Found, evaluate: impl FnMut(usize)) {
        // From the literals found to the rules needing them, rather than from every rule to
        // its literals: an event holds few of a plan's literals, and a plan has hundreds of
        // rules. The rules chosen are bits, so each is evaluated once, in order. On the stack
        // up to 2,048 rules: SigmaHQ's largest plan (Windows process creation) has about
        // 1,400, and a heap vector would be an allocation an event on its busiest lane.
        let mut on_stack = [0u64; 32];
        let mut on_heap;
        let chosen: &mut [u64] = if self.always.len() <= on_stack.len() {
            &mut on_stack[..self.always.len()]
        } else {
            on_heap = vec![0u64; self.always.len()];
            &mut on_heap
        };
        chosen.copy_from_slice(&self.always);
        for_each_bit(&found.0, |id| {
            for &position in &self.needed_by[id] {
                chosen[position as usize / 64] |= 1 << (position % 64);
            }
        });
        for_each_bit(chosen, evaluate);
    }

    /// Whether `found` meets the need of any rule: if not, no rule can match.
    pub fn any_candidate(&self, found: &Found) -> bool {
        // Every literal is some rule's, so any literal found meets a need, and a rule without a
        // need is always a candidate.
        self.some_rule_always || found.0.iter().any(|bits| *bits != 0)
    }
}

/// The literals found in one event, a bit each: on the stack for a plan of up to 256 literals
/// (the webserver rules have 155), where a vector was an allocation an event.
#[derive(Debug)]
pub(crate) struct Found(SmallVec<[u64; 4]>);

/// Calls `each` with the index of every bit set in `words`, ascending.
fn for_each_bit(words: &[u64], mut each: impl FnMut(usize)) {
    for (at, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            each(at * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// The most a thread keeps of its buffer of texts between events: one event's texts, which
/// the sender chooses, should not hold memory for the rest of the thread's life.
const KEPT_BUFFER: usize = 1 << 20;

/// Runs `scan` with the thread's buffer of texts, empty, and keeps the buffer for the next
/// event unless it grew past [`KEPT_BUFFER`]. The buffer is taken for the scan, so a scan
/// inside a scan would only start a fresh one.
fn with_texts<R>(scan: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut texts = GATHERED.take();
    texts.clear();
    let scanned = scan(&mut texts);
    if texts.capacity() <= KEPT_BUFFER {
        GATHERED.set(texts);
    }
    scanned
}

thread_local! {
    /// The texts of an event gathered for one pass of the automaton, reused across events.
    static GATHERED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The automaton over a plan's literals.
#[derive(Debug)]
enum Literals {
    Dense(Box<dense::Literals>),
    General(AhoCorasick),
}

impl Literals {
    /// Calls `hit` with the id of every literal in `text`, ignoring ASCII case, overlapping
    /// ones included (once or more each).
    #[inline]
    fn each_in(&self, text: &[u8], mut hit: impl FnMut(usize)) {
        match self {
            Literals::Dense(automaton) => automaton.each_in(text, hit),
            Literals::General(automaton) => {
                for found in automaton.find_overlapping_iter(text) {
                    hit(found.pattern().as_usize());
                }
            }
        }
    }
}

/// Gathers the texts of a document for one pass of the automaton, each followed by
/// [`dense::SEPARATOR`]: every string (lowercased as well where it is not ASCII, once all are
/// gathered: see [`Gatherer::lowercase_wide_texts`]), and the text of every number and
/// boolean, which string patterns also match.
struct Gatherer<'a> {
    shortest: usize,
    texts: &'a mut Vec<u8>,
}

impl Gatherer<'_> {
    fn gather(&mut self, value: JsonRef<'_>, depth: usize) {
        // Deeper than matching ever looks (which stops at `MAX_DEPTH` levels of objects and
        // arrays, the record parser's own limit), so everything a rule can see is scanned.
        if depth > 2 * MAX_DEPTH {
            return;
        }
        match value {
            JsonRef::Array(items) => items.items().for_each(|item| self.gather(item, depth + 1)),
            JsonRef::Object(object) => object
                .members()
                .for_each(|(_, item)| self.gather(item, depth + 1)),
            scalar => self.scalar(scalar),
        }
    }

    /// Gathers the text of a value that is not an array or object. Inlined into the loop over
    /// a tape's values, with the rare case apart: as a call a value, it was a tenth of an
    /// access-log record's detection through its document.
    #[inline(always)]
    fn scalar(&mut self, value: JsonRef<'_>) {
        match value {
            // A text outside ASCII is gathered whatever its length, for its lowercased form
            // may be longer (`İ` is two bytes, lowercased three).
            JsonRef::String(text) => {
                if text.len() >= self.shortest || !text.is_ascii() {
                    self.push(text);
                }
            }
            JsonRef::Number(number) => with_number_text(number, |text| self.mark(text)),
            JsonRef::Bool(true) => self.mark("true"),
            JsonRef::Bool(false) => self.mark("false"),
            JsonRef::Null | JsonRef::Array(_) | JsonRef::Object(_) => {}
        }
    }

    /// Gathers each text outside ASCII once more, lowercased, as patterns compare it. Most
    /// events hold none, and one pass over all the texts gathered says so for less than a test
    /// of each as it was gathered (which was 6% of an access-log record's parse and detection):
    /// a byte from 0x80 that is no separator, which UTF-8 never holds, is part of such a text.
    fn lowercase_wide_texts(&mut self) {
        let wide = |byte: u8| (byte ^ 0x80) < 0x7f;
        if !self
            .texts
            .chunks(64)
            .any(|chunk| chunk.iter().fold(false, |any, &byte| any | wide(byte)))
        {
            return;
        }
        self.lowercase_each_wide_text();
    }

    #[cold]
    #[inline(never)]
    fn lowercase_each_wide_text(&mut self) {
        let gathered = self.texts.len();
        let mut start = 0;
        let mut lowered = String::new();
        while start < gathered {
            let end = start
                + self.texts[start..gathered]
                    .iter()
                    .position(|&byte| byte == dense::SEPARATOR)
                    .expect("every gathered text ends with a separator");
            if !self.texts[start..end].is_ascii() {
                // Gathered from a `str` (a number or boolean is ASCII), and cut only at
                // separators, which no character holds.
                let text =
                    std::str::from_utf8(&self.texts[start..end]).expect("a gathered text is UTF-8");
                lowered.clear();
                lowered.extend(text.chars().flat_map(char::to_lowercase));
                self.push(&lowered);
            }
            start = end + 1;
        }
    }

    #[inline]
    fn mark(&mut self, text: &str) {
        // A text shorter than every literal holds none (most values of an event are short).
        if text.len() >= self.shortest {
            self.push(text);
        }
    }

    /// Gathers `text` to be scanned on its own.
    #[inline(always)]
    fn push(&mut self, text: &str) {
        self.texts.extend_from_slice(text.as_bytes());
        self.texts.push(dense::SEPARATOR);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

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

    /// A parsed record's texts are found at every depth, numbers and booleans included, and
    /// those of a repeated key's earlier members too (which can only add candidates); texts
    /// outside ASCII lowercased as well.
    #[test]
    fn a_parsed_records_literals_are_found_in_every_value() {
        let filter = Prefilter::new(&[
            need(&["mimikatz"]),
            need(&["stoplogging"]),
            need(&["991234"]),
            need(&["true"]),
            need(&["nowhere"]),
            need(&["shadowed"]),
            need(&["\u{e9}cole"]),
        ]);
        let text = r#"{"k":"SHADOWED","a":{"b":["x",{"c":"Running MIMIKATZ"}]},
            "n":[991234],"t":{"u":true},"name":"StopLogging","k":"last","s":["\u00c9COLE"]}"#;
        let seen = |object: Object<'_>| {
            let mut seen = Vec::new();
            filter.each_candidate(&filter.scan_document(object), |i| seen.push(i));
            seen
        };
        let document = vigil_event::Document::parse(text).unwrap();
        assert_eq!(seen(document.root()), [0, 1, 2, 3, 5, 6]);
        // A nested object is scanned for what it holds, not its record's other values.
        let Some(JsonRef::Object(nested)) = document.root().get("a") else {
            panic!("a is an object")
        };
        assert_eq!(seen(nested), [0]);
    }

    /// A long literal is looked for by its rarest sixteen bytes, cut on characters; its rule is
    /// a candidate wherever the whole literal is, and wherever that part is.
    #[test]
    fn long_literals_are_looked_for_by_their_rarest_part() {
        assert_eq!(scanned_part("/etc/passwd"), "/etc/passwd");
        let literal = "/deserialization/commonscollections1/${jndi:ldap";
        let part = scanned_part(literal);
        assert_eq!(part.len(), MAX_SCANNED);
        assert!(literal.contains(part) && part.contains("${"), "{part}");
        // No part starts or ends inside a character: the sixteenth byte of this one is the
        // first of `é`.
        for accented in ["abcdefghijklmnoé", "é".repeat(9).as_str()] {
            let part = scanned_part(accented);
            assert!(part.len() >= MAX_SCANNED - 1, "{part}");
            assert!(accented.contains(part), "{part}");
        }
        let filter = Prefilter::new(&[need(&[literal]), need(&["other"])]);
        for (text, want) in [
            (format!("GET {} HTTP/1.1", literal.to_uppercase()), vec![0]),
            (format!("x {part} x"), vec![0]),
            ("/deserialization/commonscollections1/".to_owned(), vec![]),
        ] {
            let doc = json!({ "request": text });
            assert_eq!(
                candidates(&filter, doc.as_object().unwrap()),
                want,
                "{text}"
            );
            let record = doc.to_string();
            let mut seen = Vec::new();
            filter.each_candidate(&filter.scan_record(&record).unwrap(), |i| seen.push(i));
            assert_eq!(seen, want, "{text}");
        }
    }

    /// A plan of more rules than the candidates' bits hold on the stack chooses as a small one
    /// does: each rule whose literal occurs, and each rule without a need, once and in order.
    #[test]
    fn plans_of_many_rules_choose_each_candidate_once_in_order() {
        let needs: Vec<Option<Need>> = (0..2200)
            .map(|i| match i % 3 {
                0 => None,
                1 => need(&["alpha", "omega"]),
                _ => need(&[&format!("lit{i:04}")]),
            })
            .collect();
        let filter = Prefilter::new(&needs);
        let doc = json!({"a": "ALPHA and lit1097 and omega", "b": ["lit0002"]});
        let expected: Vec<usize> = (0..2200)
            .filter(|i| i % 3 != 2 || [2, 1097].contains(i))
            .collect();
        assert_eq!(candidates(&filter, doc.as_object().unwrap()), expected);
    }

    /// The document's texts are scanned in one pass, but a literal is never found across two
    /// of them; and a text shorter than every literal is still scanned lowercased when that is
    /// longer (`İ` is two bytes, lowercased three).
    #[test]
    fn no_literal_spans_two_values_and_folding_may_lengthen() {
        let filter = Prefilter::new(&[need(&["abcdef"]), need(&["i\u{307}"])]);
        let apart = json!({"a": "abc", "b": ["def"], "c": {"d": "abcdeF"}});
        assert_eq!(candidates(&filter, apart.as_object().unwrap()), [0]);
        let apart = json!({"a": "abc", "b": "def"});
        assert!(candidates(&filter, apart.as_object().unwrap()).is_empty());
        let dotted = json!({"a": "\u{130}"});
        assert_eq!(candidates(&filter, dotted.as_object().unwrap()), [1]);
    }

    /// Texts outside ASCII are lowercased after all are gathered: each one, wherever it fell in
    /// the gathered bytes (across the 64-byte chunks the check reads), however many there are,
    /// from a parsed record and from a map alike. (A text shorter than every literal that
    /// lowercases longer is `no_literal_spans_two_values_and_folding_may_lengthen`'s.)
    #[test]
    fn texts_outside_ascii_are_lowercased_wherever_they_were_gathered() {
        let filter = Prefilter::new(&[need(&["\u{e9}cole"]), need(&["kill"]), need(&["zzz"])]);
        for filler in 0..70 {
            for (first, second) in [("\u{c9}COLE", "\u{212a}ILL"), ("\u{212a}ILL", "\u{c9}COLE")] {
                let text = format!(
                    r#"{{"pad":"{}","a":"{first}","mid":"yyyy","b":["{second}"]}}"#,
                    "y".repeat(filler)
                );
                let document = vigil_event::Document::parse(&text).unwrap();
                let mut seen = Vec::new();
                filter.each_candidate(&filter.scan_document(document.root()), |i| seen.push(i));
                assert_eq!(seen, [0, 1], "{text}");
                // A map (a text record's fields) is gathered the same way.
                let map: Map<String, Value> = serde_json::from_str(&text).unwrap();
                assert_eq!(candidates(&filter, &map), [0, 1], "{text}");
            }
        }
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
