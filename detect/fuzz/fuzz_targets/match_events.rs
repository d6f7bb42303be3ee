//! A fixed set of rules using every modifier, against arbitrary JSON events: matching never
//! panics, and the engine's prefiltered matches equal evaluating every routed rule.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use vigil_detect::{parse_rules, Engine};
use vigil_event::LogSource;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let parsed = parse_rules(include_str!("../rules.yml"), "rules.yml");
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        Engine::new(parsed.rules)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let engine = engine();
    for logsource in [
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        LogSource::new(Some("kubernetes"), Some("audit"), None),
        LogSource::new(None, None, Some("webserver")),
    ] {
        let expected: Vec<usize> = engine
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.applies_to(&logsource) && rule.matches(&doc))
            .map(|(index, _)| index)
            .collect();
        assert_eq!(engine.matching(&logsource, &doc), expected);
    }
});
