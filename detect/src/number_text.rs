//! A JSON number's text without allocating: string patterns and the prefilter compare numbers
//! as the text they are written as, once per number of every event.

use std::fmt::{self, Write as _};

use serde_json::Number;

/// Formats a JSON number into a stack buffer, so comparing it with a string pattern does not
/// allocate; only numbers too long for the buffer (huge floats) fall back to the heap.
pub(crate) fn with_number_text<R>(n: &Number, f: impl FnOnce(&str) -> R) -> R {
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
