//! The tape's own JSON reader: one pass over the record's bytes, pushing slots as it goes.
//!
//! It accepts a subset of what `serde_json` accepts and reads it into the tape `serde_json`'s
//! deserializer would have built (the tests hold it to that, against a tape built through
//! `serde_json`). What it is unsure of it refuses, and the caller's fallback (the tolerant
//! parser, whose verdict is final) reads it instead: lone surrogates, nesting as deep as
//! `serde_json`'s limit, and any malformed text. Numbers other than plain integers are handed
//! to `serde_json`, so a float or an out-of-range integer reads exactly as it would there.
//!
//! Owning this loop is what makes a record cheap: through `serde_json`'s visitor a CloudTrail
//! record cost about 1.3 us, most of it the visitor's calls rather than the scan.

use serde_json::Number;

use super::{Node, Span, Tape, UNESCAPED};
use crate::string_bytes::{dot_mask, find_special, quote_first, special_masks};

/// `serde_json`'s recursion limit: it refuses a text whose containers nest this deep.
const DEPTH_LIMIT: usize = 128;

/// Reads `text`, one JSON object, onto `tape`. `None` where the text is not one or where this
/// reader leaves the verdict to the tolerant parser (see the module's documentation).
pub(super) fn read_object<'a>(tape: &mut Tape<'a>, text: &'a str) -> Option<()> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    reader.skip_whitespace();
    if reader.peek()? != b'{' {
        return None;
    }
    reader.value(tape, Span::EMPTY, 0)?;
    reader.skip_whitespace();
    (reader.pos == reader.bytes.len()).then_some(())
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// The value at the reader's position, pushed under `key`; `depth` counts the containers
    /// around it.
    fn value(&mut self, tape: &mut Tape<'a>, key: Span, depth: usize) -> Option<()> {
        let node = match self.peek()? {
            b'{' => return self.object(tape, key, depth + 1),
            b'[' => return self.array(tape, key, depth + 1),
            b'"' => Node::String(self.string(tape)?),
            b't' => self.literal(b"true", Node::Bool(true))?,
            b'f' => self.literal(b"false", Node::Bool(false))?,
            b'n' => self.literal(b"null", Node::Null)?,
            b'-' | b'0'..=b'9' => Node::Number(self.number()?),
            _ => return None,
        };
        tape.push(key, node);
        Some(())
    }

    fn literal(&mut self, word: &[u8], node: Node) -> Option<Node> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            node
        })
    }

    fn object(&mut self, tape: &mut Tape<'a>, key: Span, depth: usize) -> Option<()> {
        if depth >= DEPTH_LIMIT {
            return None;
        }
        self.pos += 1;
        let at = tape.slots.len() as u32;
        let open = Node::open_object();
        tape.push(key, open);
        let (mut len, mut dotted) = (0, false);
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                if self.peek()? != b'"' {
                    return None;
                }
                let (key, dot) = self.key(tape)?;
                dotted |= dot;
                self.skip_whitespace();
                if self.next()? != b':' {
                    return None;
                }
                self.skip_whitespace();
                self.value(tape, key, depth)?;
                len += 1;
                self.skip_whitespace();
                match self.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        tape.close_object(at, len, dotted);
        Some(())
    }

    fn array(&mut self, tape: &mut Tape<'a>, key: Span, depth: usize) -> Option<()> {
        if depth >= DEPTH_LIMIT {
            return None;
        }
        self.pos += 1;
        let at = tape.slots.len();
        tape.push(key, Node::Array { end: 0 });
        self.skip_whitespace();
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                self.value(tape, Span::EMPTY, depth)?;
                self.skip_whitespace();
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        let end = tape.slots.len() as u32;
        tape.slots[at].node = Node::Array { end };
        Some(())
    }

    /// The number at the reader's position. Plain integers that fit are read here, as
    /// `serde_json` reads them; anything else (a fraction, an exponent, `-0`, a long integer)
    /// goes to `serde_json` itself.
    fn number(&mut self) -> Option<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        match self.next()? {
            // One leading zero, never followed by another digit.
            b'0' if self.peek().is_some_and(|b| b.is_ascii_digit()) => return None,
            b'0'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        let digits_end = self.pos;
        let mut plain = true;
        if self.peek() == Some(b'.') {
            plain = false;
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            plain = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        let digits = &self.bytes[digits_start..digits_end];
        if plain {
            // 19 digits always fit a u64, 18 an i64; `-0` is a float in serde_json.
            if !negative && digits.len() <= 19 {
                return Some(Number::from(decimal(digits)));
            }
            if negative && digits.len() <= 18 && digits != b"0" {
                return Some(Number::from(-(decimal(digits) as i64)));
            }
        }
        serde_json::from_str(&self.text[start..self.pos]).ok()
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        self.skip_digits();
        Some(())
    }

    /// A member's key, as [`Self::string`] reads it, and whether it holds a dot: found in the
    /// sixteen bytes (or thirty-two, for a longer key) the key's end is looked for in, so a key
    /// costs a compare or two more. Most keys end within those bytes; the rest (longer ones,
    /// escaped ones, ones near the text's end) go to [`Self::long_key`], out of line, so that
    /// only this short path is inlined into the reader's loop.
    #[inline(always)]
    fn key(&mut self, tape: &mut Tape<'a>) -> Option<(Span, bool)> {
        let start = self.pos + 1;
        let Some(first) = self.bytes.get(start..start + 16) else {
            return self.long_key(tape);
        };
        let first: [u8; 16] = first.try_into().expect("sixteen bytes");
        let masks = special_masks(first);
        let (len, dots) = if masks.0 != 0 {
            let Some(len) = quote_first(masks) else {
                return self.long_key(tape);
            };
            (len, dot_mask(first) & ((1 << len) - 1))
        } else {
            let Some(second) = self.bytes.get(start + 16..start + 32) else {
                return self.long_key(tape);
            };
            let second: [u8; 16] = second.try_into().expect("sixteen bytes");
            let Some(len) = quote_first(special_masks(second)) else {
                return self.long_key(tape);
            };
            (
                16 + len,
                dot_mask(first) | (dot_mask(second) & ((1 << len) - 1)),
            )
        };
        self.pos = start + len as usize + 1;
        Some((Span::in_text(start, len as usize), dots != 0))
    }

    /// A key [`Self::key`] cannot read in its first thirty-two bytes: a longer one, one with an
    /// escape or a control character, or one with fewer bytes of text after it.
    #[cold]
    #[inline(never)]
    fn long_key(&mut self, tape: &mut Tape<'a>) -> Option<(Span, bool)> {
        let key = self.string(tape)?;
        Some((key, tape.bytes(key).contains(&b'.')))
    }

    /// The string whose opening quote is at the reader's position: a span of the text unless
    /// it holds an escape, and of the tape's unescaped text if it does.
    // Inlined into its callers (a value in `value`, a key in `long_key`): as a call, each string
    // reloaded the scan's constants and waited on its own return, about a fifth of the parse.
    #[inline(always)]
    fn string(&mut self, tape: &mut Tape<'a>) -> Option<Span> {
        let start = self.pos + 1;
        // Most keys and strings end within sixteen bytes, without an escape.
        if let Some(chunk) = self.bytes.get(start..start + 16) {
            let masks = special_masks(chunk.try_into().expect("sixteen bytes"));
            if let Some(len) = quote_first(masks) {
                let stop = start + len as usize;
                self.pos = stop + 1;
                return Some(Span::in_text(start, stop - start));
            }
        }
        let stop = start + find_special(&self.bytes[start..])?;
        match self.bytes[stop] {
            b'"' => {
                self.pos = stop + 1;
                Some(Span::in_text(start, stop - start))
            }
            b'\\' => {
                if tape.unescaped.is_empty() {
                    // Unescaping never lengthens, so the rest of the record bounds every string
                    // still to come: one allocation, where growing by doubling took several for
                    // a Kubernetes audit event's one escaped annotation (3% of its time).
                    tape.unescaped.reserve(self.bytes.len() - start);
                }
                let from = tape.unescaped.len();
                self.escaped(start, stop, &mut tape.unescaped)?;
                Some(Span {
                    start: from as u32,
                    len: (tape.unescaped.len() - from) as u32 | UNESCAPED,
                })
            }
            // A control character, which JSON strings may only hold escaped.
            _ => None,
        }
    }

    /// The rest of a string from `start` whose first escape is at `at`, unescaped onto `out`.
    fn escaped(&mut self, start: usize, mut at: usize, out: &mut String) -> Option<()> {
        out.push_str(&self.text[start..at]);
        loop {
            // `at` is on a backslash.
            let escape = *self.bytes.get(at + 1)?;
            at += 2;
            match escape {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let unit = self.hex4(at)?;
                    at += 4;
                    let code = match unit {
                        0xD800..=0xDBFF => {
                            // A leading surrogate, which must be followed by a trailing one.
                            if self.bytes.get(at..at + 2)? != b"\\u" {
                                return None;
                            }
                            let low = self.hex4(at + 2)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            at += 6;
                            0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => u32::from(unit),
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            }
            let stop = at + find_special(&self.bytes[at..])?;
            out.push_str(&self.text[at..stop]);
            at = stop;
            match self.bytes[at] {
                b'"' => {
                    self.pos = at + 1;
                    return Some(());
                }
                b'\\' => {}
                _ => return None,
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u16> {
        let digits = self.bytes.get(at..at + 4)?;
        digits.iter().try_fold(0u16, |unit, &b| {
            let digit = (b as char).to_digit(16)?;
            Some(unit << 4 | digit as u16)
        })
    }
}

/// `digits`, at most 19 ASCII digits, as a number.
fn decimal(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0'))
}
