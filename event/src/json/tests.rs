use serde_json::json;

use super::*;

fn tolerant(text: &str) -> Map<String, Value> {
    parse_object_tolerant(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .object
}

fn error(text: &str) -> JsonError {
    let error = parse_object(text).expect_err(text);
    // The top-level check gives the very same verdict.
    assert_eq!(check_object(text).expect_err(text), error, "{text}");
    error
}

/// `[[[...]]]` with `depth` brackets around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Holds the parser to serde_json on a text serde_json reads: the same value, from the tolerant
/// parser alone and through the fast path, and the same top level from `check_object`.
fn agrees_with_serde(text: &str) {
    let expected: Map<String, Value> =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: serde_json: {e}"));
    let parsed = parse_object_tolerant(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(parsed.object, expected, "{text}");
    assert!(!parsed.depth_limited, "{text}");
    assert_eq!(parse_object(text).unwrap(), expected, "{text}");
    // Numbers compare by kind too: 1 and 1.0 are different values to serde_json.
    assert_eq!(
        serde_json::to_string(&parsed.object).unwrap(),
        serde_json::to_string(&expected).unwrap(),
        "{text}"
    );
    let top = check_object(text).unwrap();
    assert!(!top.depth_limited);
    for (key, value) in &expected {
        let raw = top.get(key).unwrap_or_else(|| panic!("{text}: {key}"));
        assert_eq!(
            &serde_json::from_str::<Value>(raw).unwrap(),
            value,
            "{text}"
        );
    }
}

#[test]
fn agrees_with_serde_json_on_what_it_reads() {
    let cases = [
        r#"{}"#,
        r#" { } "#,
        "\t\r\n{\"a\" :\n1 }\n",
        r#"{"a":1,"b":-2,"c":1.5,"d":-0,"e":0.0,"f":1e5,"g":1E-5,"h":-1.25e+3}"#,
        r#"{"big":18446744073709551615,"neg":-9223372036854775808,"over":18446744073709551616}"#,
        r#"{"huge":123456789012345678901234567890,"tiny":1e-400,"negtiny":-1e-400}"#,
        r#"{"max":1.7976931348623157e308,"min":5e-324,"pi":3.141592653589793238462643383279}"#,
        r#"{"s":"plain","e":"\"\\\/\b\f\n\r\t","u":"\u00e9\u4e2d\uFFFF\u0000"}"#,
        r#"{"pair":"\ud83d\ude00","upper":"\uD83D\uDE00","raw":"😀 é 中"}"#,
        r#"{"t":true,"f":false,"n":null,"a":[],"o":{},"x":[1,[2,[3,{"y":[]}]]]}"#,
        r#"{"a":1,"b":true,"a":2}"#,
        r#"{"a":{"x":1},"a":{"y":2}}"#,
        r#"{"":"empty key","k\u0041y":"escaped key","k\"":1}"#,
    ];
    for text in cases {
        agrees_with_serde(text);
    }
}

#[test]
fn agrees_with_serde_json_up_to_its_depth_limit() {
    // serde_json reads exactly MAX_DEPTH nested containers: the limits are one.
    let deepest = format!("{{\"a\":{}}}", nested(MAX_DEPTH - 1, "\"leaf\""));
    agrees_with_serde(&deepest);
    let deeper = format!("{{\"a\":{}}}", nested(MAX_DEPTH, "\"leaf\""));
    assert!(serde_json::from_str::<Map<String, Value>>(&deeper).is_err());
    // One container more is where the limit starts, for the parser and the top-level check.
    let parsed = parse_object_reporting(&deeper).unwrap();
    assert!(parsed.depth_limited);
    assert!(check_object(&deeper).unwrap().depth_limited);
    let mut innermost = &parsed.object["a"];
    while let Some([item]) = innermost.as_array().map(Vec::as_slice) {
        innermost = item;
    }
    assert_eq!(innermost, &Value::String("[\"leaf\"]".into()));
    agrees_with_serde(&format!("{{\"a\":{}}}", nested(10, "1")));
}

#[test]
fn a_repeated_key_keeps_its_last_value() {
    let text = r#"{"user":"alice","n":1,"user":"mallory"}"#;
    assert_eq!(tolerant(text)["user"], "mallory");
    assert_eq!(check_object(text).unwrap().get("user"), Some("\"mallory\""));
    // Also when the tolerant path is the one that runs.
    let text = r#"{"user":"alice","pad":1e400,"user":"mallory"}"#;
    assert!(serde_json::from_str::<Map<String, Value>>(text).is_err());
    assert_eq!(parse_object(text).unwrap()["user"], "mallory");
}

#[test]
fn numbers_beyond_f64_keep_their_text() {
    for text in ["1e400", "-1e400", "1.5E+999", "-0.1e310"] {
        let object = parse_object(&format!(r#"{{"pad":{text},"after":1}}"#)).unwrap();
        assert_eq!(object["pad"], Value::String(text.into()), "{text}");
        assert_eq!(object["after"], 1);
    }
    // What serde_json reads as a number stays that number.
    let object = parse_object(
        r#"{"tiny":1e-400,"neg":-1e-400,"wide":123456789012345678901234567890,"pad":1e400}"#,
    )
    .unwrap();
    assert_eq!(object["tiny"], json!(0.0));
    assert_eq!(object["neg"].as_f64(), Some(0.0));
    assert_eq!(object["wide"], json!(1.2345678901234568e29));
}

#[test]
fn lone_surrogates_become_the_replacement_character() {
    let object = parse_object(
        r#"{"high":"ua\ud800","low":"\udc00x","two":"\ud800\ud800","then":"\ud800\n","pair":"\ud800\ud800\udc00","upper":"\uDBFF"}"#,
    )
    .unwrap();
    assert_eq!(object["high"], "ua\u{fffd}");
    assert_eq!(object["low"], "\u{fffd}x");
    assert_eq!(object["two"], "\u{fffd}\u{fffd}");
    assert_eq!(object["then"], "\u{fffd}\n");
    assert_eq!(object["pair"], "\u{fffd}\u{10000}");
    assert_eq!(object["upper"], "\u{fffd}");
    // In keys too, and the top level reads them the same way.
    let text = r#"{"k\ud800":1}"#;
    assert_eq!(parse_object(text).unwrap()["k\u{fffd}"], 1);
    assert_eq!(check_object(text).unwrap().get("k\u{fffd}"), Some("1"));
}

#[test]
fn nesting_below_the_limit_is_kept_as_its_text() {
    for depth in [MAX_DEPTH, MAX_DEPTH + 1, 1000, 100_000] {
        let inner = nested(depth, r#"{"needle":"x"}"#);
        let text = format!(r#"{{"marker":"m","deep":{inner},"after":[1]}}"#);
        let parsed = parse_object_reporting(&text).unwrap();
        assert!(parsed.depth_limited, "{depth}");
        assert!(check_object(&text).unwrap().depth_limited, "{depth}");
        assert_eq!(parsed.object["marker"], "m");
        assert_eq!(parsed.object["after"], json!([1]));
        // Walk down to the first container kept as text: it is exactly MAX_DEPTH deep.
        let mut value = &parsed.object["deep"];
        let mut depth_seen = 2;
        while let Value::Array(items) = value {
            assert_eq!(items.len(), 1);
            value = &items[0];
            depth_seen += 1;
        }
        assert_eq!(depth_seen, MAX_DEPTH + 1);
        let Value::String(raw) = value else {
            panic!("{value}")
        };
        assert!(raw.starts_with('[') || raw.starts_with('{'));
        assert!(raw.contains(r#""needle":"x""#));
        assert!(text.contains(raw.as_str()));
    }
    // Objects nest the same way.
    let mut text = String::from(r#""leaf""#);
    for _ in 0..300 {
        text = format!(r#"{{"k":{text}}}"#);
    }
    let parsed = parse_object_reporting(&text).unwrap();
    assert!(parsed.depth_limited);
}

#[test]
fn shallow_documents_are_not_depth_limited() {
    let text = format!(r#"{{"pad":1e400,"a":{}}}"#, nested(10, "1"));
    assert!(!parse_object_reporting(&text).unwrap().depth_limited);
    assert!(!check_object(&text).unwrap().depth_limited);
}

#[test]
fn a_megabyte_of_brackets_neither_overflows_nor_is_accepted_unclosed() {
    let open = format!(r#"{{"a":{}"#, "[".repeat(1 << 20));
    let err = error(&open);
    assert_eq!(err.kind, JsonErrorKind::Eof);
    assert_eq!(err.position, open.len());
    let closed = format!("{open}{}}}", "]".repeat(1 << 20));
    let parsed = parse_object(&closed).unwrap();
    assert_eq!(check_object(&closed).unwrap().members.len(), 1);
    // Dropping what was built is bounded too.
    drop(parsed);
    // A top level that is not an object is still checked without recursion.
    let array = "[".repeat(1 << 20);
    assert_eq!(error(&array).kind, JsonErrorKind::Eof);
}

#[test]
fn syntax_errors_are_errors_with_their_position() {
    let cases: &[(&str, usize, JsonErrorKind)] = &[
        ("", 0, JsonErrorKind::Eof),
        ("   ", 3, JsonErrorKind::Eof),
        ("{", 1, JsonErrorKind::Eof),
        (r#"{"a":}"#, 5, JsonErrorKind::ExpectedValue),
        (r#"{"a" 1}"#, 5, JsonErrorKind::ExpectedColon),
        (r#"{a:1}"#, 1, JsonErrorKind::ExpectedKey),
        (r#"{"a":1,}"#, 7, JsonErrorKind::ExpectedKey),
        (r#"{"a":[1,]}"#, 8, JsonErrorKind::ExpectedValue),
        (
            r#"{"a":1 "b":2}"#,
            7,
            JsonErrorKind::ExpectedObjectCommaOrEnd,
        ),
        (r#"{"a":[1 2]}"#, 8, JsonErrorKind::ExpectedArrayCommaOrEnd),
        (r#"{"a":[1}"#, 7, JsonErrorKind::ExpectedArrayCommaOrEnd),
        (r#"{"a":01}"#, 6, JsonErrorKind::InvalidNumber),
        (r#"{"a":-}"#, 6, JsonErrorKind::InvalidNumber),
        (r#"{"a":1.}"#, 7, JsonErrorKind::InvalidNumber),
        (r#"{"a":1e}"#, 7, JsonErrorKind::InvalidNumber),
        (r#"{"a":+1}"#, 5, JsonErrorKind::ExpectedValue),
        (r#"{"a":tru}"#, 8, JsonErrorKind::InvalidLiteral),
        (r#"{"a":nul"#, 8, JsonErrorKind::Eof),
        (r#"{"a":"\x"}"#, 7, JsonErrorKind::InvalidEscape),
        (r#"{"a":"\u12G4"}"#, 10, JsonErrorKind::InvalidEscape),
        (r#"{"a":"\ud800\u12G4"}"#, 16, JsonErrorKind::InvalidEscape),
        (r#"{"a":"\u12"#, 10, JsonErrorKind::Eof),
        ("{\"a\":\"tab\there\"}", 9, JsonErrorKind::ControlCharacter),
        (r#"{"a":"open}"#, 11, JsonErrorKind::Eof),
        (r#"{"a":1}x"#, 7, JsonErrorKind::TrailingCharacters),
        (r#"{"a":1}{}"#, 7, JsonErrorKind::TrailingCharacters),
        (r#"{"a":[[[{"b":}]]]}"#, 13, JsonErrorKind::ExpectedValue),
        ("\u{feff}{}", 0, JsonErrorKind::ByteOrderMark),
        ("\u{a0}{}", 0, JsonErrorKind::ExpectedValue),
        ("{}\u{c}", 2, JsonErrorKind::TrailingCharacters),
        ("[1]", 0, JsonErrorKind::NotAnObject("an array")),
        ("\"s\"", 0, JsonErrorKind::NotAnObject("a string")),
        (" 42 ", 0, JsonErrorKind::NotAnObject("a scalar")),
        ("[1,", 3, JsonErrorKind::Eof),
    ];
    for (text, position, kind) in cases {
        let err = error(text);
        assert_eq!(
            (err.position, &err.kind),
            (*position, kind),
            "{text}: {err}"
        );
        // serde_json refuses them too: the tolerant parser only adds what it must.
        assert!(
            serde_json::from_str::<Map<String, Value>>(text).is_err(),
            "{text}"
        );
    }
    // Deep inside a subtree kept as text, syntax still counts.
    let text = format!(r#"{{"a":{}}}"#, nested(200, "01"));
    assert_eq!(error(&text).kind, JsonErrorKind::InvalidNumber);
    let text = format!(r#"{{"a":{}}}"#, nested(200, "\"\\ud800\u{1}\""));
    assert_eq!(error(&text).kind, JsonErrorKind::ControlCharacter);
}

#[test]
fn the_error_says_where() {
    let err = parse_object(r#"{"a":tru}"#).unwrap_err();
    assert_eq!(err.to_string(), "invalid literal at byte 8");
}

/// serde_json's own `Value` reader takes an object whose key is its private raw-value token for
/// the JSON its string holds. A record is read as written: such a key is a key like any other,
/// for the index, the pages and detection alike, however the key is spelt.
#[test]
fn a_key_named_like_serde_jsons_raw_value_token_is_read_as_written() {
    for key in [
        "$serde_json::private::RawValue",
        "\\u0024serde_json::private::RawValue",
    ] {
        let text = format!(r#"{{"userIdentity":{{"{key}":"{{\"type\":\"Root\"}}"}},"n":1}}"#);
        let expected = json!({
            "userIdentity": {"$serde_json::private::RawValue": "{\"type\":\"Root\"}"},
            "n": 1,
        });
        assert_eq!(
            Value::Object(parse_object(&text).unwrap()),
            expected,
            "{text}"
        );
        assert_eq!(Value::Object(tolerant(&text)), expected, "{text}");
        let document = crate::Document::parse(&text).unwrap();
        assert_eq!(Value::Object(document.to_map()), expected, "{text}");
    }
}

/// The word-at-a-time scan stops where a byte-at-a-time one does, wherever the stopping byte
/// sits in a word, after any bytes (multi-byte characters and DEL included).
#[test]
fn a_plain_run_ends_at_the_first_quote_backslash_or_control_character() {
    // `\xc3\xa2` and `\xdc\x80` hold the bytes that XOR with a quote or a backslash to 0x80.
    let plain: &[u8] =
        b"abcxyz 0129~\x7f\x20\x21\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xc3\xa2\xdc\x80";
    for stop in [b'"', b'\\', 0x00, 0x1f, b'\n', b'\t'] {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes: Vec<u8> = (0..len).map(|i| plain[i % plain.len()]).collect();
                let expected = if at < len {
                    bytes[at] = stop;
                    at
                } else {
                    len
                };
                for from in [0, at.min(3)] {
                    assert_eq!(
                        plain_run_end(&bytes, from),
                        expected,
                        "{bytes:?} from {from}"
                    );
                }
            }
        }
    }
}

/// `Record::checked_json` keeps what `check_object` accepted without `serde_json` reading it,
/// and `serde_json` must still be able to write it out as raw JSON later (`JsonText`'s
/// `Serialize`). So over many damaged records the two verdicts agree: `check_object` accepts
/// exactly the objects `serde_json`'s raw-value reading accepts.
#[test]
fn accepts_exactly_the_objects_serde_jsons_raw_reading_accepts() {
    let deep = format!(r#"{{"d":{}}}"#, nested(200, r#"{"k":"v"}"#));
    // A long plain run: the damage lands at every offset of the 8-byte scan.
    let long = format!(
        r#"{{"s":"{}","t":"{}"}}"#,
        "abcdefgh".repeat(6),
        "x".repeat(17)
    );
    let bases = [
        r#"{"a":[1,-2.5e+3,{"b":"c\"\\\/\u00e9"}],"d":true,"e":false,"f":null,"g":{}}"#,
        r#" {"eventName":"x","n":18446744073709551616,"t":1e-400,"s":"\ud800"} "#,
        r#"{"k":[[[[{"x":[0.0,-0,1E5]}]]]],"u":"\uFFFF\u0000","w":"\t"}"#,
        &deep,
        &long,
    ];
    const ALPHABET: &[u8] = b"{}[]\",:\\ \t\n0123456789eE+-.tfnrulsa\x01\x7f";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut refused) = (0, 0);
    for base in bases {
        for _ in 0..4000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                let byte = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
                if bytes.is_empty() {
                    bytes.push(b'{');
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let ours = check_object(text).is_ok();
            let theirs = serde_json::from_str::<&serde_json::value::RawValue>(text)
                .is_ok_and(|raw| raw.get().starts_with('{'));
            assert_eq!(ours, theirs, "{text:?}");
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    // The damage leaves both kinds of text in numbers.
    assert!(accepted > 1000 && refused > 1000, "{accepted} {refused}");
}
