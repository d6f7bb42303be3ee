//! Every SigmaHQ directory through one RuleSetBuilder: correlation and filter documents found
//! there must load, and building the whole set must not panic.
//!
//! The corpus root is `VIGIL_SIGMA_CORPUS_ROOT`, else `shared/corpus/sigma` beside the checkout;
//! without either the test is skipped with a note.

use std::path::{Path, PathBuf};

use vigil_detect::{parse_rules, Detector, RuleSetBuilder};
use vigil_event::LogSource;

fn corpus_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIL_SIGMA_CORPUS_ROOT") {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma");
    default.is_dir().then_some(default)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
}

#[test]
fn corpus_correlations_and_filters_load() {
    let Some(root) = corpus_root() else {
        println!("note: no Sigma corpus (set VIGIL_SIGMA_CORPUS_ROOT); skipping");
        return;
    };
    for dir in ["rules", "rules-emerging-threats", "rules-threat-hunting"] {
        let mut files = Vec::new();
        yaml_files(&root.join(dir), &mut files);
        files.sort();
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
