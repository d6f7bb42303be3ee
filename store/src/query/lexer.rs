//! Splitting query text into tokens.
//!
//! What a character means depends on where it stands: after `field:` a value may hold colons
//! (`arn:aws:iam::123456789012:root`) and may open a range or a comparison, while at the start
//! of a clause a colon ends a field name. So the parser asks for the next token in a [`Mode`]
//! rather than the lexer guessing.

use super::ast::{Part, Word};
use super::SyntaxError;

/// Words with a meaning of their own; they must be upper case, so `and` is an ordinary word.
const AND: &str = "AND";
const OR: &str = "OR";
const NOT: &str = "NOT";
const TO: &str = "TO";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Between clauses: operators, parentheses, field names, bare terms.
    Clause,
    /// Right after `field:`.
    Value,
    /// Inside `[..]` or `{..}`.
    Range,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    /// `-` directly before a clause.
    Minus,
    /// `name:`; the colon is consumed.
    Field(String),
    Word(Word),
    Phrase(String),
    Regex(String),
    /// A lone `*`: everything, or after `field:` "the field exists".
    Star,
    /// `[` (inclusive) or `{` (exclusive).
    RangeOpen {
        inclusive: bool,
    },
    /// `]` (inclusive) or `}` (exclusive).
    RangeClose {
        inclusive: bool,
    },
    To,
    Cmp(Cmp),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    /// Byte offset of the token's first character.
    pub(crate) pos: usize,
}

pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer { text, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Rewinds to a position returned by [`Lexer::position`]; the parser's one-token lookahead.
    pub(crate) fn reset(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn peek_char(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    pub(crate) fn next(&mut self, mode: Mode) -> Result<Token, SyntaxError> {
        self.skip_whitespace();
        let start = self.pos;
        let token = |tok| Ok(Token { tok, pos: start });
        let Some(c) = self.peek_char() else {
            return token(Tok::Eof);
        };
        match (mode, c) {
            (_, '"') => {
                self.bump();
                let phrase = self.delimited('"', start, "a closing `\"`")?;
                token(Tok::Phrase(phrase))
            }
            (Mode::Clause | Mode::Value, '/') => {
                self.bump();
                let pattern = self.delimited('/', start, "a closing `/` after the regex")?;
                if pattern.is_empty() {
                    return Err(SyntaxError::new(start + 1, "a regex between the slashes"));
                }
                token(Tok::Regex(pattern))
            }
            (Mode::Clause | Mode::Value, '(') => {
                self.bump();
                token(Tok::LParen)
            }
            (Mode::Clause | Mode::Value, ')') => {
                self.bump();
                token(Tok::RParen)
            }
            (Mode::Clause, '-')
                if self
                    .peek_second()
                    .is_some_and(|n| !n.is_whitespace() && n != ')') =>
            {
                self.bump();
                token(Tok::Minus)
            }
            (Mode::Value, '[' | '{') => {
                self.bump();
                token(Tok::RangeOpen {
                    inclusive: c == '[',
                })
            }
            (Mode::Range, ']' | '}') => {
                self.bump();
                token(Tok::RangeClose {
                    inclusive: c == ']',
                })
            }
            (Mode::Value, '>' | '<') => {
                self.bump();
                let or_equal = self.peek_char() == Some('=');
                if or_equal {
                    self.bump();
                }
                token(Tok::Cmp(match (c, or_equal) {
                    ('>', false) => Cmp::Gt,
                    ('>', true) => Cmp::Ge,
                    ('<', false) => Cmp::Lt,
                    _ => Cmp::Le,
                }))
            }
            (Mode::Clause, '[' | '{' | ']' | '}') => Err(SyntaxError::new(
                start,
                "a term; a range needs a field, as in `bytes:[100 TO 200]`",
            )),
            _ => self.word(mode, start),
        }
    }

    /// Reads up to the closing `delimiter`, where a backslash escapes the delimiter or itself.
    fn delimited(
        &mut self,
        delimiter: char,
        start: usize,
        expected: &str,
    ) -> Result<String, SyntaxError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(SyntaxError::at_end(
                        self.pos,
                        format!("{expected} for the one at byte {start}"),
                    ))
                }
                Some(c) if c == delimiter => return Ok(out),
                Some('\\') => match self.peek_char() {
                    Some(n) if n == delimiter || n == '\\' && delimiter == '"' => {
                        self.bump();
                        out.push(n);
                    }
                    // In a regex every other escape belongs to the regex syntax.
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn word(&mut self, mode: Mode, start: usize) -> Result<Token, SyntaxError> {
        let mut parts = Vec::new();
        let mut escaped_any = false;
        while let Some(c) = self.peek_char() {
            let ends = c.is_whitespace()
                || match mode {
                    Mode::Clause => matches!(c, '(' | ')' | '"' | ':'),
                    Mode::Value => matches!(c, '(' | ')' | '"'),
                    Mode::Range => matches!(c, ']' | '}'),
                };
            if ends {
                break;
            }
            self.bump();
            parts.push(match c {
                '\\' => {
                    escaped_any = true;
                    match self.bump() {
                        Some(n) => Part::Char(n),
                        None => {
                            return Err(SyntaxError::at_end(self.pos, "a character after the `\\`"))
                        }
                    }
                }
                '*' => Part::Star,
                '?' => Part::Question,
                c => Part::Char(c),
            });
        }
        let token = |tok| Ok(Token { tok, pos: start });
        if mode == Mode::Clause && self.peek_char() == Some(':') {
            if parts.is_empty() {
                return Err(SyntaxError::new(start, "a field name before `:`"));
            }
            self.bump();
            let name = Word(parts).literal();
            return token(Tok::Field(name));
        }
        if parts.is_empty() {
            // Only reachable on a character no mode accepts here, such as `)` inside a range.
            return Err(SyntaxError::new(start, expected_in(mode)));
        }
        let word = Word(parts);
        if !escaped_any {
            if word.0 == [Part::Star] {
                return token(Tok::Star);
            }
            let literal = word.literal();
            match (mode, literal.as_str()) {
                (Mode::Clause, AND) => return token(Tok::And),
                (Mode::Clause, OR) => return token(Tok::Or),
                (Mode::Clause, NOT) => return token(Tok::Not),
                (Mode::Range, TO) => return token(Tok::To),
                _ => {}
            }
        }
        token(Tok::Word(word))
    }
}

fn expected_in(mode: Mode) -> &'static str {
    match mode {
        Mode::Clause => "a term",
        Mode::Value => "a value",
        Mode::Range => "a range bound, `TO` or a closing bracket",
    }
}
