//! One compiled rule value and how it compares with a JSON value of an event.

use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Number;
use vigil_event::{JsonRef as Json, Object};

use crate::modifier::{Compare, TimePart};
use crate::number_text::with_number_text;
use crate::path::FieldPath;
use crate::pattern::{eq_ignore_case, Anchor, Pattern};
use crate::prefilter::{self, Need};

#[derive(Debug, Clone)]
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
    /// The variants one rule value expands into (`windash`, `base64offset`, `expand`): any of
    /// them. They stay grouped so that `all` still needs each rule value, not each variant.
    AnyOf(Vec<Matcher>),
    /// `re`: an unanchored search, on strings and on the text of numbers and booleans.
    Regex(RegexSearch),
    /// `cidr`: string values that are IP addresses inside the network.
    Cidr(IpNet),
    /// `lt`, `lte`, `gt`, `gte`: numbers, and strings that are numbers.
    Compare {
        op: Compare,
        value: RuleNumber,
    },
    /// A time modifier: the part of a timestamp equals the value.
    Time {
        part: TimePart,
        value: i64,
    },
    /// `fieldref`: the text of another field of the event, placed as the anchor says.
    FieldRef {
        path: FieldPath,
        anchor: Anchor,
    },
}

/// A regular expression, with the literals one of which every match holds
/// ([`crate::regex_need`]).
#[derive(Debug, Clone)]
pub(crate) struct RegexSearch {
    regex: Regex,
    need: Option<Need>,
    /// A search for each literal of `need`, ignoring case: an ASCII text that holds none cannot
    /// match, which a substring search says for a fraction of what the expression's own search
    /// costs. (The expression may not find its literal by itself: `.+:assumed-role/aws:.+`,
    /// run on an ARN of every CloudTrail event, went through its lazy DFA byte by byte.)
    literals: Box<[Pattern]>,
}

/// An expression with more literals than this is run as it is: a search per literal would cost
/// more than the expression's own, which finds many alternatives at once.
const MAX_SEARCHED_LITERALS: usize = 4;

impl RegexSearch {
    pub fn new(regex: Regex, need: Option<Need>) -> Self {
        let literals = need
            .iter()
            .filter(|need| need.0.len() <= MAX_SEARCHED_LITERALS)
            .flat_map(|need| &need.0)
            .map(|literal| Pattern::literal_anywhere(literal))
            .collect();
        RegexSearch {
            regex,
            need,
            literals,
        }
    }

    pub fn is_match(&self, text: &str) -> bool {
        // Outside ASCII a literal may be held in another case or as a character lowering to
        // it, which the prefilter allows for and these searches do not; the expression decides.
        let ruled_out = !self.literals.is_empty()
            && text.is_ascii()
            && !self
                .literals
                .iter()
                .any(|literal| literal.matches_ascii_text(text));
        !ruled_out && self.regex.is_match(text)
    }
}

/// A rule's number, kept integral when written as one so large ids compare exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RuleNumber {
    Int(i64),
    Float(f64),
}

impl Matcher {
    /// Whether a resolved field value matches; `None` means the field is missing. `doc` is the
    /// whole event, which field references look into.
    pub fn matches(&self, value: Option<Json<'_>>, doc: Object<'_>) -> bool {
        let Some(value) = value else {
            return match self {
                Matcher::Null => true,
                Matcher::AnyOf(variants) => variants.iter().any(|m| m.matches(None, doc)),
                _ => false,
            };
        };
        match (self, value) {
            (Matcher::Null, json) => json.is_null(),
            (Matcher::AnyOf(variants), json) => variants.iter().any(|m| m.matches(Some(json), doc)),
            (Matcher::String(p), Json::String(s)) => p.matches(s),
            (Matcher::String(p), Json::Number(n)) => with_number_text(n, |s| p.matches(s)),
            (Matcher::String(p), Json::Bool(b)) => p.matches(bool_text(b)),
            (Matcher::Number { value, .. }, Json::Number(n)) => number_eq(*value, n),
            (Matcher::Number { text, .. }, Json::String(s)) => text.matches(s),
            (Matcher::Bool(want), Json::Bool(b)) => *want == b,
            (Matcher::Bool(want), Json::String(s)) => s.eq_ignore_ascii_case(bool_text(*want)),
            (Matcher::Regex(re), json) => with_text(json, |s| re.is_match(s)).unwrap_or(false),
            (Matcher::Cidr(net), Json::String(s)) => in_network(net, s),
            (Matcher::Compare { op, value }, json) => event_number(json)
                .and_then(|got| compare(got, *value))
                .is_some_and(|ordering| match op {
                    Compare::Lt => ordering.is_lt(),
                    Compare::Lte => ordering.is_le(),
                    Compare::Gt => ordering.is_gt(),
                    Compare::Gte => ordering.is_ge(),
                }),
            (Matcher::Time { part, value }, json) => {
                crate::time::part_of(json, *part) == Some(*value)
            }
            (Matcher::FieldRef { path, anchor }, json) => with_text(json, |got| {
                path.any(doc, &mut |other| {
                    other
                        .and_then(|other| with_text(other, |want| placed(got, want, *anchor)))
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false),
            _ => false,
        }
    }

    /// The literals of which a matching value contains one (see [`crate::prefilter`]): from
    /// string patterns, regular expressions, and integers. The other matchers compare
    /// numbers in other ways, addresses, times or other fields.
    pub fn need(&self) -> Option<Need> {
        match self {
            Matcher::String(pattern) => pattern.required_run().and_then(Need::literal),
            Matcher::Regex(re) => re.need.clone(),
            // A string matches when it spells the rule's text; a number when it equals the
            // integer, and then its text (`401`, or `401.0` for a float) holds the integer's
            // digits. Beyond 10^15, `serde_json` writes an equal float with an exponent.
            Matcher::Number {
                value: RuleNumber::Int(int),
                text,
            } if int.unsigned_abs() < 10u64.pow(15) => prefilter::any([
                text.required_run().and_then(Need::literal),
                Need::literal(int.to_string()),
            ]),
            Matcher::AnyOf(variants) => prefilter::any(variants.iter().map(Matcher::need)),
            _ => None,
        }
    }

    /// The keys (see `prefilter/keys.rs`) of which a matching value's folded text is one:
    /// for string patterns without wildcards. `None` for every other matcher, whose matches no
    /// set of texts holds (a number rule also matches `401.0`).
    pub fn keys(&self) -> Option<Vec<String>> {
        match self {
            Matcher::String(pattern) => pattern.exact_key().map(|key| vec![key]),
            Matcher::AnyOf(variants) => prefilter::union_keys(variants.iter().map(Matcher::keys)),
            // An integer matches a string as written in the rule, and each number equal to it:
            // the integer itself and the one float (both zeros, for 0) that equals it, each
            // keyed by the text the key index reads it as (`with_number_text`). A float in the
            // rule equals integers of many texts once past 2^53, so it gives no keys.
            Matcher::Number {
                value: RuleNumber::Int(want),
                text,
            } => {
                let mut keys = vec![text.exact_key()?];
                let mut numbers = vec![Number::from(*want)];
                numbers.extend(Number::from_f64(*want as f64));
                if *want == 0 {
                    numbers.extend(Number::from_f64(-0.0));
                }
                for number in &numbers {
                    let key = with_number_text(number, prefilter::fold);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                Some(keys)
            }
            _ => None,
        }
    }

    /// Whether a string of the event matches, for keyword searches.
    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            Matcher::String(p) => p.matches(text),
            Matcher::Regex(re) => re.is_match(text),
            Matcher::AnyOf(variants) => variants.iter().any(|m| m.matches_text(text)),
            _ => false,
        }
    }
}

/// Calls `f` with the text of a scalar JSON value; `None` for null, arrays and objects.
fn with_text<R>(value: Json<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match value {
        Json::String(s) => Some(f(s)),
        Json::Number(n) => Some(with_number_text(n, f)),
        Json::Bool(b) => Some(f(bool_text(b))),
        Json::Null | Json::Array(_) | Json::Object(_) => None,
    }
}

/// Whether `want` is in `got` where the anchor says, ignoring case.
fn placed(got: &str, want: &str, anchor: Anchor) -> bool {
    if got.is_ascii() && want.is_ascii() {
        let (got, want) = (got.as_bytes(), want.as_bytes());
        return match anchor {
            Anchor::Whole => got.eq_ignore_ascii_case(want),
            Anchor::Start => got
                .get(..want.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(want)),
            Anchor::End => {
                got.len() >= want.len() && got[got.len() - want.len()..].eq_ignore_ascii_case(want)
            }
            Anchor::Anywhere => {
                want.is_empty()
                    || got
                        .windows(want.len())
                        .any(|window| window.eq_ignore_ascii_case(want))
            }
        };
    }
    if anchor == Anchor::Whole {
        return eq_ignore_case(got, want);
    }
    // Rare enough (non-ASCII field texts) that lowercasing both is acceptable.
    let (got, want) = (got.to_lowercase(), want.to_lowercase());
    match anchor {
        Anchor::Whole => got == want,
        Anchor::Start => got.starts_with(&want),
        Anchor::End => got.ends_with(&want),
        Anchor::Anywhere => got.contains(&want),
    }
}

fn in_network(net: &IpNet, text: &str) -> bool {
    let Ok(addr) = text.parse::<IpAddr>() else {
        return false;
    };
    // Dual-stack sockets log IPv4 peers as IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`).
    match (net, addr) {
        (IpNet::V4(net), IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some_and(|v4| net.contains(&v4)),
        (net, addr) => net.contains(&addr),
    }
}

/// A number of the event, integral when it is one.
#[derive(Debug, Clone, Copy)]
enum EventNumber {
    Int(i128),
    Float(f64),
}

fn event_number(value: Json<'_>) -> Option<EventNumber> {
    match value {
        Json::Number(n) => Some(if let Some(i) = n.as_i64() {
            EventNumber::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            EventNumber::Int(u.into())
        } else {
            EventNumber::Float(n.as_f64()?)
        }),
        Json::String(s) => {
            if let Ok(i) = s.parse::<i128>() {
                return Some(EventNumber::Int(i));
            }
            // Rust also parses `inf` and `NaN`; only decimal notation counts as a number.
            let decimal = s.bytes().any(|b| b.is_ascii_digit())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
            let f = s.parse::<f64>().ok().filter(|f| decimal && f.is_finite())?;
            Some(EventNumber::Float(f))
        }
        _ => None,
    }
}

/// How the event's number compares with the rule's.
fn compare(got: EventNumber, want: RuleNumber) -> Option<Ordering> {
    match (got, want) {
        (EventNumber::Int(got), RuleNumber::Int(want)) => Some(got.cmp(&want.into())),
        (EventNumber::Int(got), RuleNumber::Float(want)) => (got as f64).partial_cmp(&want),
        (EventNumber::Float(got), RuleNumber::Int(want)) => got.partial_cmp(&(want as f64)),
        (EventNumber::Float(got), RuleNumber::Float(want)) => got.partial_cmp(&want),
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;

    /// `matcher` on `value`, in an event with no other fields.
    fn on(matcher: &Matcher, value: Option<&Value>) -> bool {
        matcher.matches(value.map(Json::from), Object::from(&Map::new()))
    }

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
        assert!(on(&int(200), Some(&json!(200))));
        assert!(on(&int(200), Some(&json!("200"))));
        assert!(on(&int(200), Some(&json!(200.0))));
        assert!(!on(&int(200), Some(&json!(201))));
        assert!(!on(&int(200), Some(&json!("2000"))));
        assert!(!on(&int(-1), Some(&json!(u64::MAX))));
        let float = Matcher::Number {
            value: RuleNumber::Float(1.5),
            text: Pattern::literal("1.5"),
        };
        assert!(on(&float, Some(&json!(1.5))) && !on(&float, Some(&json!(1))));
    }

    #[test]
    fn strings_match_the_text_of_numbers_and_booleans() {
        assert!(on(&string("200"), Some(&json!(200))));
        assert!(on(&string("2*"), Some(&json!(250))));
        assert!(!on(&string("3*"), Some(&json!(250))));
        assert!(on(&string("TRUE"), Some(&json!(true))));
        assert!(on(&string("1.5"), Some(&json!(1.5))));
        assert!(!on(&string("x"), Some(&json!(null))));
        assert!(!on(&string("*"), None));
        assert!(!on(&string("*"), Some(&json!({"a": 1}))));
    }

    #[test]
    fn booleans_and_null() {
        assert!(on(&Matcher::Bool(true), Some(&json!(true))));
        assert!(on(&Matcher::Bool(true), Some(&json!("True"))));
        assert!(!on(&Matcher::Bool(true), Some(&json!(false))));
        assert!(!on(&Matcher::Bool(false), Some(&json!(0))));
        assert!(on(&Matcher::Null, None));
        assert!(on(&Matcher::Null, Some(&json!(null))));
        assert!(!on(&Matcher::Null, Some(&json!(""))));
        assert!(!on(&Matcher::Null, Some(&json!("null"))));
    }

    #[test]
    fn comparisons_regexes_and_networks() {
        let gt = Matcher::Compare {
            op: Compare::Gt,
            value: RuleNumber::Int(10),
        };
        assert!(on(&gt, Some(&json!(11))) && on(&gt, Some(&json!("10.5"))));
        assert!(!on(&gt, Some(&json!(10))) && !on(&gt, Some(&json!("inf"))));
        assert!(on(&gt, Some(&json!(u64::MAX))));
        let re = Matcher::Regex(RegexSearch::new(Regex::new("^a.c$").unwrap(), None));
        assert!(on(&re, Some(&json!("abc"))) && !on(&re, Some(&json!("ABC"))));
        let net = Matcher::Cidr("10.0.0.0/8".parse().unwrap());
        assert!(on(&net, Some(&json!("10.1.2.3"))));
        assert!(on(&net, Some(&json!("::ffff:10.1.2.3"))));
        assert!(!on(&net, Some(&json!("11.1.2.3"))));
        assert!(!on(&net, Some(&json!("10.1.2.3:80"))));
    }

    /// The literal search before a regular expression never changes what it matches: over
    /// expressions of SigmaHQ's kind, with and without `i`, and texts in several cases.
    #[test]
    fn regex_literals_rule_out_only_texts_the_expression_cannot_match() {
        let sources = [
            ".+:assumed-role/aws:.+",
            r"(?:cmd|powershell)\.exe\s+/c\s+whoami",
            r"^[a-z]+\.evil\.(com|net)$",
            r"(?i)union\s+all\s+select",
            r"\\\\[^\\]+\\admin\$",
            r"key=\d{4,}",
            r"Key=\d{4,}",
        ];
        let texts = [
            "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1",
            "ARN:AWS:STS::1:ASSUMED-ROLE/AWS:EC2",
            "arn:aws:sts::1:assumed-role/admin/alice",
            "cmd.exe /c whoami",
            "CMD.EXE /C WHOAMI",
            "x.evil.com",
            "1 UNION  ALL SELECT 2",
            "1 union all select 2",
            r"\\host\admin$",
            "key=12345",
            "KEY=12345",
            "Key=12345",
            "nothing here",
            "assumed-rôle/aws:x",
        ];
        let (mut ruled_out, mut with_literals) = (0, 0);
        for source in sources {
            for case_insensitive in [false, true] {
                let flags = crate::regex_need::Flags {
                    case_insensitive,
                    multi_line: false,
                    dot_matches_new_line: false,
                };
                let need = crate::regex_need::regex_need(source, flags);
                // Ignoring case, `s` and `k` also match characters outside ASCII, about which
                // literals say nothing, so some expressions get none.
                with_literals += usize::from(need.is_some());
                let regex = regex::RegexBuilder::new(source)
                    .case_insensitive(case_insensitive)
                    .build()
                    .unwrap();
                let search = RegexSearch::new(regex.clone(), need);
                for text in texts {
                    assert_eq!(
                        search.is_match(text),
                        regex.is_match(text),
                        "{source} (i: {case_insensitive}) on {text}"
                    );
                    ruled_out += usize::from(
                        text.is_ascii() && !search.literals.iter().any(|l| l.matches(text)),
                    );
                }
            }
        }
        assert!(
            with_literals >= 6,
            "{with_literals} expressions with literals"
        );
        assert!(ruled_out > 50, "{ruled_out} texts ruled out by literals");
    }

    /// Only the literals are consulted where they rule a text out, and only on ASCII texts.
    #[test]
    fn a_regex_is_not_run_on_an_ascii_text_without_its_literals() {
        let need = Need::literal("xyz".into());
        let search = RegexSearch::new(Regex::new("abc").unwrap(), need);
        assert!(!search.is_match("abc"));
        assert!(search.is_match("abc XYZ"));
        assert!(search.is_match("abcé"));
        // Past a few literals the expression is run on every text.
        let many = (0..=MAX_SEARCHED_LITERALS)
            .map(|i| format!("xyz{i}"))
            .collect();
        let search = RegexSearch::new(Regex::new("abc").unwrap(), Some(Need(many)));
        assert!(search.is_match("abc"));
    }
}
