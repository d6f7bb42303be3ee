//! The fuzz targets of `detect/fuzz`, run on stable without libFuzzer: a few thousand
//! deterministic pseudo-random inputs through the rule parser and the matcher.
//!
//! Real fuzzing (coverage-guided, open-ended) needs cargo-fuzz and a nightly compiler; see
//! `detect/fuzz/Cargo.toml`. This keeps the same properties checked on every test run:
//! loading never panics, and the engine's prefiltered matches equal evaluating each routed rule.

use std::path::Path;

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, Detector, Engine, Limits, Pipeline, RuleSetBuilder};
use vigil_event::LogSource;

/// xorshift64*: deterministic, so a failure reproduces with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn read_dir_texts(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            read_dir_texts(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "yml")
            // A rule's test cases sit beside it (`*.tests.yml`) and are not rules.
            && !path.to_string_lossy().ends_with(".tests.yml")
        {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
}

const FUZZ_RULES: &str = include_str!("../../fuzz/rules.yml");
const FUZZ_CORRELATIONS: &str = include_str!("../../fuzz/correlations.yml");

/// Pieces of rule syntax that mutations splice in, so mutants reach deep into the loader
/// rather than failing at the first YAML error.
const RULE_TOKENS: &[&str] = &[
    "|contains",
    "|all",
    "|startswith",
    "|endswith",
    "|re",
    "|i",
    "|cased",
    "|neq",
    "|exists",
    "|windash",
    "|base64",
    "|base64offset",
    "|wide",
    "|utf16be",
    "|utf16",
    "|expand",
    "|cidr",
    "|fieldref",
    "|gt",
    "|lte",
    "|hour",
    "|week",
    "|year",
    "*",
    "?",
    "\\",
    "\\*",
    "\\\\*",
    "%x%",
    ": ",
    "\n    - ",
    "\n  sel2:\n    a: b",
    "---\n",
    "condition: ",
    " and ",
    " or ",
    "not ",
    "1 of ",
    "all of them",
    "(",
    ")",
    "null",
    "''",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!str ",
    "0x1F",
    "1e999",
    "-",
    "~",
    "\t",
    "correlation:\n  type: event_count\n",
    "filter:\n  rules: any\n",
    "timespan: 5m",
    "group-by: [a]",
    "\u{212a}",
    "é",
    "\u{feff}",
    "(?<=a)",
    "[[:alpha:]",
    "a{99999}",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = at.min(bytes.len() - 1);
                bytes[at] = *rng.pick(b" :-|*?\\'\"\n\t#&!%{}[]()0aZ\xc3\xff");
            }
            1 | 2 => {
                let token = rng.pick(RULE_TOKENS).as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(40)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                let line = rng.pick(&lines).to_vec();
                let mut copy = line;
                copy.push(b'\n');
                bytes.splice(at..at, copy);
            }
            _ => bytes.truncate(at),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_rules_and_pipelines_never_panic() {
    let mut seeds = vec![FUZZ_RULES.to_owned()];
    read_dir_texts(&repo().join("rules"), &mut seeds);
    read_dir_texts(&repo().join("pipelines"), &mut seeds);
    let event = json!({
        "eventName": "StopLogging", "verb": "create", "message": "GET /../ sqlmap",
        "objectRef": {"resource": "pods", "namespace": "a"}, "user": {"username": "a"},
        "sourceIPs": ["10.0.0.1"], "responseStatus": {"code": 403},
    });
    let doc = event.as_object().unwrap();
    let logsources = [
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        LogSource::new(Some("kubernetes"), Some("audit"), None),
        LogSource::new(None, None, Some("webserver")),
    ];
    let mut rng = Rng(0x00c0_ffee_d00d_f00d);
    let mut loaded = 0;
    for round in 0..3000 {
        let text = if round % 10 == 9 {
            // Now and then plain noise, not a mutant.
            let noise: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&noise).into_owned()
        } else {
            let seed = rng.pick(&seeds).clone();
            mutate(&mut rng, &seed)
        };
        let _ = Pipeline::parse(&text, "fuzz.yml");
        let parsed = parse_rules(&text, "fuzz.yml");
        for error in &parsed.errors {
            assert!(error.line >= 1, "{error}");
        }
        loaded += parsed.rules.len();
        let mut builder = RuleSetBuilder::new();
        builder.add_parsed(parsed);
        let built = builder.build();
        for logsource in &logsources {
            let _ = built.engine.matching(logsource, doc);
        }
    }
    assert!(loaded > 500, "mutants should often still load ({loaded})");
}

const FIELD_NAMES: &[&str] = &[
    "eventName",
    "eventSource",
    "userIdentity",
    "type",
    "arn",
    "requestParameters",
    "commandLine",
    "script",
    "blob",
    "data",
    "policyDocument",
    "userName",
    "userAgent",
    "sourceIPAddress",
    "errorCode",
    "readOnly",
    "eventVersion",
    "recipientAccountId",
    "verb",
    "objectRef",
    "resource",
    "subresource",
    "namespace",
    "user",
    "username",
    "sourceIPs",
    "responseStatus",
    "code",
    "requestURI",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "impersonatedUser",
    "status",
    "bytes",
    "query",
    "path",
    "message",
    "headers",
    "x-forwarded-for",
    "labels",
    "app.kubernetes.io/name",
    "headers.x-forwarded-for",
    "objectRef.resource",
];

const STRINGS: &[&str] = &[
    "StopLogging",
    "DeleteTrail",
    "deletetrail",
    "DeleteMyTrail",
    "PutBucketPolicy",
    "a*b",
    "c:\\x",
    "Root",
    "s3.amazonaws.com",
    "aws-cli/2 Python/3.11",
    "\"Effect\":\"Allow\"",
    "arn:aws:iam::1:root",
    "10.1.2.3",
    "fd00::1",
    "::ffff:10.9.9.9",
    "203.0.113.9",
    "11.0.0.1",
    "CreateAccessKey",
    "createaccesskey",
    "admin",
    "cmd /enc AAA",
    "cmd \u{2013}enc AAA",
    "SW52b2tlLU1pbWlrYXR6",
    "bnZva2UtTWltaWthdHo",
    "JbnZva2UtTWltaWthdHo",
    "/api/v1/namespaces/x/secrets",
    "kubectl/v1.31\nnext",
    "create",
    "pods",
    "delete",
    "get",
    "system:serviceaccount:a:b",
    "a",
    "2026-11-28T03:15:00Z",
    "2026-11-28 09:00:00",
    "sqlmap/1.8",
    "GET /../etc/passwd",
    "UNION ALL SELECT",
    "union select",
    "%27",
    "<SCRIPT>",
    "GET /admin",
    "web",
    "",
    "É",
    "\u{212a}ILL",
    "ÉCOLE",
    "null",
    "true",
    "1.09",
    "123456789012",
    "401",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0..=2 => Value::String(rng.pick(STRINGS).to_string()),
        3 => {
            let mut s = rng.pick(STRINGS).to_string();
            let extra: &&str = rng.pick(STRINGS);
            s.push_str(extra);
            Value::String(s.to_uppercase())
        }
        4 => match rng.below(4) {
            0 => json!(rng.below(600)),
            1 => json!(rng.next() as i64),
            2 => json!(rng.below(2000) as f64 / 7.0),
            _ => json!(1.09),
        },
        5 => match rng.below(3) {
            0 => Value::Bool(true),
            1 => Value::Bool(false),
            _ => Value::Null,
        },
        6 | 7 => Value::Object(random_object(rng, depth + 1)),
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

fn random_object(rng: &mut Rng, depth: usize) -> Map<String, Value> {
    (0..1 + rng.below(6))
        .map(|_| (rng.pick(FIELD_NAMES).to_string(), random_value(rng, depth)))
        .collect()
}

#[test]
fn arbitrary_events_match_exactly_as_each_rule_alone() {
    let mut texts = vec![FUZZ_RULES.to_owned()];
    read_dir_texts(&repo().join("rules"), &mut texts);
    let mut builder = RuleSetBuilder::new();
    for (i, text) in texts.iter().enumerate() {
        builder.add_parsed(parse_rules(text, &format!("rules-{i}.yml")));
    }
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    let engine: Engine = built.engine;
    let logsources = [
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        LogSource::new(Some("kubernetes"), Some("audit"), None),
        LogSource::new(None, None, Some("webserver")),
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut matched = 0;
    for _ in 0..3000 {
        let doc = random_object(&mut rng, 0);
        for logsource in &logsources {
            let expected: Vec<usize> = engine
                .rules()
                .iter()
                .enumerate()
                .filter(|(_, rule)| rule.applies_to(logsource) && rule.matches(&doc))
                .map(|(index, _)| index)
                .collect();
            assert_eq!(engine.matching(logsource, &doc), expected, "{doc:?}");
            matched += expected.len();
        }
    }
    assert!(
        matched > 100,
        "random events should match some rules ({matched})"
    );
}

/// The `snapshots` target: mutated saved states restore or fail cleanly, and the detector
/// keeps working within its limits afterwards.
#[test]
fn mutated_snapshots_restore_or_fail_cleanly() {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(FUZZ_CORRELATIONS, "correlations.yml");
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.engine.correlations().len(), 5);
    let limits = Limits {
        max_groups: 8,
        max_entries: 8,
        max_ids: 2,
        max_streams: 4,
        max_stream_lag: 3_600_000,
        max_late_groups: 4,
    };
    let logsource = LogSource::new(Some("test"), None, None);
    let mut rng = Rng(0x5a5a_0000_1234_9876);
    // A real state to mutate: several streams, groups in every correlation.
    let mut source = Detector::new(built.engine.clone());
    for i in 0..200i64 {
        let event = json!({"kind": if i % 3 == 0 { "b" } else { "a" }, "user": format!("u{}", i % 5), "n": i});
        let stream = ["x", "y", "z", "w", "v"][rng.below(5)];
        source.evaluate(
            stream,
            i * 1000,
            None,
            &logsource,
            event.as_object().unwrap(),
        );
    }
    // And inputs late for the live windows, so the late groups are mutated too.
    for i in 0..10i64 {
        let event = json!({"kind": "a", "user": format!("u{}", i % 3), "n": i});
        source.evaluate("x", i, None, &logsource, event.as_object().unwrap());
    }
    let seed = String::from_utf8(source.snapshot()).unwrap();
    assert!(seed.contains("\"streams\""), "{seed}");
    assert!(seed.contains("\"late_groups\""), "{seed}");
    assert!(seed.contains("\"protected\""), "{seed}");
    let tokens = [
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "null",
        "[]",
        "{}",
        "\"\"",
        "1e400",
        "0",
        "99",
    ];
    let (mut restored, mut refused) = (0, 0);
    for _ in 0..800 {
        let mut text = seed.clone();
        for _ in 0..1 + rng.below(3) {
            // Replace the value after a random key (or array item) with another token; now
            // and then, cut the text short.
            let colons: Vec<usize> = text
                .match_indices([':', '['])
                .map(|(at, _)| at + 1)
                .collect();
            let at = *rng.pick(&colons);
            if rng.below(20) == 0 {
                text.truncate(at);
                continue;
            }
            let end = text[at..]
                .find([',', '}', ']'])
                .map_or(text.len(), |offset| at + offset);
            let token: &&str = rng.pick(&tokens);
            text.replace_range(at..end, token);
        }
        let mut detector = Detector::with_limits(built.engine.clone(), limits);
        if detector.restore(text.as_bytes()).is_err() {
            refused += 1;
            continue;
        }
        restored += 1;
        assert!(detector.stats().groups <= 8 * 5);
        assert!(detector.stats().late_groups <= 4 * 5);
        assert!(detector.streams().count() <= 4);
        for (stream, time) in [("x", 0), ("q", i64::MAX), ("x", i64::MIN), ("y", 5)] {
            let event = json!({"kind": "a", "user": "u1", "n": 1});
            detector.evaluate(stream, time, None, &logsource, event.as_object().unwrap());
        }
        let mut again = Detector::with_limits(built.engine.clone(), limits);
        again
            .restore(&detector.snapshot())
            .expect("a saved state restores");
    }
    eprintln!("{restored} restored, {refused} refused");
    assert!(
        restored > 30 && refused > 30,
        "{restored} restored, {refused} refused"
    );
}
