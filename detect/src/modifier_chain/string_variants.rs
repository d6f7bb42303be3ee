//! What the string modifiers make of one value: `windash`, `base64`, `base64offset`, the
//! UTF-16 encodings, `expand` and the anchors turn it into variants (bytes and wildcards), each
//! compiled into a pattern.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::matcher::Matcher;
use crate::modifier::{Modifier, Utf16};
use crate::pattern::{sigma_tokens, Anchor, Pattern, Token};
use crate::LoadOptions;

/// At most this many variants per rule value, so that a value with many dashes under `windash`
/// (five variants each) or many placeholders cannot blow up at load.
const MAX_VARIANTS: usize = 4096;

/// A value on its way through string transformations: bytes, since the encodings produce
/// bytes that need not be text, and the wildcards around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Byte(u8),
    /// A percent sign escaped as `\%` in a value that `expand` will see: plain, never the start
    /// of a placeholder. Everything but `expand` reads it as the byte.
    Percent,
    Any,
    One,
}

/// Reads a value that `expand` applies to: as [`sigma_tokens`], and `\%` is a plain percent
/// sign. `\\%` is a backslash before a placeholder, since `\\` is an escaped backslash.
fn expand_pieces(value: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut segment = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('%')) => {
                chars.next();
                out.extend(pieces(&sigma_tokens(&segment)));
                segment.clear();
                out.push(Piece::Percent);
            }
            ('\\', Some('\\')) => {
                chars.next();
                segment.push_str("\\\\");
            }
            (c, _) => segment.push(c),
        }
    }
    out.extend(pieces(&sigma_tokens(&segment)));
    out
}

fn pieces(tokens: &[Token]) -> Vec<Piece> {
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        match token {
            Token::Char(c) => {
                let mut buf = [0; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(Piece::Byte));
            }
            Token::Any => out.push(Piece::Any),
            Token::One => out.push(Piece::One),
        }
    }
    out
}

fn bytes_only(value: &[Piece]) -> Option<Vec<u8>> {
    value
        .iter()
        .map(|p| match p {
            Piece::Byte(b) => Some(*b),
            Piece::Percent => Some(b'%'),
            Piece::Any | Piece::One => None,
        })
        .collect()
}

/// Applies a chain of string modifiers to one value and compiles the variants it yields.
pub(super) fn strings(
    chain: &[Modifier],
    keyword: bool,
    value: &str,
    options: &LoadOptions,
) -> Result<Matcher, String> {
    let mut variants = vec![if chain.contains(&Modifier::Expand) {
        expand_pieces(value)
    } else {
        pieces(&sigma_tokens(value))
    }];
    let mut cased = false;
    let mut anchored = false;
    for &modifier in chain {
        let mut next = Vec::with_capacity(variants.len());
        for variant in variants {
            match modifier {
                Modifier::Anchor(anchor) => {
                    anchored = true;
                    next.push(anchor_pieces(variant, anchor));
                }
                Modifier::Cased => {
                    cased = true;
                    next.push(variant);
                }
                Modifier::Windash => windash(&variant, &mut next)?,
                Modifier::Base64 => {
                    let data = bytes_only(&variant)
                        .ok_or("`base64` cannot encode wildcards; put `contains` after it")?;
                    next.push(STANDARD.encode(data).bytes().map(Piece::Byte).collect());
                }
                Modifier::Base64Offset => base64_offsets(&variant, &mut next)?,
                Modifier::Utf16(form) => next.push(utf16(&variant, form)?),
                Modifier::Expand => expand(&variant, options, &mut next)?,
                other => {
                    return Err(format!(
                        "modifier `{}` is not a string modifier",
                        other.name()
                    ))
                }
            }
            if next.len() > MAX_VARIANTS {
                return Err(format!(
                    "the value expands into more than {MAX_VARIANTS} variants"
                ));
            }
        }
        variants = next;
    }
    let mut matchers = variants
        .into_iter()
        .map(|mut variant| {
            if keyword && !anchored {
                variant = anchor_pieces(variant, Anchor::Anywhere);
            }
            Ok(Matcher::String(Pattern::from_tokens(
                tokens(&variant)?,
                cased,
            )))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(if matchers.len() == 1 {
        matchers.remove(0)
    } else {
        Matcher::AnyOf(matchers)
    })
}

fn anchor_pieces(variant: Vec<Piece>, anchor: Anchor) -> Vec<Piece> {
    let mut out = Vec::with_capacity(variant.len() + 2);
    if matches!(anchor, Anchor::End | Anchor::Anywhere) && variant.first() != Some(&Piece::Any) {
        out.push(Piece::Any);
    }
    let ends_any = variant.last() == Some(&Piece::Any);
    out.extend(variant);
    if matches!(anchor, Anchor::Start | Anchor::Anywhere) && !ends_any {
        out.push(Piece::Any);
    }
    out
}

/// Pieces back to pattern tokens; the bytes must be text by now.
fn tokens(variant: &[Piece]) -> Result<Vec<Token>, String> {
    let not_text = concat!(
        "the encoded value is not text (UTF-16 bytes); ",
        "follow the utf16 modifier with `base64` or `base64offset`"
    );
    let mut out = Vec::with_capacity(variant.len());
    for run in text_runs(variant, not_text)? {
        match run {
            TextRun::Text(text) => out.extend(text.chars().map(Token::Char)),
            TextRun::Wildcard(Piece::Any) => out.push(Token::Any),
            TextRun::Wildcard(_) => out.push(Token::One),
        }
    }
    Ok(out)
}

/// A variant read as the texts between its wildcards.
enum TextRun {
    Text(String),
    /// `Piece::Any` or `Piece::One`.
    Wildcard(Piece),
}

/// Splits a variant into its texts and wildcards, in order; `not_text` is the error when the
/// bytes between two wildcards are not UTF-8.
fn text_runs(variant: &[Piece], not_text: &str) -> Result<Vec<TextRun>, String> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut Vec<TextRun>| -> Result<(), String> {
        if !run.is_empty() {
            let text = String::from_utf8(std::mem::take(run)).map_err(|_| not_text.to_owned())?;
            out.push(TextRun::Text(text));
        }
        Ok(())
    };
    for piece in variant {
        match piece {
            Piece::Byte(b) => run.push(*b),
            Piece::Percent => run.push(b'%'),
            wildcard => {
                flush(&mut run, &mut out)?;
                out.push(TextRun::Wildcard(*wildcard));
            }
        }
    }
    flush(&mut run, &mut out)?;
    Ok(out)
}

/// The dash characters `windash` interchanges, as the specification lists them.
const DASHES: [&str; 5] = ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"];

/// Expands each `-` or `/` that starts an option word into every dash character, as pySigma
/// does: the character must not follow a word character (`a-b` is left alone) and must be
/// followed by one (`- ` is left alone). Wildcards count as non-word.
fn windash(variant: &[Piece], out: &mut Vec<Vec<Piece>>) -> Result<(), String> {
    let positions: Vec<usize> = (0..variant.len())
        .filter(|&i| {
            matches!(variant[i], Piece::Byte(b'-' | b'/'))
                && !word_before(variant, i)
                && word_at(variant, i + 1)
        })
        .collect();
    let count = DASHES
        .len()
        .checked_pow(u32::try_from(positions.len()).unwrap_or(u32::MAX))
        .filter(|&n| n <= MAX_VARIANTS)
        .ok_or("`windash` would expand the value into too many variants")?;
    for mut choice in 0..count {
        let mut expanded = Vec::with_capacity(variant.len() + 2 * positions.len());
        let mut from = 0;
        for &at in &positions {
            expanded.extend_from_slice(&variant[from..at]);
            expanded.extend(DASHES[choice % DASHES.len()].bytes().map(Piece::Byte));
            choice /= DASHES.len();
            from = at + 1;
        }
        expanded.extend_from_slice(&variant[from..]);
        out.push(expanded);
    }
    Ok(())
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the character starting at piece `at` is a word character.
fn word_at(variant: &[Piece], at: usize) -> bool {
    let bytes: Vec<u8> = variant
        .iter()
        .skip(at)
        .take(4)
        .map_while(|p| match p {
            Piece::Byte(b) => Some(*b),
            Piece::Percent => Some(b'%'),
            _ => None,
        })
        .collect();
    let valid = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    valid.chars().next().is_some_and(is_word)
}

/// Whether the character ending just before piece `at` is a word character.
fn word_before(variant: &[Piece], at: usize) -> bool {
    // Step back over UTF-8 continuation bytes to the start of the previous character.
    let mut start = at;
    while start > 0 {
        start -= 1;
        match variant[start] {
            Piece::Byte(b) if b & 0xC0 == 0x80 && at - start < 4 => continue,
            Piece::Byte(_) => return word_at(variant, start),
            Piece::Percent | Piece::Any | Piece::One => return false,
        }
    }
    false
}

/// The three base64 forms of a value that may sit at any offset inside a longer encoded text:
/// the value is shifted by zero, one and two bytes, encoded, and the characters that depend on
/// the unknown neighbouring bytes are cut off, at the start by the shift and at the end by where
/// the value's last byte falls in its group of three (as pySigma does).
fn base64_offsets(variant: &[Piece], out: &mut Vec<Vec<Piece>>) -> Result<(), String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    let data = bytes_only(variant)
        .ok_or("`base64offset` cannot encode wildcards; put `contains` after it")?;
    for shift in 0..3 {
        let mut shifted = vec![b' '; shift];
        shifted.extend_from_slice(&data);
        let encoded = STANDARD.encode(&shifted);
        let end = encoded.len() - END_CUT[(data.len() + shift) % 3];
        let part = encoded.get(START[shift]..end).unwrap_or_default();
        if part.is_empty() {
            return Err("the value is too short for `base64offset`".into());
        }
        out.push(part.bytes().map(Piece::Byte).collect());
    }
    Ok(())
}

fn utf16(variant: &[Piece], form: Utf16) -> Result<Vec<Piece>, String> {
    let mut out = Vec::with_capacity(variant.len() * 2 + 2);
    if form == Utf16::LeWithBom {
        out.extend([Piece::Byte(0xFF), Piece::Byte(0xFE)]);
    }
    for run in text_runs(variant, "a utf16 modifier needs text, not an encoded value")? {
        match run {
            TextRun::Text(text) => {
                for unit in text.encode_utf16() {
                    let bytes = match form {
                        Utf16::Be => unit.to_be_bytes(),
                        Utf16::Le | Utf16::LeWithBom => unit.to_le_bytes(),
                    };
                    out.extend(bytes.map(Piece::Byte));
                }
            }
            TextRun::Wildcard(wildcard) => out.push(wildcard),
        }
    }
    Ok(out)
}

/// Replaces each `%name%` with each configured value of the placeholder (every combination when
/// there are several).
fn expand(
    variant: &[Piece],
    options: &LoadOptions,
    out: &mut Vec<Vec<Piece>>,
) -> Result<(), String> {
    let mut prefixes: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut i = 0;
    while i < variant.len() {
        match variant[i] {
            Piece::Percent => {
                prefixes.iter_mut().for_each(|p| p.push(Piece::Byte(b'%')));
                i += 1;
            }
            Piece::Byte(b'%') => {
                let close = variant[i + 1..]
                    .iter()
                    .take_while(|p| matches!(p, Piece::Byte(_)))
                    .position(|p| *p == Piece::Byte(b'%'))
                    .filter(|&len| len > 0);
                let Some(len) = close else {
                    prefixes.iter_mut().for_each(|p| p.push(Piece::Byte(b'%')));
                    i += 1;
                    continue;
                };
                let name: Vec<u8> = bytes_only(&variant[i + 1..i + 1 + len]).unwrap_or_default();
                let name = String::from_utf8_lossy(&name);
                let values = options.placeholders.get(name.as_ref()).ok_or_else(|| {
                    format!("unknown placeholder `%{name}%`: no values are configured for it")
                })?;
                if values.is_empty() {
                    return Err(format!("placeholder `%{name}%` has no values configured"));
                }
                if prefixes.len() * values.len() > MAX_VARIANTS {
                    return Err(format!(
                        "the value expands into more than {MAX_VARIANTS} variants"
                    ));
                }
                let expansions: Vec<Vec<Piece>> =
                    values.iter().map(|v| pieces(&sigma_tokens(v))).collect();
                prefixes = prefixes
                    .iter()
                    .flat_map(|prefix| {
                        expansions.iter().map(move |e| {
                            let mut joined = prefix.clone();
                            joined.extend_from_slice(e);
                            joined
                        })
                    })
                    .collect();
                i += len + 2;
            }
            piece => {
                prefixes.iter_mut().for_each(|p| p.push(piece));
                i += 1;
            }
        }
    }
    out.extend(prefixes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(variant: &[Piece]) -> String {
        variant
            .iter()
            .map(|p| match p {
                Piece::Byte(b) => char::from(*b),
                Piece::Percent => '%',
                Piece::Any => '*',
                Piece::One => '?',
            })
            .collect()
    }

    fn windash_all(value: &str) -> Vec<String> {
        let mut out = Vec::new();
        windash(&pieces(&sigma_tokens(value)), &mut out).unwrap();
        out.iter()
            .map(|v| String::from_utf8(bytes_only(v).unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn windash_expands_option_dashes_only() {
        assert_eq!(
            windash_all(" -enc "),
            [
                " -enc ",
                " /enc ",
                " \u{2013}enc ",
                " \u{2014}enc ",
                " \u{2015}enc "
            ]
        );
        assert_eq!(windash_all("/c").len(), 5);
        assert_eq!(windash_all("a-b"), ["a-b"]);
        assert_eq!(windash_all("- x"), ["- x"]);
        assert_eq!(windash_all("--x").len(), 5);
        assert_eq!(windash_all("-a -b").len(), 25);
        assert_eq!(windash_all("é-x"), ["é-x"]);
    }

    #[test]
    fn base64offset_matches_pysigma() {
        let offsets = |value: &str| -> Vec<String> {
            let mut out = Vec::new();
            base64_offsets(&pieces(&sigma_tokens(value)), &mut out).unwrap();
            out.iter().map(|v| text_of(v)).collect()
        };
        // base64("/c") = "L2M=", base64(" /c") = "IC9j", base64("  /c") = "ICAvYw=="
        assert_eq!(offsets("/c"), ["L2", "9j", "vY"]);
        assert_eq!(offsets("abc"), ["YWJj", "FiY", "hYm"]);
        assert_eq!(offsets("abcd"), ["YWJjZ", "FiY2", "hYmNk"]);
        assert!(base64_offsets(&pieces(&sigma_tokens("x")), &mut Vec::new()).is_err());
        assert!(base64_offsets(&[Piece::Any], &mut Vec::new()).is_err());
    }

    #[test]
    fn utf16_forms() {
        let v = pieces(&sigma_tokens("cm"));
        assert_eq!(
            bytes_only(&utf16(&v, Utf16::Le).unwrap()).unwrap(),
            b"c\0m\0"
        );
        assert_eq!(
            bytes_only(&utf16(&v, Utf16::Be).unwrap()).unwrap(),
            b"\0c\0m"
        );
        assert_eq!(
            bytes_only(&utf16(&v, Utf16::LeWithBom).unwrap()).unwrap(),
            b"\xff\xfec\0m\0"
        );
    }

    #[test]
    fn expand_substitutes_and_escapes() {
        let options = LoadOptions {
            placeholders: [("name".to_owned(), vec!["a".to_owned(), "b*".to_owned()])].into(),
            ..LoadOptions::default()
        };
        let mut out = Vec::new();
        expand(&expand_pieces(r"\%plain%name%"), &options, &mut out).unwrap();
        let got: Vec<String> = out.iter().map(|v| text_of(v)).collect();
        assert_eq!(got, ["%plaina", "%plainb*"]);
        let err = expand(&pieces(&sigma_tokens("%nope%")), &options, &mut Vec::new());
        assert!(err.unwrap_err().contains("`%nope%`"));
        let mut out = Vec::new();
        expand(&pieces(&sigma_tokens("100% sure")), &options, &mut out).unwrap();
        assert_eq!(text_of(&out[0]), "100% sure");
    }
}
