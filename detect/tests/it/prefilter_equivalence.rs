//! The engine's literal prefilter only skips rules that cannot match: on every event, the
//! engine's matches equal those of evaluating each routed rule in turn.

use std::path::{Path, PathBuf};

use crate::common::{corpus_rules, yaml_files};

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

fn brute_force(engine: &Engine, logsource: &LogSource, doc: &Map<String, Value>) -> Vec<usize> {
    engine
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.applies_to(logsource) && rule.matches(doc))
        .map(|(index, _)| index)
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
    let access = std::fs::read_to_string(repo().join("demo/flask-access.log")).unwrap();
    for line in access.lines() {
        let request = line.split('"').nth(1).unwrap_or_default();
        let target = request.split(' ').nth(1).unwrap_or_default();
        let doc = json!({"message": line, "target": target, "method": "GET"});
        events.push((&web, doc.as_object().unwrap().clone()));
    }
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
