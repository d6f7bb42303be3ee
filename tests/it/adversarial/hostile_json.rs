//! Generated hostile JSON (numbers beyond f64, deep nesting, lone surrogates, repeated keys, odd
//! escapes, unicode, broken syntax): for every line ingest accepts, the record has a document,
//! detection evaluates it and matches a field planted at its top level, and the index finds it
//! by that field. What ingest refuses, the record parser refuses too: one verdict.
//!
//! In process (ingest's `normalise_line`, the detect engine, a store in a temporary directory),
//! seeded so that a failure is reproduced by running again.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use vigil_detect::{Engine, RuleSetBuilder};
use vigil_event::{json, Event, EventId, Source};
use vigil_ingest::{normalise_line, SourceCatalog};
use vigil_store::{SearchRequest, Store};

const CASES: usize = 300;
const SEED: u64 = 0x5eed_0014;

const MARKER_RULE: &str = "
title: Hostile JSON marker
id: 3f0b8a52-4d0e-4c47-9a53-7e2b1c9d0a14
logsource: {product: python, service: flask, category: application}
detection:
    selection:
        marker|startswith: hj
    condition: selection
level: low
";

const NEEDLE_RULE: &str = "
title: Hostile JSON deep needle
id: 9c1d2e3f-5a6b-4c7d-8e9f-0a1b2c3d4e5f
logsource: {product: python, service: flask, category: application}
detection:
    keywords:
        - '*deepneedle*'
    condition: keywords
level: low
";

/// String pieces as written inside quotes: escapes of every kind, surrogates lone and paired,
/// unicode written raw.
const STRING_PIECES: &[&str] = &[
    r"\ud800",
    r"\udfff",
    r"\uDBFF\uDFFF",
    r"\ud83d\ude00",
    r"\ud800\u0041",
    r"\udc00\ud800",
    r"\ud800\ud800\udc00",
    r"\u0000",
    r"\/",
    r"\b\f\n\r\t",
    r#"\""#,
    r"\\",
    r"\\ud800",
    r"\u00E9",
    "é中😀",
    "\u{2028}\u{202e}\u{feff}",
    "plain",
    "a b-c.d",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "-2.25e-3",
    "1e400",
    "-1e400",
    "1e-400",
    "-1e-400",
    "1.7976931348623157e309",
    "5e-324",
    "1E+2",
    "123456789012345678901234567890",
    "18446744073709551615",
    "-9223372036854775809",
    "0.000000000000000000000000000000000000000001",
];

struct Generator {
    rng: StdRng,
    /// Only what serde_json reads too: no lone surrogates, numbers within f64, nesting within
    /// its limit, no broken lines. For holding the record parser to serde_json's values.
    tame: bool,
}

impl Generator {
    fn number(&mut self, out: &mut String) {
        loop {
            let number = NUMBERS[self.rng.random_range(0..NUMBERS.len())];
            if !(self.tame && number.parse::<f64>().is_ok_and(f64::is_infinite)) {
                out.push_str(number);
                return;
            }
        }
    }

    fn ws(&mut self, out: &mut String) {
        match self.rng.random_range(0..12) {
            0 => out.push(' '),
            1 => out.push_str("\n\t "),
            2 => out.push('\r'),
            _ => {}
        }
    }

    fn string(&mut self, out: &mut String) {
        out.push('"');
        for _ in 0..self.rng.random_range(0..5) {
            let piece = STRING_PIECES[self.rng.random_range(0..STRING_PIECES.len())];
            if !(self.tame && is_lone_surrogate(piece)) {
                out.push_str(piece);
            }
        }
        out.push('"');
    }

    /// Keys start with `k`, so they never meet the marker or a time field.
    fn key(&mut self, out: &mut String) {
        let mut key = String::new();
        self.string(&mut key);
        out.push_str("\"k");
        out.push_str(&key[1..]);
        self.ws(out);
        out.push(':');
        self.ws(out);
    }

    fn value(&mut self, out: &mut String, depth: usize, needle: &mut bool) {
        match self.rng.random_range(0..14) {
            0..=3 => self.string(out),
            4..=6 => self.number(out),
            7 => out.push_str(["true", "false", "null"][self.rng.random_range(0..3)]),
            8 | 9 if depth < 4 => {
                out.push('{');
                for i in 0..self.rng.random_range(0..4) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.key(out);
                    self.value(out, depth + 1, needle);
                    self.ws(out);
                }
                out.push('}');
            }
            10 | 11 if depth < 4 => {
                out.push('[');
                for i in 0..self.rng.random_range(0..4) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.value(out, depth + 1, needle);
                    self.ws(out);
                }
                out.push(']');
            }
            12 => self.deep(out, needle),
            _ => self.string(out),
        }
    }

    /// Nesting of arrays and objects, mixed, from a few levels to far past every limit, with
    /// sometimes a needle at the bottom for keyword matching to find.
    fn deep(&mut self, out: &mut String, needle: &mut bool) {
        let levels = match self.rng.random_range(0..10) {
            _ if self.tame => self.rng.random_range(1..json::MAX_DEPTH - 8),
            0 => self.rng.random_range(1000..5000),
            1..=4 => self
                .rng
                .random_range(json::MAX_DEPTH - 5..json::MAX_DEPTH + 5),
            _ => self.rng.random_range(1..300),
        };
        let mut closers = Vec::with_capacity(levels);
        for _ in 0..levels {
            if self.rng.random_bool(0.5) {
                out.push('[');
                closers.push(']');
            } else {
                out.push_str("{\"k\":");
                closers.push('}');
            }
        }
        if self.rng.random_bool(0.5) {
            out.push_str(if self.tame {
                "\"the deepneedle\""
            } else {
                "\"the deepneedle\\ud800\""
            });
            *needle = true;
        } else {
            self.number(out);
        }
        out.extend(closers.iter().rev());
    }

    /// One record: random members, maybe a decoy marker, and the marker last (a repeated key
    /// keeps its last value).
    fn record(&mut self, case: usize) -> Case {
        let mut out = String::new();
        let mut needle = false;
        self.ws(&mut out);
        out.push('{');
        let decoy = self.rng.random_bool(0.3);
        if decoy {
            out.push_str(&format!("\"marker\":\"dc{case}\","));
        }
        for _ in 0..self.rng.random_range(0..6) {
            self.ws(&mut out);
            self.key(&mut out);
            self.value(&mut out, 1, &mut needle);
            out.push(',');
        }
        out.push_str(&format!("\"marker\"\t:\"hj{case}\"}}"));
        self.ws(&mut out);
        let mut mutated = false;
        if !self.tame && self.rng.random_bool(0.15) {
            mutated = true;
            let mut at = self.rng.random_range(0..out.len());
            while !out.is_char_boundary(at) {
                at -= 1;
            }
            if self.rng.random_bool(0.5) {
                out.remove(at);
            } else {
                let junk = [",", "\"", "\\", "}", "]", "\u{1}", "x", "\\u12"];
                out.insert_str(at, junk[self.rng.random_range(0..junk.len())]);
            }
        }
        Case {
            line: out,
            decoy,
            needle,
            mutated,
        }
    }
}

struct Case {
    line: String,
    decoy: bool,
    needle: bool,
    mutated: bool,
}

/// Whether a string piece holds a surrogate escape that is not part of a pair.
fn is_lone_surrogate(piece: &str) -> bool {
    [r"\ud800", r"\udfff", r"\udc00"]
        .iter()
        .any(|lone| piece.contains(lone))
}

#[test]
fn the_record_parser_reads_what_serde_json_reads_to_the_same_values() {
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(SEED + 1),
        tame: true,
    };
    for case in 0..CASES {
        let line = generator.record(case).line;
        let expected: Map<String, Value> = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("case {case}: serde_json: {e}: {line}"));
        let parsed = json::parse_object_tolerant(&line).unwrap();
        assert_eq!(parsed.object, expected, "case {case}: {line}");
        assert!(!parsed.depth_limited, "case {case}");
        // Numbers compare by kind too (1 and 1.0 are different values).
        assert_eq!(
            serde_json::to_string(&parsed.object).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "case {case}"
        );
    }
}

/// Whether a string anywhere in `value` contains `needle` (parsed documents are at most
/// `json::MAX_DEPTH` deep, so the recursion is bounded).
fn has_text(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(text) => text.contains(needle),
        Value::Array(items) => items.iter().any(|item| has_text(item, needle)),
        Value::Object(object) => object.values().any(|item| has_text(item, needle)),
        _ => false,
    }
}

fn engine() -> Engine {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(MARKER_RULE, "marker.yml");
    builder.add_text(NEEDLE_RULE, "needle.yml");
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    built.engine
}

#[test]
fn every_accepted_line_is_detected_and_found_by_field() {
    let engine = engine();
    let spec = SourceCatalog::builtin().resolve("flask-app");
    let source = Source {
        kind: "http".into(),
        name: "flask-app".into(),
    };
    let received = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(SEED),
        tame: false,
    };
    // (case number, had a decoy marker) of the unbroken lines, all accepted.
    let mut findable: Vec<(usize, bool)> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let (mut accepted, mut refused, mut depth_limited, mut serde_refused) = (0, 0, 0, 0);
    let mut needles = 0;
    for case in 0..CASES {
        let Case {
            line,
            decoy,
            needle,
            mutated,
        } = generator.record(case);
        let id = EventId::derive("hostile json", &[line.as_bytes()]);
        let normalised = normalise_line(&spec, &source, line.as_bytes(), id, received, None);
        let parsed = json::parse_object_reporting(&line);
        // One verdict: ingest accepts exactly what the record parser reads.
        assert_eq!(
            normalised.is_ok(),
            parsed.is_ok(),
            "case {case}: {line}\ningest: {:?}\nparser: {:?}",
            normalised.as_ref().err(),
            parsed.as_ref().err()
        );
        // On what serde_json reads, the record parser reads the same.
        match serde_json::from_str::<Map<String, Value>>(&line) {
            Ok(expected) => {
                let tolerant = json::parse_object_tolerant(&line).unwrap();
                assert_eq!(tolerant.object, expected, "case {case}: {line}");
            }
            Err(_) => serde_refused += 1,
        }
        let event = match normalised {
            Ok(event) => event,
            Err(_) => {
                assert!(mutated, "case {case} refused unbroken: {line}");
                refused += 1;
                continue;
            }
        };
        accepted += 1;
        let parsed = parsed.unwrap();
        depth_limited += usize::from(parsed.depth_limited);
        let document = event
            .document()
            .unwrap_or_else(|e| panic!("case {case}: {e}: {line}"));
        assert_eq!(document, parsed.object, "case {case}");
        let matched: Vec<&str> = engine
            .evaluate_event(&event)
            .unwrap_or_else(|e| panic!("case {case}: {e}: {line}"))
            .iter()
            .map(|rule| rule.title.as_str())
            .collect();
        if !mutated {
            assert_eq!(
                document["marker"],
                format!("hj{case}"),
                "case {case}: {line}"
            );
            assert!(
                matched.contains(&"Hostile JSON marker"),
                "case {case}: {line}"
            );
            // A repeated key can drop the planted needle; the keyword rule matches exactly when
            // the document (what the index also holds) still has it, at whatever depth.
            let kept = has_text(&Value::Object(document.clone()), "deepneedle");
            assert!(!kept || needle, "case {case}");
            needles += usize::from(kept);
            assert_eq!(
                matched.contains(&"Hostile JSON deep needle"),
                kept,
                "case {case}: {line}"
            );
            findable.push((case, decoy));
        }
        events.push(event);
    }
    // The generator reaches what it is for: refusals, records serde_json refuses, depth limits.
    assert!(accepted > CASES / 2, "{accepted} accepted");
    assert!(refused > 0 && depth_limited > 0 && needles > 0 && serde_refused > CASES / 4);
    eprintln!(
        "{accepted} accepted ({depth_limited} depth limited, {needles} with a needle), \
         {refused} refused, {serde_refused} refused by serde_json"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.index_events(&events).unwrap();
    store.commit().unwrap();
    // A broken line can still be accepted with a marker turned into another case's (a digit
    // deleted), so each marker is expected as often as the documents hold it.
    let mut markers: HashMap<String, u64> = HashMap::new();
    for event in &events {
        if let Some(Value::String(marker)) = event.document().unwrap().get("marker") {
            *markers.entry(marker.clone()).or_default() += 1;
        }
    }
    let total = |query: &str| store.search(&SearchRequest::new(query, 1)).unwrap().total;
    for (case, decoy) in findable {
        let marker = format!("hj{case}");
        assert!(markers[&marker] >= 1);
        assert_eq!(
            total(&format!("marker:{marker}")),
            markers[&marker],
            "case {case}"
        );
        if decoy {
            // The index shows the value rules saw, not the repeated key's earlier one.
            let decoy = format!("dc{case}");
            let expected = markers.get(&decoy).copied().unwrap_or(0);
            assert_eq!(total(&format!("marker:{decoy}")), expected, "case {case}");
        }
    }
    // Broken lines that were accepted with a plain marker are found by it too.
    for (marker, count) in &markers {
        if marker.chars().all(|c| c.is_ascii_alphanumeric()) {
            assert_eq!(total(&format!("marker:{marker}")), *count, "{marker}");
        }
    }
}
