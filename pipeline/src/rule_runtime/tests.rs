use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use vigil_ui::rule_runtime::RuleRuntimeError;

use super::*;

const FIRST: &str = "33333333-0000-4000-8000-000000000001";
const SECOND: &str = "33333333-0000-4000-8000-000000000002";
const CORRELATION: &str = "33333333-0000-4000-8000-0000000000c1";

fn rule(id: &str, name: &str, action: &str) -> String {
    format!(
        "title: Rule {name}\nid: {id}\nname: {name}\nstatus: experimental\n\
         logsource: {{product: test, service: app}}\n\
         detection: {{selection: {{action: {action}}}, condition: selection}}\nlevel: low\n"
    )
}

/// A rule directory with one rule, and a data directory.
struct Dirs {
    _temp: TempDir,
    rules: PathBuf,
    data: PathBuf,
}

fn dirs() -> Dirs {
    let temp = TempDir::new().unwrap();
    let rules = temp.path().join("rules");
    let data = temp.path().join("data");
    fs::create_dir_all(&rules).unwrap();
    fs::create_dir_all(&data).unwrap();
    fs::write(rules.join("first.yml"), rule(FIRST, "first", "login")).unwrap();
    Dirs {
        _temp: temp,
        rules,
        data,
    }
}

fn load(dirs: &Dirs) -> LiveRules {
    let sources = RuleSources {
        config_dirs: vec![dirs.rules.clone()],
        ..RuleSources::default()
    };
    LiveRules::load(sources, &dirs.data).unwrap()
}

fn evaluated(rules: &LiveRules) -> Vec<String> {
    rules
        .current()
        .engine
        .rules()
        .iter()
        .map(|rule| rule.id.clone())
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

#[test]
fn a_reload_swaps_in_the_files_as_they_are_now() {
    let dirs = dirs();
    let rules = load(&dirs);
    assert_eq!(RuleFeed::generation(&rules), 1);
    write(&dirs.rules, "second.yml", &rule(SECOND, "second", "logout"));
    let outcome = rules.reload_files("test");
    assert!(outcome.swapped, "{outcome:?}");
    assert_eq!(outcome.generation, 2);
    assert_eq!(RuleFeed::generation(&rules), 2);
    assert_eq!(evaluated(&rules), [FIRST, SECOND]);
    let catalog = RuleRuntime::catalog(&rules);
    let second = catalog.get(SECOND).unwrap();
    assert_eq!(second.yaml, rule(SECOND, "second", "logout"));
    assert_eq!(second.status.as_deref(), Some("experimental"));
    assert!(second.enabled);
    assert_eq!(rules.last_reload(), Some(outcome));
}

#[test]
fn a_reload_with_an_error_keeps_the_rules_running_and_says_why() {
    let dirs = dirs();
    let rules = load(&dirs);
    write(&dirs.rules, "second.yml", &rule(SECOND, "second", "logout"));
    write(&dirs.rules, "broken.yml", "title: Broken\nlogsource: {}\n");
    let outcome = rules.reload_files("test");
    assert!(!outcome.swapped);
    assert_eq!(outcome.generation, 1);
    let broken = dirs.rules.join("broken.yml").display().to_string();
    assert!(
        outcome
            .errors
            .iter()
            .any(|e| e.file == broken && e.line >= 1),
        "{:?}",
        outcome.errors
    );
    assert_eq!(RuleFeed::generation(&rules), 1);
    assert_eq!(evaluated(&rules), [FIRST]);
    assert!(RuleRuntime::catalog(&rules).get(SECOND).is_none());

    // Rules that cannot be read at all are refused the same way.
    fs::remove_dir_all(&dirs.rules).unwrap();
    let outcome = rules.reload_files("test");
    assert!(!outcome.swapped);
    assert!(outcome.message.is_some(), "{outcome:?}");
    assert_eq!(evaluated(&rules), [FIRST]);
}

#[test]
fn a_disabled_rule_stays_disabled_after_a_restart() {
    let dirs = dirs();
    write(&dirs.rules, "second.yml", &rule(SECOND, "second", "logout"));
    let rules = load(&dirs);
    let outcome = rules.change(FIRST, false, "ada").unwrap();
    assert!(outcome.swapped);
    assert_eq!(evaluated(&rules), [SECOND]);
    assert!(!RuleRuntime::catalog(&rules).get(FIRST).unwrap().enabled);
    assert_eq!(RuleRuntime::catalog(&rules).disabled(), 1);
    drop(rules);

    let reopened = load(&dirs);
    assert_eq!(evaluated(&reopened), [SECOND]);
    let catalog = RuleRuntime::catalog(&reopened);
    assert!(!catalog.get(FIRST).unwrap().enabled);
    // Still listed, with its text, so it can be enabled again.
    assert!(catalog.get(FIRST).unwrap().yaml.contains(FIRST));
    reopened.change(FIRST, true, "ada").unwrap();
    assert_eq!(evaluated(&reopened), [FIRST, SECOND]);
    assert!(matches!(
        reopened.change("no-such-rule", false, "ada"),
        Err(RuleRuntimeError::UnknownRule(_))
    ));
    assert_eq!(evaluated(&load(&dirs)), [FIRST, SECOND]);
}

#[test]
fn a_disabled_rule_still_feeds_an_enabled_correlation_and_a_disabled_one_silences_its_parts() {
    let dirs = dirs();
    let correlation = format!(
        "title: Many\nid: {CORRELATION}\ncorrelation:\n  type: event_count\n  rules: [first]\n  \
         group-by: [user]\n  timespan: 5m\n  condition: {{gte: 2}}\nlevel: high\n"
    );
    write(&dirs.rules, "many.yml", &correlation);
    let rules = load(&dirs);
    rules.change(FIRST, false, "ada").unwrap();
    let active = rules.current();
    assert_eq!(active.engine.correlations().len(), 1);
    assert!(active.engine.rules().iter().any(|rule| rule.id == FIRST));
    assert!(active.suppressed.contains(FIRST));

    // The correlation disabled too: nothing needs the rule, which goes.
    rules.change(CORRELATION, false, "ada").unwrap();
    let active = rules.current();
    assert!(active.engine.correlations().is_empty());
    assert!(active.engine.rules().is_empty());

    // The rule enabled again, its correlation not: a building block stays silent.
    rules.change(FIRST, true, "ada").unwrap();
    let active = rules.current();
    assert!(active.engine.rules().is_empty(), "{:?}", evaluated(&rules));
}

/// The pages describe exactly the rules detection loaded, each in its file's own words.
#[test]
fn the_rule_catalogue_holds_every_loaded_rule_as_its_file_states_it() {
    let temp = TempDir::new().unwrap();
    let rules = LiveRules::load(RuleSources::default(), temp.path()).unwrap();
    let catalog = RuleRuntime::catalog(&rules);
    assert!(catalog.is_loaded());
    let active = rules.current();
    let engine = &active.engine;
    assert_eq!(
        catalog.len(),
        engine.rules().len() + engine.correlations().len()
    );
    for rule in engine.rules() {
        let info = catalog.get(&rule.id).unwrap();
        assert_eq!(info.title, rule.title);
        assert_eq!(info.description, rule.description);
        assert_eq!(info.falsepositives, rule.falsepositives);
        assert_eq!(info.references, rule.references);
        assert_eq!(info.tags, rule.tags);
        assert_eq!(info.file, rule.origin);
        assert!(info.yaml.contains(&rule.id), "{}", info.file);
    }
    assert!(engine.rules().iter().any(|rule| rule.description.is_some()));
}
