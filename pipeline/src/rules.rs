//! Reading rule files from disk for the detection engine, which itself does no I/O.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use vigil_detect::{
    parse_rules_with, BuiltRules, Engine, FilterTargets, LoadOptions, ParsedRules, Pipeline,
    RuleError, RuleSetBuilder,
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
    #[error("cannot use the list of rules disabled at runtime")]
    Disabled(#[source] Box<dyn std::error::Error + Send + Sync>),
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

/// Every `.yml` and `.yaml` file under `dir`, test files included, in path order.
///
/// Each directory's entries are taken by name, so the files of one directory come out already
/// sorted and [`rule_files`]' sort of them is one pass: sorting SigmaHQ's 3,141 paths from the
/// order the directories list them compared path components about 40,000 times, 2.5% of
/// loading.
pub fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries = fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_cached_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
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

/// Where `vigil run` reads its rules from: Vigil's own rules and pipelines, built in, unless
/// rule directories (`rules` in the config, then `--rules`) or pipeline paths are named.
/// Read again on every reload, so a reload sees what start-up would.
#[derive(Debug, Clone, Default)]
pub struct RuleSources {
    pub config_dirs: Vec<PathBuf>,
    pub extra_dirs: Vec<PathBuf>,
    pub pipelines: Vec<PathBuf>,
    pub allow_no_rules: bool,
}

/// Every rule file's origin and text (or why it could not be read), and the options they
/// load with: what one rule set is built from.
#[derive(Debug, Clone, Default)]
pub struct SourceTexts {
    pub files: Vec<(String, Result<String, String>)>,
    pub options: LoadOptions,
}

impl SourceTexts {
    /// The text of the file a rule came from, by the origin its rule names.
    pub fn text_of(&self, origin: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(name, _)| name == origin)
            .and_then(|(_, text)| text.as_deref().ok())
    }
}

impl RuleSources {
    fn uses_builtin_rules(&self) -> bool {
        self.config_dirs.is_empty() && self.extra_dirs.is_empty()
    }

    /// The rule directories that exist. Configured directories that are missing are skipped
    /// with a warning; a missing `--rules` directory is an error.
    fn dirs(&self) -> Result<Vec<PathBuf>, RulesError> {
        let mut dirs = Vec::new();
        for dir in &self.config_dirs {
            if dir.is_dir() {
                dirs.push(dir.clone());
            } else {
                tracing::warn!(dir = %dir.display(), "rule directory not found; skipping it");
            }
        }
        for dir in &self.extra_dirs {
            if !dir.is_dir() {
                return Err(RulesError::MissingDir(dir.clone()));
            }
            dirs.push(dir.clone());
        }
        Ok(dirs)
    }

    /// The pipeline paths that exist: the default pipelines directory may be absent (a
    /// binary run outside the repository).
    fn pipeline_paths(&self) -> Vec<PathBuf> {
        self.pipelines
            .iter()
            .filter(|path| {
                let present = path.exists();
                if !present {
                    tracing::warn!(path = %path.display(), "pipeline path not found; skipping it");
                }
                present
            })
            .cloned()
            .collect()
    }

    /// Reads every rule file and pipeline, as start-up does.
    pub fn read(&self) -> Result<SourceTexts, RulesError> {
        let options = LoadOptions {
            pipelines: if self.pipelines.is_empty() {
                builtin_pipelines()?
            } else {
                load_pipelines(&self.pipeline_paths())?
            },
            ..LoadOptions::default()
        };
        let files = if self.uses_builtin_rules() {
            builtin::RULES
                .iter()
                .map(|(path, text)| (format!("{BUILTIN_ORIGIN}{path}"), Ok((*text).to_owned())))
                .collect()
        } else {
            rule_files(&self.dirs()?)
                .map_err(RulesError::ReadDirs)?
                .into_iter()
                .map(|file| (file.display().to_string(), read_text(&file)))
                .collect()
        };
        Ok(SourceTexts { files, options })
    }

    /// The files whose changes a reload would see: every rule file and pipeline file named
    /// on disk (none when the built-in ones are used), for watching.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if !self.uses_builtin_rules() {
            let dirs: Vec<PathBuf> = self
                .config_dirs
                .iter()
                .chain(&self.extra_dirs)
                .filter(|dir| dir.is_dir())
                .cloned()
                .collect();
            files.extend(rule_files(&dirs).unwrap_or_default());
        }
        for path in &self.pipelines {
            if path.is_dir() {
                let _ = collect_files(path, &mut files);
            } else {
                files.push(path.clone());
            }
        }
        files
    }
}

/// A rule set built with some rules disabled: everything that loaded (for the pages and the
/// error check), and the engine detection runs, without what is disabled.
#[derive(Debug)]
pub struct BuiltSet {
    /// Every rule and correlation that loaded, disabled or not, with the load errors.
    pub full: BuiltRules,
    /// What detection evaluates.
    pub engine: Engine,
    /// Rules and correlations in `engine` only to feed an enabled correlation (disabled, or
    /// a building block of a disabled correlation): their own matches are not reported.
    pub suppressed: HashSet<String>,
    pub files: usize,
    pub filters: usize,
}

/// Builds the rule set of `texts` with the rules and correlations whose ids are in
/// `disabled` left out. A disabled rule that an enabled correlation refers to stays in the
/// engine to feed it, but reports nothing of its own.
pub fn build_set(texts: &SourceTexts, disabled: &BTreeSet<String>) -> BuiltSet {
    let mut all = ParsedRules::default();
    let mut unreadable = Vec::new();
    let mut filters = 0;
    for (origin, text) in &texts.files {
        match text {
            Ok(text) => {
                let parsed = parse_rules_with(text, origin, &texts.options);
                filters += parsed.filters.len();
                all.rules.extend(parsed.rules);
                all.correlations.extend(parsed.correlations);
                all.filters.extend(parsed.filters);
                all.errors.extend(parsed.errors);
            }
            Err(message) => unreadable.push(RuleError {
                origin: origin.clone(),
                line: 1,
                message: message.clone(),
            }),
        }
    }
    let (effective, suppressed) = select_enabled(&all, disabled);
    let mut full = {
        let mut builder = RuleSetBuilder::new();
        builder.add_parsed(all);
        builder.build()
    };
    full.errors.extend(unreadable);
    let engine = if disabled.is_empty() {
        full.engine.clone()
    } else {
        let mut builder = RuleSetBuilder::new();
        builder.add_parsed(effective);
        builder.build().engine
    };
    BuiltSet {
        full,
        engine,
        suppressed,
        files: texts.files.len(),
        filters,
    }
}

/// A rule or correlation, by its index in the parsed documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Rule(usize),
    Correlation(usize),
}

/// The documents of `all` that detection needs with `disabled` off, and the ids among them
/// whose own matches must not be reported.
fn select_enabled(
    all: &ParsedRules,
    disabled: &BTreeSet<String>,
) -> (ParsedRules, HashSet<String>) {
    // References name an id first, then a name, as the builder resolves them; the first
    // document with an id keeps it.
    let mut by_id: HashMap<&str, Item> = HashMap::new();
    let mut by_name: HashMap<&str, Item> = HashMap::new();
    for (index, rule) in all.rules.iter().enumerate() {
        by_id.entry(&rule.id).or_insert(Item::Rule(index));
        if let Some(name) = &rule.name {
            by_name.entry(name).or_insert(Item::Rule(index));
        }
    }
    for (index, c) in all.correlations.iter().enumerate() {
        by_id.entry(&c.id).or_insert(Item::Correlation(index));
        if let Some(name) = &c.name {
            by_name.entry(name).or_insert(Item::Correlation(index));
        }
    }
    let resolve = |reference: &str| {
        by_id
            .get(reference)
            .or_else(|| by_name.get(reference))
            .copied()
    };
    // Building blocks: referred to by a correlation without `generate: true`, so silent in
    // the full set; they must stay silent when that correlation is disabled.
    let mut silent: HashSet<Item> = HashSet::new();
    for c in &all.correlations {
        if !c.generate {
            silent.extend(c.rules.iter().filter_map(|r| resolve(r)));
        }
    }
    // What the enabled correlations need, through nested correlations.
    let mut needed: HashSet<Item> = HashSet::new();
    let mut pending: Vec<usize> = (0..all.correlations.len())
        .filter(|&index| !disabled.contains(&all.correlations[index].id))
        .collect();
    let mut visited: HashSet<usize> = HashSet::new();
    while let Some(index) = pending.pop() {
        if !visited.insert(index) {
            continue;
        }
        for target in all.correlations[index]
            .rules
            .iter()
            .filter_map(|r| resolve(r))
        {
            needed.insert(target);
            if let Item::Correlation(inner) = target {
                pending.push(inner);
            }
        }
    }
    let mut suppressed = HashSet::new();
    let mut keep = |item: Item, id: &str| -> bool {
        let enabled = !disabled.contains(id);
        let kept = needed.contains(&item) || (enabled && !silent.contains(&item));
        if kept && (!enabled || silent.contains(&item)) {
            suppressed.insert(id.to_owned());
        }
        kept
    };
    let rules: Vec<_> = all
        .rules
        .iter()
        .enumerate()
        .filter(|(index, rule)| keep(Item::Rule(*index), &rule.id))
        .map(|(_, rule)| rule.clone())
        .collect();
    let correlations: Vec<_> = all
        .correlations
        .iter()
        .enumerate()
        .filter(|(index, c)| keep(Item::Correlation(*index), &c.id))
        .map(|(_, c)| c.clone())
        .collect();
    let kept_rule = |reference: &str| match resolve(reference) {
        Some(Item::Rule(index)) => rules.iter().any(|r| r.id == all.rules[index].id),
        // Unknown names stay, so the builder reports them as it would have.
        _ => true,
    };
    let filters = all
        .filters
        .iter()
        .filter_map(|filter| {
            let mut filter = filter.clone();
            if let FilterTargets::Rules(references) = &mut filter.targets {
                references.retain(|reference| kept_rule(reference));
                // An empty list would mean every rule.
                if references.is_empty() {
                    return None;
                }
            }
            Some(filter)
        })
        .collect();
    let effective = ParsedRules {
        rules,
        correlations,
        filters,
        errors: Vec::new(),
    };
    (effective, suppressed)
}

/// Logs what a rule set holds and what failed to load.
pub fn log_built(built: &BuiltSet) {
    for error in &built.full.errors {
        tracing::warn!("rule not loaded: {error}");
    }
    for warning in &built.full.warnings {
        tracing::warn!("rule warning: {warning}");
    }
    tracing::info!(
        rules = built.full.engine.rules().len(),
        correlations = built.full.engine.correlations().len(),
        failed = built.full.errors.len(),
        files = built.files,
        evaluated = built.engine.rules().len(),
        "loaded detection rules"
    );
}

/// The detection engine `vigil run` uses, read from `sources` (see [`RuleSources`]) with
/// nothing disabled.
pub fn load_engine(
    config_dirs: &[PathBuf],
    extra_dirs: &[PathBuf],
    pipeline_paths: &[PathBuf],
    allow_no_rules: bool,
) -> Result<LoadedEngine, RulesError> {
    let sources = RuleSources {
        config_dirs: config_dirs.to_vec(),
        extra_dirs: extra_dirs.to_vec(),
        pipelines: pipeline_paths.to_vec(),
        allow_no_rules,
    };
    let built = build_set(&sources.read()?, &BTreeSet::new());
    log_built(&built);
    require_rules(&built.full, allow_no_rules)?;
    Ok(LoadedEngine {
        failed: built.full.errors.len(),
        engine: built.engine,
    })
}

/// The engine `vigil run` detects with, and how many rules failed to load into it.
pub struct LoadedEngine {
    pub engine: Engine,
    pub failed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule files come in path order, where a directory's files sort by component, not by
    /// byte (`a/z.yml` before `a-b.yml`, as `-` sorts before `/`), and test files are left out.
    #[test]
    fn rule_files_come_in_path_order() {
        let root = tempfile::tempdir().unwrap();
        let names = [
            "a-b.yml",
            "a/z.yml",
            "a/b/c.yaml",
            "a.yml",
            "B.yml",
            "a/b-c.yml",
            "é.yml",
            "a/b/c.tests.yml",
            "a/notes.txt",
        ];
        for name in names {
            let path = root.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "title: x\n").unwrap();
        }
        let mut collected = Vec::new();
        collect_files(root.path(), &mut collected).unwrap();
        let mut sorted = collected.clone();
        sorted.sort();
        assert_eq!(collected, sorted);
        assert_eq!(collected.len(), 8);
        let found = rule_files(&[root.path().to_owned()]).unwrap();
        let relative: Vec<_> = found
            .iter()
            .map(|file| file.strip_prefix(root.path()).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            relative,
            [
                "B.yml",
                "a/b/c.yaml",
                "a/b-c.yml",
                "a/z.yml",
                "a-b.yml",
                "a.yml",
                "é.yml"
            ]
        );
    }

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
