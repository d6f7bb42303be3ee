//! String patterns with Sigma's `*` and `?` wildcards.
//!
//! Matching ignores case unless the pattern is `cased`. Patterns are lowercased once when a rule
//! is compiled; at match time only the event's text is folded, one character at a time, so no
//! comparison allocates. Case-insensitivity uses Unicode simple lowercasing
//! (`char::to_lowercase`), not full case folding: `ß` does not match `ss`.

use memchr::memmem;

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
pub(crate) enum Token {
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters, including none.
    Any,
}

/// Reads a Sigma string value into tokens, keeping the case of its characters.
///
/// Escapes follow the Sigma specification (and pySigma): `\*`, `\?` and `\\` stand for the
/// character after the backslash, and a backslash before anything else is itself.
pub(crate) fn sigma_tokens(value: &str) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(value.len() + 2);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => tokens.push(Token::Any),
            '?' => tokens.push(Token::One),
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    chars.next();
                    tokens.push(Token::Char(next));
                }
                _ => tokens.push(Token::Char('\\')),
            },
            c => tokens.push(Token::Char(c)),
        }
    }
    tokens
}

/// Puts the wildcards of an anchor around tokens, unless they are there already (as pySigma
/// does: `contains` on `*a*` leaves it as it is).
pub(crate) fn anchor_tokens(tokens: &mut Vec<Token>, anchor: Anchor) {
    if matches!(anchor, Anchor::End | Anchor::Anywhere) && tokens.first() != Some(&Token::Any) {
        tokens.insert(0, Token::Any);
    }
    if matches!(anchor, Anchor::Start | Anchor::Anywhere) && tokens.last() != Some(&Token::Any) {
        tokens.push(Token::Any);
    }
}

/// A compiled string pattern, lowercased unless it is case-sensitive.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    shape: Shape,
    /// Whether every literal character is ASCII; if not, no ASCII text can match a
    /// case-insensitive pattern, which lets ASCII texts (the common case) be compared byte by
    /// byte.
    ascii: bool,
    /// `cased`: compare characters exactly.
    cased: bool,
}

/// The common patterns get a direct comparison; everything else goes through the general
/// wildcard matcher.
#[derive(Debug, Clone)]
enum Shape {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Boxed: an infix is larger than the other shapes, and most patterns are not infixes.
    Infix(Box<Infix>),
    Wildcard(Vec<Token>),
}

/// A literal searched for anywhere in the text, with its searcher built once at load.
#[derive(Debug, Clone)]
struct Infix {
    needle: String,
    search: InfixSearch,
}

/// How an [`Infix`] looks for its needle: one way or the other, never both. A case-insensitive
/// needle's exact searcher went unused, and built for each of SigmaHQ's many `contains` values
/// those searchers held about 5 of the 66 MB `vigil detect` took to load the rules.
#[derive(Debug, Clone)]
enum InfixSearch {
    /// Exact substring search: for case-sensitive patterns, and for needles without letters,
    /// where ignoring case changes nothing.
    Exact(Box<memmem::Finder<'static>>),
    /// For case-insensitive search: the needle offset of its rarest letter, and that letter's
    /// two cases. Scanning for the rare byte with `memchr2` and checking the window around
    /// each hit avoids folding the text and avoids a byte-by-byte window scan.
    RareLetter { at: usize, lower: u8, upper: u8 },
}

impl Infix {
    fn new(needle: String, cased: bool) -> Self {
        let rare = if cased {
            None
        } else {
            needle
                .bytes()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_alphabetic())
                .min_by_key(|&(_, b)| commonness(b))
        };
        let search = match rare {
            Some((at, b)) => InfixSearch::RareLetter {
                at,
                lower: b.to_ascii_lowercase(),
                upper: b.to_ascii_uppercase(),
            },
            None => InfixSearch::Exact(Box::new(
                memmem::Finder::new(needle.as_bytes()).into_owned(),
            )),
        };
        Infix { needle, search }
    }

    /// Whether `hay` holds the needle: exactly for a case-sensitive pattern, ignoring ASCII
    /// case otherwise (the caller has found `hay` to be ASCII, or the needle has no letter).
    fn find(&self, hay: &[u8]) -> bool {
        let (at, lower, upper) = match self.search {
            InfixSearch::Exact(ref finder) => return finder.find(hay).is_some(),
            InfixSearch::RareLetter { at, lower, upper } => (at, lower, upper),
        };
        let needle = self.needle.as_bytes();
        let Some(last_start) = hay.len().checked_sub(needle.len()) else {
            return false;
        };
        // A hit at `at + i` puts the window at `i`; the region keeps every window in bounds.
        memchr::memchr2_iter(lower, upper, &hay[at..=last_start + at])
            .any(|start| hay[start..start + needle.len()].eq_ignore_ascii_case(needle))
    }
}

/// A rough rank of how often a letter appears in log text, to pick the rarest one of a needle.
fn commonness(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' => 4,
        b'h' | b'l' | b'd' | b'c' | b'u' | b'm' => 3,
        b'f' | b'p' | b'g' | b'w' | b'y' | b'b' => 2,
        _ => 1,
    }
}

impl Pattern {
    /// Compiles a Sigma value, reading `*` and `?` as wildcards, ignoring case.
    pub fn sigma(value: &str, anchor: Anchor) -> Self {
        let mut tokens = sigma_tokens(value);
        anchor_tokens(&mut tokens, anchor);
        Self::from_tokens(tokens, false)
    }

    /// A pattern matching exactly `value`, ignoring case, with no wildcards.
    pub fn literal(value: &str) -> Self {
        Self::from_tokens(value.chars().map(Token::Char).collect(), false)
    }

    /// A pattern matching any text that holds `value`, ignoring case, with no wildcards.
    pub fn literal_anywhere(value: &str) -> Self {
        let chars = value.chars().map(Token::Char);
        let tokens = std::iter::once(Token::Any).chain(chars).chain([Token::Any]);
        Self::from_tokens(tokens.collect(), false)
    }

    /// Compiles tokens; unless `cased`, their characters are lowercased here, once.
    pub fn from_tokens(tokens: Vec<Token>, cased: bool) -> Self {
        let mut tokens: Vec<Token> = if cased {
            tokens
        } else {
            // Built in place of a flattening iterator, whose unknown length regrew the vector
            // through each of SigmaHQ's values (about 4% of loading its rules).
            let mut lowered = Vec::with_capacity(tokens.len());
            for token in tokens {
                match token {
                    Token::Char(c) if c.is_ascii() => {
                        lowered.push(Token::Char(c.to_ascii_lowercase()))
                    }
                    Token::Char(c) => lowered.extend(c.to_lowercase().map(Token::Char)),
                    other => lowered.push(other),
                }
            }
            lowered
        };
        tokens.dedup_by(|a, b| *a == Token::Any && *b == Token::Any);
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
            (true, true) => literal(&tokens[1..n - 1])
                .map(|needle| Shape::Infix(Box::new(Infix::new(needle, cased)))),
        }
        .unwrap_or(Shape::Wildcard(tokens));
        Pattern {
            shape,
            ascii,
            cased,
        }
    }

    /// The longest run of literal characters that every matching text contains, as the
    /// pattern holds it (lowercased unless cased). A text can match only if it contains this,
    /// ignoring ASCII case, either as written or with every character lowercased (what the
    /// literal prefilter looks for). `None` when the pattern has no literal character.
    pub fn required_run(&self) -> Option<String> {
        let run: String = match &self.shape {
            Shape::Exact(p) | Shape::Prefix(p) | Shape::Suffix(p) => p.clone(),
            Shape::Infix(infix) => infix.needle.clone(),
            Shape::Wildcard(tokens) => tokens
                .split(|token| !matches!(token, Token::Char(_)))
                .max_by_key(|run| run.len())
                .unwrap_or_default()
                .iter()
                .filter_map(|token| match token {
                    Token::Char(c) => Some(*c),
                    Token::Any | Token::One => None,
                })
                .collect(),
        };
        (!run.is_empty()).then_some(run)
    }

    /// For a pattern without wildcards, the folded text (`prefilter::fold`) of every text it
    /// matches: its literal, lowercased already unless `cased`, and then equal to such a text,
    /// whose fold is the literal's.
    pub fn exact_key(&self) -> Option<String> {
        match &self.shape {
            Shape::Exact(literal) if self.cased => Some(crate::prefilter::fold(literal)),
            Shape::Exact(literal) => Some(literal.clone()),
            _ => None,
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if self.cased || text.is_ascii() {
            self.matches_ascii_text(text)
        } else {
            self.matches_folded(text.chars().flat_map(char::to_lowercase))
        }
    }

    /// [`Pattern::matches`] for a text the caller has found to be ASCII (or any text, for a
    /// `cased` pattern), without looking through it again.
    pub fn matches_ascii_text(&self, text: &str) -> bool {
        if self.cased {
            self.matches_cased(text)
        } else {
            self.ascii && self.matches_ascii(text.as_bytes())
        }
    }

    fn matches_cased(&self, text: &str) -> bool {
        match &self.shape {
            Shape::Exact(p) => text == p,
            Shape::Prefix(p) => text.starts_with(p.as_str()),
            Shape::Suffix(p) => text.ends_with(p.as_str()),
            Shape::Infix(infix) => infix.find(text.as_bytes()),
            Shape::Wildcard(tokens) => wildcard(tokens, text.chars()),
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
            Shape::Infix(infix) => infix.find(text),
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
            Shape::Infix(infix) => {
                let mut text = text;
                loop {
                    if starts_with(text.clone(), infix.needle.chars()) {
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
    fn infix_search_finds_every_position() {
        let p = Pattern::sigma("Qz", Anchor::Anywhere);
        assert!(p.matches("qz") && p.matches("xxQZ") && p.matches("qZxx") && p.matches("aqzb"));
        assert!(!p.matches("q") && !p.matches("") && !p.matches("q z") && !p.matches("zq"));
        // A needle with no letters uses the exact finder.
        let digits = Pattern::sigma("4.2", Anchor::Anywhere);
        assert!(digits.matches("v14.2.1") && !digits.matches("v1412"));
        // The rarest letter may sit anywhere in the needle.
        let long = Pattern::sigma("EtaQ", Anchor::Anywhere);
        assert!(long.matches("xxetaqxx") && !long.matches("taq"));
        assert!(Pattern::sigma("", Anchor::Anywhere).matches(""));
    }

    #[test]
    fn cased_patterns_compare_exactly() {
        let tokens = |v: &str, a| {
            let mut t = sigma_tokens(v);
            anchor_tokens(&mut t, a);
            t
        };
        let exact = Pattern::from_tokens(tokens("AbC", Anchor::Whole), true);
        assert!(exact.matches("AbC") && !exact.matches("abc"));
        let infix = Pattern::from_tokens(tokens("Bc", Anchor::Anywhere), true);
        assert!(infix.matches("aBcd") && !infix.matches("abcd"));
        let wild = Pattern::from_tokens(tokens("É*z", Anchor::Whole), true);
        assert!(wild.matches("Éxyz") && !wild.matches("éxyz"));
        let start = Pattern::from_tokens(tokens("Ab", Anchor::Start), true);
        assert!(start.matches("Abc") && !start.matches("abc"));
        let end = Pattern::from_tokens(tokens("Ab", Anchor::End), true);
        assert!(end.matches("cAb") && !end.matches("cab"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let pattern = Pattern::sigma(&"*a".repeat(50), Anchor::Whole);
        let text = "a".repeat(49) + &"b".repeat(10_000);
        assert!(!pattern.matches(&text));
    }
}
