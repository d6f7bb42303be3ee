//! Finding rules' literals in a JSON record's text, before (and often instead of) parsing it.
//!
//! The document scan ([`super::Prefilter::scan_document`]) looks at each string value of the
//! parsed event, each number as the text `serde_json` writes for it, and each boolean as
//! `true` or `false`. This scan steps through the record's text as a tokenizer would and feeds
//! the automaton those same texts, each on its own as the document scan does, so that an event
//! none of whose rules can match costs one pass over its bytes and no parse at all. On a record
//! it can read, it finds exactly the literals the document scan finds. Where the text and the
//! document differ:
//!
//! - **Keys** are skipped (the document scan does not look at them), their closing quote found
//!   sixteen bytes at a time as a value's is.
//! - **Escapes** (`\"`, `\n`, `\u0041`) are decoded before matching, so a literal holding a
//!   quote or written with a `\u` escape is still found. An escape for a character outside
//!   ASCII gives up (below).
//! - **Non-ASCII values** are matched by the document scan lowercased as well, and a few
//!   characters lowercase to ASCII (the Kelvin sign to `k`); the scan gives up on any.
//! - **Numbers** are matched as `serde_json` writes them, which is the text as written only for
//!   integers in their plain form (`-12`, not `1.0`, `1e3`, `-0` or a 20-digit one); the scan
//!   gives up on any other.
//! - **Deep nesting:** the record parser keeps containers past its depth limit as raw text,
//!   escapes and all; the scan gives up well before that depth.
//!
//! Giving up is [`Unreadable`]: the caller parses the record and scans the document, as it
//! would have without this. So is anything that is not JSON; callers give only records ingest
//! accepted.

use vigil_event::string_bytes::string_end;

use super::dense::{self, Literals};

/// Nesting at which the scan gives up: half the record parser's limit, below which it keeps
/// containers as their raw text.
const MAX_DEPTH: usize = vigil_event::json::MAX_DEPTH / 2;
const _: () = assert!(MAX_DEPTH < 128, "one bit per level of a u128");

/// Integers of up to this many digits fit `i64`, which `serde_json` writes as they were written.
const MAX_INTEGER_DIGITS: usize = 18;

/// The record holds something only its parsed document can tell about (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreadable;

/// The automaton, and what to do with the literals it finds.
pub(super) struct Matcher<'a, F> {
    pub automaton: &'a Literals,
    /// The length in bytes of the shortest literal: shorter texts hold none.
    pub shortest: usize,
    /// The texts to step the automaton through, each followed by [`dense::SEPARATOR`]; empty
    /// when [`scan`] starts.
    pub texts: &'a mut Vec<u8>,
    pub hit: F,
}

impl<F: FnMut(usize)> Matcher<'_, F> {
    /// Gathers `text` to be scanned on its own, as the document scan scans one value.
    #[inline]
    fn mark(&mut self, text: &[u8]) {
        if text.len() >= self.shortest {
            self.texts.extend_from_slice(text);
            self.texts.push(dense::SEPARATOR);
        }
    }
}

/// Finds the literals of the values of the JSON text `record` with `matcher`.
pub(super) fn scan<F: FnMut(usize)>(
    matcher: &mut Matcher<'_, F>,
    record: &[u8],
) -> Result<(), Unreadable> {
    // A bit per level of nesting: set for an object, clear for an array.
    let mut objects: u128 = 0;
    let mut depth = 0usize;
    // Whether the next string is a key: after `{`, or after `,` within an object.
    let mut key_next = false;
    let mut at = 0;
    while let Some(&byte) = record.get(at) {
        match byte {
            b'"' => {
                // An unterminated string is not a record this is ever given.
                let end = string_end(record, at + 1).ok_or(Unreadable)?;
                let body = &record[at + 1..end.quote];
                // A text with escapes is longer than what it stands for, never shorter.
                if !key_next && body.len() >= matcher.shortest {
                    if !end.ascii {
                        return Err(Unreadable);
                    }
                    if end.escaped {
                        decode(body, matcher.texts)?;
                        matcher.texts.push(dense::SEPARATOR);
                    } else {
                        matcher.mark(body);
                    }
                }
                at = end.quote + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Unreadable);
                }
                let object = byte == b'{';
                objects = (objects & !(1 << depth)) | (u128::from(object) << depth);
                key_next = object;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1).ok_or(Unreadable)?;
                key_next = false;
                at += 1;
            }
            b':' => {
                key_next = false;
                at += 1;
            }
            b',' => {
                key_next = objects & (1 << depth) != 0;
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = record[at..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(record.len(), |length| at + length);
                let number = &record[at..end];
                if !plain_integer(number) {
                    return Err(Unreadable);
                }
                matcher.mark(number);
                at = end;
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match byte {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !record[at..].starts_with(word) {
                    return Err(Unreadable);
                }
                if byte != b'n' {
                    matcher.mark(word);
                }
                at += word.len();
            }
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            _ => return Err(Unreadable),
        }
    }
    // One pass over all the texts rather than one per text: most values are too short to be
    // stepped in several places at once on their own (see `dense`).
    matcher.automaton.each_in(matcher.texts, &mut matcher.hit);
    Ok(())
}

/// Appends the text of a string with escapes as it reads to `out`.
fn decode(body: &[u8], out: &mut Vec<u8>) -> Result<(), Unreadable> {
    let mut rest = body;
    // Escapes are few (the quotes of an access log line, say), so the text between them is
    // copied a run at a time.
    while let Some(backslash) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..backslash]);
        let (decoded, length) = escape(&rest[backslash + 1..])?;
        out.push(decoded);
        rest = &rest[backslash + 1 + length..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// The ASCII character an escape stands for (`rest` follows the backslash), and the escape's
/// length after the backslash.
fn escape(rest: &[u8]) -> Result<(u8, usize), Unreadable> {
    let simple = match rest.first().ok_or(Unreadable)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let hex = rest.get(1..5).ok_or(Unreadable)?;
            // `from_str_radix` alone would take a sign (`\u+041`), which JSON does not.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(Unreadable);
            }
            let hex = std::str::from_utf8(hex).map_err(|_| Unreadable)?;
            let unit = u16::from_str_radix(hex, 16).map_err(|_| Unreadable)?;
            return match u8::try_from(unit) {
                Ok(ascii) if ascii.is_ascii() => Ok((ascii, 5)),
                _ => Err(Unreadable),
            };
        }
        _ => return Err(Unreadable),
    };
    Ok((simple, 1))
}

/// Whether `number` is an integer written as `serde_json` writes it back: an optional minus,
/// then `0` or a digit other than `0` and at most [`MAX_INTEGER_DIGITS`] in all, and not `-0`.
fn plain_integer(number: &[u8]) -> bool {
    let digits = number.strip_prefix(b"-").unwrap_or(number);
    let Some((&first, rest)) = digits.split_first() else {
        return false;
    };
    let single_zero = first == b'0' && rest.is_empty() && digits.len() == number.len();
    (single_zero || (b'1'..=b'9').contains(&first))
        && rest.iter().all(u8::is_ascii_digit)
        && digits.len() <= MAX_INTEGER_DIGITS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(literals: &[&str], record: &str) -> Result<Vec<usize>, Unreadable> {
        let automaton = Literals::new(literals).unwrap();
        let mut hits = Vec::new();
        let mut texts = Vec::new();
        let mut matcher = Matcher {
            automaton: &automaton,
            shortest: 3,
            texts: &mut texts,
            hit: |id| hits.push(id),
        };
        scan(&mut matcher, record.as_bytes())?;
        hits.sort_unstable();
        hits.dedup();
        Ok(hits)
    }

    #[test]
    fn escapes_are_decoded_before_matching() {
        let literals = ["\"admin\"", "abc", "tab\there", "/etc/passwd"];
        let record = r#"{"a":"role \"ADMIN\" granted","b":"\u0061\u0042c","c":"tab\there","d":"\/etc\/passwd"}"#;
        assert_eq!(found(&literals, record), Ok(vec![0, 1, 2, 3]));
        // Each value is scanned on its own, as the document scan does: not with its quotes.
        assert_eq!(found(&literals, r#"{"a":"admin"}"#), Ok(vec![]));
        assert_eq!(found(&literals, r#"{"a":"ab","b":"c"}"#), Ok(vec![]));
        // Values are scanned in one pass, but no literal is found across two of them, escaped
        // or not.
        let literals = ["abcdef", "defghi"];
        let record = r#"{"a":"abc","b":"def","c":["ghi"],"d":"x\tabc","e":"def"}"#;
        assert_eq!(found(&literals, record), Ok(vec![]));
        let record = r#"{"a":"abc","b":"\u0061bcdef"}"#;
        assert_eq!(found(&literals, record), Ok(vec![0]));
        // Text before, between and after escapes is kept, as are escapes at either end.
        let literals = ["\"c:\\windows\\", "\\system32\\\"", "tail"];
        let record = r#"{"a":"\"C:\\Windows\\System32\\\"","b":"x\ttail"}"#;
        assert_eq!(found(&literals, record), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn what_only_the_document_can_tell_gives_up() {
        for record in [
            r#"{"a":"école"}"#,
            r#"{"a":"\u212aill"}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":"unterminated"#,
            r#"{"a":"ab\xcd"}"#,
            r#"{"a":"ab\u00"}"#,
            r#"{"a":"ab\u+041"}"#,
            r#"{"a":nul}"#,
            r#"{"a":1}}"#,
        ] {
            assert_eq!(found(&["abc"], record), Err(Unreadable), "{record}");
        }
        let deep = format!(
            "{}\"abc\"{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(found(&["abc"], &deep), Err(Unreadable));
        let shallow = format!("{}\"abc\"{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(found(&["abc"], &shallow), Ok(vec![0]));
    }

    #[test]
    fn plain_integers_booleans_and_values_at_any_depth_are_scanned_but_not_keys() {
        let literals = ["1234", "-42", "true", "keyname", "deep"];
        let record = r#"{"n":991234,"m":-42,"t":true,"KeyName":0,"x":[{"y":["DEEP"]}]}"#;
        assert_eq!(found(&literals, record), Ok(vec![0, 1, 2, 4]));
        // A key with an escaped quote ends where the parser says, and `null` is no text.
        let record = r#"{"key\"name":"x","a":[null,"KEYNAME"],"b":{"keyname":null}}"#;
        assert_eq!(found(&literals, record), Ok(vec![3]));
        // The key position is known after a nested container closes.
        let record = r#"{"a":{"b":[1]},"keyname":"x"}"#;
        assert_eq!(found(&literals, record), Ok(vec![]));
    }
}
