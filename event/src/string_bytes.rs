//! Finding where a JSON string's text ends, sixteen bytes at a time: for the tape's reader
//! (which stops at control characters too) and for detection's scan of a record's text
//! (which finds literals before, and often instead of, a parse).

use wide::u8x16;

/// The end of a string's text (its closing quote) and what the text held before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringEnd {
    /// The position of the closing quote.
    pub quote: usize,
    /// Whether the text holds a backslash escape.
    pub escaped: bool,
    /// Whether every byte of the text is ASCII (escapes aside: the character after a
    /// backslash is not looked at).
    pub ascii: bool,
}

/// Where the string whose text starts at `at` in `bytes` ends: its first quote that is not
/// escaped. `None` where no quote closes it. Control characters are not looked for: this reads
/// text already accepted as JSON.
#[inline]
pub fn string_end(bytes: &[u8], mut at: usize) -> Option<StringEnd> {
    let (mut escaped, mut ascii) = (false, true);
    loop {
        let rest = bytes.get(at..)?;
        let chunk = first_sixteen(rest);
        let stops = quotes_and_backslashes(chunk);
        // The sign bit of each byte: set on every byte outside ASCII.
        let high = u8x16::from(chunk).to_bitmask();
        if stops == 0 {
            ascii &= high == 0;
            if rest.len() <= 16 {
                return None;
            }
            at += 16;
            continue;
        }
        let stop = stops.trailing_zeros() as usize;
        ascii &= high & ((1 << stop) - 1) == 0;
        at += stop;
        if bytes[at] == b'"' {
            return Some(StringEnd {
                quote: at,
                escaped,
                ascii,
            });
        }
        // The escaped character (for `\u`, the first hex digit) is never a quote that ends.
        escaped = true;
        at += 2;
    }
}

/// The offset of the first quote, backslash or control character in `bytes`, sixteen bytes at
/// a time: a string's bytes up to there are copied or borrowed as they are.
pub(crate) fn find_special(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(16);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let found = special_mask(chunk.try_into().expect("sixteen bytes"));
        if found != 0 {
            return Some(offset + found.trailing_zeros() as usize);
        }
        offset += 16;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return None;
    }
    let found = special_mask(first_sixteen(rest));
    (found != 0).then(|| offset + found.trailing_zeros() as usize)
}

/// One bit for each of the sixteen bytes that is a quote, a backslash or a control character.
#[inline(always)]
fn special_mask(bytes: [u8; 16]) -> u32 {
    special_masks(bytes).0
}

/// The first sixteen bytes of `bytes`, padded with spaces (which are no stop of any scan).
#[inline(always)]
fn first_sixteen(bytes: &[u8]) -> [u8; 16] {
    match bytes.first_chunk::<16>() {
        Some(chunk) => *chunk,
        None => {
            let mut padded = [b' '; 16];
            padded[..bytes.len()].copy_from_slice(bytes);
            padded
        }
    }
}

/// Where the closing quote is in sixteen bytes whose [`special_masks`] these are, when it is
/// their first special byte (no escape or control character comes before it).
#[inline(always)]
pub(crate) fn quote_first((found, quotes): (u32, u32)) -> Option<u32> {
    (found & found.wrapping_neg() & quotes != 0).then(|| quotes.trailing_zeros())
}

/// One bit for each of the sixteen bytes that is a dot.
#[inline(always)]
pub(crate) fn dot_mask(bytes: [u8; 16]) -> u32 {
    u8x16::from(bytes).simd_eq(u8x16::splat(b'.')).to_bitmask()
}

/// One bit for each of the sixteen bytes that is a quote or a backslash.
#[inline(always)]
fn quotes_and_backslashes(bytes: [u8; 16]) -> u32 {
    let chunk = u8x16::from(bytes);
    let quote = chunk.simd_eq(u8x16::splat(b'"'));
    let backslash = chunk.simd_eq(u8x16::splat(b'\\'));
    (quote | backslash).to_bitmask()
}

/// One bit for each of the sixteen bytes that is a quote, a backslash or a control character,
/// and one for each quote.
#[inline(always)]
pub(crate) fn special_masks(bytes: [u8; 16]) -> (u32, u32) {
    let chunk = u8x16::from(bytes);
    let quote = chunk.simd_eq(u8x16::splat(b'"'));
    let backslash = chunk.simd_eq(u8x16::splat(b'\\'));
    // A control character is at most 0x1f: the smaller of it and 0x1f is itself.
    let control = chunk.min(u8x16::splat(0x1f)).simd_eq(chunk);
    (
        (quote | backslash | control).to_bitmask(),
        quote.to_bitmask(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closing quote is found wherever it sits, past escaped quotes and backslashes, with
    /// escapes and bytes outside ASCII reported only where they come before it.
    #[test]
    fn ends_are_found_with_what_came_before() {
        for len in 0..40 {
            let body: Vec<u8> = (0..len).map(|i| [b'a', b'!', b']', b'~'][i % 4]).collect();
            let mut text = body.clone();
            text.extend_from_slice(b"\"\xc3\xa9\\\"");
            let want = |escaped, ascii| {
                Some(StringEnd {
                    quote: len,
                    escaped,
                    ascii,
                })
            };
            assert_eq!(string_end(&text, 0), want(false, true), "{len}");
            for at in 0..len {
                let mut high = text.clone();
                high[at] = 0xc3;
                assert_eq!(string_end(&high, 0), want(false, false), "{len} {at}");
                if at + 1 < len {
                    for escape in [b'"', b'\\'] {
                        let mut escaped = text.clone();
                        escaped[at] = b'\\';
                        escaped[at + 1] = escape;
                        assert_eq!(string_end(&escaped, 0), want(true, true), "{len} {at}");
                    }
                }
            }
            assert_eq!(string_end(&body, 0), None, "unterminated, {len}");
            let mut dangling = body.clone();
            dangling.push(b'\\');
            assert_eq!(string_end(&dangling, 0), None, "a final backslash, {len}");
        }
    }

    #[test]
    fn special_bytes_are_found_wherever_they_sit() {
        for len in 0..40 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    // Bytes that sit next to the specials' values, and multibyte UTF-8.
                    let mut bytes: Vec<u8> = (0..len)
                        .map(|i| [b'!', b']', 0x20, 0xc3, 0x7f][i % 5])
                        .collect();
                    bytes[at] = special;
                    assert_eq!(find_special(&bytes), Some(at), "{bytes:?}");
                }
            }
            let plain: Vec<u8> = (0..len).map(|i| [b'a', 0x21, 0x5d, 0xff][i % 4]).collect();
            assert_eq!(find_special(&plain), None);
        }
    }
}
