//! One compiled rule value and how it compares with a JSON value of an event.

use std::fmt::{self, Write as _};

use serde_json::{Number, Value as Json};

use crate::pattern::Pattern;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    /// A string pattern; it also matches the text of JSON numbers and booleans, because many
    /// sources log numbers as strings and rules are written either way.
    String(Pattern),
    /// A number as written in the rule: equal JSON numbers match, and so do JSON strings that
    /// spell it the way the rule does.
    Number {
        value: RuleNumber,
        text: Pattern,
    },
    Bool(bool),
    /// `null`: the field is missing or JSON null.
    Null,
}

/// A rule's number, kept integral when written as one so large ids compare exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RuleNumber {
    Int(i64),
    Float(f64),
}

impl Matcher {
    /// Whether a resolved field value matches; `None` means the field is missing.
    pub fn matches(&self, value: Option<&Json>) -> bool {
        let Some(value) = value else {
            return *self == Matcher::Null;
        };
        match (self, value) {
            (Matcher::Null, json) => json.is_null(),
            (Matcher::String(p), Json::String(s)) => p.matches(s),
            (Matcher::String(p), Json::Number(n)) => with_number_text(n, |s| p.matches(s)),
            (Matcher::String(p), Json::Bool(b)) => p.matches(bool_text(*b)),
            (Matcher::Number { value, .. }, Json::Number(n)) => number_eq(*value, n),
            (Matcher::Number { text, .. }, Json::String(s)) => text.matches(s),
            (Matcher::Bool(want), Json::Bool(b)) => want == b,
            (Matcher::Bool(want), Json::String(s)) => s.eq_ignore_ascii_case(bool_text(*want)),
            _ => false,
        }
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn number_eq(rule: RuleNumber, json: &Number) -> bool {
    match rule {
        RuleNumber::Int(want) => match json.as_i64() {
            Some(got) => got == want,
            // Beyond i64 (a large u64) cannot equal an i64; a float can.
            None => !json.is_u64() && json.as_f64() == Some(want as f64),
        },
        RuleNumber::Float(want) => json.as_f64() == Some(want),
    }
}

/// Formats a JSON number into a stack buffer, so comparing it with a string pattern does not
/// allocate; only numbers too long for the buffer (huge floats) fall back to the heap.
fn with_number_text<R>(n: &Number, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = StackText {
        bytes: [0; 32],
        len: 0,
    };
    if write!(buf, "{n}").is_ok() {
        if let Ok(text) = std::str::from_utf8(&buf.bytes[..buf.len]) {
            return f(text);
        }
    }
    f(&n.to_string())
}

/// Long enough for any integer and for floats in shortest form (at most 24 bytes).
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pattern::Anchor;

    fn string(p: &str) -> Matcher {
        Matcher::String(Pattern::sigma(p, Anchor::Whole))
    }

    fn int(i: i64) -> Matcher {
        Matcher::Number {
            value: RuleNumber::Int(i),
            text: Pattern::literal(&i.to_string()),
        }
    }

    #[test]
    fn numbers_match_numbers_and_their_text() {
        assert!(int(200).matches(Some(&json!(200))));
        assert!(int(200).matches(Some(&json!("200"))));
        assert!(int(200).matches(Some(&json!(200.0))));
        assert!(!int(200).matches(Some(&json!(201))));
        assert!(!int(200).matches(Some(&json!("2000"))));
        assert!(!int(-1).matches(Some(&json!(u64::MAX))));
        let float = Matcher::Number {
            value: RuleNumber::Float(1.5),
            text: Pattern::literal("1.5"),
        };
        assert!(float.matches(Some(&json!(1.5))) && !float.matches(Some(&json!(1))));
    }

    #[test]
    fn strings_match_the_text_of_numbers_and_booleans() {
        assert!(string("200").matches(Some(&json!(200))));
        assert!(string("2*").matches(Some(&json!(250))));
        assert!(!string("3*").matches(Some(&json!(250))));
        assert!(string("TRUE").matches(Some(&json!(true))));
        assert!(string("1.5").matches(Some(&json!(1.5))));
        assert!(!string("x").matches(Some(&json!(null))));
        assert!(!string("*").matches(None));
        assert!(!string("*").matches(Some(&json!({"a": 1}))));
    }

    #[test]
    fn booleans_and_null() {
        assert!(Matcher::Bool(true).matches(Some(&json!(true))));
        assert!(Matcher::Bool(true).matches(Some(&json!("True"))));
        assert!(!Matcher::Bool(true).matches(Some(&json!(false))));
        assert!(!Matcher::Bool(false).matches(Some(&json!(0))));
        assert!(Matcher::Null.matches(None));
        assert!(Matcher::Null.matches(Some(&json!(null))));
        assert!(!Matcher::Null.matches(Some(&json!(""))));
        assert!(!Matcher::Null.matches(Some(&json!("null"))));
    }
}
