//! How record text is cut into words, for indexing and for queries alike.
//!
//! Words are runs of letters and digits, lowercased, as with tantivy's `SimpleTokenizer`
//! followed by `LowerCaser`, with two differences that matter for security logs:
//!
//! - **A UUID is one word.** Request, event and audit ids are UUIDs, and most events carry one
//!   or two. Cut at their hyphens, each gave five words, three of them as good as unique, and
//!   those made up nine in ten of the distinct words in a partition: every one costs a hash
//!   table entry and a term dictionary entry. Kept whole, a UUID is one exact term, which is
//!   also what an analyst searches for; a part of one is still found with a wildcard
//!   (`eventID:648f0f94*`).
//! - **With [`WordTokenizer::whole_values`], so is an RFC 3339 time or an IPv4 address.**
//!   Cut apart, `2026-11-28T09:00:02.114203Z` gave six words and `10.0.0.1` four, nearly all
//!   of them words every event has, each one more hash table update when indexing; a
//!   Kubernetes audit event carries two such times. Whole, each is one term, and a search for
//!   one address no longer matches its numbers elsewhere; part of one is found with a wildcard
//!   (`sourceIPAddress:10.0.*`, `eventTime:2026-11-28t09*`).
//! - **Words of [`MAX_WORD_BYTES`] or more are dropped**, as tantivy's `RemoveLongFilter`
//!   would (tantivy's default keeps 40, too few for SHA-256 hashes); they still take a
//!   position, so phrases do not join the words around them.
//!
//! Cutting, length check and lowercasing happen in one pass, with ASCII handled a byte at a
//! time: this runs for every word of every event.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Words this long or longer are not indexed.
pub(crate) const MAX_WORD_BYTES: usize = 256;

/// The length of `8-4-4-4-12` hex digits.
const UUID_LEN: usize = 36;

#[derive(Clone, Default)]
pub(crate) struct WordTokenizer {
    token: Token,
    whole_values: bool,
}

impl WordTokenizer {
    /// A tokenizer that also keeps RFC 3339 times and IPv4 addresses whole.
    pub(crate) fn whole_values() -> WordTokenizer {
        WordTokenizer {
            token: Token::default(),
            whole_values: true,
        }
    }
}

pub(crate) struct WordStream<'a> {
    text: &'a str,
    whole_values: bool,
    /// Where the search for the next word starts.
    cursor: usize,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        WordStream {
            text,
            whole_values: self.whole_values,
            cursor: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        while let Some((from, to)) = self.next_word() {
            self.token.position = self.token.position.wrapping_add(1);
            if to - from >= MAX_WORD_BYTES {
                continue;
            }
            let word = &self.text[from..to];
            self.token.offset_from = from;
            self.token.offset_to = to;
            self.token.text.clear();
            if word.is_ascii() {
                self.token.text.push_str(word);
                self.token.text.make_ascii_lowercase();
            } else {
                // As tantivy's `LowerCaser`: each character's full lowercase mapping, without
                // the final-sigma rule.
                for c in word.chars() {
                    self.token.text.extend(c.to_lowercase());
                }
            }
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

impl WordStream<'_> {
    /// The byte range of the next word, if any.
    fn next_word(&mut self) -> Option<(usize, usize)> {
        let start = self.find(self.cursor, true)?;
        let mut end = self.find(start, false).unwrap_or(self.text.len());
        // Each whole value's first word has a fixed length and is followed by a fixed
        // character; only then is the rest worth checking.
        let first = (end - start, self.text.as_bytes().get(end));
        let whole = match first {
            (8, Some(b'-')) => uuid_end(self.text, start),
            (4, Some(b'-')) if self.whole_values => time_end(self.text, start),
            (1..=3, Some(b'.')) if self.whole_values => ipv4_end(self.text, start),
            _ => None,
        };
        if let Some(whole) = whole {
            end = whole;
        }
        self.cursor = end;
        Some((start, end))
    }

    /// The offset of the first character at or after `from` that is (`word` true) or is
    /// not (`word` false) a letter or digit; `None` at the end of the text.
    fn find(&self, from: usize, word: bool) -> Option<usize> {
        let bytes = self.text.as_bytes();
        // Bytes of the class being passed over; ASCII is decided by one table lookup per
        // byte in a tight loop, and other characters stop it to be decoded one at a time.
        let passing = if word { SEPARATOR } else { ASCII_WORD };
        let mut at = from;
        loop {
            let found = bytes
                .get(at..)?
                .iter()
                .position(|&byte| CLASS[usize::from(byte)] != passing)?;
            at += found;
            if bytes[at] < 0x80 {
                return Some(at);
            }
            let c = self.text[at..].chars().next()?;
            if c.is_alphanumeric() == word {
                return Some(at);
            }
            at += c.len_utf8();
        }
    }
}

const SEPARATOR: u8 = 0;
const ASCII_WORD: u8 = 1;
const NOT_ASCII: u8 = 2;

/// The class of every byte: an ASCII letter or digit, other ASCII, or part of a character
/// beyond ASCII.
static CLASS: [u8; 256] = {
    let mut table = [NOT_ASCII; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = if (byte as u8).is_ascii_alphanumeric() {
            ASCII_WORD
        } else {
            SEPARATOR
        };
        byte += 1;
    }
    table
};

/// Whether `text[at..]` starts with `shape`, where `9` stands for any ASCII digit and any
/// other byte for itself.
fn shaped(text: &[u8], at: usize, shape: &[u8]) -> bool {
    text.get(at..at + shape.len()).is_some_and(|bytes| {
        bytes.iter().zip(shape).all(|(b, s)| match s {
            b'9' => b.is_ascii_digit(),
            _ => b == s,
        })
    })
}

/// `end` when no letter or digit follows it: a whole value ends where a word would.
fn ends_word(text: &str, end: usize) -> Option<usize> {
    match text[end..].chars().next() {
        Some(c) if c.is_alphanumeric() => None,
        _ => Some(end),
    }
}

/// The end of the RFC 3339 time (`2026-11-28T09:00:02`, then optional fraction digits and
/// an optional `Z` or `+hh:mm`) starting at `start`, when one does and ends a word.
fn time_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if !(shaped(bytes, start, b"9999-99-99T99:99:99")
        || shaped(bytes, start, b"9999-99-99t99:99:99"))
    {
        return None;
    }
    let mut end = start + 19;
    if bytes.get(end) == Some(&b'.') {
        let digits = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        end += 1 + digits;
    }
    match bytes.get(end) {
        Some(b'Z' | b'z') => end += 1,
        Some(b'+' | b'-') if shaped(bytes, end + 1, b"99:99") => end += 6,
        _ => {}
    }
    ends_word(text, end)
}

/// The end of the IPv4 address (four groups of one to three digits) starting at `start`,
/// when one does and ends a word. A group before or after it (`1.2.3.4.5`) makes it no
/// address.
fn ipv4_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if start >= 2 && bytes[start - 1] == b'.' && bytes[start - 2].is_ascii_digit() {
        return None;
    }
    let mut end = start;
    for group in 0..4 {
        if group > 0 {
            if bytes.get(end) != Some(&b'.') {
                return None;
            }
            end += 1;
        }
        let digits = bytes[end..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        end += digits;
    }
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    ends_word(text, end)
}

/// The end of the UUID starting at `start`, when one does and no letter or digit follows it.
fn uuid_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes().get(start..start + UUID_LEN)?;
    let uuid = bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    if !uuid {
        return None;
    }
    ends_word(text, start + UUID_LEN)
}

#[cfg(test)]
mod tests {
    use tantivy::tokenizer::{
        LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, TokenStream,
    };

    use super::*;

    /// Each token's text, position and byte offsets.
    fn tokens(stream: &mut dyn TokenStream) -> Vec<(String, usize, usize, usize)> {
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            out.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        out
    }

    fn words(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut tokenizer = WordTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        tokens(&mut stream)
    }

    fn tantivy_words(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
            .filter(LowerCaser)
            .build();
        let mut stream = analyzer.token_stream(text);
        tokens(&mut stream)
    }

    #[test]
    fn a_uuid_is_one_word() {
        let text = "GET /users/648F0F94-0271-4c20-91ac-8d2e43787313/keys failed";
        let got: Vec<String> = words(text).into_iter().map(|w| w.0).collect();
        assert_eq!(
            got,
            [
                "get",
                "users",
                "648f0f94-0271-4c20-91ac-8d2e43787313",
                "keys",
                "failed"
            ]
        );
        assert_eq!(words(text)[2].2..words(text)[2].3, 11..47);
    }

    #[test]
    fn near_uuids_are_cut_as_before() {
        for text in [
            // A letter or digit right after or before.
            "648f0f94-0271-4c20-91ac-8d2e43787313x",
            "x648f0f94-0271-4c20-91ac-8d2e43787313",
            "648f0f94-0271-4c20-91ac-8d2e43787313é",
            // Not hex, or groups of other lengths.
            "648f0f9g-0271-4c20-91ac-8d2e43787313",
            "648f0f94-02714-c20-91ac-8d2e43787313",
            "648f0f94-0271-4c20-91ac-8d2e4378731",
            "648f0f94_0271_4c20_91ac_8d2e43787313",
        ] {
            assert_eq!(words(text), tantivy_words(text), "{text}");
        }
    }

    #[test]
    fn other_text_is_cut_as_tantivy_cuts_it() {
        let long = "a".repeat(MAX_WORD_BYTES);
        let just_short = "b".repeat(MAX_WORD_BYTES - 1);
        for text in [
            "",
            "   ",
            "Hello, happy tax payer!",
            "arn:aws:iam::123456789012:user/Alice.Nguyen",
            "10.0.0.1 - - [28/Nov/2026:09:03:11 +0000] \"GET /login HTTP/1.1\" 200",
            "Größe ÉTÉ İstanbul ΣΟΦΙΑ naïve café 東京 данные",
            "trailing-dash- -leading ..dots..",
            &format!("{long} middle {just_short} end"),
            "2026-11-28T09:00:02.114203Z",
            "\u{0}\u{1f600}emoji\u{1f600}x",
        ] {
            assert_eq!(words(text), tantivy_words(text), "{text}");
        }
    }

    fn whole_value_words(text: &str) -> Vec<String> {
        let mut tokenizer = WordTokenizer::whole_values();
        let mut stream = tokenizer.token_stream(text);
        tokens(&mut stream).into_iter().map(|w| w.0).collect()
    }

    #[test]
    fn times_and_addresses_can_be_one_word() {
        let text = "At 2026-11-28T09:00:02.114203Z, 10.0.0.1 then 2026-11-28t10:00:00+01:00 \
                    (192.168.1.254). 2026-11-28T09:00:02Z 648F0F94-0271-4c20-91ac-8d2e43787313";
        assert_eq!(
            whole_value_words(text),
            [
                "at",
                "2026-11-28t09:00:02.114203z",
                "10.0.0.1",
                "then",
                "2026-11-28t10:00:00+01:00",
                "192.168.1.254",
                "2026-11-28t09:00:02z",
                "648f0f94-0271-4c20-91ac-8d2e43787313",
            ]
        );
        // Positions and offsets as for any word.
        let mut tokenizer = WordTokenizer::whole_values();
        let mut stream = tokenizer.token_stream("from 10.0.0.1 at");
        let got = tokens(&mut stream);
        assert_eq!(got[1], ("10.0.0.1".into(), 1, 5, 13));
        assert_eq!(got[2].1, 2);
    }

    #[test]
    fn near_times_and_addresses_are_cut_as_before() {
        for text in [
            // Not quite an address.
            "1.2.3",
            "10.0.0.1.5",
            "1234.1.1.1",
            "10.0.0.1x",
            "10.0.0.",
            "x10.0.0.1",
            // Not quite a time.
            "2026-11-28 09:00:02",
            "2026-11-28T09:00:0",
            "2026-11-28T09:00:02.",
            "2026-11-28T09:00:02.5x",
            "2026-11-28T09:00:02+0100",
            "20261-11-28T09:00:02Z",
        ] {
            let cut: Vec<String> = tantivy_words(text).into_iter().map(|w| w.0).collect();
            let whole = whole_value_words(text);
            // A zone without its colon is left off the time, which is still whole.
            if text.ends_with("+0100") {
                assert_eq!(whole, ["2026-11-28t09:00:02", "0100"], "{text}");
            } else {
                assert_eq!(whole, cut, "{text}");
            }
        }
        // Without `whole_values`, times and addresses are cut as tantivy cuts them.
        let text = "2026-11-28T09:00:02.114203Z 10.0.0.1";
        assert_eq!(words(text), tantivy_words(text));
    }

    /// Attacker-chosen text made of pieces of times, addresses and UUIDs, cut short and
    /// joined in any order, with a multi-byte character among them: cutting never panics,
    /// every word is the lowercased text at its offsets, and positions rise.
    #[test]
    fn any_mix_of_value_pieces_is_cut_safely() {
        const PIECES: [&str; 17] = [
            "2026-11-28T09:00:02",
            "2026-11-28",
            "T09:00:02",
            "t09:00",
            ".114203",
            ".",
            "Z",
            "+01:00",
            "-01:0",
            "10.0.0.1",
            "255.",
            "1",
            "-",
            "648f0f94-0271-4c20-91ac-8d2e43787313",
            " ",
            "é",
            ":",
        ];
        // A fixed linear congruential sequence, so a failure repeats.
        let mut state: u64 = 0x5eed;
        let mut next = |below: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % below
        };
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..next(8) {
                let piece = PIECES[next(PIECES.len())];
                // Cut at a character boundary, so that a quarter of the pieces end early.
                let cut = piece
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([piece.len()])
                    .nth(next(piece.chars().count() + 1))
                    .unwrap_or(piece.len());
                text.push_str(if next(4) > 0 { piece } else { &piece[..cut] });
            }
            let mut tokenizer = WordTokenizer::whole_values();
            let mut stream = tokenizer.token_stream(&text);
            let mut last = None;
            for (word, position, from, to) in tokens(&mut stream) {
                assert_eq!(word, text[from..to].to_lowercase(), "{text:?}");
                assert!(last.is_none_or(|last| position > last), "{text:?}");
                last = Some(position);
            }
        }
    }

    #[test]
    fn positions_count_dropped_long_words() {
        let text = format!("before {} after", "x".repeat(MAX_WORD_BYTES + 3));
        let got: Vec<(String, usize)> = words(&text).into_iter().map(|w| (w.0, w.1)).collect();
        assert_eq!(got, [("before".into(), 0), ("after".into(), 2)]);
    }
}
