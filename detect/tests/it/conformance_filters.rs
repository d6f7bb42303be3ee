//! Meta-filters, written from the Sigma 2.1 filters specification and pySigma's behaviour: the
//! filter's condition is ANDed, as written, to the condition of each rule it names whose
//! logsource it contains.

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, BuiltRules, FilterTargets, RuleSetBuilder};
use vigil_event::LogSource;

const RULES: &str = "
title: Archive tool
id: 6f3e2987-0000-4000-8000-000000000001
name: archive_tool
logsource:
  product: windows
  category: process_creation
detection:
  sel:
    Image|endswith: '\\rar.exe'
  condition: sel
---
title: Jump host login
id: 6f3e2987-0000-4000-8000-000000000002
name: jump_login
logsource:
  product: windows
  category: process_creation
detection:
  sel:
    Image|endswith: '\\rar.exe'
  condition: sel
---
title: Linux archive
id: 6f3e2987-0000-4000-8000-000000000003
logsource:
  product: linux
  category: process_creation
detection:
  sel:
    Image|endswith: '/rar'
  condition: sel
";

fn filter(rules: &str, condition: &str) -> String {
    format!(
        "title: Admins are fine\nlogsource:\n  product: windows\nfilter:\n  rules:\n{rules}  \
         selection:\n    User|startswith: 'adm_'\n  condition: {condition}\n"
    )
}

fn build(texts: &[(&str, &str)]) -> BuiltRules {
    let mut builder = RuleSetBuilder::new();
    for (text, origin) in texts {
        builder.add_text(text, origin);
    }
    builder.build()
}

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn titles(built: &BuiltRules, product: &str, event: Value) -> Vec<String> {
    built
        .engine
        .evaluate(
            &LogSource::new(Some(product), None, Some("process_creation")),
            &doc(event),
        )
        .into_iter()
        .map(|rule| rule.title.clone())
        .collect()
}

fn rar(user: &str) -> Value {
    json!({"Image": "C:\\Program Files\\WinRAR\\rar.exe", "User": user})
}

#[test]
fn a_filter_excludes_matches_of_the_named_rule_only() {
    let built = build(&[
        (RULES, "rules.yml"),
        (
            &filter(
                "    - 6f3e2987-0000-4000-8000-000000000001\n",
                "not selection",
            ),
            "filter.yml",
        ),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    // An admin: the filtered rule is silent, the other still matches.
    assert_eq!(
        titles(&built, "windows", rar("adm_bob")),
        vec!["Jump host login"]
    );
    // Anyone else: both match.
    assert_eq!(
        titles(&built, "windows", rar("bob")),
        vec!["Archive tool", "Jump host login"]
    );
}

#[test]
fn filters_name_rules_by_id_or_by_name() {
    let built = build(&[
        (RULES, "rules.yml"),
        (
            &filter(
                "    - archive_tool\n    - 6f3e2987-0000-4000-8000-000000000002\n",
                "not selection",
            ),
            "filter.yml",
        ),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert!(titles(&built, "windows", rar("adm_x")).is_empty());
    assert_eq!(titles(&built, "windows", rar("x")).len(), 2);
}

#[test]
fn the_condition_is_anded_as_written() {
    // pySigma ANDs the filter condition without negating it: `condition: selection` keeps only
    // the admins' matches.
    let built = build(&[
        (RULES, "rules.yml"),
        (&filter("    - archive_tool\n", "selection"), "filter.yml"),
    ]);
    assert_eq!(
        titles(&built, "windows", rar("adm_x")),
        vec!["Archive tool", "Jump host login"]
    );
    assert_eq!(titles(&built, "windows", rar("x")), vec!["Jump host login"]);
}

#[test]
fn an_unknown_target_is_reported_and_the_rest_applied() {
    let built = build(&[
        (RULES, "rules.yml"),
        (
            &filter("    - archive_tool\n    - no_such_rule\n", "not selection"),
            "filter.yml",
        ),
    ]);
    assert_eq!(built.errors.len(), 1, "{:?}", built.errors);
    let error = &built.errors[0];
    assert_eq!(error.origin, "filter.yml");
    assert!(
        error.message.contains("unknown rule \"no_such_rule\""),
        "{error}"
    );
    assert_eq!(
        titles(&built, "windows", rar("adm_x")),
        vec!["Jump host login"]
    );
}

#[test]
fn a_filter_whose_logsource_does_not_contain_the_rule_is_not_applied() {
    let built = build(&[
        (RULES, "rules.yml"),
        (
            &filter(
                "    - 6f3e2987-0000-4000-8000-000000000003\n",
                "not selection",
            ),
            "filter.yml",
        ),
    ]);
    assert!(built.errors.is_empty());
    assert_eq!(built.warnings.len(), 1);
    assert!(built.warnings[0].message.contains("logsource"));
    let event = json!({"Image": "/usr/bin/rar", "User": "adm_x"});
    assert_eq!(titles(&built, "linux", event), vec!["Linux archive"]);
}

#[test]
fn filters_from_an_earlier_file_apply_to_later_rules() {
    let built = build(&[
        (
            &filter("    - jump_login\n", "not selection"),
            "a_filter.yml",
        ),
        (RULES, "b_rules.yml"),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(
        titles(&built, "windows", rar("adm_x")),
        vec!["Archive tool"]
    );
}

#[test]
fn filter_any_applies_to_every_rule_of_the_logsource() {
    let text = "title: All windows\nlogsource:\n  product: windows\nfilter:\n  rules: any\n  \
                selection:\n    User|startswith: 'adm_'\n  condition: not selection\n";
    let built = build(&[(RULES, "rules.yml"), (text, "filter.yml")]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert!(titles(&built, "windows", rar("adm_x")).is_empty());
    let linux = json!({"Image": "/usr/bin/rar", "User": "adm_x"});
    assert_eq!(titles(&built, "linux", linux), vec!["Linux archive"]);
}

#[test]
fn several_filters_and_several_identifiers() {
    let second =
        "title: Backup host\nlogsource:\n  product: windows\n  category: process_creation\n\
                  filter:\n  rules: [archive_tool]\n  host:\n    Computer: BACKUP01\n  \
                  night:\n    Hour: 3\n  condition: not (host and night)\n";
    let built = build(&[
        (RULES, "rules.yml"),
        (&filter("    - archive_tool\n", "not selection"), "f1.yml"),
        (second, "f2.yml"),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    let mut event = rar("x");
    event["Computer"] = json!("BACKUP01");
    assert_eq!(titles(&built, "windows", event.clone()).len(), 2);
    event["Hour"] = json!(3);
    assert_eq!(titles(&built, "windows", event), vec!["Jump host login"]);
}

#[test]
fn filter_documents_parse_and_report_problems() {
    let parsed = parse_rules(&filter("    - archive_tool\n", "not selection"), "f.yml");
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    assert_eq!(parsed.filters.len(), 1);
    assert_eq!(
        parsed.filters[0].targets,
        FilterTargets::Rules(vec!["archive_tool".into()])
    );
    assert!(parsed.rules.is_empty());

    let bad = |text: &str| {
        let parsed = parse_rules(text, "bad.yml");
        assert!(parsed.filters.is_empty(), "{text}");
        parsed
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(
        bad("title: F\nlogsource: {product: x}\nfilter:\n  sel: {a: 1}\n  condition: sel\n")
            .contains("no `rules`")
    );
    assert!(
        bad("title: F\nlogsource: {product: x}\nfilter:\n  rules: [r]\n  sel: {a: 1}\n")
            .contains("no `condition`")
    );
    assert!(bad("title: F\nlogsource: {product: x}\nfilter:\n  rules: [r]\n  sel: {a: 1}\n  condition: [sel]\n")
        .contains("must be a string"));
    assert!(bad("title: F\nlogsource: {product: x}\nfilter:\n  rules: [r]\n  sel: {a: 1}\n  condition: nope\n")
        .contains("undefined"));
    assert!(bad(
        "logsource: {product: x}\nfilter:\n  rules: [r]\n  sel: {a: 1}\n  condition: sel\n"
    )
    .contains("title"));
    assert!(
        bad("title: F\nfilter:\n  rules: [r]\n  sel: {a: 1}\n  condition: sel\n")
            .contains("logsource")
    );
    assert!(bad("title: F\nlogsource: {product: x}\nfilter: 3\n").contains("mapping"));
}

#[test]
fn filters_do_not_apply_to_correlations() {
    let correlation = "title: Many archives\nname: many\ncorrelation:\n  type: event_count\n  \
                       rules: [archive_tool]\n  timespan: 1m\n  condition: {gte: 2}\n";
    let built = build(&[
        (RULES, "rules.yml"),
        (correlation, "c.yml"),
        (&filter("    - many\n", "not selection"), "f.yml"),
    ]);
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.warnings.len(), 1);
    assert!(built.warnings[0].message.contains("correlation"));
}
