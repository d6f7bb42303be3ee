//! Reading rule files from disk for the detection engine, which itself does no I/O.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use vigil_detect::{parse_rules, Rule, RuleError};

/// What loading a set of rule directories gave.
#[derive(Debug, Default)]
pub struct LoadedRules {
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
    pub files: usize,
}

/// Loads every `.yml` and `.yaml` file under `dirs`, in path order. A rule whose id an earlier
/// rule already took is an error, since alerts and correlations are keyed by rule id.
pub fn load_dirs(dirs: &[PathBuf]) -> std::io::Result<LoadedRules> {
    let mut files = Vec::new();
    for dir in dirs {
        collect_rule_files(dir, &mut files)?;
    }
    files.sort();
    let mut loaded = LoadedRules::default();
    let mut ids = HashSet::new();
    for file in &files {
        let origin = file.display().to_string();
        let text = match fs::read(file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => {
                    loaded.errors.push(RuleError {
                        origin,
                        line: 1,
                        message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                    });
                    continue;
                }
            },
            Err(e) => {
                loaded.errors.push(RuleError {
                    origin,
                    line: 1,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        loaded.files += 1;
        let parsed = parse_rules(&text, &origin);
        loaded.errors.extend(parsed.errors);
        for rule in parsed.rules {
            if ids.insert(rule.id.clone()) {
                loaded.rules.push(rule);
            } else {
                loaded.errors.push(RuleError {
                    origin: rule.origin.clone(),
                    line: rule.line,
                    message: format!("rule id {} is already used by another rule", rule.id),
                });
            }
        }
    }
    Ok(loaded)
}

fn collect_rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rule_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}
