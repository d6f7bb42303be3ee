//! Our rules against our demo data: each rule matches exactly the records `demo/EXPECTED.md`
//! names, and no benign record raises anything. Records go through one stateful detector, as
//! in `vigil run`, so correlations count and rules that only feed them stay quiet.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;
use vigil_detect::{Detector, Engine, Finding, RuleSetBuilder};
use vigil_event::{EventId, Source};
use vigil_ingest::{normalise_line, SourceCatalog};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (rule id, demo file, line) triples.
type Matches = BTreeSet<(String, String, usize)>;

fn load_engine() -> Engine {
    let mut builder = RuleSetBuilder::new();
    let mut stack = vec![Path::new(ROOT).join("rules")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".yml") && !name.ends_with(".tests.yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                builder.add_text(&text, &path.display().to_string());
                files += 1;
            }
        }
    }
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert!(files >= 15, "only {files} rule files");
    built.engine
}

fn expected_matches() -> Matches {
    let text = std::fs::read_to_string(Path::new(ROOT).join("demo/EXPECTED.md")).unwrap();
    let section = text
        .split("## Matches per rule")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let mut expected = Matches::new();
    for row in section.lines().filter(|l| l.starts_with("| `rules/")) {
        let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
        let (id, file, lines) = (cells[2], cells[3], cells[4]);
        for range in lines.split(',') {
            let (start, end) = match range.trim().split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => (range.trim().parse().unwrap(), range.trim().parse().unwrap()),
            };
            for line in start..=end {
                expected.insert((id.to_owned(), file.to_owned(), line));
            }
        }
    }
    assert!(expected.len() > 20);
    expected
}

#[test]
fn every_rule_matches_exactly_its_demo_records() {
    let engine = load_engine();
    let ids: Vec<String> = engine.rules().iter().map(|r| r.id.clone()).collect();
    let correlation_ids: Vec<String> = engine.correlations().iter().map(|c| c.id.clone()).collect();
    let catalog = SourceCatalog::builtin();
    let mut actual = Matches::new();
    // One detector for every source, as in `vigil run`, fed a source at a time with CloudTrail
    // (whose events are the latest) first: each source keeps its own watermark, so the Flask
    // app's brute force, an hour earlier, still correlates.
    let mut detector = Detector::new(engine.clone());
    for (file, source) in [
        ("demo/cloudtrail.ndjson", "cloudtrail"),
        ("demo/kubernetes-audit.ndjson", "kubernetes-audit"),
        ("demo/flask-app.ndjson", "flask-app"),
        ("demo/flask-access.log", "flask-access"),
    ] {
        let spec = catalog.resolve(source);
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        for (index, line) in text.lines().enumerate() {
            let source = Source {
                kind: spec.kind.clone(),
                name: source.into(),
            };
            let id = EventId::derive("test", &[line.as_bytes()]);
            let event = normalise_line(&spec, &source, line.as_bytes(), id, Utc::now(), None)
                .unwrap_or_else(|reason| panic!("{file}:{}: {reason}", index + 1));
            let document = event.document().unwrap();
            let time = event.time.timestamp_millis();
            let detections = detector
                .evaluate(
                    source.name.as_str(),
                    time,
                    Some(event.id),
                    &event.logsource,
                    &document,
                )
                .detections;
            for detection in detections {
                let id = match detection {
                    Finding::Rule { rule } => ids[rule].clone(),
                    Finding::Correlation(m) => correlation_ids[m.correlation].clone(),
                };
                actual.insert((id, file.to_owned(), index + 1));
            }
        }
    }
    let expected = expected_matches();
    let missed: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed: {missed:#?}\nunexpected: {extra:#?}"
    );
}
