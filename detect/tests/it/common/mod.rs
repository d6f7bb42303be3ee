//! Finding rule files for the integration tests: the SigmaHQ corpus beside the checkout, and
//! the repository's own rules.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The SigmaHQ corpus root: `VIGIL_SIGMA_CORPUS_ROOT`, else `shared/corpus/sigma` beside the
/// checkout.
pub fn corpus_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIL_SIGMA_CORPUS_ROOT") {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma");
    default.is_dir().then_some(default)
}

/// The corpus's `rules/` directory: `VIGIL_SIGMA_CORPUS`, else `rules` under [`corpus_root`].
pub fn corpus_rules() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIL_SIGMA_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    corpus_root()
        .map(|root| root.join("rules"))
        .filter(|dir| dir.is_dir())
}

/// Every `.yml` and `.yaml` rule file under `dir`, in path order. Rule test files
/// (`*.tests.yml`) sit beside rules but are not rules, so they are left out.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if path.is_dir() {
                walk(&path, out);
            } else if (name.ends_with(".yml") || name.ends_with(".yaml"))
                && !name.ends_with(".tests.yml")
                && !name.ends_with(".tests.yaml")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// One of `choices`, each as likely.
    pub fn pick<'a, T: ?Sized>(&mut self, choices: &[&'a T]) -> &'a T {
        choices[self.below(choices.len())]
    }
}

/// The rules of `engine` routed to `logsource` that match `doc`, each evaluated in turn: what
/// the engine's prefilters must never change.
pub fn brute_force(
    engine: &vigil_detect::Engine,
    logsource: &vigil_event::LogSource,
    doc: &serde_json::Map<String, serde_json::Value>,
) -> Vec<usize> {
    engine
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.applies_to(logsource) && rule.matches(doc))
        .map(|(index, _)| index)
        .collect()
}
