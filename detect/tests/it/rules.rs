//! Rules end to end through the public API: YAML text in, matches out.

use serde_json::{json, Map, Value};
use vigil_detect::{parse_rules, Detector, Engine, Finding, Rule, RuleError, Status};
use vigil_event::{Document, Level, LogSource};

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A rule with the given detection body (indented under `detection:`), for any aws event.
fn rule(detection: &str) -> Rule {
    let text = format!(
        "title: Test\nid: test-1\nlogsource:\n  product: aws\ndetection:\n{}",
        indent(detection)
    );
    let mut rules = parse_rules(&text, "test.yml")
        .into_result()
        .unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"));
    assert_eq!(rules.len(), 1);
    rules.remove(0)
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn errors(text: &str) -> Vec<RuleError> {
    let parsed = parse_rules(text, "bad.yml");
    assert!(parsed.rules.is_empty(), "{:?}", parsed.rules);
    assert!(!parsed.errors.is_empty());
    parsed.errors
}

fn detection_error(detection: &str) -> RuleError {
    let text = format!(
        "title: Test\nlogsource:\n  product: aws\ndetection:\n{}",
        indent(detection)
    );
    let mut errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.remove(0)
}

#[test]
fn metadata_loads_with_defaults() {
    let text = "\
title: Root login
id: 4f6c1b2e-0000-4000-8000-000000000001
status: test
description: The root user logged in.
author: Vigil
date: 2024-01-02
references:
  - https://example.com/a
tags:
  - attack.initial-access
  - attack.t1078
falsepositives: Break-glass procedures
level: HIGH
logsource:
  product: aws
  service: cloudtrail
  definition: ignored
custom_key: ignored
detection:
  sel:
    userIdentity.type: Root
  condition: sel
";
    let rules = parse_rules(text, "root.yml").into_result().unwrap();
    let r = &rules[0];
    assert_eq!(r.id, "4f6c1b2e-0000-4000-8000-000000000001");
    assert_eq!(r.title, "Root login");
    assert_eq!(r.level, Level::High);
    assert_eq!(r.status, Some(Status::Test));
    assert_eq!(r.description.as_deref(), Some("The root user logged in."));
    assert_eq!(r.date.as_deref(), Some("2024-01-02"));
    assert_eq!(r.tags, ["attack.initial-access", "attack.t1078"]);
    assert_eq!(r.falsepositives, ["Break-glass procedures"]);
    assert_eq!(r.references, ["https://example.com/a"]);
    assert_eq!(r.logsource.product.as_deref(), Some("aws"));
    assert_eq!(r.logsource.service.as_deref(), Some("cloudtrail"));
    assert_eq!(r.logsource.category, None);
    assert_eq!((r.origin.as_str(), r.line), ("root.yml", 1));

    let minimal = parse_rules(
        "title: T\nlogsource: {product: aws}\ndetection: {s: {a: 1}, condition: s}\n",
        "min.yml",
    )
    .into_result()
    .unwrap();
    assert_eq!(minimal[0].level, Level::Medium);
    assert_eq!(minimal[0].status, None);
    assert!(minimal[0].tags.is_empty());
    // Derived ids are stable and depend on origin and title.
    assert_eq!(minimal[0].id, Rule::derive_id("min.yml", "T"));
    assert_ne!(
        Rule::derive_id("min.yml", "T"),
        Rule::derive_id("other.yml", "T")
    );
    assert_eq!(minimal[0].id.len(), 32);
}

#[test]
fn field_values_are_case_insensitive_with_wildcards() {
    let r = rule(
        "sel:\n  eventName: ConsoleLogin\n  userAgent: 'Mozilla/*(Windows?NT*'\ncondition: sel",
    );
    assert!(r.matches(&doc(json!({
        "eventName": "consolelogin",
        "userAgent": "mozilla/5.0 (windows nt 10.0)",
    }))));
    assert!(!r.matches(&doc(json!({
        "eventName": "ConsoleLogin",
        "userAgent": "Mozilla/5.0 (Macintosh)",
    }))));
    assert!(!r.matches(&doc(json!({"eventName": "ConsoleLogin"}))));
}

#[test]
fn escaped_wildcards_are_literal() {
    // In Sigma, `\*` is a literal star: a backslash before a wildcard must itself be escaped.
    let r = rule("sel:\n  path: 'C:\\Temp\\\\*.exe'\n  glob: 'a\\*b'\ncondition: sel");
    assert!(r.matches(&doc(json!({"path": "c:\\temp\\x.exe", "glob": "a*b"}))));
    assert!(!r.matches(&doc(json!({"path": "c:\\temp\\x.exe", "glob": "axxb"}))));
    let literal = rule("sel:\n  path: 'C:\\Temp\\*.exe'\ncondition: sel");
    assert!(literal.matches(&doc(json!({"path": "C:\\Temp*.exe"}))));
    assert!(!literal.matches(&doc(json!({"path": "C:\\Temp\\x.exe"}))));
}

#[test]
fn lists_of_values_are_ored_and_maps_anded() {
    let r = rule("sel:\n  eventName:\n    - DeleteTrail\n    - StopLogging\n  eventSource: cloudtrail.amazonaws.com\ncondition: sel");
    let event = |name: &str, source: &str| doc(json!({"eventName": name, "eventSource": source}));
    assert!(r.matches(&event("StopLogging", "cloudtrail.amazonaws.com")));
    assert!(r.matches(&event("deletetrail", "CLOUDTRAIL.amazonaws.com")));
    assert!(!r.matches(&event("UpdateTrail", "cloudtrail.amazonaws.com")));
    assert!(!r.matches(&event("StopLogging", "s3.amazonaws.com")));
}

#[test]
fn lists_of_maps_are_alternatives() {
    let r = rule("sel:\n  - a: 1\n    b: 2\n  - c: 3\ncondition: sel");
    assert!(r.matches(&doc(json!({"a": 1, "b": 2}))));
    assert!(r.matches(&doc(json!({"c": "3"}))));
    assert!(!r.matches(&doc(json!({"a": 1, "c": 4}))));
}

#[test]
fn dotted_paths_go_through_objects_and_arrays() {
    let r = rule("sel:\n  objectRef.resource: secrets\n  requestParameters.items.name: admin*\ncondition: sel");
    let hit = doc(json!({
        "objectRef": {"resource": "Secrets"},
        "requestParameters": {"items": [{"name": "dev"}, {"name": "Administrators"}]},
    }));
    assert!(r.matches(&hit));
    let miss = doc(json!({
        "objectRef": {"resource": "secrets"},
        "requestParameters": {"items": [{"name": "dev"}]},
    }));
    assert!(!r.matches(&miss));
    // A top-level key with the dots in it matches too.
    let flat = doc(json!({
        "objectRef.resource": "secrets",
        "requestParameters.items.name": ["x", "admins"],
    }));
    assert!(r.matches(&flat));
}

#[test]
fn numbers_booleans_null_and_empty() {
    let r = rule("sel:\n  status: 200\n  ok: true\ncondition: sel");
    assert!(r.matches(&doc(json!({"status": 200, "ok": true}))));
    assert!(r.matches(&doc(json!({"status": "200", "ok": "true"}))));
    assert!(!r.matches(&doc(json!({"status": 2000, "ok": true}))));
    assert!(!r.matches(&doc(json!({"status": 200, "ok": false}))));

    let null = rule("sel:\n  errorCode: null\ncondition: sel");
    assert!(null.matches(&doc(json!({}))));
    assert!(null.matches(&doc(json!({"errorCode": null}))));
    assert!(!null.matches(&doc(json!({"errorCode": ""}))));
    assert!(!null.matches(&doc(json!({"errorCode": "AccessDenied"}))));

    let empty = rule("sel:\n  errorCode: ''\ncondition: sel");
    assert!(empty.matches(&doc(json!({"errorCode": ""}))));
    assert!(!empty.matches(&doc(json!({"errorCode": "x"}))));
    assert!(!empty.matches(&doc(json!({}))));
    assert!(!empty.matches(&doc(json!({"errorCode": null}))));

    let quoted = rule("sel:\n  EventID: '4688'\ncondition: sel");
    assert!(quoted.matches(&doc(json!({"EventID": 4688}))));
}

#[test]
fn not_null_is_a_negated_selection() {
    let r = rule("sel:\n  eventName: GetSecretValue\nfilter:\n  errorCode: null\ncondition: sel and not filter");
    assert!(r.matches(&doc(
        json!({"eventName": "GetSecretValue", "errorCode": "AccessDenied"})
    )));
    assert!(!r.matches(&doc(json!({"eventName": "GetSecretValue"}))));
}

#[test]
fn keywords_search_every_string() {
    let r = rule("keywords:\n  - 'event::clear'\n  - 'sekurlsa*logon'\ncondition: keywords");
    assert!(r.matches(&doc(json!({"cmd": "mimikatz EVENT::Clear now"}))));
    assert!(r.matches(&doc(
        json!({"deep": {"list": [1, "run sekurlsa::logonpasswords"]}})
    )));
    assert!(!r.matches(&doc(json!({"cmd": "event:clear", "n": 1}))));
    // Keys are not searched.
    assert!(!r.matches(&doc(json!({"event::clear": "x"}))));

    let all = rule("keywords:\n  '|all':\n    - OabVirtualDirectory\n    - ' -ExternalUrl '\ncondition: keywords");
    assert!(all.matches(&doc(
        json!({"a": "Set-OabVirtualDirectory", "b": "x -externalurl y"})
    )));
    assert!(!all.matches(&doc(json!({"a": "Set-OabVirtualDirectory -InternalUrl"}))));
}

#[test]
fn string_modifiers() {
    let r = rule(
        "sel:\n  CommandLine|contains: ' -enc '\n  Image|endswith: '\\powershell.exe'\n  User|startswith: 'NT AUTHORITY'\ncondition: sel",
    );
    let event = |cmd: &str, image: &str, user: &str| {
        doc(json!({"CommandLine": cmd, "Image": image, "User": user}))
    };
    assert!(r.matches(&event(
        "powershell -ENC abc",
        "C:\\x\\PowerShell.exe",
        "nt authority\\system"
    )));
    assert!(!r.matches(&event(
        "powershell -encoded",
        "C:\\x\\PowerShell.exe",
        "nt authority\\system"
    )));
    assert!(!r.matches(&event(
        "powershell -enc x",
        "C:\\x\\powershell.exe.bak",
        "nt authority\\system"
    )));
    assert!(!r.matches(&event(
        "powershell -enc x",
        "C:\\x\\powershell.exe",
        "SYSTEM nt authority"
    )));

    let numbers = rule("sel:\n  code|startswith: 40\ncondition: sel");
    assert!(numbers.matches(&doc(json!({"code": 403}))));
    assert!(!numbers.matches(&doc(json!({"code": 503}))));
}

#[test]
fn all_modifier_ands_the_list() {
    let r = rule(
        "sel:\n  CommandLine|contains|all:\n    - net\n    - ' user '\n    - /add\ncondition: sel",
    );
    assert!(r.matches(&doc(json!({"CommandLine": "NET USER bob pw /ADD"}))));
    assert!(!r.matches(&doc(json!({"CommandLine": "net user bob"}))));
    // Each value may be met by a different element of a list-valued field.
    let tags = rule("sel:\n  tags|all:\n    - a\n    - b\ncondition: sel");
    assert!(tags.matches(&doc(json!({"tags": ["b", "c", "a"]}))));
    assert!(!tags.matches(&doc(json!({"tags": ["b", "c"]}))));
}

#[test]
fn conditions_with_precedence_and_quantifiers() {
    let body = "sel_a:\n  a: 1\nsel_b:\n  b: 1\nfilter_x:\n  x: 1\n_helper:\n  h: 1\n";
    let with = |condition: &str| rule(&format!("{body}condition: {condition}"));
    let event = |fields: &[&str]| {
        doc(fields
            .iter()
            .map(|f| (f.to_string(), json!(1)))
            .collect::<Map<_, _>>()
            .into())
    };

    let r = with("sel_a or sel_b and not filter_x");
    assert!(r.matches(&event(&["a", "x"])), "and binds tighter than or");
    assert!(!r.matches(&event(&["b", "x"])));
    let r = with("(sel_a or sel_b) and not filter_x");
    assert!(!r.matches(&event(&["a", "x"])));
    assert!(r.matches(&event(&["b"])));

    let r = with("1 of sel_* and not 1 of filter*");
    assert!(r.matches(&event(&["b"])));
    assert!(!r.matches(&event(&["b", "x"])));
    let r = with("all of sel_*");
    assert!(!r.matches(&event(&["a"])));
    assert!(r.matches(&event(&["a", "b"])));

    // `them` leaves out `_helper`.
    let r = with("all of them");
    assert!(r.matches(&event(&["a", "b", "x"])));
    let r = with("1 of them");
    assert!(!r.matches(&event(&["h"])));
    assert!(r.matches(&event(&["x"])));
}

#[test]
fn a_list_of_conditions_is_any_of_them() {
    let r = rule("a:\n  a: 1\nb:\n  b: 1\ncondition:\n  - a\n  - b");
    assert!(r.matches(&doc(json!({"b": 1}))));
    assert!(!r.matches(&doc(json!({"c": 1}))));
}

#[test]
fn logsource_routing() {
    let text = "\
title: CloudTrail only
id: ct
logsource:
  product: AWS
  service: cloudtrail
detection:
  sel:
    eventName: X
  condition: sel
---
title: Any aws
id: aws
logsource:
  product: aws
detection:
  sel:
    eventName: X
  condition: sel
---
title: Process creation
id: proc
logsource:
  category: process_creation
detection:
  sel:
    eventName: X
  condition: sel
";
    let engine = Engine::new(parse_rules(text, "route.yml").into_result().unwrap());
    assert_eq!(engine.rules().len(), 3);
    let hit = doc(json!({"eventName": "X"}));
    let ids = |ls: LogSource, d: &Map<String, Value>| -> Vec<String> {
        engine
            .evaluate(&ls, d)
            .iter()
            .map(|r| r.id.clone())
            .collect()
    };
    assert_eq!(
        ids(LogSource::new(Some("aws"), Some("CloudTrail"), None), &hit),
        ["ct", "aws"]
    );
    assert_eq!(ids(LogSource::new(Some("aws"), None, None), &hit), ["aws"]);
    assert_eq!(
        ids(LogSource::new(Some("gcp"), Some("cloudtrail"), None), &hit),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            LogSource::new(Some("windows"), None, Some("process_creation")),
            &hit
        ),
        ["proc"]
    );
    assert!(ids(
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        &doc(json!({"eventName": "Y"}))
    )
    .is_empty());
}

#[test]
fn multi_document_files_keep_the_good_rules() {
    let text = "\
title: First
logsource: {product: aws}
detection: {s: {a: 1}, condition: s}
---
title: Broken
logsource: {product: aws}
detection:
  s:
    a|nosuch: 1
  condition: s
---
title: Third
logsource: {product: aws}
detection: {s: {a: 1}, condition: s}
---
";
    let parsed = parse_rules(text, "multi.yml");
    let titles: Vec<&str> = parsed.rules.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(titles, ["First", "Third"]);
    assert_eq!(parsed.rules[1].line, 12);
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(
        parsed.errors[0].to_string(),
        "multi.yml:9: unknown modifier `nosuch`"
    );
}

#[test]
fn invalid_yaml_reports_its_line() {
    let text = "title: A\nlogsource: {product: aws}\ndetection:\n  s: a: b\n  condition: s\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("invalid YAML"), "{}", errs[0]);
    assert_eq!(errs[0].line, 4, "{}", errs[0]);
    assert!(errs[0].to_string().starts_with("bad.yml:4: invalid YAML"));

    // An unclosed flow list is only noticed at the end, which is still within the text.
    let text = "title: A\nlogsource: {product: aws}\ndetection:\n  s: [a, b\n  condition: s\n";
    let errs = errors(text);
    assert!((4..=5).contains(&errs[0].line), "{}", errs[0]);
}

#[test]
fn unknown_and_misplaced_modifiers_name_themselves() {
    let err = detection_error("sel:\n  a: 1\n  b|frobnicate: x\ncondition: sel");
    assert_eq!(
        (err.line, err.message.as_str()),
        (7, "unknown modifier `frobnicate`")
    );
    let err = detection_error("sel:\n  b|contains|re: '^x'\ncondition: sel");
    assert_eq!(err.line, 6);
    assert!(err.message.contains("`re` must come first"), "{err}");
}

#[test]
fn undefined_identifiers_are_errors() {
    let err = detection_error("sel:\n  a: 1\ncondition: sel and not filter");
    assert_eq!(err.line, 7);
    assert!(
        err.message.contains("undefined search identifier `filter`"),
        "{err}"
    );
    let err = detection_error("sel:\n  a: 1\ncondition: 1 of filter*");
    assert!(
        err.message
            .contains("`filter*` matches no search identifier"),
        "{err}"
    );
}

#[test]
fn structural_errors_are_reported_together() {
    let text = "\
title: [not, a, string]
level: severe
status: done
logsource: {product: aws}
detection:
  s:
    a:
      nested: map
  t: just a string
  condition: s or t
";
    let errs = errors(text);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 3, 8, 9], "{errs:#?}");
    assert!(errs[1].message.contains("unknown level"));

    let missing = errors("description: nothing else\n");
    let messages: Vec<&str> = missing.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "the rule has no `title`",
            "the rule has no `logsource`",
            "the rule has no `detection`"
        ]
    );
    assert!(errors("- a\n- b\n")[0]
        .message
        .contains("must be a mapping"));
    assert!(
        errors("title: x\nlogsource: {definition: y}\ndetection: {s: [a], condition: s}\n")[0]
            .message
            .contains("product, service or category")
    );
    assert!(
        errors("title: x\nlogsource: {product: a}\ndetection: {s: [a]}\n")[0]
            .message
            .contains("no `condition`")
    );
}

#[test]
fn hostile_input_never_panics() {
    let long_chain = format!(
        "title: x\nlogsource: {{product: a}}\ndetection:\n  s: {{a: 1}}\n  condition: {}\n",
        vec!["s"; 5000].join(" and ")
    );
    assert_eq!(parse_rules(&long_chain, "x").rules.len(), 1);
    let texts = [
        "title: x\nlogsource: {product: a}\ndetection:\n  s: {a: 1}\n  condition: ".to_string()
            + &"(".repeat(10_000)
            + "s",
        "[".repeat(50_000),
        "title: &a x\n".into(),
        "detection: {condition: 5}\ntitle: t\nlogsource: {product: a}".into(),
        "title: t\nlogsource: {product: a}\ndetection: {s: {'': x}, condition: s}\n".into(),
        "title: t\nlogsource: {product: a}\ndetection: {s: {'|': x}, condition: s}\n".into(),
        "title: t\nlogsource: 5\ndetection: []\n".into(),
        "\u{feff}--- !foo\n...\n%%%\n".into(),
    ];
    for text in texts {
        let parsed = parse_rules(&text, "hostile.yml");
        assert!(!parsed.errors.is_empty() || !parsed.rules.is_empty());
    }
}

/// A detector keeps the plans of the logsources it has seen, up to a bound: past it, each
/// event is still routed by its own logsource (all three of its parts), and so are those of
/// logsources seen before, kept or not.
#[test]
fn a_detector_routes_each_event_by_its_logsource_past_its_bound_on_plans() {
    let rule = |logsource: &str| {
        format!(
            "title: T\nlogsource: {{{logsource}}}\n\
             detection:\n  sel:\n    eventName: X\n  condition: sel\n---\n"
        )
    };
    // Rules 0 to 4 for products p0 to p4, rule 5 for one service of p0 only, and rule 6 for
    // one category of any product.
    let mut text: String = (0..5)
        .map(|product| rule(&format!("product: p{product}")))
        .collect();
    text += &rule("product: p0, service: s7");
    text += &rule("category: c1");
    let engine = Engine::new(parse_rules(&text, "route.yml").into_result().unwrap());
    let mut detector = Detector::new(engine);
    let hit = doc(json!({"eventName": "X"}));
    let record = r#"{"eventName":"X"}"#;
    // 300 logsources a round, far more than a detector keeps plans for; the third round sees
    // the first one's again, so both kept plans and ones made anew are looked up.
    for round in 0..3 {
        for service in 0..150 {
            let product = (service + 3 * (round % 2)) % 5;
            for category in [None, Some("c1")] {
                let logsource = LogSource::new(
                    Some(&format!("P{product}")),
                    Some(&format!("s{service}")),
                    category,
                );
                let mut expected = vec![Finding::Rule { rule: product }];
                if (product, service) == (0, 7) {
                    expected.push(Finding::Rule { rule: 5 });
                }
                if category.is_some() {
                    expected.push(Finding::Rule { rule: 6 });
                }
                assert_eq!(
                    detector.process(0, None, &logsource, &hit),
                    expected,
                    "{logsource:?}"
                );
                let (evaluation, _) = detector
                    .evaluate_record("", 0, None, &logsource, record, || Document::parse(record))
                    .unwrap();
                assert_eq!(evaluation.detections, expected, "{logsource:?}");
            }
        }
    }
}
