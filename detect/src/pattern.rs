//! Case-insensitive string patterns with Sigma's `*` and `?` wildcards.
//!
//! Patterns are lowercased once when a rule is compiled; at match time only the event's text is
//! folded, one character at a time, so no comparison allocates. Case-insensitivity uses Unicode
//! simple lowercasing (`char::to_lowercase`), not full case folding: `ß` does not match `ss`.

/// Where a value must sit in the field's text, as set by the `contains`, `startswith` and
/// `endswith` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Anchor {
    /// The whole text (no modifier).
    #[default]
    Whole,
    Start,
    End,
    Anywhere,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters, including none.
    Any,
}

/// A compiled, lowercased string pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    shape: Shape,
    /// Whether every literal character is ASCII; if not, no ASCII text can match, which lets
    /// ASCII texts (the common case) be compared byte by byte.
    ascii: bool,
}

/// The common patterns get a direct comparison; everything else goes through the general
/// wildcard matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Infix(String),
    Wildcard(Vec<Token>),
}

impl Pattern {
    /// Compiles a Sigma value, reading `*` and `?` as wildcards.
    ///
    /// Escapes follow the Sigma specification (and pySigma): `\*`, `\?` and `\\` stand for the
    /// character after the backslash, and a backslash before anything else is itself.
    pub fn sigma(value: &str, anchor: Anchor) -> Self {
        let mut tokens = Vec::with_capacity(value.len() + 2);
        if matches!(anchor, Anchor::End | Anchor::Anywhere) {
            tokens.push(Token::Any);
        }
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => tokens.push(Token::Any),
                '?' => tokens.push(Token::One),
                '\\' => match chars.peek() {
                    Some(&next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        tokens.extend(next.to_lowercase().map(Token::Char));
                    }
                    _ => tokens.push(Token::Char('\\')),
                },
                c => tokens.extend(c.to_lowercase().map(Token::Char)),
            }
        }
        if matches!(anchor, Anchor::Start | Anchor::Anywhere) {
            tokens.push(Token::Any);
        }
        tokens.dedup_by(|a, b| *a == Token::Any && *b == Token::Any);
        Self::from_tokens(tokens)
    }

    /// A pattern matching exactly `value`, ignoring case, with no wildcards.
    pub fn literal(value: &str) -> Self {
        Self::from_tokens(
            value
                .chars()
                .flat_map(char::to_lowercase)
                .map(Token::Char)
                .collect(),
        )
    }

    fn from_tokens(tokens: Vec<Token>) -> Self {
        let ascii = tokens.iter().all(|token| match token {
            Token::Char(c) => c.is_ascii(),
            Token::One | Token::Any => true,
        });
        let literal = |tokens: &[Token]| -> Option<String> {
            tokens
                .iter()
                .map(|token| match token {
                    Token::Char(c) => Some(*c),
                    Token::One | Token::Any => None,
                })
                .collect()
        };
        let n = tokens.len();
        let starts_any = tokens.first() == Some(&Token::Any);
        let ends_any = n > 1 && tokens.last() == Some(&Token::Any);
        let shape = match (starts_any, ends_any) {
            (false, false) => literal(&tokens).map(Shape::Exact),
            (false, true) => literal(&tokens[..n - 1]).map(Shape::Prefix),
            (true, false) => literal(&tokens[1..]).map(Shape::Suffix),
            (true, true) => literal(&tokens[1..n - 1]).map(Shape::Infix),
        }
        .unwrap_or(Shape::Wildcard(tokens));
        Pattern { shape, ascii }
    }

    /// Whether `text` matches, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        if text.is_ascii() {
            self.ascii && self.matches_ascii(text.as_bytes())
        } else {
            self.matches_folded(text.chars().flat_map(char::to_lowercase))
        }
    }

    fn matches_ascii(&self, text: &[u8]) -> bool {
        // The pattern is lowercase already, so `eq_ignore_ascii_case` only folds the text.
        match &self.shape {
            Shape::Exact(p) => text.eq_ignore_ascii_case(p.as_bytes()),
            Shape::Prefix(p) => text
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            Shape::Suffix(p) => {
                text.len() >= p.len()
                    && text[text.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
            }
            Shape::Infix(p) => {
                p.is_empty()
                    || text
                        .windows(p.len())
                        .any(|window| window.eq_ignore_ascii_case(p.as_bytes()))
            }
            Shape::Wildcard(tokens) => wildcard(
                tokens,
                text.iter().map(|b| char::from(b.to_ascii_lowercase())),
            ),
        }
    }

    fn matches_folded<I>(&self, text: I) -> bool
    where
        I: DoubleEndedIterator<Item = char> + Clone,
    {
        match &self.shape {
            Shape::Exact(p) => text.eq(p.chars()),
            Shape::Prefix(p) => starts_with(text, p.chars()),
            Shape::Suffix(p) => starts_with(text.rev(), p.chars().rev()),
            Shape::Infix(p) => {
                let mut text = text;
                loop {
                    if starts_with(text.clone(), p.chars()) {
                        return true;
                    }
                    if text.next().is_none() {
                        return false;
                    }
                }
            }
            Shape::Wildcard(tokens) => wildcard(tokens, text),
        }
    }
}

fn starts_with(mut text: impl Iterator<Item = char>, prefix: impl Iterator<Item = char>) -> bool {
    prefix.into_iter().all(|c| text.next() == Some(c))
}

/// Greedy wildcard matching with a single backtrack point: on a mismatch only the most recent
/// `*` takes one more character. That is enough for correctness (an earlier `*` never needs to
/// grow once a later one matched) and bounds the work by text length × pattern length, so a
/// hostile pattern cannot make matching exponential.
fn wildcard<I: Iterator<Item = char> + Clone>(tokens: &[Token], mut text: I) -> bool {
    let mut at = 0;
    let mut backtrack: Option<(usize, I)> = None;
    loop {
        let before = text.clone();
        let Some(c) = text.next() else {
            return tokens[at..].iter().all(|token| *token == Token::Any);
        };
        match tokens.get(at) {
            Some(Token::Any) => {
                at += 1;
                backtrack = Some((at, before.clone()));
                text = before;
                continue;
            }
            Some(Token::One) => {
                at += 1;
                continue;
            }
            Some(Token::Char(p)) if *p == c => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some((resume, star_text)) = &mut backtrack else {
            return false;
        };
        star_text.next();
        at = *resume;
        text = star_text.clone();
    }
}

/// Whether two texts are equal, ignoring case.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Pattern::sigma(pattern, Anchor::Whole).matches(text)
    }

    #[test]
    fn plain_values_match_whole_text_ignoring_case() {
        assert!(m("cmd.exe", "CMD.EXE"));
        assert!(m("ÉCOLE", "école"));
        assert!(!m("cmd.exe", "cmd.exe "));
        assert!(!m("cmd", "cmd.exe"));
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn star_and_question_mark() {
        assert!(m("prog?.exe", "ProgA.exe"));
        assert!(!m("prog?.exe", "prog.exe"));
        assert!(!m("prog?.exe", "progAB.exe"));
        assert!(m("antivirus_V*.exe", "antivirus_v21.2.1.EXE"));
        assert!(m("a*b*c", "a__b__b__c"));
        assert!(!m("a*b*c", "a__c__b"));
        assert!(m("*", ""));
        assert!(m("*.exe", "é.exe"));
        assert!(m("?", "é"));
        assert!(m("*ab*", "xxAByy"));
        assert!(m("*ab*", "ab"));
        assert!(!m("*ab*", "a_b"));
        assert!(m("*ab*", "éab"));
        assert!(m("a*", "abc") && !m("a*", "ba"));
        assert!(m("*c", "abc") && !m("*c", "cb"));
        assert!(m("*ÿ", "aŸ"));
    }

    #[test]
    fn escapes_follow_the_spec() {
        // `\*` is a literal star.
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axxb"));
        assert!(m(r"a\?b", "a?b"));
        assert!(!m(r"a\?b", "axb"));
        // A lone backslash before anything else stays a backslash.
        assert!(m(r"C:\Windows\*", r"C:\Windows*"));
        assert!(m(r"C:\Windows", r"c:\windows"));
        assert!(m(r"C:\\Windows", r"C:\Windows"));
        // `\\*` is a backslash followed by a wildcard.
        assert!(m(r"C:\\*", r"C:\anything"));
        assert!(!m(r"C:\\*", r"C:anything"));
        // `\\\*` is a backslash followed by a literal star.
        assert!(m(r"a\\\*", r"a\*"));
        assert!(!m(r"a\\\*", r"a\x"));
        // Three or four backslashes are two.
        assert!(m(r"a\\\b", r"a\\b"));
        assert!(m(r"a\\\\b", r"a\\b"));
        assert!(m(r"trailing\", r"trailing\"));
    }

    #[test]
    fn anchors_add_wildcards_around_the_value() {
        let contains = Pattern::sigma("Evil", Anchor::Anywhere);
        assert!(contains.matches("very EVIL thing") && !contains.matches("evi"));
        let starts = Pattern::sigma("Evil", Anchor::Start);
        assert!(starts.matches("evilness") && !starts.matches("devil"));
        let ends = Pattern::sigma(r"\cmd.exe", Anchor::End);
        assert!(ends.matches(r"C:\Windows\System32\CMD.exe") && !ends.matches("cmd.exe"));
        // Wildcards inside still work with an anchor.
        let mixed = Pattern::sigma("a?c", Anchor::Anywhere);
        assert!(mixed.matches("xxabcxx") && !mixed.matches("xxacxx"));
    }

    #[test]
    fn non_ascii_patterns_never_match_ascii_text() {
        assert!(!m("é", "e"));
        assert!(!Pattern::sigma("é", Anchor::Anywhere).matches("cafe"));
        // The Kelvin sign lowercases to an ASCII `k`.
        assert!(m("\u{212a}", "K"));
    }

    #[test]
    fn literal_ignores_wildcards() {
        let p = Pattern::literal("4*8");
        assert!(p.matches("4*8") && !p.matches("488"));
        assert!(eq_ignore_case("AWS", "aws") && !eq_ignore_case("aws", "gcp"));
        assert!(eq_ignore_case("ÉTÉ", "été") && !eq_ignore_case("été", "ete"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let pattern = Pattern::sigma(&"*a".repeat(50), Anchor::Whole);
        let text = "a".repeat(49) + &"b".repeat(10_000);
        assert!(!pattern.matches(&text));
    }
}
