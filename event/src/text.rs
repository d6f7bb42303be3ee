//! Records' bytes as text.

/// `bytes` as UTF-8 text. The check runs with `simdutf8`, which picks vector instructions at
/// run time and reads a record of mostly ASCII several times faster than the standard
/// library's; only bytes that fail are checked again by the standard library, for its error,
/// which says where.
pub fn text(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_takes_what_the_standard_library_takes_and_says_where_it_fails() {
        let long = "é".repeat(40) + &"a".repeat(70);
        for good in ["", "plain", "naïve café", "\u{10ffff}", long.as_str()] {
            assert_eq!(text(good.as_bytes()), Ok(good));
        }
        let mut bad = long.into_bytes();
        for (at, byte) in [(0, 0x80), (5, 0xff), (79, 0xc3), (109, 0xed)] {
            let mut bytes = bad.clone();
            bytes[at] = byte;
            assert_eq!(
                text(&bytes).map_err(|e| e.valid_up_to()),
                std::str::from_utf8(&bytes).map_err(|e| e.valid_up_to()),
                "{at}"
            );
            assert!(text(&bytes).is_err(), "{at}");
        }
        bad.truncate(1);
        assert!(text(&bad).is_err());
    }
}
