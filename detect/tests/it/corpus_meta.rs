//! Every SigmaHQ directory through one RuleSetBuilder: correlation and filter documents found
//! there must load, and building the whole set must not panic.
//!
//! The corpus root is `VIGIL_SIGMA_CORPUS_ROOT`, else `shared/corpus/sigma` beside the checkout;
//! without either the test is skipped with a note.

use crate::common::{corpus_root, yaml_files};

use vigil_detect::{parse_rules, Detector, RuleSetBuilder};
use vigil_event::LogSource;

#[test]
fn corpus_correlations_and_filters_load() {
    let Some(root) = corpus_root() else {
        println!("note: no Sigma corpus (set VIGIL_SIGMA_CORPUS_ROOT); skipping");
        return;
    };
    for dir in ["rules", "rules-emerging-threats", "rules-threat-hunting"] {
        let files = yaml_files(&root.join(dir));
        let mut builder = RuleSetBuilder::new();
        let (mut correlations, mut filters, mut meta_errors) = (0, 0, Vec::new());
        for file in &files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let origin = file.display().to_string();
            let parsed = parse_rules(&text, &origin);
            correlations += parsed.correlations.len();
            filters += parsed.filters.len();
            // Errors in documents that are correlations or filters by their top-level keys.
            let is_meta = text
                .lines()
                .any(|line| line.starts_with("correlation:") || line.starts_with("filter:"));
            if is_meta {
                meta_errors.extend(parsed.errors.iter().map(|e| e.to_string()));
            }
            builder.add_parsed(parsed);
        }
        let built = builder.build();
        println!(
            "{dir}: {} files, {correlations} correlation and {filters} filter documents loaded, \
             {} failed; engine: {} rules, {} correlations",
            files.len(),
            meta_errors.len(),
            built.engine.rules().len(),
            built.engine.correlations().len()
        );
        assert!(meta_errors.is_empty(), "{meta_errors:#?}");
        let mut detector = Detector::new(built.engine);
        let _ = detector.process(
            0,
            None,
            &LogSource::new(Some("windows"), None, Some("process_creation")),
            &serde_json::Map::new(),
        );
    }
}
