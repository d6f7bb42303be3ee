//! Reading rule files from disk for the detection engine, which itself does no I/O.

use std::fs;
use std::path::{Path, PathBuf};

use vigil_detect::{BuiltRules, RuleError, RuleSetBuilder};

/// What loading a set of rule directories gave.
#[derive(Debug)]
pub struct LoadedRules {
    pub built: BuiltRules,
    pub files: usize,
}

/// Loads every `.yml` and `.yaml` file under `dirs`, in path order, into one rule set, so
/// correlations and filters may refer to rules in other files.
pub fn load_dirs(dirs: &[PathBuf]) -> std::io::Result<LoadedRules> {
    let mut files = Vec::new();
    for dir in dirs {
        collect_rule_files(dir, &mut files)?;
    }
    files.sort();
    let mut builder = RuleSetBuilder::new();
    let mut unreadable = Vec::new();
    for file in &files {
        let origin = file.display().to_string();
        match fs::read(file).map(String::from_utf8) {
            Ok(Ok(text)) => {
                builder.add_text(&text, &origin);
            }
            Ok(Err(e)) => unreadable.push(RuleError {
                origin,
                line: 1,
                message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            }),
            Err(e) => unreadable.push(RuleError {
                origin,
                line: 1,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let mut built = builder.build();
    built.errors.extend(unreadable);
    Ok(LoadedRules {
        built,
        files: files.len(),
    })
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
