//! Arbitrary bytes as a saved correlation state: restoring reports an error or restores, never
//! panics, and the detector keeps working (and bounded) afterwards.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use vigil_detect::{Detector, Engine, Limits, RuleSetBuilder};
use vigil_event::LogSource;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut builder = RuleSetBuilder::new();
        builder.add_text(include_str!("../correlations.yml"), "correlations.yml");
        let built = builder.build();
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        built.engine
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_groups: 8,
        max_entries: 8,
        max_ids: 2,
        max_streams: 4,
        max_stream_lag: 3_600_000,
        max_late_groups: 4,
    };
    let mut detector = Detector::with_limits(engine().clone(), limits);
    if detector.restore(data).is_err() {
        return;
    }
    let stats = detector.stats();
    assert!(
        stats.groups <= 8 * engine().correlations().len(),
        "{stats:?}"
    );
    assert!(
        stats.late_groups <= 4 * engine().correlations().len(),
        "{stats:?}"
    );
    assert!(detector.streams().count() <= 4);
    let logsource = LogSource::new(Some("test"), None, None);
    for (stream, time, kind) in [
        ("a", 0, "a"),
        ("b", 1, "b"),
        ("a", 2, "a"),
        ("c", i64::MAX, "b"),
        ("a", 3, "a"),
    ] {
        let event = json!({"kind": kind, "user": "u", "n": 5});
        let _ = detector.process_stream(stream, time, None, &logsource, event.as_object().unwrap());
    }
    // What was restored saves and restores again.
    let snapshot = detector.snapshot();
    let mut again = Detector::with_limits(engine().clone(), limits);
    again.restore(&snapshot).expect("a saved state restores");
});
