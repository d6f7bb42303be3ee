//! Reading rule files from disk for the detection engine, which itself does no I/O.

use std::fs;
use std::path::{Path, PathBuf};

use vigil_detect::{
    parse_rules_with, BuiltRules, LoadOptions, Pipeline, RuleError, RuleSetBuilder,
};

/// What loading a set of rule directories gave.
#[derive(Debug)]
pub struct LoadedRules {
    pub built: BuiltRules,
    pub files: usize,
    /// Meta-filters that parsed; the builder folds them into the rules they name.
    pub filters: usize,
}

/// Rule test files sit beside the rules they test (see `rules/README.md`), so every loader
/// must leave them out of the rules.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(".tests.yml") || name.ends_with(".tests.yaml"))
}

/// Loads every `.yml` and `.yaml` rule file under `paths` (directories, searched recursively,
/// or single files), in path order, into one rule set, so correlations and filters may refer
/// to rules in other files.
pub fn load_dirs(paths: &[PathBuf], options: &LoadOptions) -> std::io::Result<LoadedRules> {
    let files = rule_files(paths)?;
    let mut builder = RuleSetBuilder::new();
    let mut unreadable = Vec::new();
    let mut filters = 0;
    for file in &files {
        let origin = file.display().to_string();
        match read_text(file) {
            Ok(text) => {
                let parsed = parse_rules_with(&text, &origin, options);
                filters += parsed.filters.len();
                builder.add_parsed(parsed);
            }
            Err(message) => unreadable.push(RuleError {
                origin,
                line: 1,
                message,
            }),
        }
    }
    let mut built = builder.build();
    built.errors.extend(unreadable);
    Ok(LoadedRules {
        built,
        files: files.len(),
        filters,
    })
}

/// The rule files under `paths`, sorted, without test files.
pub fn rule_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_files(path, &mut files)?;
        } else {
            // Named explicitly, so read it whatever its extension; a missing one is an error.
            fs::metadata(path)?;
            files.push(path.clone());
        }
    }
    files.retain(|file| !is_test_file(file));
    files.sort();
    Ok(files)
}

/// Every `.yml` and `.yaml` file under `dir`, test files included.
pub fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// A file's text, or why it cannot be used.
pub fn read_text(path: &Path) -> Result<String, String> {
    match fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Reads field-mapping pipelines: each path is a pipeline file or a directory of them
/// (`.yml`/`.yaml`, in name order). A pipeline that fails to parse names its file and line.
pub fn load_pipelines(paths: &[PathBuf]) -> anyhow::Result<Vec<Pipeline>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|file| {
            let text = fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
            Pipeline::parse(&text, &file.display().to_string()).map_err(anyhow::Error::from)
        })
        .collect()
}
