//! The condition language: `and`, `or`, `not`, parentheses, and `1 of` / `all of` over search
//! identifiers.
//!
//! Precedence, from loosest to tightest: `or`, `and`, `not`, `x of`, parentheses. As in
//! pySigma, the operators are lowercase keywords, and `any of` is accepted as a synonym of
//! `1 of`.

use crate::prefilter::Narrowing;

/// A parsed condition; searches are referred to by their index in the detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates the condition, asking `search` for the result of each search it needs.
    /// `and` and `or` stop at the first operand that decides them.
    pub fn eval(&self, search: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            Expr::Search(index) => search(*index),
            Expr::Not(inner) => !inner.eval(search),
            Expr::And(all) => all.iter().all(|expr| expr.eval(search)),
            Expr::Or(any) => any.iter().any(|expr| expr.eval(search)),
        }
    }
}

impl Expr {
    /// What an event must contain for the condition to hold, from what each search needs;
    /// `not` says nothing (a negated search holds on events that lack its literals).
    pub fn need<N: Narrowing>(&self, search: &impl Fn(usize) -> Option<N>) -> Option<N> {
        match self {
            Expr::Search(index) => search(*index),
            Expr::Not(_) => None,
            Expr::And(all) => N::all(all.iter().map(|expr| expr.need(search))),
            Expr::Or(any) => N::any(any.iter().map(|expr| expr.need(search))),
        }
    }
}

/// Parentheses and `not`s nest at most this deep, which bounds the recursion of parsing and
/// evaluation; real conditions use a handful.
const MAX_NESTING: usize = 64;

/// Parses a condition over the detection's search identifiers, given in order.
pub(crate) fn parse(text: &str, names: &[&str]) -> Result<Expr, String> {
    let tokens = tokenize(text);
    if tokens.is_empty() {
        return Err("the condition is empty".into());
    }
    if tokens
        .iter()
        .any(|token| matches!(token, Token::Word(word) if word.starts_with('|')))
    {
        return Err(
            "aggregations (`| count() ...`) are not supported; use a correlation rule".into(),
        );
    }
    let mut parser = ConditionParser {
        tokens,
        at: 0,
        names,
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(Token::Close) => Err("unbalanced `)` in condition".into()),
        Some(token) => Err(format!(
            "unexpected {} in condition; expected `and`, `or` or the end",
            token.describe()
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    Word(&'a str),
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
            Token::Word(word) => format!("`{word}`"),
        }
    }
}

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut word_start = None;
    for (at, c) in text.char_indices() {
        let breaks = c.is_whitespace() || c == '(' || c == ')';
        if breaks {
            if let Some(start) = word_start.take() {
                tokens.push(Token::Word(&text[start..at]));
            }
            match c {
                '(' => tokens.push(Token::Open),
                ')' => tokens.push(Token::Close),
                _ => {}
            }
        } else if word_start.is_none() {
            word_start = Some(at);
        }
    }
    if let Some(start) = word_start {
        tokens.push(Token::Word(&text[start..]));
    }
    tokens
}

struct ConditionParser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    names: &'a [&'a str],
    depth: usize,
}

impl<'a> ConditionParser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.at).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.peek();
        self.at += 1;
        token
    }

    fn eat(&mut self, word: &str) -> bool {
        let found = self.peek() == Some(Token::Word(word));
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut any = vec![self.and()?];
        while self.eat("or") {
            any.push(self.and()?);
        }
        Ok(flatten(any, Expr::Or))
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut all = vec![self.not()?];
        while self.eat("and") {
            all.push(self.not()?);
        }
        Ok(flatten(all, Expr::And))
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat("not") {
            let inner = self.nested(Self::not)?;
            return Ok(match inner {
                Expr::Not(double) => *double,
                inner => Expr::Not(Box::new(inner)),
            });
        }
        self.primary()
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Result<Expr, String>) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "the condition nests deeper than {MAX_NESTING} levels"
            ));
        }
        let expr = parse(self);
        self.depth -= 1;
        expr
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            None => Err("the condition ends where an identifier or `(` was expected".into()),
            Some(Token::Open) => {
                let expr = self.nested(Self::or)?;
                match self.next() {
                    Some(Token::Close) => Ok(expr),
                    None => Err("missing `)` in condition".into()),
                    Some(token) => Err(format!(
                        "unexpected {} in condition; expected `)`",
                        token.describe()
                    )),
                }
            }
            Some(Token::Close) => Err("unexpected `)` in condition".into()),
            Some(Token::Word(word)) => {
                if let Some(all) = quantifier(word) {
                    if self.eat("of") {
                        return self.of(all);
                    }
                }
                self.identifier(word)
            }
        }
    }

    /// The rest of `1 of x` or `all of x`, after the `of`.
    fn of(&mut self, all: bool) -> Result<Expr, String> {
        let target = match self.next() {
            Some(Token::Word(word)) => word,
            _ => return Err("`of` must be followed by `them` or an identifier pattern".into()),
        };
        let searches: Vec<Expr> = if target == "them" {
            // Identifiers starting with `_` are helpers by convention, left out of `them`.
            self.matching(|name| !name.starts_with('_'))
        } else {
            self.matching(|name| glob(target, name))
        };
        if searches.is_empty() {
            return Err(format!("`{target}` matches no search identifier"));
        }
        Ok(flatten(searches, if all { Expr::And } else { Expr::Or }))
    }

    fn matching(&self, wanted: impl Fn(&str) -> bool) -> Vec<Expr> {
        (0..self.names.len())
            .filter(|&i| wanted(self.names[i]))
            .map(Expr::Search)
            .collect()
    }

    fn identifier(&self, word: &str) -> Result<Expr, String> {
        if let Some(index) = self.names.iter().position(|name| *name == word) {
            return Ok(Expr::Search(index));
        }
        Err(match word {
            "and" | "or" | "of" => format!("`{word}` needs an expression before it"),
            _ if word.contains('*') => {
                format!("the pattern `{word}` can only follow `1 of` or `all of`")
            }
            _ => format!("undefined search identifier `{word}` in condition"),
        })
    }
}

fn quantifier(word: &str) -> Option<bool> {
    match word {
        "1" | "any" => Some(false),
        "all" => Some(true),
        _ => None,
    }
}

fn flatten(mut exprs: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        combine(exprs)
    }
}

/// Matches an identifier against a pattern where `*` stands for any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty(); // no `*` at all: an exact name
    };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["sel", "sel_b", "filter", "filter_x", "_helper", "kw"];

    fn p(text: &str) -> Expr {
        parse(text, NAMES).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    fn eval(text: &str, true_searches: &[&str]) -> bool {
        p(text).eval(&mut |i| true_searches.contains(&NAMES[i]))
    }

    use Expr::*;

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(
            p("sel or sel_b and not filter"),
            Or(vec![
                Search(0),
                And(vec![Search(1), Not(Box::new(Search(2)))])
            ])
        );
        assert_eq!(
            p("not sel and sel_b"),
            And(vec![Not(Box::new(Search(0))), Search(1)])
        );
        assert_eq!(
            p("(sel or sel_b) and kw"),
            And(vec![Or(vec![Search(0), Search(1)]), Search(5)])
        );
        assert_eq!(p("not not sel"), Search(0));
    }

    #[test]
    fn evaluates_with_precedence() {
        assert!(eval("sel or sel_b and filter", &["sel"]));
        assert!(!eval("(sel or sel_b) and filter", &["sel"]));
        assert!(eval("sel and not filter", &["sel"]));
        assert!(!eval("sel and not filter", &["sel", "filter"]));
        assert!(eval("not (sel and filter)", &["sel"]));
    }

    #[test]
    fn quantifiers_over_patterns_and_them() {
        assert_eq!(p("1 of sel*"), Or(vec![Search(0), Search(1)]));
        assert_eq!(p("all of filter*"), And(vec![Search(2), Search(3)]));
        assert_eq!(p("any of *_x"), Search(3));
        // `them` leaves out `_helper`.
        assert_eq!(
            p("all of them"),
            And((0..6).filter(|&i| i != 4).map(Search).collect())
        );
        assert!(eval("1 of sel* and not 1 of filter*", &["sel_b"]));
        assert!(!eval(
            "1 of sel* and not 1 of filter*",
            &["sel_b", "filter_x"]
        ));
        assert!(!eval("all of sel*", &["sel"]));
        assert!(eval("all of sel*", &["sel", "sel_b"]));
        // `all` and `1` are identifiers when no `of` follows... if they exist.
        assert!(parse("all", NAMES).unwrap_err().contains("undefined"));
    }

    #[test]
    fn reports_bad_conditions() {
        let err = |text: &str| parse(text, NAMES).unwrap_err();
        assert!(err("sel and nope").contains("undefined search identifier `nope`"));
        assert!(err("sel and").contains("ends"));
        assert!(err("(sel").contains("missing `)`"));
        assert!(err("sel)").contains("unbalanced"));
        assert!(err("sel sel_b").contains("unexpected `sel_b`"));
        assert!(err("1 of nothing*").contains("matches no search identifier"));
        assert!(err("sel*").contains("can only follow"));
        assert!(err("sel | count() > 5").contains("aggregations"));
        assert!(err("   ").contains("empty"));
        assert!(
            err("SEL").contains("undefined"),
            "identifiers are case-sensitive"
        );
        assert!(err("sel AND sel_b").contains("unexpected `AND`"));
        assert!(err(&format!("{}sel{}", "(".repeat(100), ")".repeat(100))).contains("deeper"));
        assert!(err(&"not ".repeat(100)).contains("deeper"));
    }

    #[test]
    fn long_flat_chains_are_fine() {
        let text = vec!["sel"; 10_000].join(" or ");
        assert!(matches!(p(&text), Or(list) if list.len() == 10_000));
    }

    #[test]
    fn glob_matches_like_the_spec() {
        assert!(glob("sel*", "sel") && glob("sel*", "selection"));
        assert!(glob("*sel", "my_sel") && !glob("*sel", "sel_x"));
        assert!(glob("a*b*c", "a_b_c") && !glob("a*b*c", "a_c_b"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("*", "anything"));
        assert!(!glob("ab*ba", "aba"));
    }
}
