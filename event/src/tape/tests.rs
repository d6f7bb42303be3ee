//! The tape's reader against the tape `serde_json` builds: the same verdict and the same tape
//! on every text, hand-picked and generated.

use super::{serde_reference, Node, Tape, TapeBuffers, MAX_KEPT_SLOTS};

#[test]
fn an_outsized_tape_gives_back_no_vectors_and_a_common_one_its_own() {
    let common = r#"{"a":[1,2,3],"b":"x\"y"}"#;
    let buffers = Tape::parse(common).unwrap().into_buffers();
    assert!(buffers.slots.capacity() > 0 && buffers.unescaped.capacity() > 0);
    let outsized = format!(r#"{{"a":[{}0]}}"#, "0,".repeat(MAX_KEPT_SLOTS));
    let tape = Tape::parse_into(&outsized, buffers).unwrap();
    assert!(tape.slots.len() > MAX_KEPT_SLOTS);
    let TapeBuffers {
        slots,
        members,
        unescaped,
    } = tape.into_buffers();
    assert_eq!(
        (slots.capacity(), members.capacity(), unescaped.capacity()),
        (0, 0, 0)
    );
}

/// Both readings of `text`, which must agree: beyond the tapes' equality, which takes a
/// borrowed string for an owned one and `-0.0` for `0.0`, in what is borrowed and in each
/// number's bits.
fn agree(text: &str) {
    let ours = Tape::parse(text);
    let reference = serde_reference::parse(text);
    assert_eq!(ours, reference, "the readings of {text:?} differ");
    let shape = |tape: &Tape| -> Vec<String> {
        tape.slots
            .iter()
            .map(|slot| {
                let key = (slot.key.is_in_text(), tape.text(slot.key));
                match &slot.node {
                    Node::String(s) => format!("{key:?} {:?}", (s.is_in_text(), tape.text(*s))),
                    Node::Number(n) => format!("{key:?} {n:?} {:?}", n.as_f64().map(f64::to_bits)),
                    _ => format!("{key:?}"),
                }
            })
            .collect()
    };
    if let (Some(ours), Some(reference)) = (ours, reference) {
        assert_eq!(
            shape(&ours),
            shape(&reference),
            "the readings of {text:?} differ"
        );
    }
}

/// The reader takes sixteen bytes at a time, and a string's first sixteen on a path of their
/// own: strings of every length to 40, with an escape, a control character or a quote at each
/// place (a quote ends it early, leaving the rest to refuse), at every offset from the start of
/// the text.
#[test]
fn strings_read_alike_wherever_their_specials_and_ends_fall() {
    for pad in 0..16 {
        for len in 0..40 {
            let plain: String = (0..len)
                .map(|i| ['a', '~', ' ', 'é', '\u{7f}'][i % 5])
                .collect();
            agree(&format!(r#"{{"{}":"{plain}","k":1}}"#, "p".repeat(pad)));
            for at in 0..len {
                let mut chars: Vec<char> = plain.chars().collect();
                for special in ["\\\"", "\\n", "\\u00e9", "\u{1f}", "\""] {
                    chars[at] = '#';
                    let text: String = chars.iter().collect();
                    let text = text.replacen('#', special, 1);
                    agree(&format!(r#"{{"{}":"{text}","k":1}}"#, "p".repeat(pad)));
                    agree(&format!(r#"{{"{text}":{pad}}}"#));
                }
            }
        }
    }
}

/// Whether an object's keys hold a dot is read as `serde_json`'s tape has it (where each key
/// is looked at whole), for a dot at every place in keys of every length the reader looks at
/// in one or two sixteen-byte reads or past them, written as it is or escaped, and keys
/// without one beside them.
#[test]
fn dots_in_keys_are_seen_wherever_they_fall() {
    for len in 1..40 {
        let plain = "k".repeat(len);
        agree(&format!(r#"{{"{plain}":1,"b":{{"{plain}":2}}}}"#));
        for at in 0..len {
            for dot in [".", "\\u002e"] {
                let key = format!("{}{dot}{}", &plain[..at], &plain[at + 1..]);
                for text in [
                    format!(r#"{{"{key}":1}}"#),
                    format!(r#"{{"a":1,"{key}":{{"{plain}":[]}}}}"#),
                    format!(r#"{{"a":{{"{key}":0}},"{plain}":{{}}}}"#),
                ] {
                    agree(&text);
                    let tape = Tape::parse(&text).unwrap();
                    let dotted: Vec<bool> = (0..tape.slots.len() as u32)
                        .filter(|&at| matches!(tape.slots[at as usize].node, Node::Object { .. }))
                        .map(|at| tape.keys_hold_dots(at))
                        .collect();
                    assert!(dotted.contains(&true), "{text}");
                }
            }
        }
    }
}

#[test]
fn hand_picked_texts_read_as_serde_json_reads_them() {
    let texts = [
        r#"{}"#,
        " \t\r\n{ } \n",
        r#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":true,"f":false}}"#,
        r#"{"a":"x","a":"y"}"#,
        r#"{"":""}"#,
        // Numbers: the plain integers read here and the rest handed over.
        r#"{"n":[0,-0,1,-1,9999999999999999999,18446744073709551615,18446744073709551616]}"#,
        r#"{"n":[-999999999999999999,-9223372036854775808,-9223372036854775809]}"#,
        r#"{"n":[1.5,-0.0,1e5,1E+5,1e-5,2.5e-400,1e400,-1e400,123456789012345678901234567890]}"#,
        r#"{"n":01}"#,
        r#"{"n":-01}"#,
        r#"{"n":1.}"#,
        r#"{"n":.5}"#,
        r#"{"n":+1}"#,
        r#"{"n":-}"#,
        r#"{"n":1e}"#,
        r#"{"n":1e+}"#,
        r#"{"n":1x}"#,
        r#"{"n":0x10}"#,
        // Strings and their escapes.
        r#"{"s":"\"\\\/\b\f\n\r\t"}"#,
        r#"{"s":"\u0041\u00e9\u20AC\ud83d\ude00"}"#,
        r#"{"s":"\ud800"}"#,
        r#"{"s":"\udc00"}"#,
        r#"{"s":"\ud800\u0041"}"#,
        r#"{"s":"\ud800\\"}"#,
        r#"{"s":"\u00"}"#,
        r#"{"s":"\u00g0"}"#,
        r#"{"s":"\x"}"#,
        r#"{"s":"\"#,
        "{\"s\":\"tab\there\"}",
        "{\"s\":\"nul\u{0}\"}",
        "{\"s\":\"del\u{7f} and \u{80}\u{ffff}\"}",
        r#"{"k\"ey":1,"k\u0065y":2}"#,
        // Structure.
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        r#"{"a":1}x"#,
        r#"{"a":1}{"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":truex}"#,
        r#"[1]"#,
        r#""s""#,
        "",
        "\u{feff}{}",
        "\u{a0}{}",
        "{\u{c}}",
        "{\"a\":1",
        "{\"a\":[",
    ];
    for text in texts {
        agree(text);
    }
}

#[test]
fn nesting_is_refused_where_serde_json_refuses_it() {
    for depth in [126, 127, 128, 129] {
        let arrays = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        agree(&arrays);
        let objects = format!(
            "{}{}",
            "{\"a\":".repeat(depth),
            "1}".to_owned() + &"}".repeat(depth - 1)
        );
        agree(&objects);
    }
    // The deepest text serde_json takes is taken here too, not left to the tolerant parser.
    let deepest = format!("{{\"a\":{}{}}}", "[".repeat(126), "]".repeat(126));
    assert!(Tape::parse(&deepest).is_some());
}

#[test]
fn large_objects_are_indexed_alike() {
    let members: Vec<String> = (0..70).map(|i| format!("\"k{}\":{i}", i % 40)).collect();
    agree(&format!("{{{}}}", members.join(",")));
}

/// A small generator (xorshift), so the texts are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.below(choices.len())]
    }
}

fn string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.below(12) {
        let part = rng.pick(&[
            "a",
            "Z",
            "9",
            " ",
            "é",
            "€",
            "😀",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u0041",
            "\\u00E9",
            "\\ud83d\\ude00",
            "\\uD83D\\uDE00",
            "\\ud800",
            "\\udc00",
            "\\u12",
            "\\q",
            "\t",
            "\u{1}",
            "\u{7f}",
            "eventName",
            ".",
            "\\u002e",
        ]);
        out.push_str(part);
    }
    out.push('"');
}

fn number(rng: &mut Rng, out: &mut String) {
    let part = rng.pick(&[
        "0",
        "-0",
        "7",
        "-7",
        "10",
        "01",
        "-01",
        "1.5",
        "-2.25",
        "1e3",
        "1E-3",
        "4e+2",
        "1.",
        ".5",
        "1e",
        "-",
        "+1",
        "1e400",
        "-1e400",
        "2.5e-400",
        "1.0000000000000002",
    ]);
    out.push_str(part);
    if rng.below(3) == 0 {
        // Long integers, around where u64 and i64 end.
        for _ in 0..rng.below(22) {
            out.push(char::from(b'0' + rng.below(10) as u8));
        }
    }
}

fn whitespace(rng: &mut Rng, out: &mut String) {
    if rng.below(4) == 0 {
        out.push_str(rng.pick(&[" ", "\n", "\r\n\t ", "\u{c}", "\u{a0}"]));
    }
}

fn value(rng: &mut Rng, out: &mut String, depth: usize) {
    whitespace(rng, out);
    match rng.below(if depth > 5 { 6 } else { 9 }) {
        0 | 1 => string(rng, out),
        2 | 3 => number(rng, out),
        4 => out.push_str(rng.pick(&["true", "false", "null", "nul", "True"])),
        5 => out.push_str(rng.pick(&["\"eventName\"", "\"\"", "0"])),
        6 | 7 => object(rng, out, depth + 1),
        _ => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                value(rng, out, depth + 1);
            }
            out.push(']');
        }
    }
    whitespace(rng, out);
}

fn object(rng: &mut Rng, out: &mut String, depth: usize) {
    out.push('{');
    // Now and then more members than a scanned object holds, with repeated keys.
    let members = if rng.below(8) == 0 { 40 } else { rng.below(6) };
    for i in 0..members {
        if i > 0 {
            out.push(',');
        }
        whitespace(rng, out);
        if rng.below(3) == 0 {
            out.push_str(rng.pick(&["\"a\"", "\"b\"", "\"eventName\""]));
        } else {
            string(rng, out);
        }
        whitespace(rng, out);
        out.push(':');
        value(rng, out, depth);
    }
    out.push('}');
}

/// `text` damaged once: cut short, or a byte dropped or added, on a character boundary.
fn damage(rng: &mut Rng, text: &str) -> String {
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    let at = boundaries[rng.below(boundaries.len())];
    match rng.below(3) {
        0 => text[..at].to_owned(),
        1 => {
            let next = boundaries.iter().find(|&&b| b > at).copied().unwrap_or(at);
            format!("{}{}", &text[..at], &text[next..])
        }
        _ => {
            let extra = rng.pick(&["\"", "\\", ",", "}", "]", "{", "[", ":", "0", "-", "e", "."]);
            format!("{}{extra}{}", &text[..at], &text[at..])
        }
    }
}

#[test]
fn generated_texts_read_as_serde_json_reads_them() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        whitespace(&mut rng, &mut text);
        object(&mut rng, &mut text, 1);
        whitespace(&mut rng, &mut text);
        for candidate in [text.clone(), damage(&mut rng, &text)] {
            agree(&candidate);
            match Tape::parse(&candidate) {
                Some(tape) => {
                    lookups_find_the_last_of_each_key(&tape);
                    accepted += 1;
                }
                None => refused += 1,
            }
        }
    }
    // Both verdicts were exercised, each many times.
    assert!(
        accepted > 2_000 && refused > 2_000,
        "{accepted} accepted, {refused} refused"
    );
}

/// Every key of every object in `tape` is found at its last member, by the member list and
/// the key filter, as a walk over the members finds it; and keys no member has are not found.
fn lookups_find_the_last_of_each_key(tape: &Tape) {
    for at in 0..tape.slots.len() as u32 {
        if !matches!(tape.slots[at as usize].node, Node::Object { .. }) {
            continue;
        }
        let children: Vec<u32> = tape.children(at).collect();
        for &child in &children {
            let key = tape.key(child);
            let last = children
                .iter()
                .rev()
                .find(|&&c| tape.key(c) == key)
                .copied();
            assert_eq!(tape.get(at, key), last, "{key:?}");
            for absent in [format!("{key}x"), format!("x{key}"), key.to_uppercase()] {
                let expected = children
                    .iter()
                    .rev()
                    .find(|&&c| tape.key(c) == absent)
                    .copied();
                assert_eq!(tape.get(at, &absent), expected, "{absent:?}");
            }
        }
        let listed: Vec<u32> = tape.members(at).collect();
        let once: Vec<u32> = children
            .iter()
            .copied()
            .filter(|&c| tape.get(at, tape.key(c)) == Some(c))
            .collect();
        assert_eq!(listed, once);
    }
}

/// A print tells apart keys of one length that differ in one byte, wherever that byte is in a
/// key of up to eight bytes, and in the first or last eight of a longer one: the bytes a
/// lookup relies on it to compare.
#[test]
fn prints_tell_apart_keys_that_differ_in_one_byte_they_read() {
    for len in 0..=20usize {
        let key: Vec<u8> = (0..len).map(|at| b'a' + (at % 26) as u8).collect();
        let print = super::fingerprint(&key);
        for at in (0..len).filter(|&at| at < 8 || at >= len - 8) {
            let mut other = key.clone();
            other[at] = b'Z';
            assert_ne!(
                super::fingerprint(&other),
                print,
                "a key of {len} bytes changed at byte {at}"
            );
        }
        // Length alone tells apart keys whose bytes read alike.
        assert_ne!(
            super::fingerprint(&vec![0; len]),
            super::fingerprint(&vec![0; len + 1])
        );
    }
}

/// The inline comparison of keys agrees with comparing their bytes: keys of every length from
/// none to past the compared words, changed in any one byte, or one byte longer.
#[test]
fn keys_compare_as_their_bytes_do() {
    for len in 0..=40usize {
        let key: Vec<u8> = (0..len).map(|at| b'a' + (at % 26) as u8).collect();
        assert!(super::same_bytes(&key, &key.clone()), "{len} bytes");
        for at in 0..len {
            let mut other = key.clone();
            other[at] = b'Z';
            assert!(!super::same_bytes(&key, &other), "{len} bytes, byte {at}");
        }
        let mut longer = key.clone();
        longer.push(b'a');
        assert!(
            !super::same_bytes(&key, &longer),
            "{len} bytes and one more"
        );
    }
}
