//! The engine's literal prefilter only skips rules that cannot match: on every event, the
//! engine's matches equal those of evaluating each routed rule in turn.

use std::path::{Path, PathBuf};

use crate::common::{brute_force, corpus_rules, yaml_files, Rng};

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, Engine, Rule};
use vigil_event::LogSource;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Our rules, and the parts of a SigmaHQ corpus that apply to Vigil's sources, if present.
fn rules() -> Vec<Rule> {
    let mut files = yaml_files(&repo().join("rules"));
    if let Some(corpus) = corpus_rules() {
        for part in ["cloud", "application", "web"] {
            files.extend(yaml_files(&corpus.join(part)));
        }
    }
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            parse_rules(&text, &file.display().to_string()).rules
        })
        .collect()
}

fn ndjson(name: &str) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(repo().join("demo").join(name))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The demo's access log, a document per request as the web rules read them.
fn access_log() -> Vec<Map<String, Value>> {
    let access = std::fs::read_to_string(repo().join("demo/flask-access.log")).unwrap();
    access
        .lines()
        .map(|line| {
            let request = line.split('"').nth(1).unwrap_or_default();
            let target = request.split(' ').nth(1).unwrap_or_default();
            let doc = json!({"message": line, "target": target, "method": "GET"});
            doc.as_object().unwrap().clone()
        })
        .collect()
}

#[test]
fn prefiltered_matches_equal_brute_force() {
    let engine = Engine::new(rules());
    let cloudtrail = LogSource::new(Some("aws"), Some("cloudtrail"), None);
    let kubernetes = LogSource::new(Some("kubernetes"), Some("audit"), None);
    let flask = LogSource::new(Some("python"), Some("flask"), Some("application"));
    let web = LogSource::new(None, None, Some("webserver"));
    let mut events: Vec<(&LogSource, Map<String, Value>)> = Vec::new();
    events.extend(
        ndjson("cloudtrail.ndjson")
            .into_iter()
            .map(|d| (&cloudtrail, d)),
    );
    events.extend(
        ndjson("kubernetes-audit.ndjson")
            .into_iter()
            .map(|d| (&kubernetes, d)),
    );
    events.extend(ndjson("flask-app.ndjson").into_iter().map(|d| (&flask, d)));
    events.extend(access_log().into_iter().map(|d| (&web, d)));
    // Values in other cases and non-ASCII spellings must not hide a match.
    let shouting: Vec<_> = events
        .iter()
        .map(|(source, doc)| (*source, upper(&Value::Object(doc.clone()))))
        .collect();
    events.extend(
        shouting
            .into_iter()
            .filter_map(|(source, value)| match value {
                Value::Object(doc) => Some((source, doc)),
                _ => None,
            }),
    );
    let mut matched = 0;
    for (logsource, doc) in &events {
        let expected = brute_force(&engine, logsource, doc);
        assert_eq!(engine.matching(logsource, doc), expected, "{doc:?}");
        matched += expected.len();
    }
    assert!(matched > 0, "the demo events match some rules");
}

fn upper(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.to_uppercase().replace('K', "\u{212a}")),
        Value::Array(items) => Value::Array(items.iter().map(upper).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), upper(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every rule under `dir`.
fn rules_under(dir: &Path) -> Vec<Rule> {
    yaml_files(dir)
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            parse_rules(&text, &file.display().to_string()).rules
        })
        .collect()
}

/// Every string (at any depth) of `value`, with a way back to it.
fn strings_mut(value: &mut Value) -> Vec<&mut String> {
    match value {
        Value::String(text) => vec![text],
        Value::Array(items) => items.iter_mut().flat_map(strings_mut).collect(),
        Value::Object(map) => map.values_mut().flat_map(strings_mut).collect(),
        _ => Vec::new(),
    }
}

/// Demo events with strings swapped between them, in other cases, and cut or joined, so that
/// values rules look for turn up in other fields, other events and other spellings.
fn generated(demo: &[Map<String, Value>], count: usize, rng: &mut Rng) -> Vec<Map<String, Value>> {
    let pool: Vec<String> = demo
        .iter()
        .flat_map(|doc| {
            strings_mut(&mut Value::Object(doc.clone()))
                .into_iter()
                .map(|s| s.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    (0..count)
        .map(|_| {
            let mut event = Value::Object(demo[rng.below(demo.len())].clone());
            let mut strings = strings_mut(&mut event);
            for _ in 0..1 + rng.below(4) {
                if strings.is_empty() {
                    break;
                }
                let target = rng.below(strings.len());
                let donor = &pool[rng.below(pool.len())];
                *strings[target] = match rng.below(4) {
                    0 => donor.to_uppercase(),
                    1 => format!("{} {}", strings[target], donor),
                    2 => donor.chars().skip(donor.len() / 3).collect(),
                    _ => donor.clone(),
                };
            }
            match event {
                Value::Object(map) => map,
                _ => unreachable!(),
            }
        })
        .collect()
}

/// The texts a sender may write for one document: compact, spaced out, with `/` and quotes
/// escaped, and with letters as `\u` escapes.
fn spellings(doc: &Map<String, Value>, rng: &mut Rng) -> Vec<String> {
    let compact = serde_json::to_string(doc).unwrap();
    let pretty = serde_json::to_string_pretty(doc).unwrap();
    let slashes = compact.replace('/', "\\/");
    let mut escaped = String::new();
    let mut in_string = false;
    let mut after_backslash = false;
    for c in compact.chars() {
        if in_string && !after_backslash && c.is_ascii_alphabetic() && rng.below(3) == 0 {
            escaped.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            escaped.push(c);
        }
        if c == '"' && !after_backslash {
            in_string = !in_string;
        }
        after_backslash = c == '\\' && !after_backslash;
    }
    vec![compact, pretty, slashes, escaped]
}

/// The prefilter of [`Engine::matching_record`] never hides a match: over SigmaHQ's rules and
/// generated CloudTrail, Kubernetes audit, Flask app and web access events, in every spelling,
/// its matches equal evaluating each routed rule in turn. Where rules name exact values (the
/// cloud sources) candidates come from the values of a few fields; elsewhere (web rules look
/// for parts of a URL) from the record's text, and a record that rules out every rule is not
/// parsed.
#[test]
fn record_text_prefilter_never_hides_a_match() {
    let mut rules = rules_under(&repo().join("rules"));
    let corpus = corpus_rules()
        .map(|dir| rules_under(&dir))
        .unwrap_or_default();
    let with_corpus = !corpus.is_empty();
    rules.extend(corpus);
    // Our own rules were written against the demo's attacks, so on the demo and its variants
    // a larger share of them is a candidate than of SigmaHQ's, most of which look for other
    // attacks.
    let fewer_than_one_in = if with_corpus { 10 } else { 4 };
    let engine = Engine::new(rules);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let lanes = [
        (
            "cloudtrail.ndjson",
            LogSource::new(Some("aws"), Some("cloudtrail"), None),
        ),
        (
            "kubernetes-audit.ndjson",
            LogSource::new(Some("kubernetes"), Some("audit"), Some("application")),
        ),
        (
            "flask-app.ndjson",
            LogSource::new(Some("python"), Some("flask"), Some("application")),
        ),
        ("", LogSource::new(None, None, Some("webserver"))),
    ];
    let (mut records, mut matched, mut skipped) = (0, 0, 0);
    let (mut evaluated, mut routed) = (0, 0);
    for (file, logsource) in &lanes {
        let demo = if file.is_empty() {
            access_log()
        } else {
            ndjson(file)
        };
        let rules = engine
            .rules()
            .iter()
            .filter(|rule| rule.applies_to(logsource))
            .count();
        let mut docs = demo.clone();
        docs.extend(generated(&demo, 300, &mut rng));
        for doc in &docs {
            let expected = brute_force(&engine, logsource, doc);
            for text in spellings(doc, &mut rng) {
                let parsed = || vigil_event::Document::parse(&text);
                let result = engine.matching_record(logsource, &text, parsed).unwrap();
                assert_eq!(result.hits, expected, "{text}");
                records += 1;
                matched += usize::from(!expected.is_empty());
                skipped += usize::from(result.document.is_none());
                evaluated += result.evaluated;
                routed += rules;
            }
        }
    }
    eprintln!(
        "{records} records, {matched} matching, {skipped} ruled out unparsed, \
         {evaluated} of {routed} routed rules evaluated"
    );
    assert!(
        evaluated * fewer_than_one_in < routed,
        "{evaluated} of {routed} routed rules evaluated, not under 1 in {fewer_than_one_in}"
    );
    assert!(
        matched > 100,
        "{matched} of {records} records match some rule"
    );
    assert!(
        skipped > 100,
        "{skipped} of {records} records are ruled out by their text"
    );
}

/// Integers and regular expressions give needs of their own (the integer's digits, the runs
/// every match of the expression holds); none of them hides a match, in any spelling of the
/// values that match.
#[test]
fn integer_and_regex_needs_never_hide_a_match() {
    let rules = r#"
title: integer
id: 00000000-0000-0000-0000-000000000001
logsource: {product: test}
detection:
    selection:
        code: [401, -4031, 123456789012345, 12345678901234567]
    condition: selection
---
title: alternation
id: 00000000-0000-0000-0000-000000000002
logsource: {product: test}
detection:
    selection:
        arn|re: '^arn:aws:(iam|sts)::\d+:(role|assumed-role)/admin'
    condition: selection
---
title: folded
id: 00000000-0000-0000-0000-000000000003
logsource: {product: test}
detection:
    selection:
        cmd|re|i: 'mimikatz|sekurlsa::\w+'
    condition: selection
---
title: optional and repeated
id: 00000000-0000-0000-0000-000000000004
logsource: {product: test}
detection:
    selection:
        cmd|re: '(?:powershell(\.exe)?|pwsh)\s+-(?:enc|e)\b'
        path|re: '(/tmp/){1,3}x[0-9]+'
    condition: selection
---
title: optional part longer than the rest
id: 00000000-0000-0000-0000-000000000005
logsource: {product: test}
detection:
    selection:
        opt|re: 'abc(defghij)?xyz'
    condition: selection
"#;
    let parsed = parse_rules(rules, "inline.yml");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let engine = Engine::new(parsed.rules);
    let test = LogSource::new(Some("test"), None, None);
    let values = [
        r#""code":401"#,
        r#""code":401.0"#,
        r#""code":4.01e2"#,
        r#""code":"401""#,
        r#""code":-4031"#,
        r#""code":-4031.0"#,
        r#""code":123456789012345"#,
        r#""code":1.23456789012345e14"#,
        r#""code":402"#,
        r#""code":1.2345678901234567e16"#,
        r#""opt":"abcxyz""#,
        r#""opt":"abcdefghijxyz""#,
        r#""arn":"arn:aws:sts::1234:assumed-role/admin-x""#,
        r#""arn":"arn:aws:iam::1:role/admin""#,
        r#""arn":"arn:aws:iam::1:user/admin""#,
        r#""cmd":"run MIMIKATZ now""#,
        r#""cmd":"SEKURLSA::logonpasswords""#,
        r#""cmd":"mimi\u212Aatz""#,
        r#""cmd":"pwsh -e AAAA","path":"/tmp//tmp/x1""#,
        r#""cmd":"powershell.exe\t-enc A","path":"/tmp/x99""#,
        r#""cmd":"powershell -encode","path":"/tmp/x1""#,
    ];
    let mut matched = std::collections::BTreeSet::new();
    for value in values {
        let text = format!("{{{value}}}");
        let doc: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let expected = brute_force(&engine, &test, &doc);
        assert_eq!(engine.matching(&test, &doc), expected, "{text}");
        let parsed = || vigil_event::Document::parse(&text);
        let record = engine.matching_record(&test, &text, parsed).unwrap();
        assert_eq!(record.hits, expected, "{text}");
        matched.extend(expected);
    }
    assert_eq!(
        matched.len(),
        5,
        "every rule matches some value: {matched:?}"
    );
}

/// Rules that name exact values find their candidates by the values of fields; none of the ways
/// a value can be compared (case, `cased`, Unicode folding, numbers and booleans as text, lists,
/// dotted keys, `windash` variants, `all`, alternatives) hides a match.
#[test]
fn field_keys_never_hide_a_match() {
    let rules = r#"
title: plain
logsource: {product: keys}
detection: {selection: {eventName: [DeleteTrail, StopLogging]}, condition: selection}
---
title: cased
logsource: {product: keys}
detection: {selection: {eventName|cased: CreateUser}, condition: selection}
---
title: number beside a string
logsource: {product: keys}
detection: {selection: {code: 401, verb: get}, condition: selection}
---
title: number as text
logsource: {product: keys}
detection: {selection: {port: '8080'}, condition: selection}
---
title: boolean as text
logsource: {product: keys}
detection: {selection: {flag: 'true'}, condition: selection}
---
title: all of a list
logsource: {product: keys}
detection: {selection: {tags|all: [red, blue]}, condition: selection}
---
title: one of two on one field
logsource: {product: keys}
detection: {sel1: {verb: create}, sel2: {verb: delete}, condition: 1 of sel*}
---
title: one of two fields
logsource: {product: keys}
detection: {sel1: {verb: patch}, sel2: {user: admin}, condition: 1 of sel*}
---
title: windash
logsource: {product: keys}
detection: {selection: {cmd|windash: '-enc'}, condition: selection}
---
title: dotted
logsource: {product: keys}
detection: {selection: {a.b.c: deep}, condition: selection}
---
title: unicode
logsource: {product: keys}
detection: {selection: {name: ÉCOLE, who: kill}, condition: selection}
---
title: filtered
logsource: {product: keys}
detection: {selection: {verb: list}, filter: {user: system}, condition: selection and not filter}
---
title: escaped wildcard and empty
logsource: {product: keys}
detection: {selection: {path: 'C:\x\*', note: ''}, condition: selection}
"#;
    let parsed = parse_rules(rules, "inline.yml");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let count = parsed.rules.len();
    let engine = Engine::new(parsed.rules);
    let keys = LogSource::new(Some("keys"), None, None);
    let records = [
        r#"{"eventName":"deletetrail"}"#,
        r#"{"eventName":["x","STOPLOGGING"]}"#,
        r#"{"eventName":"CreateUser"}"#,
        r#"{"eventName":"createuser"}"#,
        r#"{"code":401,"verb":"GET"}"#,
        r#"{"code":"401","verb":"get"}"#,
        r#"{"code":401.0,"verb":"get"}"#,
        r#"{"code":402,"verb":"get"}"#,
        r#"{"port":8080}"#,
        r#"{"flag":true}"#,
        r#"{"flag":"TRUE"}"#,
        r#"{"flag":1}"#,
        r#"{"tags":["RED","green","Blue"]}"#,
        r#"{"tags":["red"]}"#,
        r#"{"verb":"Delete"}"#,
        r#"{"verb":"create","user":"x"}"#,
        r#"{"user":"ADMIN"}"#,
        r#"{"verb":"patch"}"#,
        r#"{"cmd":"/enc"}"#,
        r#"{"cmd":"\u2013enc"}"#,
        r#"{"cmd":"-ENC"}"#,
        r#"{"a.b":{"c":"DEEP"}}"#,
        r#"{"a":{"b.c":"deep"}}"#,
        r#"{"a":[{"b":{"c":"x"}},{"b":{"c":"Deep"}}]}"#,
        r#"{"a":{"b":{"c":["no","dEEp"]}}}"#,
        r#"{"name":"École","who":"\u212aILL"}"#,
        r#"{"name":"ecole","who":"kill"}"#,
        r#"{"verb":"LIST","user":"bob"}"#,
        r#"{"verb":"list","user":"System"}"#,
        r#"{"path":"c:\\X*","note":""}"#,
        r#"{"path":"c:\\xy","note":""}"#,
        r#"{"verb":"list","eventName":"DeleteTrail","u\u0073er":"a"}"#,
    ];
    let mut matched = std::collections::BTreeSet::new();
    let mut fewer = false;
    for text in records {
        let doc: Map<String, Value> = serde_json::from_str(text).unwrap();
        let expected = brute_force(&engine, &keys, &doc);
        assert_eq!(engine.matching(&keys, &doc), expected, "{text}");
        let parse = || vigil_event::Document::parse(text);
        let record = engine.matching_record(&keys, text, parse).unwrap();
        assert_eq!(record.hits, expected, "{text}");
        assert!(record.document.is_some(), "looked up by key, so parsed");
        fewer |= record.evaluated < count / 2;
        matched.extend(expected);
    }
    assert!(fewer, "candidates came from the keys");
    assert_eq!(matched.len(), count, "every rule matches: {matched:?}");
}

/// A key that every rule shares (here a selection each repeats, as a pipeline's `require` adds
/// one to all) narrows nothing, so the plan keeps finding candidates by the record's text: a
/// record none of whose literals occur is not even parsed.
#[test]
fn a_key_every_rule_shares_leaves_the_text_prefilter() {
    let rule = |n: u32, needle: &str| {
        format!(
            "title: r{n}\nlogsource: {{product: shared}}\ndetection:\n  kind: {{source_kind: web}}\n  \
             selection: {{url|contains: {needle}}}\n  condition: kind and selection\n"
        )
    };
    let rules = [rule(1, "passwd"), rule(2, "union select"), rule(3, "../..")].join("---\n");
    let parsed = parse_rules(&rules, "inline.yml");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let engine = Engine::new(parsed.rules);
    let shared = LogSource::new(Some("shared"), None, None);
    let text = r#"{"source_kind":"web","url":"/index.html"}"#;
    let parse = || vigil_event::Document::parse(text);
    let record = engine.matching_record(&shared, text, parse).unwrap();
    assert_eq!((record.hits.len(), record.evaluated), (0, 0));
    assert!(record.document.is_none(), "ruled out by its text, unparsed");
    let text = r#"{"source_kind":"web","url":"/etc/passwd"}"#;
    let parse = || vigil_event::Document::parse(text);
    assert_eq!(
        engine.matching_record(&shared, text, parse).unwrap().hits,
        [0]
    );
}
