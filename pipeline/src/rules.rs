//! Reading rule files from disk for the detection engine, which itself does no I/O.

use std::fs;
use std::path::{Path, PathBuf};

use vigil_detect::{
    parse_rules_with, BuiltRules, Engine, LoadOptions, Pipeline, RuleError, RuleSetBuilder,
};

/// Why rules or pipelines could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Pipeline(#[from] RuleError),
    #[error("{}: cannot read: {source}", path.display())]
    ReadPipeline {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("rule directory {} not found", .0.display())]
    MissingDir(PathBuf),
    #[error("cannot read the rule directories")]
    ReadDirs(#[source] std::io::Error),
    #[error(
        "no detection rule loaded ({failed} failed to load); name a directory of Sigma rules \
         with --rules or `rules` in vigil.toml, leave both unset for Vigil's built-in rules, \
         or pass --allow-no-rules to run without detection"
    )]
    NoRules { failed: usize },
}

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

/// Vigil's own `rules/` and `pipelines/`, compiled into the binary by `build.rs`: each file's
/// path in the repository and its text.
mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

/// Where the built-in files say they come from in errors: their repository path, marked so
/// that nobody looks for them on disk.
const BUILTIN_ORIGIN: &str = "(built in) ";

/// Loads every `.yml` and `.yaml` rule file under `paths` (directories, searched recursively,
/// or single files), in path order, into one rule set, so correlations and filters may refer
/// to rules in other files.
pub fn load_dirs(paths: &[PathBuf], options: &LoadOptions) -> std::io::Result<LoadedRules> {
    let files = rule_files(paths)?;
    Ok(load_texts(
        files
            .iter()
            .map(|file| (file.display().to_string(), read_text(file))),
        options,
    ))
}

/// Loads the rules built into the binary (Vigil's own `rules/`), as [`load_dirs`] would
/// load that directory.
pub fn load_builtin(options: &LoadOptions) -> LoadedRules {
    load_texts(
        builtin::RULES
            .iter()
            .map(|(path, text)| (format!("{BUILTIN_ORIGIN}{path}"), Ok((*text).to_owned()))),
        options,
    )
}

/// The pipelines built into the binary (Vigil's own `pipelines/`).
pub fn builtin_pipelines() -> Result<Vec<Pipeline>, RulesError> {
    builtin::PIPELINES
        .iter()
        .map(|(path, text)| Ok(Pipeline::parse(text, &format!("{BUILTIN_ORIGIN}{path}"))?))
        .collect()
}

/// Refuses a rule set without a single rule, unless `allowed` (`--allow-no-rules`): a Vigil
/// that detects nothing must not look like one that found nothing.
pub fn require_rules(built: &BuiltRules, allowed: bool) -> Result<(), RulesError> {
    if !built.engine.rules().is_empty() || allowed {
        return Ok(());
    }
    Err(RulesError::NoRules {
        failed: built.errors.len(),
    })
}

/// One rule set from rule files given as their origin and their text (or why it could not
/// be read).
fn load_texts(
    files: impl Iterator<Item = (String, Result<String, String>)>,
    options: &LoadOptions,
) -> LoadedRules {
    let mut builder = RuleSetBuilder::new();
    let mut unreadable = Vec::new();
    let mut filters = 0;
    let mut count = 0;
    for (origin, text) in files {
        count += 1;
        match text {
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
    LoadedRules {
        built,
        files: count,
        filters,
    }
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
pub fn load_pipelines(paths: &[PathBuf]) -> Result<Vec<Pipeline>, RulesError> {
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
            let text = fs::read_to_string(file).map_err(|source| RulesError::ReadPipeline {
                path: file.clone(),
                source,
            })?;
            Ok(Pipeline::parse(&text, &file.display().to_string())?)
        })
        .collect()
}

/// The detection engine `vigil run` uses: Vigil's own rules and pipelines, built in, unless
/// rule directories (`rules` in the config, then `--rules`) or pipeline paths are named.
/// Configured directories that are missing are skipped with a warning; a missing `--rules`
/// directory is an error.
pub fn load_engine(
    config_dirs: &[PathBuf],
    extra_dirs: &[PathBuf],
    pipeline_paths: &[PathBuf],
    allow_no_rules: bool,
) -> Result<LoadedEngine, RulesError> {
    // With no rule path configured, Vigil's own rules and pipelines, built into the binary.
    let use_builtin_rules = config_dirs.is_empty() && extra_dirs.is_empty();
    let use_builtin_pipelines = pipeline_paths.is_empty();
    let mut dirs = Vec::new();
    for dir in config_dirs {
        if dir.is_dir() {
            dirs.push(dir.clone());
        } else {
            tracing::warn!(dir = %dir.display(), "rule directory not found; skipping it");
        }
    }
    for dir in extra_dirs {
        if !dir.is_dir() {
            return Err(RulesError::MissingDir(dir.clone()));
        }
        dirs.push(dir.clone());
    }
    // The default pipelines directory may be absent (a binary run outside the repository).
    let pipeline_paths: Vec<PathBuf> = pipeline_paths
        .iter()
        .filter(|path| {
            let present = path.exists();
            if !present {
                tracing::warn!(path = %path.display(), "pipeline path not found; skipping it");
            }
            present
        })
        .cloned()
        .collect();
    let options = vigil_detect::LoadOptions {
        pipelines: if use_builtin_pipelines {
            builtin_pipelines()?
        } else {
            load_pipelines(&pipeline_paths)?
        },
        ..vigil_detect::LoadOptions::default()
    };
    let loaded = if use_builtin_rules {
        load_builtin(&options)
    } else {
        load_dirs(&dirs, &options).map_err(RulesError::ReadDirs)?
    };
    let built = loaded.built;
    for error in &built.errors {
        tracing::warn!("rule not loaded: {error}");
    }
    for warning in &built.warnings {
        tracing::warn!("rule warning: {warning}");
    }
    tracing::info!(
        rules = built.engine.rules().len(),
        correlations = built.engine.correlations().len(),
        failed = built.errors.len(),
        files = loaded.files,
        "loaded detection rules"
    );
    require_rules(&built, allow_no_rules)?;
    Ok(LoadedEngine {
        engine: built.engine,
        failed: built.errors.len(),
    })
}

/// The engine `vigil run` detects with, and how many rules failed to load into it.
pub struct LoadedEngine {
    pub engine: Engine,
    pub failed: usize,
}

impl LoadedEngine {
    /// Sets the rule gauges; called once the metrics recorder is installed.
    pub fn record_metrics(&self) {
        metrics::gauge!("vigil_rules_loaded").set(self.engine.rules().len() as f64);
        metrics::gauge!("vigil_correlations_loaded").set(self.engine.correlations().len() as f64);
        metrics::gauge!("vigil_rules_failed").set(self.failed as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_are_this_repository_s() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate sits in the workspace");
        let on_disk = rule_files(&[root.join("rules")]).unwrap();
        assert!(!on_disk.is_empty());
        assert_eq!(builtin::RULES.len(), on_disk.len());
        let pipelines = builtin_pipelines().unwrap();
        assert_eq!(pipelines.len(), builtin::PIPELINES.len());
        assert!(!pipelines.is_empty());
        let loaded = load_builtin(&LoadOptions {
            pipelines,
            ..LoadOptions::default()
        });
        assert!(loaded.built.errors.is_empty(), "{:?}", loaded.built.errors);
        let from_disk = load_dirs(&[root.join("rules")], &LoadOptions::default()).unwrap();
        assert_eq!(
            loaded.built.engine.rules().len(),
            from_disk.built.engine.rules().len()
        );
        assert!(loaded
            .built
            .engine
            .rules()
            .iter()
            .any(|rule| rule.title.to_lowercase().contains("cloudtrail")));
    }
}
