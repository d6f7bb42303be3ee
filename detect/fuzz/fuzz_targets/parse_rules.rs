//! Arbitrary text as rule files and as pipelines: loading reports errors, never panics, and
//! whatever loads (correlations included) can be built into an engine and run over a short
//! stream of events through the stateful detector.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use vigil_detect::{parse_rules, Detector, Pipeline, RuleSetBuilder};
use vigil_event::LogSource;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Pipeline::parse(text, "fuzz.yml");
    let mut builder = RuleSetBuilder::new();
    builder.add_parsed(parse_rules(text, "fuzz.yml"));
    let built = builder.build();
    let event = json!({"a": "x", "b": [1, "Y", {"c": null}], "verb": "create"});
    let doc = event.as_object().expect("an object");
    let everything = LogSource::new(Some("aws"), Some("cloudtrail"), Some("webserver"));
    let _ = built.engine.matching(&everything, doc);
    let mut detector = Detector::new(built.engine);
    for (stream, time) in [
        ("a", 0),
        ("b", -1),
        ("a", 60_000),
        ("a", i64::MAX),
        ("b", i64::MIN),
    ] {
        let _ = detector.process_stream(stream, time, None, &everything, doc);
    }
    let snapshot = detector.snapshot();
    let _ = detector.restore(&snapshot);
});
