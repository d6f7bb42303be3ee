//! Recursive descent over the tokens.
//!
//! ```text
//! query   := or EOF
//! or      := and ("OR" and)*
//! and     := unary (["AND"] unary)*          adjacent clauses are ANDed
//! unary   := ("NOT" | "-") unary | primary
//! primary := "(" or ")" | "*" | FIELD value | term
//! term    := WORD | PHRASE | REGEX
//! value   := term | "*" | range | CMP WORD | "(" or ")"   the group's terms take the field
//! range   := ("[" | "{") bound "TO" bound ("]" | "}")
//! ```

use std::ops::Bound;

use super::ast::{Ast, Value};
use super::lexer::{Cmp, Lexer, Mode, Tok, Token};
use super::{SyntaxError, MAX_QUERY_DEPTH};

pub(crate) fn parse(text: &str) -> Result<Ast, SyntaxError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        depth: 0,
    };
    let ast = parser.or(None)?;
    let end = parser.lexer.next(Mode::Clause)?;
    match end.tok {
        Tok::Eof => Ok(ast),
        Tok::RParen => Err(SyntaxError::new(
            end.pos,
            "an operator or a term; this `)` closes nothing",
        )),
        _ => Err(SyntaxError::new(end.pos, "the end of the query")),
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self, mode: Mode) -> Result<Token, SyntaxError> {
        let here = self.lexer.position();
        let token = self.lexer.next(mode);
        self.lexer.reset(here);
        token
    }

    /// Counts one more level of recursion; the limit keeps hostile input off the stack's end.
    fn descend(&mut self, pos: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_QUERY_DEPTH {
            return Err(SyntaxError::new(
                pos,
                format!("at most {MAX_QUERY_DEPTH} levels of nesting"),
            ));
        }
        Ok(())
    }

    fn or(&mut self, field: Option<&str>) -> Result<Ast, SyntaxError> {
        let mut alternatives = vec![self.and(field)?];
        while self.peek(Mode::Clause)?.tok == Tok::Or {
            self.lexer.next(Mode::Clause)?;
            alternatives.push(self.and(field)?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.remove(0)
        } else {
            Ast::Or(alternatives)
        })
    }

    fn and(&mut self, field: Option<&str>) -> Result<Ast, SyntaxError> {
        let mut clauses = vec![self.unary(field)?];
        loop {
            let next = self.peek(Mode::Clause)?;
            match next.tok {
                Tok::And => {
                    self.lexer.next(Mode::Clause)?;
                }
                Tok::Eof | Tok::RParen | Tok::Or => break,
                _ => {}
            }
            clauses.push(self.unary(field)?);
        }
        Ok(if clauses.len() == 1 {
            clauses.remove(0)
        } else {
            Ast::And(clauses)
        })
    }

    fn unary(&mut self, field: Option<&str>) -> Result<Ast, SyntaxError> {
        let next = self.peek(Mode::Clause)?;
        if matches!(next.tok, Tok::Not | Tok::Minus) {
            self.lexer.next(Mode::Clause)?;
            self.descend(next.pos)?;
            let inner = self.unary(field)?;
            self.depth -= 1;
            return Ok(Ast::Not(Box::new(inner)));
        }
        self.primary(field)
    }

    fn primary(&mut self, field: Option<&str>) -> Result<Ast, SyntaxError> {
        let token = self.lexer.next(Mode::Clause)?;
        let pos = token.pos;
        let leaf = |value| Ast::Leaf {
            field: field.map(str::to_owned),
            value,
            pos,
        };
        match token.tok {
            Tok::LParen => self.group(field, pos),
            Tok::Star => Ok(match field {
                Some(_) => leaf(Value::Exists),
                None => Ast::All,
            }),
            Tok::Word(word) => Ok(leaf(Value::Word(word))),
            Tok::Phrase(phrase) => Ok(leaf(Value::Phrase(phrase))),
            Tok::Regex(pattern) => Ok(leaf(Value::Regex(pattern))),
            Tok::Field(name) => {
                if field.is_some() {
                    return Err(SyntaxError::new(
                        pos,
                        "a value; a field group such as `status:(200 OR 204)` cannot name another field",
                    ));
                }
                self.value(name, pos)
            }
            Tok::Eof => Err(SyntaxError::at_end(pos, "a term, a field or `(`")),
            Tok::RParen => Err(SyntaxError::new(pos, "a term before `)`")),
            Tok::And | Tok::Or => Err(SyntaxError::new(
                pos,
                "a term; `AND` and `OR` go between two clauses",
            )),
            _ => Err(SyntaxError::new(pos, "a term, a field or `(`")),
        }
    }

    /// The rest of a parenthesised group whose `(` is at `pos`.
    fn group(&mut self, field: Option<&str>, pos: usize) -> Result<Ast, SyntaxError> {
        self.descend(pos)?;
        let inner = self.or(field)?;
        self.depth -= 1;
        let close = self.lexer.next(Mode::Clause)?;
        match close.tok {
            Tok::RParen => Ok(inner),
            Tok::Eof => Err(SyntaxError::at_end(
                close.pos,
                format!("`)` to close the `(` at byte {pos}"),
            )),
            _ => Err(SyntaxError::new(close.pos, "`)`, an operator or a term")),
        }
    }

    fn value(&mut self, field: String, pos: usize) -> Result<Ast, SyntaxError> {
        let token = self.lexer.next(Mode::Value)?;
        let value = match token.tok {
            Tok::LParen => return self.group(Some(&field), token.pos),
            Tok::Word(word) => Value::Word(word),
            Tok::Phrase(phrase) => Value::Phrase(phrase),
            Tok::Regex(pattern) => Value::Regex(pattern),
            Tok::Star => Value::Exists,
            Tok::RangeOpen { inclusive } => self.range(inclusive, token.pos)?,
            Tok::Cmp(cmp) => {
                let bound = self.lexer.next(Mode::Value)?;
                let text = match bound.tok {
                    Tok::Word(word) => word.literal(),
                    Tok::Phrase(phrase) => phrase,
                    _ => {
                        return Err(SyntaxError::new(
                            bound.pos,
                            "a number, time or word after the comparison",
                        ))
                    }
                };
                let (lower, upper) = match cmp {
                    Cmp::Gt => (Bound::Excluded(text), Bound::Unbounded),
                    Cmp::Ge => (Bound::Included(text), Bound::Unbounded),
                    Cmp::Lt => (Bound::Unbounded, Bound::Excluded(text)),
                    Cmp::Le => (Bound::Unbounded, Bound::Included(text)),
                };
                Value::Range { lower, upper }
            }
            Tok::Eof => {
                return Err(SyntaxError::at_end(
                    token.pos,
                    format!("a value after `{field}:`"),
                ))
            }
            _ => {
                return Err(SyntaxError::new(
                    token.pos,
                    format!("a value after `{field}:`"),
                ))
            }
        };
        Ok(Ast::Leaf {
            field: Some(field),
            value,
            pos,
        })
    }

    fn range(&mut self, lower_inclusive: bool, open: usize) -> Result<Value, SyntaxError> {
        let lower = self.bound(lower_inclusive)?;
        let to = self.lexer.next(Mode::Range)?;
        if to.tok != Tok::To {
            return Err(SyntaxError::new(to.pos, "`TO` between the range bounds"));
        }
        let upper_text = self.bound_text()?;
        let close = self.lexer.next(Mode::Range)?;
        let Tok::RangeClose { inclusive } = close.tok else {
            return Err(SyntaxError::new(
                close.pos,
                format!("`]` or `}}` to close the range opened at byte {open}"),
            ));
        };
        let upper = match upper_text {
            None => Bound::Unbounded,
            Some(text) if inclusive => Bound::Included(text),
            Some(text) => Bound::Excluded(text),
        };
        Ok(Value::Range { lower, upper })
    }

    fn bound(&mut self, inclusive: bool) -> Result<Bound<String>, SyntaxError> {
        Ok(match self.bound_text()? {
            None => Bound::Unbounded,
            Some(text) if inclusive => Bound::Included(text),
            Some(text) => Bound::Excluded(text),
        })
    }

    /// A bound's text; `None` for `*`.
    fn bound_text(&mut self) -> Result<Option<String>, SyntaxError> {
        let token = self.lexer.next(Mode::Range)?;
        match token.tok {
            Tok::Star => Ok(None),
            Tok::Word(word) => Ok(Some(word.literal())),
            Tok::Phrase(phrase) => Ok(Some(phrase)),
            Tok::Eof => Err(SyntaxError::at_end(token.pos, "a range bound or `*`")),
            _ => Err(SyntaxError::new(token.pos, "a range bound or `*`")),
        }
    }
}
