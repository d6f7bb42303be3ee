//! Field keys: choosing candidate rules by the exact values of a few fields, looked up in a
//! table, instead of scanning an event's whole text.
//!
//! Most rules of a cloud source name the operation they are about by its exact value
//! (`eventName: DeleteTrail`, `verb: create`), and a rule can match only an event whose field
//! holds one of those values. Such a rule gets a [`KeyNeed`]: per field, the set of *keys* (the
//! values, folded as [`fold`] does) of which the field must hold one. A plan whose rules nearly
//! all have one builds a [`KeyIndex`]: for each field it uses, a table from key to rules. An
//! event then costs a lookup per field, not a pass of an automaton over every byte it holds,
//! which is what made the text prefilter the largest part of detection on CloudTrail.
//!
//! Exactness: a string pattern without wildcards matches a text exactly when the text, folded,
//! equals the pattern's literal (held lowercased, see `pattern.rs`), and a `cased` one only
//! when the text equals its literal, so their folds are equal too. The text of a number or a
//! boolean is folded the same way, since string patterns match those. An integer in a rule
//! matches its text as written and every number equal to it, whose texts (the integer's, and
//! the one float's that equals it) are its keys (`Matcher::keys`). Fields are resolved by
//! the matcher's own [`FieldPath::any`], so every value a rule compares is looked up. A key need
//! is thus never met less often than the rule matches, and the engine still evaluates every
//! candidate in full.

use std::collections::HashMap;

use vigil_event::{JsonRef, Object};

use super::key_table::KeyTable;
use super::Narrowing;
use crate::number_text::with_number_text;
use crate::path::FieldPath;

/// A text as key tables hold it: lowercased the way case-insensitive patterns compare (every
/// character through `char::to_lowercase`, which for ASCII is the ASCII lowercase).
pub(crate) fn fold(text: &str) -> String {
    fold_into(text, &mut String::new()).to_owned()
}

/// The keys of alternatives one of which a value must meet: all of theirs, or nothing known
/// when one of them gives no keys.
pub(crate) fn union(
    alternatives: impl IntoIterator<Item = Option<Vec<String>>>,
) -> Option<Vec<String>> {
    alternatives
        .into_iter()
        .try_fold(Vec::new(), |mut union, keys| {
            union.extend(keys?);
            Some(union)
        })
}

/// Every part must hold: per field (by name, ascending), a set of keys (sorted, distinct) one of
/// which some value of the field has. Never empty; `None` (as `Option<KeyNeed>`) is "nothing
/// known".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyNeed(Vec<(String, Vec<String>)>);

impl KeyNeed {
    /// The field `name` must have one of `keys`, which come folded.
    pub fn field(name: &str, mut keys: Vec<String>) -> KeyNeed {
        keys.sort_unstable();
        keys.dedup();
        KeyNeed(vec![(name.to_owned(), keys)])
    }

    /// The fields and their keys, by field name.
    pub fn fields(&self) -> &[(String, Vec<String>)] {
        &self.0
    }
}

impl Narrowing for KeyNeed {
    /// Every field any part names; where two parts name one field, either's set would do (a
    /// list-valued field may meet both with different values, so not their intersection), and
    /// the smaller is kept.
    fn all(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        let mut merged: Vec<(String, Vec<String>)> = Vec::new();
        for (name, keys) in parts.into_iter().flatten().flat_map(|need| need.0) {
            match merged.binary_search_by(|(known, _)| known.as_str().cmp(&name)) {
                Ok(at) if keys.len() < merged[at].1.len() => merged[at].1 = keys,
                Ok(_) => {}
                Err(at) => merged.insert(at, (name, keys)),
            }
        }
        (!merged.is_empty()).then_some(KeyNeed(merged))
    }

    /// Only the fields every part names, with the union of their sets; nothing when a part
    /// knows nothing or no field is common to all. An empty disjunction never holds, which no
    /// key can say, so it gets no need either.
    fn any(parts: impl IntoIterator<Item = Option<Self>>) -> Option<Self> {
        let mut parts = parts.into_iter();
        let mut common = parts.next()??.0;
        for part in parts {
            let part = part?.0;
            common.retain_mut(|(name, keys)| {
                let Ok(at) = part.binary_search_by(|(other, _)| other.cmp(name)) else {
                    return false;
                };
                keys.extend(part[at].1.iter().cloned());
                keys.sort_unstable();
                keys.dedup();
                true
            });
            if common.is_empty() {
                return None;
            }
        }
        Some(KeyNeed(common))
    }
}

/// The rules of a plan by the keys of the one field each is indexed under; the rules without a
/// key need are candidates for every event.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    fields: Vec<(FieldPath, KeyTable)>,
    /// By key id, the positions of the rules indexed under it.
    keyed: Vec<Vec<u32>>,
    /// Positions of the rules evaluated on every event, ascending.
    everywhere: Vec<u32>,
    rules: usize,
}

impl KeyIndex {
    /// Indexes each rule (by position) under one field of its key need: the field whose sets
    /// hold the most distinct keys across the plan, as the likeliest to tell events apart
    /// (`eventName` rather than `eventSource` in CloudTrail).
    pub fn new(needs: &[Option<KeyNeed>]) -> KeyIndex {
        let mut distinct: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
        for (name, keys) in needs.iter().flatten().flat_map(KeyNeed::fields) {
            distinct
                .entry(name)
                .or_default()
                .extend(keys.iter().map(String::as_str));
        }
        let mut fields: Vec<(FieldPath, KeyTable)> = Vec::new();
        let mut keyed: Vec<Vec<u32>> = Vec::new();
        let mut everywhere = Vec::new();
        for (position, need) in needs.iter().enumerate() {
            let position = position as u32;
            let Some(need) = need else {
                everywhere.push(position);
                continue;
            };
            let (name, keys) = need
                .fields()
                .iter()
                .max_by_key(|(name, keys)| (distinct[name.as_str()].len(), usize::MAX - keys.len()))
                .expect("a key need names a field");
            let at = match fields.iter().position(|(path, _)| path.name() == name) {
                Some(at) => at,
                None => {
                    fields.push((FieldPath::new(name), KeyTable::default()));
                    fields.len() - 1
                }
            };
            for key in keys {
                let id = fields[at].1.entry(key, || {
                    keyed.push(Vec::new());
                    (keyed.len() - 1) as u32
                });
                keyed[id as usize].push(position);
            }
        }
        KeyIndex {
            fields,
            keyed,
            everywhere,
            rules: needs.len(),
        }
    }

    /// The most rules any one key makes candidates, besides those evaluated on every event: a
    /// key shared by most rules (one that a pipeline's `require` adds to all) narrows nothing.
    pub fn widest(&self) -> usize {
        self.keyed.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Calls `evaluate` with the position of each rule that may match `doc`, ascending, once
    /// each.
    pub fn each_candidate(&self, doc: Object<'_>, mut evaluate: impl FnMut(usize)) {
        // The rules marked, then the keys seen: a key is followed once per event however
        // often it occurs (a list may repeat it), so the work stays that of reading the values.
        // On the stack for a plan of up to a thousand rules and keys (a cloud source's has a
        // few hundred): an allocation and a free an event were 1.5% of a CloudTrail record's
        // matching.
        let words = self.rules.div_ceil(64) + self.keyed.len().div_ceil(64);
        let mut on_stack = [0u64; 16];
        let mut on_heap = Vec::new();
        let bits = if words <= on_stack.len() {
            &mut on_stack[..words]
        } else {
            on_heap.resize(words, 0);
            &mut on_heap[..]
        };
        let (marked, seen) = bits.split_at_mut(self.rules.div_ceil(64));
        for &position in &self.everywhere {
            marked[position as usize / 64] |= 1 << (position % 64);
        }
        let mut folded = String::new();
        for (path, table) in &self.fields {
            path.any(doc, &mut |value| {
                let mut mark = |text: &str| {
                    let Some(id) = table.get(text, &mut folded) else {
                        return;
                    };
                    let (word, bit) = (id as usize / 64, 1 << (id % 64));
                    if seen[word] & bit == 0 {
                        seen[word] |= bit;
                        for &position in &self.keyed[id as usize] {
                            marked[position as usize / 64] |= 1 << (position % 64);
                        }
                    }
                };
                match value {
                    Some(JsonRef::String(text)) => mark(text),
                    Some(JsonRef::Number(number)) => with_number_text(number, mark),
                    Some(JsonRef::Bool(true)) => mark("true"),
                    Some(JsonRef::Bool(false)) => mark("false"),
                    // No string pattern matches these, nor a missing field.
                    Some(JsonRef::Null | JsonRef::Array(_) | JsonRef::Object(_)) | None => {}
                }
                false
            });
        }
        for (word, bits) in marked.iter().enumerate() {
            let mut bits = *bits;
            while bits != 0 {
                evaluate(word * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }
}

/// [`fold`] into a buffer reused across values, or `text` itself when it folds to itself (the
/// common case: most values hold no capital letter).
pub(super) fn fold_into<'t>(text: &'t str, buffer: &'t mut String) -> &'t str {
    if text.is_ascii() && !text.bytes().any(|b| b.is_ascii_uppercase()) {
        return text;
    }
    buffer.clear();
    if text.is_ascii() {
        buffer.push_str(text);
        buffer.make_ascii_lowercase();
    } else {
        buffer.extend(text.chars().flat_map(char::to_lowercase));
    }
    buffer
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn need(name: &str, keys: &[&str]) -> Option<KeyNeed> {
        Some(KeyNeed::field(
            name,
            keys.iter().map(|k| k.to_string()).collect(),
        ))
    }

    #[test]
    fn conjunctions_keep_every_field_and_disjunctions_the_common_ones() {
        let both = KeyNeed::all([need("b", &["x"]), None, need("a", &["y", "z"])]);
        assert_eq!(
            both,
            Some(KeyNeed(vec![
                ("a".into(), vec!["y".into(), "z".into()]),
                ("b".into(), vec!["x".into()]),
            ]))
        );
        assert_eq!(
            KeyNeed::all([need("a", &["p", "q"]), need("a", &["r"])]),
            need("a", &["r"])
        );
        assert_eq!(KeyNeed::all([None, None]), None);
        assert_eq!(
            KeyNeed::any([both.clone(), need("a", &["w", "y"])]),
            need("a", &["w", "y", "z"])
        );
        assert_eq!(KeyNeed::any([both.clone(), need("c", &["w"])]), None);
        assert_eq!(KeyNeed::any([both, None]), None);
        assert_eq!(KeyNeed::any(Vec::new()), None);
    }

    #[test]
    fn candidates_are_rules_whose_key_a_field_holds_in_any_case_or_type() {
        let index = KeyIndex::new(&[
            need("eventName", &["deletetrail", "stoplogging"]),
            None,
            need("a.b", &["401"]),
            need("flag", &["true"]),
            need("who", &["kill"]),
            need("eventName", &["createuser"]),
        ]);
        let candidates = |doc: serde_json::Value| {
            let mut seen = Vec::new();
            index.each_candidate(doc.as_object().unwrap().into(), |p| seen.push(p));
            seen
        };
        assert_eq!(
            candidates(json!({
                "eventName": ["x", "StopLogging"],
                "a": [{"b": 7}, {"b": 401}],
                "flag": true,
                "who": "\u{212a}ILL",
            })),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(
            candidates(json!({"eventName": "stoplogging!", "a.b": "401", "flag": "TRUE"})),
            [1, 2, 3]
        );
        assert_eq!(candidates(json!({"other": "DeleteTrail"})), [1]);
    }

    /// A plan too large for the bits on the stack finds its candidates as a small one does.
    #[test]
    fn large_plans_find_their_candidates_too() {
        let needs: Vec<_> = (0..1100)
            .map(|i| need("eventName", &[format!("event{i}").as_str()]))
            .chain([None])
            .collect();
        let index = KeyIndex::new(&needs);
        let mut seen = Vec::new();
        let doc = json!({"eventName": ["Event7", "EVENT1099", "event5000"]});
        index.each_candidate(doc.as_object().unwrap().into(), |p| seen.push(p));
        assert_eq!(seen, [7, 1099, 1100]);
    }
}
