//! Candidates found by key never hide a match, over generated rules and events: the engine's
//! matches equal evaluating every rule, whatever the conditions (`and`, `or`, `not`, `1 of`,
//! `all of`), modifiers (`cased`, `all`, `neq`, `contains`, `exists`, `windash`) and values
//! (strings in any case, Unicode, numbers and booleans as text, integers as numbers of either
//! type, lists, nested and dotted keys).
//! The same generators hold the fields reported for a rule's finding to those its evaluation
//! finds.

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, Engine, Finding, Rule};
use vigil_event::LogSource;

use crate::common::{brute_force, Rng};

const FIELDS: [&str; 4] = ["f", "g", "h.i", "list"];
const WORDS: [&str; 9] = [
    "alpha", "ALPHA", "beta", "École", "école", "kill", "1", "true", "-run",
];

/// Integers a rule may give: each is also found as a float and as text, and 2^53 + 1 as a
/// float equals only 2^53.
const INTEGERS: [&str; 4] = ["1", "0", "-0", "9007199254740993"];

fn rule_value(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 | 4 => rng.pick(&INTEGERS).to_owned(),
        1 => "true".into(),
        2 => "null".into(),
        3 => "''".into(),
        _ => format!("'{}'", rng.pick(&WORDS)),
    }
}

fn number(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => json!(0),
        1 => json!(0.0),
        2 => json!(-0.0),
        3 => json!("-0"),
        4 => json!(9_007_199_254_740_993_i64),
        5 => json!(9_007_199_254_740_992.0_f64),
        6 => json!(9_007_199_254_740_992_i64),
        7 => json!(1.0),
        _ => json!(1),
    }
}

fn item(rng: &mut Rng) -> String {
    let field = rng.pick(&FIELDS);
    let modifier = rng.pick(&[
        "",
        "",
        "",
        "",
        "|cased",
        "|all",
        "|neq",
        "|contains",
        "|exists",
        "|windash",
    ]);
    let value = match modifier {
        "|exists" => rng.pick(&["true", "false"]).to_owned(),
        "|all" => format!("[{}, {}]", rule_value(rng), rule_value(rng)),
        _ if rng.below(3) == 0 => format!("[{}, {}]", rule_value(rng), rule_value(rng)),
        _ => rule_value(rng),
    };
    format!("'{field}{modifier}': {value}")
}

fn search(rng: &mut Rng) -> String {
    let map = |rng: &mut Rng| {
        let items: Vec<String> = (0..1 + rng.below(2)).map(|_| item(rng)).collect();
        format!("{{{}}}", items.join(", "))
    };
    if rng.below(4) == 0 {
        format!("[{}, {}]", map(rng), map(rng))
    } else {
        map(rng)
    }
}

fn rules(rng: &mut Rng, count: usize) -> Vec<Rule> {
    let text: Vec<String> = (0..count)
        .map(|n| {
            let condition = rng.pick(&[
                "sel0",
                "sel0",
                "sel0 and sel1",
                "sel0 or sel1",
                "sel0 and not sel1",
                "not sel0",
                "1 of sel*",
                "all of sel*",
                "(sel0 or sel1) and sel2",
                "sel0 and (sel1 or not sel2)",
            ]);
            format!(
                "title: r{n}\nlogsource: {{product: generated}}\ndetection:\n  sel0: {}\n  \
                 sel1: {}\n  sel2: {}\n  condition: {condition}\n",
                search(rng),
                search(rng),
                search(rng)
            )
        })
        .collect();
    // Combinations a loader refuses (such as `windash` on a number) are left out.
    parse_rules(&text.join("---\n"), "generated.yml").rules
}

fn event_value(rng: &mut Rng) -> Value {
    let word = rng.pick(&WORDS);
    match rng.below(10) {
        0 | 1 => number(rng),
        2 => json!(true),
        3 => Value::Null,
        4 => json!([word, rng.pick(&WORDS)]),
        5 => json!(word.to_uppercase()),
        6 => json!(word.replace('k', "\u{212a}")),
        7 => json!(format!("/{}", word.chars().skip(1).collect::<String>())),
        _ => json!(word),
    }
}

fn event(rng: &mut Rng) -> Map<String, Value> {
    let mut doc = Map::new();
    for field in FIELDS {
        if rng.below(4) == 0 {
            continue;
        }
        let value = event_value(rng);
        match (field, rng.below(3)) {
            ("h.i", 0) => doc.insert("h".into(), json!({ "i": value })),
            ("h.i", 1) => doc.insert("h".into(), json!([{ "i": "other" }, { "i": value }])),
            _ => doc.insert(field.into(), value),
        };
    }
    doc
}

#[test]
fn generated_rules_find_every_match_by_key() {
    let mut rng = Rng(0x6b65_7973_0000_0001);
    let logsource = LogSource::new(Some("generated"), None, None);
    let (mut sets, mut keyed, mut matched, mut checked) = (0, 0, 0, 0);
    for _ in 0..40 {
        let rules = rules(&mut rng, 12);
        let count = rules.len();
        let engine = Engine::new(rules);
        let (mut narrowed, mut unparsed) = (false, false);
        for _ in 0..150 {
            let doc = event(&mut rng);
            let expected = brute_force(&engine, &logsource, &doc);
            assert_eq!(engine.matching(&logsource, &doc), expected, "{doc:?}");
            let text = serde_json::to_string(&doc).unwrap();
            let parse = || vigil_event::Document::parse(&text);
            let record = engine.matching_record(&logsource, &text, parse).unwrap();
            assert_eq!(record.hits, expected, "{text}");
            // Rules found by key are parsed and narrowed; the literal prefilter's would
            // sometimes be ruled out unparsed.
            narrowed |= record.document.is_some() && record.evaluated < count;
            unparsed |= record.document.is_none();
            matched += expected.len();
            checked += 1;
        }
        sets += 1;
        keyed += usize::from(narrowed && !unparsed);
    }
    eprintln!("{sets} rule sets, {keyed} narrowed, {checked} events, {matched} matches");
    assert!(
        keyed >= 10,
        "{keyed} of {sets} rule sets had candidates narrowed"
    );
    assert!(matched >= 1000, "{matched} matches");
}

#[test]
fn the_fields_reported_for_a_finding_are_those_its_evaluation_finds() {
    // A finding's rule is known to match, so where its condition only joins searches with
    // `and` they are not evaluated first to learn which hold; the report must not change.
    let mut rng = Rng(0x6669_656c_6473_0001);
    let logsource = LogSource::new(Some("generated"), None, None);
    let (mut compared, mut reported) = (0, 0);
    for _ in 0..40 {
        let engine = Engine::new(rules(&mut rng, 12));
        for _ in 0..150 {
            let doc = event(&mut rng);
            for rule in brute_force(&engine, &logsource, &doc) {
                let finding = Finding::Rule { rule };
                let fields = engine.matched_fields(&finding, &logsource, &doc);
                assert_eq!(fields, engine.rules()[rule].matched_fields(&doc), "{doc:?}");
                compared += 1;
                reported += usize::from(!fields.is_empty());
            }
        }
    }
    assert!(
        compared >= 1000 && reported >= 500,
        "{compared} findings, {reported} with fields"
    );
}
