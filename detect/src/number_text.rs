//! A JSON number's text without allocating: string patterns and the prefilter compare numbers
//! as the text they are written as, once per number of every event.

use std::fmt::{self, Write as _};

use serde_json::Number;

/// Formats a JSON number into a stack buffer, so comparing it with a string pattern does not
/// allocate; only numbers too long for the buffer (huge floats) fall back to the heap.
pub(crate) fn with_number_text<R>(n: &Number, f: impl FnOnce(&str) -> R) -> R {
    // Integers as `serde_json` writes them (with `itoa`), without the formatting machinery.
    if let Some(unsigned) = n.as_u64() {
        return f(itoa::Buffer::new().format(unsigned));
    }
    if let Some(signed) = n.as_i64() {
        return f(itoa::Buffer::new().format(signed));
    }
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
    use super::*;

    /// Every number's text is the one `serde_json` writes, integers at the edges of their
    /// types included, and floats (which take the formatting path).
    #[test]
    fn texts_are_what_serde_json_writes() {
        let texts = [
            "0",
            "-0",
            "7",
            "-7",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "1.0",
            "-2.5",
            "1e300",
            "5e-324",
            "123456789012345678901234567890",
        ];
        for text in texts {
            let number: Number = serde_json::from_str(text).unwrap();
            with_number_text(&number, |got| assert_eq!(got, number.to_string(), "{text}"));
        }
        let huge = Number::from_f64(-1.7976931348623157e308).unwrap();
        with_number_text(&huge, |got| assert_eq!(got, huge.to_string()));
    }
}
