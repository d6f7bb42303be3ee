//! The one JSON parser behind every verdict on a record: what ingest accepts, detection matches
//! and the index can search by field.
//!
//! Records are written by whoever Vigil watches, and `serde_json` refuses some texts that are
//! valid JSON, or close enough that their writers think so: a number beyond `f64`
//! (`"pad": 1e400`), nesting deeper than its recursion limit, a lone surrogate escape
//! (`"\ud800"`, which Python's `json.dumps` writes for any string it was handed). Refusing them
//! at detection after ingest answered 202 would let an attacker hide an event from every rule
//! by padding it, so this parser accepts them and says what it made of them:
//!
//! - **Numbers beyond `f64`** (`1e400`, `-1e400`) become a string holding the number's text as
//!   written. Anything `serde_json` reads as a number (including `1e-400`, read as 0, and
//!   integers beyond `u64`, read as the nearest `f64`) is that same number here.
//! - **Lone surrogate escapes** become U+FFFD, the replacement character; paired surrogates are
//!   the character they encode. The record's own bytes are kept unchanged elsewhere, so the
//!   escape is never lost.
//! - **Nesting deeper than [`MAX_DEPTH`]** containers: each container that would sit deeper is
//!   kept as one string value holding its raw JSON text. Everything above still has its fields,
//!   and keyword or `contains` matching still sees the deeper text.
//!
//! Everything else `serde_json` refuses (syntax errors, control characters in strings, invalid
//! escapes, trailing text) is an error here too, with its byte position, and on everything
//! `serde_json` accepts this parser gives the very same value (a repeated key keeps its last
//! value, as `serde_json`'s map does). [`MAX_DEPTH`] is `serde_json`'s own limit for that
//! reason: a document `serde_json` reads never holds a container the limit would turn into
//! text. That agreement lets [`parse_object`] try `serde_json` first (the common, fast case)
//! and run this parser only when it fails, with an identical result either way. It holds for
//! `serde_json`'s parser, not for its `Value`, which reads an object keyed by its private
//! raw-value token as the JSON the token's string holds; both readings here keep such a key
//! as written.
//!
//! The parser never recurses: containers are kept on an explicit stack, and the values it
//! builds are at most [`MAX_DEPTH`] deep, so dropping them cannot exhaust the stack either.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

/// How many containers deep (the record's own object is 1) a parsed document keeps its
/// structure. A container that would be deeper is kept as one string holding its raw JSON.
///
/// This is `serde_json`'s recursion limit: it reads 127 nested containers and refuses the
/// 128th, so every document it reads is parsed here to the same value. Stages that walk a
/// document (detection's field paths, keyword search and prefilter) must walk at least this
/// deep, or they would lose values that the index and the record still show.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not a JSON object, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {position}")]
pub struct JsonError {
    /// Byte offset in the text where the problem was found.
    pub position: usize,
    pub kind: JsonErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonErrorKind {
    #[error("unexpected end of input")]
    Eof,
    #[error("a byte order mark (JSON texts must not start with one)")]
    ByteOrderMark,
    #[error("a JSON record must be an object, not {0}")]
    NotAnObject(&'static str),
    #[error("expected a value")]
    ExpectedValue,
    #[error("expected a string as object key")]
    ExpectedKey,
    #[error("expected ':'")]
    ExpectedColon,
    #[error("expected ',' or '}}'")]
    ExpectedObjectCommaOrEnd,
    #[error("expected ',' or ']'")]
    ExpectedArrayCommaOrEnd,
    #[error("invalid literal")]
    InvalidLiteral,
    #[error("invalid number")]
    InvalidNumber,
    #[error("invalid escape")]
    InvalidEscape,
    #[error("control character (\\u0000-\\u001F) in a string")]
    ControlCharacter,
    #[error("trailing characters")]
    TrailingCharacters,
}

/// A parsed object, and what the parser had to make of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub object: Map<String, Value>,
    /// Some container was deeper than [`MAX_DEPTH`] and is kept as its raw text.
    pub depth_limited: bool,
}

/// A record's top level, checked whole but parsed only one level deep: what ingest needs to
/// decide on a record and read its time without building the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLevel<'a> {
    /// Each member's key (decoded, lone surrogates replaced) and its value's raw JSON text, in
    /// record order, repeats included.
    pub members: Vec<(Cow<'a, str>, &'a str)>,
    /// Some container was deeper than [`MAX_DEPTH`]: [`parse_object`] keeps it as text.
    pub depth_limited: bool,
    /// The object's text, from its `{` to its `}`. Private, so that a `TopLevel` is only ever
    /// [`check_object`]'s verdict: [`crate::Record::checked_json`] takes one as its proof.
    text: &'a str,
}

impl<'a> TopLevel<'a> {
    /// The checked object's text, without the whitespace around it.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The raw JSON of `key`'s value; the last one if the key repeats, as in the parsed object.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, raw)| *raw)
    }
}

/// Parses `text`, which must hold one JSON object, as every stage reads a record.
pub fn parse_object(text: &str) -> Result<Map<String, Value>, JsonError> {
    parse_object_reporting(text).map(|parsed| parsed.object)
}

/// [`parse_object`], also saying whether the depth limit applied.
pub fn parse_object_reporting(text: &str) -> Result<Parsed, JsonError> {
    // The fast path: serde_json's reading is the tolerant parser's on every text serde_json
    // accepts (see the module's documentation, and the tests that hold it to that), and such a
    // text is never depth limited since MAX_DEPTH is serde_json's own limit. Only texts it
    // refuses pay for a second parse, whose verdict and error are then the final ones.
    //
    // It reads through the tape, not serde_json's `Value`: with the `raw_value` feature on,
    // `Value` takes an object keyed by serde_json's private raw-value token for the JSON its
    // string holds, so a sender could show detection one structure and the index another.
    match crate::tape::Tape::parse(text) {
        Some(tape) => Ok(Parsed {
            object: tape.to_map(),
            depth_limited: false,
        }),
        None => parse_object_tolerant(text),
    }
}

/// The tolerant parser itself, without [`parse_object`]'s `serde_json` fast path.
pub fn parse_object_tolerant(text: &str) -> Result<Parsed, JsonError> {
    let mut parser = Parser::new(text);
    parser.start_object()?;
    let object = parser.object_body()?;
    parser.end()?;
    Ok(Parsed {
        object,
        depth_limited: parser.depth_limited,
    })
}

/// Checks `text` exactly as [`parse_object`] would (the same verdict and error), but parses
/// only its top level.
pub fn check_object(text: &str) -> Result<TopLevel<'_>, JsonError> {
    let mut parser = Parser::new(text);
    parser.start_object()?;
    let opened = parser.pos - 1;
    let mut members = Vec::new();
    let mut deepest = 1;
    parser.skip_ws();
    if parser.peek() == Some(b'}') {
        parser.pos += 1;
    } else {
        loop {
            let key = parser.key(None)?;
            // Keys without escapes are borrowed from the text; the rare others are decoded.
            let key = if key.contains('\\') {
                let mut decoded = String::new();
                let mut again = Parser::new(key);
                again.string(Some(&mut decoded))?;
                Cow::Owned(decoded)
            } else {
                Cow::Borrowed(&key[..key.len() - 1])
            };
            parser.skip_ws();
            let start = parser.pos;
            deepest = deepest.max(parser.skip_value(1)?);
            members.push((key, &text[start..parser.pos]));
            parser.skip_ws();
            match parser.next_byte()? {
                b',' => continue,
                b'}' => break,
                _ => {
                    return Err(
                        parser.error_at(parser.pos - 1, JsonErrorKind::ExpectedObjectCommaOrEnd)
                    )
                }
            }
        }
    }
    let closed = parser.pos;
    parser.end()?;
    Ok(TopLevel {
        members,
        depth_limited: deepest > MAX_DEPTH,
        text: &text[opened..closed],
    })
}

/// An open container while building.
enum Frame {
    Array(Vec<Value>),
    /// The object so far and the key whose value is being parsed.
    Object(Map<String, Value>, String),
}

impl Frame {
    fn close(&self) -> u8 {
        match self {
            Frame::Array(_) => b']',
            Frame::Object(..) => b'}',
        }
    }

    fn into_value(self) -> Value {
        match self {
            Frame::Array(items) => Value::Array(items),
            Frame::Object(object, _) => Value::Object(object),
        }
    }

    fn attach(&mut self, value: Value) {
        match self {
            Frame::Array(items) => items.push(value),
            // Insert replaces: a repeated key keeps its last value, as serde_json's map does.
            Frame::Object(object, key) => {
                object.insert(std::mem::take(key), value);
            }
        }
    }
}

/// Where the run of plain string bytes from `from` ends: at the first `"`, `\\` or control
/// character, or at the end. Eight bytes are tested at a time (most of a record is the plain
/// text of its strings); the word tests flag every such byte, and the lowest flag is exact.
fn plain_run_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A high bit for each byte of `word` below `limit` (at most 0x80); exact for the lowest.
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let flags = below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1)
            | below(word, 0x20);
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth_limited: bool,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth_limited: false,
        }
    }

    fn error_at(&self, position: usize, kind: JsonErrorKind) -> JsonError {
        JsonError { position, kind }
    }

    fn error(&self, kind: JsonErrorKind) -> JsonError {
        self.error_at(self.pos, kind)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Result<u8, JsonError> {
        let byte = self.peek().ok_or_else(|| self.error(JsonErrorKind::Eof))?;
        self.pos += 1;
        Ok(byte)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips leading whitespace and the object's `{`, or says what the text holds instead.
    fn start_object(&mut self) -> Result<(), JsonError> {
        if self.text.starts_with('\u{feff}') {
            return Err(self.error(JsonErrorKind::ByteOrderMark));
        }
        self.skip_ws();
        let what = match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                return Ok(());
            }
            None => return Err(self.error(JsonErrorKind::Eof)),
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => "a scalar",
            Some(_) => return Err(self.error(JsonErrorKind::ExpectedValue)),
        };
        // Whatever else it holds must still be valid JSON for this to be the reason.
        self.skip_value(0)?;
        self.end()?;
        Err(self.error_at(0, JsonErrorKind::NotAnObject(what)))
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error(JsonErrorKind::TrailingCharacters)),
        }
    }

    /// Builds the object whose `{` was just read, without recursion.
    fn object_body(&mut self) -> Result<Map<String, Value>, JsonError> {
        let mut stack: Vec<Frame> = vec![Frame::Object(Map::new(), String::new())];
        let mut opened = true;
        loop {
            self.skip_ws();
            let top = stack.last_mut().expect("an open container");
            let mut value = if opened && self.peek() == Some(top.close()) {
                self.pos += 1;
                stack.pop().expect("an open container").into_value()
            } else {
                if let Frame::Object(_, key) = top {
                    key.clear();
                    self.key(Some(key))?;
                }
                self.skip_ws();
                match self.peek() {
                    Some(open @ (b'{' | b'[')) if stack.len() < MAX_DEPTH => {
                        self.pos += 1;
                        stack.push(if open == b'{' {
                            Frame::Object(Map::new(), String::new())
                        } else {
                            Frame::Array(Vec::new())
                        });
                        opened = true;
                        continue;
                    }
                    Some(b'{' | b'[') => {
                        let start = self.pos;
                        self.skip_value(stack.len())?;
                        self.depth_limited = true;
                        Value::String(self.text[start..self.pos].to_owned())
                    }
                    _ => self.scalar()?,
                }
            };
            // Attach the value, then close every container that ends right after it.
            loop {
                let Some(top) = stack.last_mut() else {
                    let Value::Object(object) = value else {
                        unreachable!("the outermost container is an object")
                    };
                    return Ok(object);
                };
                top.attach(value);
                self.skip_ws();
                let close = top.close();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        opened = false;
                        break;
                    }
                    Some(byte) if byte == close => {
                        self.pos += 1;
                        value = stack.pop().expect("an open container").into_value();
                    }
                    Some(_) if close == b'}' => {
                        return Err(self.error(JsonErrorKind::ExpectedObjectCommaOrEnd))
                    }
                    Some(_) => return Err(self.error(JsonErrorKind::ExpectedArrayCommaOrEnd)),
                    None => return Err(self.error(JsonErrorKind::Eof)),
                }
            }
        }
    }

    /// An object key and the `:` after it, decoded into `out` if given. Returns the key's text
    /// as written, with its closing quote (so that decoding it again ends there).
    fn key(&mut self, out: Option<&mut String>) -> Result<&'a str, JsonError> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.pos += 1,
            Some(_) => return Err(self.error(JsonErrorKind::ExpectedKey)),
            None => return Err(self.error(JsonErrorKind::Eof)),
        }
        let start = self.pos;
        self.string(out)?;
        let written = &self.text[start..self.pos];
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(written)
            }
            Some(_) => Err(self.error(JsonErrorKind::ExpectedColon)),
            None => Err(self.error(JsonErrorKind::Eof)),
        }
    }

    /// A string, number or literal.
    fn scalar(&mut self) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut text = String::new();
                self.string(Some(&mut text))?;
                Ok(Value::String(text))
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = self.number()?;
                // serde_json's own conversion, so that every number it reads is the same here;
                // it fails only beyond f64's range, and the number's text is then kept.
                Ok(match text.parse::<Number>() {
                    Ok(number) => Value::Number(number),
                    Err(_) => Value::String(text.to_owned()),
                })
            }
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(_) => Err(self.error(JsonErrorKind::ExpectedValue)),
            None => Err(self.error(JsonErrorKind::Eof)),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, JsonError> {
        for &expected in word {
            match self.peek() {
                Some(byte) if byte == expected => self.pos += 1,
                Some(_) => return Err(self.error(JsonErrorKind::InvalidLiteral)),
                None => return Err(self.error(JsonErrorKind::Eof)),
            }
        }
        Ok(value)
    }

    /// The text of a number, checked against JSON's grammar.
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error(JsonErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            Some(_) => return Err(self.error(JsonErrorKind::InvalidNumber)),
            None => return Err(self.error(JsonErrorKind::Eof)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(&self.text[start..self.pos])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            Some(_) => Err(self.error(JsonErrorKind::InvalidNumber)),
            None => Err(self.error(JsonErrorKind::Eof)),
        }
    }

    /// The rest of a string whose `"` was just read, decoded into `out` if given. Checking and
    /// decoding are one routine so that what is checked is what is decoded.
    fn string(&mut self, mut out: Option<&mut String>) -> Result<(), JsonError> {
        loop {
            let start = self.pos;
            self.pos = plain_run_end(self.bytes, self.pos);
            // The run stops only at ASCII bytes, so it ends on a character boundary.
            if let Some(out) = out.as_deref_mut() {
                out.push_str(&self.text[start..self.pos]);
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let decoded = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(decoded);
                    }
                }
                Some(_) => return Err(self.error(JsonErrorKind::ControlCharacter)),
                None => return Err(self.error(JsonErrorKind::Eof)),
            }
        }
    }

    /// The character of an escape whose `\` was just read.
    fn escape(&mut self) -> Result<char, JsonError> {
        let at = self.pos;
        Ok(match self.next_byte()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate pairs with a low one escaped right after it; else it
                        // is lone, and whatever follows is read on its own.
                        let resume = self.pos;
                        if self.bytes[self.pos..].starts_with(b"\\u") {
                            self.pos += 2;
                            let low = self.hex4()?;
                            if (0xDC00..=0xDFFF).contains(&low) {
                                let code = 0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                return Ok(char::from_u32(code).expect("a paired surrogate"));
                            }
                            self.pos = resume;
                        }
                        char::REPLACEMENT_CHARACTER
                    }
                    0xDC00..=0xDFFF => char::REPLACEMENT_CHARACTER,
                    unit => char::from_u32(unit).expect("not a surrogate"),
                }
            }
            _ => return Err(self.error_at(at, JsonErrorKind::InvalidEscape)),
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(byte) => (byte as char)
                    .to_digit(16)
                    .ok_or_else(|| self.error(JsonErrorKind::InvalidEscape))?,
                None => return Err(self.error(JsonErrorKind::Eof)),
            };
            self.pos += 1;
            unit = unit * 16 + digit;
        }
        Ok(unit)
    }

    /// Checks one value of any kind without building it, and returns how deep its deepest
    /// container is, counting the `depth` containers around it. Brackets are kept on a heap
    /// stack, so nesting costs memory in proportion to the text, never call stack.
    fn skip_value(&mut self, depth: usize) -> Result<usize, JsonError> {
        let mut open: Vec<u8> = Vec::new();
        let mut deepest = depth;
        loop {
            // A value starts here.
            self.skip_ws();
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    self.pos += 1;
                    open.push(bracket);
                    deepest = deepest.max(depth + open.len());
                    self.skip_ws();
                    let close = if bracket == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        open.pop();
                    } else {
                        if bracket == b'{' {
                            self.key(None)?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.string(None)?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => {
                    self.literal(b"true", Value::Null)?;
                }
                Some(b'f') => {
                    self.literal(b"false", Value::Null)?;
                }
                Some(b'n') => {
                    self.literal(b"null", Value::Null)?;
                }
                Some(_) => return Err(self.error(JsonErrorKind::ExpectedValue)),
                None => return Err(self.error(JsonErrorKind::Eof)),
            }
            // A value ended: a comma leads to the next one, or containers close.
            loop {
                let Some(&bracket) = open.last() else {
                    return Ok(deepest);
                };
                self.skip_ws();
                let close = if bracket == b'{' { b'}' } else { b']' };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if bracket == b'{' {
                            self.key(None)?;
                        }
                        break;
                    }
                    Some(byte) if byte == close => {
                        self.pos += 1;
                        open.pop();
                    }
                    Some(_) if close == b'}' => {
                        return Err(self.error(JsonErrorKind::ExpectedObjectCommaOrEnd))
                    }
                    Some(_) => return Err(self.error(JsonErrorKind::ExpectedArrayCommaOrEnd)),
                    None => return Err(self.error(JsonErrorKind::Eof)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
