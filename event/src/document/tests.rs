use serde_json::json;

use super::*;
use crate::json::parse_object;

/// Texts that cover what a tape must read as the map does: nesting, arrays, escapes, numbers,
/// repeated keys in small and in indexed objects, and what only the tolerant parser reads.
fn texts() -> Vec<String> {
    let many: String = (0..40)
        .map(|i| format!(r#""k{}":{i},"#, i % 25))
        .collect::<String>();
    vec![
        r#"{}"#.into(),
        r#" {"a":1,"b":{"c":[1,{"d":"x"},[],{}],"e":null},"f":true}"#.into(),
        r#"{"esc\"aped":"line\nbreak","\u00e9":"\u00e9t\u00e9","plain":"été"}"#.into(),
        r#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":1.5,"z":-0,"tiny":1e-400,"huge":1e300}"#.into(),
        r#"{"a":1,"b":2,"a":{"x":1},"b":[3]}"#.into(),
        format!(r#"{{{many}"k3":"last"}}"#),
        format!(r#"{{"outer":{{{many}"k0":"last"}},"after":1}}"#),
        r#"{"pad":1e400,"ua":"x\ud800","ok":"y"}"#.into(),
        format!(r#"{{"deep":{}1{},"top":2}}"#, "[".repeat(200), "]".repeat(200)),
    ]
}

#[test]
fn a_document_parsed_into_recycled_buffers_reads_as_a_fresh_one() {
    // Longest first, so each text is read into vectors that hold more than it.
    let mut texts = texts();
    texts.sort_by_key(|text| std::cmp::Reverse(text.len()));
    texts.extend(texts.clone());
    let mut buffers = TapeBuffers::default();
    for text in &texts {
        let document = Document::parse_reusing(text, &mut buffers).unwrap();
        assert_eq!(document, Document::parse(text).unwrap(), "{text}");
        assert_eq!(document.to_map(), parse_object(text).unwrap(), "{text}");
        document.recycle(&mut buffers);
    }
}

#[test]
fn a_document_reads_every_text_as_parse_object_does() {
    for text in texts() {
        let document = Document::parse(&text).unwrap();
        assert_eq!(document.to_map(), parse_object(&text).unwrap(), "{text}");
    }
}

#[test]
fn what_serde_json_reads_is_a_tape_and_the_rest_a_map() {
    let texts = texts();
    let kinds: Vec<bool> = texts
        .iter()
        .map(|text| matches!(Document::parse(text).unwrap(), Document::Tape(_)))
        .collect();
    assert_eq!(
        kinds,
        [true, true, true, true, true, true, true, false, false]
    );
}

#[test]
fn texts_parse_object_refuses_are_refused_with_its_error() {
    for text in [
        "",
        "[1]",
        "\"s\"",
        "{",
        r#"{"a":}"#,
        "{} x",
        r#"{"a":"\x"}"#,
        "\u{feff}{}",
    ] {
        let expected = parse_object(text).unwrap_err();
        assert_eq!(Document::parse(text).unwrap_err(), expected, "{text:?}");
    }
}

#[test]
fn lookups_take_the_last_of_a_repeated_key_in_small_and_indexed_objects() {
    let texts = texts();
    let small = Document::parse(&texts[4]).unwrap();
    assert_eq!(small.root().get("a").unwrap().to_value(), json!({"x": 1}));
    assert_eq!(small.root().get("b").unwrap().to_value(), json!([3]));
    assert!(small.root().get("c").is_none());
    let indexed = Document::parse(&texts[6]).unwrap();
    let JsonRef::Object(outer) = indexed.root().get("outer").unwrap() else {
        panic!("not an object");
    };
    assert_eq!(outer.get("k0").unwrap().to_value(), json!("last"));
    assert_eq!(outer.get("k14").unwrap().to_value(), json!(39));
    assert_eq!(outer.get("k1").unwrap().to_value(), json!(26));
    assert!(outer.get("k25").is_none() && outer.get("").is_none());
    assert_eq!(outer.members().count(), 25);
    assert_eq!(indexed.root().get("after").unwrap().to_value(), json!(1));
}

#[test]
fn members_come_in_record_order_once_each() {
    let document = Document::parse(r#"{"z":1,"a":2,"z":3,"m":{"b":1,"a":2}}"#).unwrap();
    let keys: Vec<&str> = document.root().members().map(|(key, _)| key).collect();
    assert_eq!(keys, ["a", "z", "m"]);
    let JsonRef::Object(m) = document.root().get("m").unwrap() else {
        panic!("not an object");
    };
    let keys: Vec<&str> = m.members().map(|(key, _)| key).collect();
    assert_eq!(keys, ["b", "a"]);
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_text() {
    let text = r#"{"name":"plain","esc":"a\tb"}"#;
    let Document::Tape(tape) = Document::parse(text).unwrap() else {
        panic!("not a tape");
    };
    let root = Object::Tape(&tape, 0);
    let Some(JsonRef::String(plain)) = root.get("name") else {
        panic!("not a string");
    };
    let within = text.as_bytes().as_ptr_range();
    assert!(within.contains(&plain.as_ptr()));
    let Some(JsonRef::String(escaped)) = root.get("esc") else {
        panic!("not a string");
    };
    assert_eq!(escaped, "a\tb");
    assert!(!within.contains(&escaped.as_ptr()));
}

#[test]
fn a_map_reads_through_the_same_views() {
    let map = parse_object(r#"{"a":[1,{"b":"c"}]}"#).unwrap();
    let object = Object::from(&map);
    let JsonRef::Array(items) = object.get("a").unwrap() else {
        panic!("not an array");
    };
    let items: Vec<Value> = items.items().map(JsonRef::to_value).collect();
    assert_eq!(items, [json!(1), json!({"b": "c"})]);
    assert_eq!(Document::default().root().members().count(), 0);
}

/// Keys alike in length and at both ends share a fingerprint; lookups still tell them apart,
/// in small and in indexed objects, and a repeated one still gives its last value.
#[test]
fn keys_alike_at_both_ends_are_told_apart() {
    for count in [3, 40] {
        let key = |i: usize| format!("userIdentity.{:02}.sessionIssuer", i % 30);
        let members: Vec<String> = (0..count).map(|i| format!(r#""{}":{i}"#, key(i))).collect();
        let text = format!("{{{}}}", members.join(","));
        let document = Document::parse(&text).unwrap();
        let expected = parse_object(&text).unwrap();
        for (name, value) in &expected {
            assert_eq!(
                &document.root().get(name).unwrap().to_value(),
                value,
                "{name}"
            );
        }
        assert!(document
            .root()
            .get("userIdentity.zz.sessionIssuer")
            .is_none());
        assert_eq!(document.root().members().count(), expected.len());
    }
}

/// An object's members are each key once, with its last value, whichever keys repeat and
/// however many members there are (scanned and indexed objects alike): the members a lookup
/// would give, no more.
#[test]
fn members_are_each_key_once_with_its_last_value() {
    let mut texts = texts();
    // Keys from a small pool, so repeats are common, and from a large one, so most are unique.
    for (count, pool) in [(5, 3), (12, 8), (20, 1000), (31, 20), (33, 40), (60, 1000)] {
        let members: Vec<String> = (0..count)
            .map(|i| format!(r#""key{}":{i}"#, (i * 7919) % pool))
            .collect();
        texts.push(format!("{{{}}}", members.join(",")));
        texts.push(format!(r#"{{"outer":{{{}}}}}"#, members.join(",")));
    }
    for text in texts {
        let document = Document::parse(&text).unwrap();
        let expected = parse_object(&text).unwrap();
        let mut objects = vec![document.root()];
        let mut maps = vec![&expected];
        while let (Some(object), Some(map)) = (objects.pop(), maps.pop()) {
            let members: Vec<(&str, JsonRef<'_>)> = object.members().collect();
            assert_eq!(members.len(), map.len(), "{text}");
            for (key, value) in members {
                assert_eq!(value.to_value(), map[key], "{key} in {text}");
                if let (JsonRef::Object(inner), Value::Object(inner_map)) = (value, &map[key]) {
                    objects.push(inner);
                    maps.push(inner_map);
                }
            }
        }
    }
}

/// A tape's scalars are every value it holds but arrays and objects, at any depth and in
/// record order, a repeated key's earlier values included; a map leaves the walk to the caller.
#[test]
fn a_tapes_scalars_are_every_value_in_record_order() {
    let text = r#"{"a":"x","b":{"c":[1,{"d":true}],"e":null},"a":"y","f":[[],{},-2.5]}"#;
    let document = Document::parse(text).unwrap();
    let scalars = |object: Object<'_>| {
        let mut values = Vec::new();
        let tape = object.for_each_tape_scalar(|value| values.push(value.to_value()));
        tape.then_some(values)
    };
    assert_eq!(
        scalars(document.root()).unwrap(),
        [
            json!("x"),
            json!(1),
            json!(true),
            json!(null),
            json!("y"),
            json!(-2.5)
        ]
    );
    let inner = document.root().get("b").unwrap();
    let JsonRef::Object(inner) = inner else {
        panic!("b is an object")
    };
    assert_eq!(
        scalars(inner).unwrap(),
        [json!(1), json!(true), json!(null)]
    );
    let map = parse_object(text).unwrap();
    assert_eq!(scalars(Object::from(&map)), None);
}
