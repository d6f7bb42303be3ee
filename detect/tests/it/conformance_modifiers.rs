//! Conformance with the Sigma 2.1 specification for values and value modifiers: for each
//! modifier and each escaping rule, a case that must match and one that must not, written from
//! `sigma-rules-specification.md` and `sigma-appendix-modifiers.md`. Where the specification
//! is vague the expectation is pySigma's behaviour, as the crate docs record.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, parse_rules_with, LoadOptions, Rule, RuleError};

fn text(detection: &str) -> String {
    let body: String = detection
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    format!("title: Conformance\nlogsource:\n  product: test\ndetection:\n{body}")
}

/// A rule whose detection is `sel: {key: value}` with `condition: sel`, given as YAML lines.
fn rule(detection: &str) -> Rule {
    rule_with(detection, &LoadOptions::default())
}

fn rule_with(detection: &str, options: &LoadOptions) -> Rule {
    let text = text(detection);
    let mut rules = parse_rules_with(&text, "conformance.yml", options)
        .into_result()
        .unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"));
    rules.remove(0)
}

fn error(detection: &str) -> RuleError {
    let text = text(detection);
    let parsed = parse_rules(&text, "conformance.yml");
    assert!(parsed.rules.is_empty(), "loaded, but should not:\n{text}");
    parsed.errors.into_iter().next().unwrap()
}

fn hit(rule: &Rule, event: Value) -> bool {
    match event {
        Value::Object(map) => rule.matches(&map),
        other => panic!("not an object: {other}"),
    }
}

/// The rule `sel: {<key>: <value>}`, where value is YAML.
fn sel(key: &str, value: &str) -> Rule {
    rule(&format!("sel:\n  {key}: {value}\ncondition: sel"))
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn values_are_case_insensitive_strings_by_default() {
    let r = sel("Image", r"'C:\Windows\System32\cmd.exe'");
    assert!(hit(&r, json!({"Image": r"c:\windows\system32\CMD.EXE"})));
    assert!(!hit(&r, json!({"Image": r"C:\Windows\System32\cmd.exe "})));
}

#[test]
fn star_matches_any_run_and_question_mark_one_character() {
    let r = sel("Image", "'antivirus_V*.exe'");
    assert!(hit(&r, json!({"Image": "antivirus_V21.2.1.exe"})));
    assert!(hit(&r, json!({"Image": "antivirus_V.exe"})));
    assert!(!hit(&r, json!({"Image": "antivirus.exe"})));
    let r = sel("Image", "'prog?.exe'");
    assert!(hit(&r, json!({"Image": "progA.exe"})));
    assert!(!hit(&r, json!({"Image": "prog.exe"})));
    assert!(!hit(&r, json!({"Image": "progAB.exe"})));
}

#[test]
fn escaped_wildcards_are_plain_characters() {
    let r = sel("a", r"'x\*y'");
    assert!(hit(&r, json!({"a": "x*y"})));
    assert!(!hit(&r, json!({"a": "xzzy"})));
    let r = sel("a", r"'x\?y'");
    assert!(hit(&r, json!({"a": "x?y"})));
    assert!(!hit(&r, json!({"a": "xzy"})));
}

#[test]
fn a_plain_backslash_may_be_single_or_double() {
    for written in [r"'C:\Windows'", r"'C:\\Windows'"] {
        let r = sel("a", written);
        assert!(hit(&r, json!({"a": r"C:\Windows"})), "{written}");
        assert!(!hit(&r, json!({"a": r"C:\\Windows"})), "{written}");
    }
}

#[test]
fn an_escaped_backslash_before_a_wildcard_keeps_the_wildcard() {
    // `\\*`: a backslash, then a wildcard.
    let r = sel("a", r"'C:\\*'");
    assert!(hit(&r, json!({"a": r"C:\Users"})));
    assert!(hit(&r, json!({"a": r"C:\"})));
    assert!(!hit(&r, json!({"a": "C:Users"})));
}

#[test]
fn three_backslashes_escape_both_the_backslash_and_the_wildcard() {
    let r = sel("a", r"'C:\\\*'");
    assert!(hit(&r, json!({"a": r"C:\*"})));
    assert!(!hit(&r, json!({"a": r"C:\Users"})));
}

#[test]
fn three_or_four_backslashes_are_a_double_backslash() {
    for written in [r"'\\\\server'", r"'\\\server'"] {
        let r = sel("a", written);
        assert!(hit(&r, json!({"a": r"\\server"})), "{written}");
        assert!(!hit(&r, json!({"a": r"\server"})), "{written}");
    }
}

#[test]
fn numbers_match_numbers_and_their_text() {
    let r = sel("EventID", "4688");
    assert!(hit(&r, json!({"EventID": 4688})));
    assert!(hit(&r, json!({"EventID": "4688"})));
    assert!(!hit(&r, json!({"EventID": 4689})));
    assert!(!hit(&r, json!({"EventID": "04688"})));
}

#[test]
fn booleans_match_booleans_and_their_text() {
    let r = sel("mfa", "false");
    assert!(hit(&r, json!({"mfa": false})));
    assert!(hit(&r, json!({"mfa": "false"})));
    assert!(!hit(&r, json!({"mfa": true})));
    assert!(!hit(&r, json!({"mfa": 0})));
}

#[test]
fn null_is_missing_or_null_and_differs_from_the_empty_string() {
    let null = sel("a", "null");
    assert!(hit(&null, json!({})));
    assert!(hit(&null, json!({"a": null})));
    assert!(!hit(&null, json!({"a": ""})));
    let empty = sel("a", "''");
    assert!(hit(&empty, json!({"a": ""})));
    assert!(!hit(&empty, json!({})));
    assert!(!hit(&empty, json!({"a": null})));
}

#[test]
fn keyword_lists_are_ored_and_all_ands_them() {
    let any = rule("keywords:\n  - 'event::clear'\n  - 'event::drop'\ncondition: keywords");
    assert!(hit(&any, json!({"msg": "mimikatz event::drop /x"})));
    assert!(!hit(&any, json!({"msg": "event:clear"})));
    let all = rule(
        "keywords:\n  '|all':\n    - 'OabVirtualDirectory'\n    - ' -ExternalUrl '\ncondition: keywords",
    );
    assert!(hit(
        &all,
        json!({"a": "Set-OabVirtualDirectory", "b": "x -ExternalUrl y"})
    ));
    assert!(!hit(
        &all,
        json!({"a": "Set-OabVirtualDirectory -Internal"})
    ));
}

// ---------------------------------------------------------------------------------------------
// Generic modifiers

#[test]
fn contains() {
    let r = sel("CommandLine|contains", "'whoami'");
    assert!(hit(&r, json!({"CommandLine": "cmd /c WHOAMI /all"})));
    assert!(!hit(&r, json!({"CommandLine": "who ami"})));
}

#[test]
fn startswith() {
    let r = sel("Image|startswith", "'C:\\Temp\\'");
    assert!(hit(&r, json!({"Image": r"c:\temp\x.exe"})));
    assert!(!hit(&r, json!({"Image": r"D:\C:\Temp\x.exe"})));
}

#[test]
fn endswith() {
    let r = sel("Image|endswith", r"'\cmd.exe'");
    assert!(hit(&r, json!({"Image": r"C:\Windows\System32\cmd.exe"})));
    assert!(!hit(
        &r,
        json!({"Image": r"C:\Windows\System32\cmd.exe.bak"})
    ));
}

#[test]
fn all_ands_the_values() {
    let r = sel("CommandLine|contains|all", "['-enc', 'hidden']");
    assert!(hit(
        &r,
        json!({"CommandLine": "powershell -w hidden -enc AAA"})
    ));
    assert!(!hit(&r, json!({"CommandLine": "powershell -enc AAA"})));
}

#[test]
fn exists_true_and_false() {
    let present = sel("PasswordLastSet|exists", "true");
    assert!(hit(&present, json!({"PasswordLastSet": "x"})));
    // Presence only: an empty or null value still exists.
    assert!(hit(&present, json!({"PasswordLastSet": null})));
    assert!(hit(&present, json!({"PasswordLastSet": ""})));
    assert!(!hit(&present, json!({"Other": 1})));
    let absent = sel("a.b|exists", "false");
    assert!(hit(&absent, json!({"a": {"c": 1}})));
    assert!(!hit(&absent, json!({"a": {"b": 1}})));
}

#[test]
fn exists_needs_a_boolean_and_stands_alone() {
    assert!(error("sel:\n  a|exists: 'yes'\ncondition: sel")
        .message
        .contains("`true` or `false`"));
    assert!(error("sel:\n  a|exists|contains: true\ncondition: sel")
        .message
        .contains("cannot be combined"));
    assert!(error("sel:\n  '|exists': true\ncondition: sel")
        .message
        .contains("needs a field"));
}

#[test]
fn cased_matches_case_sensitively() {
    let r = sel("Hash|cased", "'AbC'");
    assert!(hit(&r, json!({"Hash": "AbC"})));
    assert!(!hit(&r, json!({"Hash": "abc"})));
    let r = sel("CommandLine|contains|cased", "'FromBase64'");
    assert!(hit(&r, json!({"CommandLine": "[x]::FromBase64String"})));
    assert!(!hit(&r, json!({"CommandLine": "[x]::frombase64string"})));
    let r = sel("a|cased|startswith", "'Ab?'");
    assert!(hit(&r, json!({"a": "Abxyz"})));
    assert!(!hit(&r, json!({"a": "aBxyz"})));
}

#[test]
fn neq_matches_values_that_differ() {
    let r = sel("User|neq", "'SYSTEM'");
    assert!(hit(&r, json!({"User": "alice"})));
    assert!(!hit(&r, json!({"User": "system"})));
}

#[test]
fn neq_on_a_list_means_none_of_them_and_a_missing_field_differs() {
    // As in pySigma, `neq` negates the whole item: not (a or b).
    let r = sel("User|neq", "['SYSTEM', 'LOCAL SERVICE']");
    assert!(hit(&r, json!({"User": "alice"})));
    assert!(!hit(&r, json!({"User": "LOCAL SERVICE"})));
    assert!(hit(&r, json!({})));
    let numeric = sel("EventID|neq", "4688");
    assert!(hit(&numeric, json!({"EventID": 1})));
    assert!(!hit(&numeric, json!({"EventID": 4688})));
    let contains = sel("CommandLine|contains|neq", "'safe'");
    assert!(hit(&contains, json!({"CommandLine": "evil"})));
    assert!(!hit(&contains, json!({"CommandLine": "a safe one"})));
}

// ---------------------------------------------------------------------------------------------
// String modifiers

#[test]
fn windash_interchanges_every_dash_of_an_option() {
    let r = sel("CommandLine|contains|windash", "' -exec bypass'");
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        let event = json!({ "CommandLine": format!("powershell {dash}exec bypass") });
        assert!(hit(&r, event), "{dash}");
    }
    assert!(!hit(&r, json!({"CommandLine": "powershell +exec bypass"})));
    assert!(!hit(&r, json!({"CommandLine": "powershell exec bypass"})));
}

#[test]
fn windash_leaves_dashes_inside_words_alone() {
    let r = sel("CommandLine|windash", "'set-mppreference -x'");
    assert!(hit(&r, json!({"CommandLine": "set-mppreference /x"})));
    assert!(!hit(&r, json!({"CommandLine": "set/mppreference -x"})));
}

#[test]
fn re_searches_case_sensitively() {
    let r = sel("CommandLine|re", r"'\s-[eE]nc\s'");
    assert!(hit(&r, json!({"CommandLine": "powershell -Enc AAA"})));
    assert!(!hit(&r, json!({"CommandLine": "powershell -ENC AAA"})));
    let anchored = sel("a|re", "'^ab+c$'");
    assert!(hit(&anchored, json!({"a": "abbbc"})));
    assert!(!hit(&anchored, json!({"a": "xabc"})));
}

#[test]
fn re_i_ignores_case() {
    let r = sel("a|re|i", "'^evil'");
    assert!(hit(&r, json!({"a": "EVIL thing"})));
    assert!(!hit(&r, json!({"a": "not evil"})));
}

#[test]
fn re_m_makes_anchors_match_at_lines() {
    let r = sel("a|re|m", "'^second$'");
    assert!(hit(&r, json!({"a": "first\nsecond\nthird"})));
    let plain = sel("a|re", "'^second$'");
    assert!(!hit(&plain, json!({"a": "first\nsecond\nthird"})));
}

#[test]
fn re_s_lets_the_dot_match_newlines() {
    let r = sel("a|re|s", "'begin.+end'");
    assert!(hit(&r, json!({"a": "begin\nend"})));
    let plain = sel("a|re", "'begin.+end'");
    assert!(!hit(&plain, json!({"a": "begin\nend"})));
}

#[test]
fn re_with_anchor_modifiers() {
    let starts = sel("a|re|startswith", "'a|b'");
    assert!(hit(&starts, json!({"a": "bxx"})));
    assert!(!hit(&starts, json!({"a": "xxb"})));
    let ends = sel("a|re|endswith", "'a|b'");
    assert!(hit(&ends, json!({"a": "xxb"})));
    assert!(!hit(&ends, json!({"a": "bxx"})));
}

#[test]
fn invalid_or_misplaced_regexes_are_refused_with_their_line() {
    let err = error("sel:\n  a|re: '(unclosed'\ncondition: sel");
    assert_eq!(err.line, 6);
    assert!(err.message.contains("invalid regular expression"), "{err}");
    // Look-around is outside the specification's flavour and the linear-time engine.
    assert!(error("sel:\n  a|re: 'x(?=y)'\ncondition: sel")
        .message
        .contains("invalid regular expression"));
    assert!(error("sel:\n  a|i: 'x'\ncondition: sel")
        .message
        .contains("only applies after `re`"));
    assert!(error("sel:\n  a|re|cased: 'x'\ncondition: sel")
        .message
        .contains("cannot follow `re`"));
}

// ---------------------------------------------------------------------------------------------
// Encodings

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn base64_encodes_the_value() {
    let r = sel("a|base64", "'cmd'");
    assert!(hit(&r, json!({"a": "Y21k"})));
    assert!(!hit(&r, json!({"a": "cmd"})));
    let r = sel("a|base64|contains", "'whoami /all'");
    assert!(hit(&r, json!({"a": format!("-e {}", b64(b"whoami /all"))})));
    assert!(!hit(&r, json!({"a": b64(b"whoami /priv")})));
}

#[test]
fn base64_refuses_wildcards() {
    assert!(error("sel:\n  a|contains|base64: 'x'\ncondition: sel")
        .message
        .contains("wildcards"));
    assert!(error("sel:\n  a|base64: 'x*'\ncondition: sel")
        .message
        .contains("wildcards"));
}

#[test]
fn base64offset_finds_the_value_at_every_offset() {
    let r = sel("CommandLine|base64offset|contains", "'IEX (New'");
    for prefix in ["", "a", "ab", "abc", "abcd"] {
        let encoded = b64(format!("{prefix}IEX (New-Object Net.WebClient)").as_bytes());
        assert!(hit(&r, json!({ "CommandLine": encoded })), "{prefix:?}");
    }
    let other = b64(b"abc Invoke-Expression");
    assert!(!hit(&r, json!({ "CommandLine": other })));
}

#[test]
fn wide_and_utf16le_encode_before_base64() {
    for key in [
        "a|wide|base64offset|contains",
        "a|utf16le|base64offset|contains",
    ] {
        let r = sel(key, "'Invoke-Expression'");
        for prefix in ["", "x", "xy"] {
            let encoded = b64(&utf16le(&format!("{prefix}Invoke-Expression | x")));
            assert!(hit(&r, json!({ "a": encoded })), "{key} {prefix:?}");
        }
        let ascii = b64(b"Invoke-Expression");
        assert!(!hit(&r, json!({ "a": ascii })), "{key}");
    }
}

#[test]
fn utf16be_encodes_big_endian() {
    let r = sel("a|utf16be|base64", "'ping'");
    assert!(hit(&r, json!({"a": "AHAAaQBuAGc="})));
    assert!(!hit(&r, json!({"a": b64(&utf16le("ping"))})));
}

#[test]
fn utf16_puts_a_byte_order_mark_first() {
    let r = sel("a|utf16|base64", "'ping'");
    assert!(hit(&r, json!({"a": "//5wAGkAbgBnAA=="})));
    assert!(!hit(&r, json!({"a": b64(&utf16le("ping"))})));
}

#[test]
fn wide_alone_matches_text_with_nul_bytes() {
    let r = sel("a|wide|contains", "'cmd'");
    assert!(hit(&r, json!({"a": "x c\u{0}m\u{0}d\u{0} y"})));
    assert!(!hit(&r, json!({"a": "cmd"})));
}

// ---------------------------------------------------------------------------------------------
// Numeric modifiers

#[test]
fn lt_lte_gt_gte() {
    let cases = [
        ("lt", 10, [(9, true), (10, false), (11, false)]),
        ("lte", 10, [(9, true), (10, true), (11, false)]),
        ("gt", 10, [(9, false), (10, false), (11, true)]),
        ("gte", 10, [(9, false), (10, true), (11, true)]),
    ];
    for (modifier, bound, expectations) in cases {
        let r = sel(&format!("n|{modifier}"), &bound.to_string());
        for (value, expected) in expectations {
            assert_eq!(
                hit(&r, json!({ "n": value })),
                expected,
                "{value} {modifier}"
            );
            let text = value.to_string();
            assert_eq!(
                hit(&r, json!({ "n": text })),
                expected,
                "'{value}' {modifier}"
            );
        }
    }
}

#[test]
fn comparisons_handle_floats_and_ignore_non_numbers() {
    let r = sel("n|gte", "1.5");
    assert!(hit(&r, json!({"n": 1.5})) && hit(&r, json!({"n": "2"})));
    assert!(!hit(&r, json!({"n": 1})));
    assert!(!hit(&r, json!({"n": "many"})));
    assert!(!hit(&r, json!({"n": true})));
    assert!(!hit(&r, json!({})));
    assert!(error("sel:\n  n|gt: 'ten'\ncondition: sel")
        .message
        .contains("needs a number"));
}

// ---------------------------------------------------------------------------------------------
// Time modifiers

#[test]
fn time_parts_of_a_timestamp() {
    let event = json!({"t": "2024-03-05T23:10:59Z"});
    let cases = [
        ("minute", 10, 11),
        ("hour", 23, 22),
        ("day", 5, 6),
        ("week", 10, 11),
        ("month", 3, 4),
        ("year", 2024, 2023),
    ];
    for (modifier, yes, no) in cases {
        assert!(
            hit(
                &sel(&format!("t|{modifier}"), &yes.to_string()),
                event.clone()
            ),
            "{modifier}"
        );
        assert!(
            !hit(
                &sel(&format!("t|{modifier}"), &no.to_string()),
                event.clone()
            ),
            "{modifier}"
        );
    }
}

#[test]
fn time_parts_are_read_as_written_and_refuse_impossible_values() {
    // No time zone conversion: the hour is the one written.
    let r = sel("t|hour", "23");
    assert!(hit(&r, json!({"t": "2024-03-05 23:10:00+05:00"})));
    assert!(!hit(&r, json!({"t": "not a time"})));
    let list = sel("t|hour", "[0, 1, 2]");
    assert!(hit(&list, json!({"t": "2024-03-05T01:00:00"})));
    assert!(error("sel:\n  t|hour: 24\ncondition: sel")
        .message
        .contains("between 0 and 23"));
    assert!(error("sel:\n  t|hour|gt: 3\ncondition: sel")
        .message
        .contains("cannot be combined"));
}

// ---------------------------------------------------------------------------------------------
// IP modifiers

#[test]
fn cidr_ipv4() {
    let r = sel("DestinationIp|cidr", "['10.0.0.0/8', '192.168.0.0/16']");
    assert!(hit(&r, json!({"DestinationIp": "10.20.30.40"})));
    assert!(hit(&r, json!({"DestinationIp": "192.168.1.1"})));
    assert!(!hit(&r, json!({"DestinationIp": "172.16.0.1"})));
    assert!(!hit(&r, json!({"DestinationIp": "not an ip"})));
    assert!(!hit(&r, json!({"DestinationIp": 167772161})));
}

#[test]
fn cidr_ipv6() {
    let r = sel("ip|cidr", "'fe80::/10'");
    assert!(hit(&r, json!({"ip": "fe80::1"})));
    assert!(!hit(&r, json!({"ip": "2001:db8::1"})));
    assert!(!hit(&r, json!({"ip": "10.0.0.1"})));
    assert!(error("sel:\n  ip|cidr: '10.0.0.0/33'\ncondition: sel")
        .message
        .contains("network"));
}

// ---------------------------------------------------------------------------------------------
// Specific modifiers

fn placeholders() -> LoadOptions {
    LoadOptions {
        placeholders: [
            (
                "Admins".to_owned(),
                vec!["root".to_owned(), "adm_*".to_owned()],
            ),
            ("Domain".to_owned(), vec!["CORP".to_owned()]),
        ]
        .into(),
        ..LoadOptions::default()
    }
}

#[test]
fn expand_replaces_placeholders_with_configured_values() {
    let r = rule_with(
        "sel:\n  user|expand: '%Admins%'\ncondition: sel",
        &placeholders(),
    );
    assert!(hit(&r, json!({"user": "root"})));
    assert!(hit(&r, json!({"user": "ADM_bob"})));
    assert!(!hit(&r, json!({"user": "bob"})));
    let joined = rule_with(
        "sel:\n  user|expand: '%Domain%\\\\%Admins%'\ncondition: sel",
        &placeholders(),
    );
    assert!(hit(&joined, json!({"user": r"corp\root"})));
    assert!(!hit(&joined, json!({"user": "root"})));
}

#[test]
fn without_expand_a_placeholder_is_literal_and_a_backslash_escapes_the_percent() {
    let r = rule_with("sel:\n  a: '%Admins%'\ncondition: sel", &placeholders());
    assert!(hit(&r, json!({"a": "%Admins%"})));
    assert!(!hit(&r, json!({"a": "root"})));
    let escaped = rule_with(
        "sel:\n  a|expand: '\\%plain%Domain%'\ncondition: sel",
        &placeholders(),
    );
    assert!(hit(&escaped, json!({"a": "%plainCORP"})));
    assert!(!hit(&escaped, json!({"a": "%plain%Domain%"})));
}

#[test]
fn an_unknown_placeholder_is_refused_by_name() {
    let err = error("sel:\n  a|expand: '%Servers%'\ncondition: sel");
    assert_eq!(err.line, 6);
    assert!(err.message.contains("`%Servers%`"), "{err}");
}

#[test]
fn fieldref_compares_two_fields() {
    let r = sel("ParentImage|fieldref", "'Image'");
    assert!(hit(&r, json!({"Image": "a.exe", "ParentImage": "A.EXE"})));
    assert!(!hit(&r, json!({"Image": "a.exe", "ParentImage": "b.exe"})));
    assert!(!hit(&r, json!({"ParentImage": "b.exe"})));
    let nested = sel("src.user|fieldref", "'dst.user'");
    assert!(hit(
        &nested,
        json!({"src": {"user": 7}, "dst": {"user": "7"}})
    ));
}

#[test]
fn fieldref_with_anchors_and_neq() {
    let starts = sel("CommandLine|fieldref|startswith", "'Image'");
    assert!(hit(
        &starts,
        json!({"Image": "a.exe", "CommandLine": "a.exe -x"})
    ));
    assert!(!hit(
        &starts,
        json!({"Image": "a.exe", "CommandLine": "b a.exe"})
    ));
    let ends = sel("a|fieldref|endswith", "'b'");
    assert!(hit(&ends, json!({"a": "xx.dll", "b": ".DLL"})));
    assert!(!hit(&ends, json!({"a": ".dll x", "b": ".dll"})));
    let contains = sel("a|fieldref|contains", "'b'");
    assert!(hit(&contains, json!({"a": "xxyyzz", "b": "yy"})));
    assert!(!hit(&contains, json!({"a": "xxzz", "b": "yy"})));
    let differs = sel("TargetUser|fieldref|neq", "'SubjectUser'");
    assert!(hit(
        &differs,
        json!({"TargetUser": "bob", "SubjectUser": "alice"})
    ));
    assert!(!hit(
        &differs,
        json!({"TargetUser": "bob", "SubjectUser": "bob"})
    ));
}

#[test]
fn fieldref_refuses_wildcards() {
    assert!(error("sel:\n  a|fieldref: 'b*'\ncondition: sel")
        .message
        .contains("wildcards"));
}

// ---------------------------------------------------------------------------------------------
// Chains

#[test]
fn modifiers_apply_in_the_order_given() {
    // contains after base64offset wraps each variant; the other way round is refused.
    assert!(
        error("sel:\n  a|contains|base64offset: 'abc'\ncondition: sel")
            .message
            .contains("wildcards")
    );
    let r = sel("a|windash|contains|cased", "'-Enc'");
    assert!(hit(&r, json!({"a": "x /Enc y"})));
    assert!(!hit(&r, json!({"a": "x /enc y"})));
}

#[test]
fn conflicting_and_unknown_modifiers_are_refused() {
    assert!(error("sel:\n  a|contains|endswith: 'x'\ncondition: sel")
        .message
        .contains("conflicts"));
    assert!(
        error("sel:\n  a|cidr|contains: '10.0.0.0/8'\ncondition: sel")
            .message
            .contains("cannot be combined")
    );
    assert!(error("sel:\n  a|contains|fieldref: 'b'\ncondition: sel")
        .message
        .contains("must come first"));
    assert_eq!(
        error("sel:\n  a|nope: 'x'\ncondition: sel").message,
        "unknown modifier `nope`"
    );
}

#[test]
fn keyword_modifiers() {
    let re = rule("keywords:\n  '|re': 'ev[il]+'\ncondition: keywords");
    assert!(hit(&re, json!({"x": {"y": ["quite evil"]}})));
    assert!(!hit(&re, json!({"x": "good"})));
    let windash = rule("keywords:\n  '|windash': '-exec'\ncondition: keywords");
    assert!(hit(&windash, json!({"x": "ps /exec"})));
    assert!(!hit(&windash, json!({"x": "ps exec"})));
}

#[test]
fn hostile_values_never_panic() {
    for value in [
        "''",
        "'%'",
        "'%%'",
        "'\\'",
        "'-'",
        "'/'",
        "'\u{2013}-'",
        "'é-/-é'",
        "'*'",
        "'?'",
    ] {
        for key in [
            "a|windash",
            "a|expand",
            "a|base64offset",
            "a|wide|base64",
            "a|utf16be",
            "a|utf16",
            "a|re",
            "a|cidr",
            "a|fieldref|contains",
        ] {
            let text = text(&format!("sel:\n  {key}: {value}\ncondition: sel"));
            for rule in parse_rules(&text, "x").rules {
                for event in [json!({}), json!({"a": value}), json!({"a": [1, null, {}]})] {
                    let _ = rule.matches(event.as_object().unwrap_or(&Map::new()));
                }
            }
        }
    }
    // Many option dashes would expand into too many variants: refused, not exploded.
    let many = format!("'{}'", " -a".repeat(12));
    assert!(error(&format!("sel:\n  a|windash: {many}\ncondition: sel"))
        .message
        .contains("too many variants"));
}
