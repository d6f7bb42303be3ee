//! `vigil rules test DIR...`: run the test cases rule authors keep beside their rules.
//!
//! The convention (documented in rules/README.md): `<rule>.tests.yml` beside `<rule>.yml`
//! holds `match:` and `no_match:` cases. A case is one `event` or a sequence of `events` (for
//! correlations), each a JSON object written as YAML or an access log line. A `match` case
//! passes when the rule under test raises at least once over the case's events; a `no_match`
//! case when it never does. Every case starts from fresh correlation state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_detect::{Detector, Engine, Finding, PathPart, YamlDeError, YamlDeErrorKind};
use vigil_event::LogSource;

use super::events::line_event;
use super::{Format, LoadArgs};
use crate::rules::{self, is_test_file, read_text};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Rule directories (searched recursively) holding rules and their `.tests.yml` files.
    #[arg(value_name = "DIR", required = true)]
    pub paths: Vec<PathBuf>,
    /// Also fail for every rule file that has no test file.
    #[arg(long)]
    pub require_tests: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    /// `json` prints one JSON report (every file, case and failure, and the totals) instead of
    /// the text lines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Everything a run found, printed as text or as JSON.
#[derive(Debug, Default, Serialize)]
struct Report {
    /// Failures outside any test file: rules that did not load, rules without tests.
    problems: Vec<Problem>,
    files: Vec<FileReport>,
    summary: Totals,
}

#[derive(Debug, Serialize)]
struct Problem {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    reason: String,
}

#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    /// The rule under test, when the file could be read and its rule found.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_title: Option<String>,
    /// Why the file as a whole fails (unreadable, no rule, missing `match` or `no_match`).
    failures: Vec<String>,
    cases: Vec<CaseReport>,
}

#[derive(Debug, Serialize)]
struct CaseReport {
    /// `match` or `no_match`.
    expect: &'static str,
    /// 1-based, within its list.
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip)]
    label: String,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    test_files: usize,
    cases: usize,
    passed: usize,
    failed: usize,
    /// Failed cases plus every other failure: what makes the exit status 1.
    failures: usize,
}

/// What a test file's cases are about.
#[derive(Debug, Clone, Copy)]
enum Target {
    Rule(usize),
    Correlation(usize),
}

#[derive(Debug)]
struct Case {
    expect_match: bool,
    index: usize,
    name: Option<String>,
    logsource: Option<LogSource>,
    /// The lines to feed, as `vigil detect` would read them.
    events: Vec<String>,
}

impl Case {
    fn label(&self) -> String {
        let kind = if self.expect_match {
            "match"
        } else {
            "no_match"
        };
        match &self.name {
            Some(name) => format!("{kind} {}: {name}", self.index),
            None => format!("{kind} {}", self.index),
        }
    }
}

#[derive(Debug)]
struct TestFile {
    rule: Option<String>,
    cases: Vec<Case>,
}

/// Records without a time of their own are placed one second apart from here, so a test run
/// never depends on the clock.
fn base_time() -> DateTime<Utc> {
    Utc.timestamp_opt(946_684_800, 0)
        .single()
        .unwrap_or_default()
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let report = test(&args)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => write_text(&report, &mut out)?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(if report.summary.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_text(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    for problem in &report.problems {
        match problem.line {
            Some(line) => writeln!(out, "{}:{line}: {}", problem.file, problem.reason)?,
            None => writeln!(out, "{}: {}", problem.file, problem.reason)?,
        }
    }
    for file in &report.files {
        match &file.rule_title {
            Some(title) => writeln!(out, "{}: {title}", file.file)?,
            None => {
                for failure in &file.failures {
                    writeln!(out, "{}: {failure}", file.file)?;
                }
                continue;
            }
        }
        for failure in &file.failures {
            writeln!(out, "  FAIL  {failure}")?;
        }
        for case in &file.cases {
            match (&case.reason, case.passed) {
                (_, true) => writeln!(out, "  ok    {}", case.label)?,
                (Some(reason), false) => writeln!(out, "  FAIL  {}: {reason}", case.label)?,
                (None, false) => writeln!(out, "  FAIL  {}", case.label)?,
            }
        }
    }
    let totals = &report.summary;
    writeln!(
        out,
        "{} test files, {} cases: {} passed, {} failed; {} failures in all",
        totals.test_files, totals.cases, totals.passed, totals.failed, totals.failures,
    )
}

fn test(args: &TestArgs) -> anyhow::Result<Report> {
    let loaded = rules::load_dirs(&args.paths, &args.load.options()?)
        .context("cannot read the rule directories")?;
    let engine = &loaded.built.engine;
    let mut report = Report::default();
    for error in &loaded.built.errors {
        report.problems.push(Problem {
            file: error.origin.clone(),
            line: Some(error.line),
            reason: format!("rule not loaded: {}", error.message),
        });
    }

    let mut test_files = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            rules::collect_files(path, &mut test_files)?;
        } else {
            test_files.push(path.clone());
        }
    }
    test_files.retain(|path| is_test_file(path));
    test_files.sort();

    if args.require_tests {
        for rule_file in rules::rule_files(&args.paths)? {
            if !test_files
                .iter()
                .any(|t| rule_file_of(t).as_ref() == Some(&rule_file))
            {
                report.problems.push(Problem {
                    file: rule_file.display().to_string(),
                    line: None,
                    reason: format!("no tests (expected {})", tests_file_name(&rule_file)),
                });
            }
        }
    }

    for path in &test_files {
        let origin = path.display().to_string();
        let prepared = read_text(path)
            .and_then(|text| parse_test_file(&text))
            .and_then(|file| {
                let rule_file = rule_file_of(path)
                    .ok_or_else(|| format!("no rule file beside it for {origin}"))?;
                let target = find_target(engine, &rule_file, file.rule.as_deref())?;
                Ok((file, target))
            });
        let (file, target) = match prepared {
            Ok(prepared) => prepared,
            Err(reason) => {
                report.files.push(FileReport {
                    file: origin,
                    rule_id: None,
                    rule_title: None,
                    failures: vec![reason],
                    cases: Vec::new(),
                });
                continue;
            }
        };
        let (id, title) = match target {
            Target::Rule(index) => {
                let rule = &engine.rules()[index];
                (&rule.id, &rule.title)
            }
            Target::Correlation(index) => {
                let rule = &engine.correlations()[index];
                (&rule.id, &rule.title)
            }
        };
        let mut file_report = FileReport {
            file: origin,
            rule_id: Some(id.clone()),
            rule_title: Some(title.clone()),
            failures: Vec::new(),
            cases: Vec::new(),
        };
        if !file.cases.iter().any(|c| c.expect_match) || file.cases.iter().all(|c| c.expect_match) {
            file_report
                .failures
                .push("needs at least one `match` and one `no_match` case".into());
        }
        for case in &file.cases {
            let (passed, reason) = match raised(engine, target, case) {
                Ok(raised) if raised == case.expect_match => (true, None),
                Ok(raised) => {
                    let why = if raised {
                        "the rule matched, but must not"
                    } else {
                        "the rule did not match"
                    };
                    (false, Some(why.to_owned()))
                }
                Err(reason) => (false, Some(reason)),
            };
            file_report.cases.push(CaseReport {
                expect: if case.expect_match {
                    "match"
                } else {
                    "no_match"
                },
                index: case.index,
                name: case.name.clone(),
                passed,
                reason,
                label: case.label(),
            });
        }
        report.files.push(file_report);
    }
    let totals = &mut report.summary;
    totals.test_files = test_files.len();
    totals.cases = report.files.iter().map(|f| f.cases.len()).sum();
    totals.passed = report
        .files
        .iter()
        .flat_map(|f| &f.cases)
        .filter(|c| c.passed)
        .count();
    totals.failed = totals.cases - totals.passed;
    totals.failures = report.problems.len()
        + report.files.iter().map(|f| f.failures.len()).sum::<usize>()
        + totals.failed;
    Ok(report)
}

fn tests_file_name(rule_file: &Path) -> String {
    let stem = rule_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{stem}.tests.yml")
}

/// `x.tests.yml` tests `x.yml` (or `x.yaml`) in the same directory.
fn rule_file_of(test_file: &Path) -> Option<PathBuf> {
    let name = test_file.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".tests.yml")
        .or_else(|| name.strip_suffix(".tests.yaml"))?;
    ["yml", "yaml"]
        .iter()
        .map(|ext| test_file.with_file_name(format!("{stem}.{ext}")))
        .find(|path| path.is_file())
}

fn find_target(engine: &Engine, rule_file: &Path, wanted: Option<&str>) -> Result<Target, String> {
    let origin = rule_file.display().to_string();
    let named = |id: &str, name: Option<&str>| wanted.is_none_or(|w| w == id || Some(w) == name);
    let mut found: Vec<Target> = Vec::new();
    for (index, rule) in engine.rules().iter().enumerate() {
        if rule.origin == origin && named(&rule.id, rule.name.as_deref()) {
            found.push(Target::Rule(index));
        }
    }
    for (index, c) in engine.correlations().iter().enumerate() {
        if c.origin == origin && named(&c.id, c.name.as_deref()) {
            found.push(Target::Correlation(index));
        }
    }
    match (found.as_slice(), wanted) {
        ([one], _) => Ok(*one),
        ([], Some(wanted)) => Err(format!("{origin} holds no loaded rule {wanted:?}")),
        ([], None) => Err(format!("{origin} holds no loaded rule")),
        (_, _) => Err(format!(
            "{origin} holds {} rules; name the one under test with `rule:` (its id or name)",
            found.len()
        )),
    }
}

/// Whether the target raised anything over the case's events.
fn raised(engine: &Engine, target: Target, case: &Case) -> Result<bool, String> {
    let mut detector = match target {
        Target::Correlation(_) => Some(Detector::new(engine.clone())),
        Target::Rule(_) => None,
    };
    let mut raised = false;
    for (index, line) in case.events.iter().enumerate() {
        let received = base_time() + chrono::Duration::seconds(index as i64);
        let event = line_event(line, index + 1, case.logsource.as_ref(), received)
            .map_err(|reason| format!("event {}: {reason}", index + 1))?;
        let doc = event
            .document()
            .map_err(|e| format!("event {}: {e}", index + 1))?;
        match (target, &mut detector) {
            (Target::Rule(rule), _) => {
                // Stateless, so a rule that only feeds a correlation is still tested alone.
                raised |= engine.matching(&event.logsource, &doc).contains(&rule);
            }
            (Target::Correlation(correlation), Some(detector)) => {
                raised |= detector
                    .process(
                        event.time.timestamp_millis(),
                        Some(event.id),
                        &event.logsource,
                        &doc,
                    )
                    .iter()
                    .any(|d| matches!(d, Finding::Correlation(m) if m.correlation == correlation));
            }
            (Target::Correlation(_), None) => {}
        }
    }
    Ok(raised)
}

/// A `.tests.yml` file as written; see the module's doc.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFileText {
    rule: Option<String>,
    logsource: Option<LogSourceText>,
    #[serde(rename = "match")]
    matches: Option<Vec<CaseText>>,
    no_match: Option<Vec<CaseText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseText {
    name: Option<String>,
    logsource: Option<LogSourceText>,
    event: Option<Value>,
    #[serde(default)]
    events: Vec<Value>,
}

/// A logsource as a test file writes it: only the three elements, each a string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSourceText {
    product: Option<String>,
    service: Option<String>,
    category: Option<String>,
}

impl From<LogSourceText> for LogSource {
    fn from(text: LogSourceText) -> Self {
        LogSource {
            product: text.product,
            service: text.service,
            category: text.category,
        }
    }
}

fn parse_test_file(text: &str) -> Result<TestFile, String> {
    // Refused before any tree is built: whatever walks or drops one recurses once per level.
    vigil_detect::check_yaml_depth(text, "")
        .map_err(|e| format!("line {}: {}", e.line, e.message))?;
    let file: TestFileText = vigil_detect::from_yaml_str(text).map_err(|e| describe(&e))?;
    let logsource = file.logsource.map(LogSource::from);
    let mut cases = Vec::new();
    for (key, items, expect_match) in [
        ("match", file.matches, true),
        ("no_match", file.no_match, false),
    ] {
        for (index, item) in items.into_iter().flatten().enumerate() {
            let case = to_case(item, expect_match, index + 1, logsource.as_ref())
                .map_err(|reason| format!("{key} {}: {reason}", index + 1))?;
            cases.push(case);
        }
    }
    Ok(TestFile {
        rule: file.rule,
        cases,
    })
}

/// A reading error in the words of the test file's format, with its line when known.
fn describe(error: &YamlDeError) -> String {
    use PathPart::{Index, Key};
    let key = |part: &PathPart| match part {
        Key(key) => key.clone(),
        Index(index) => (index + 1).to_string(),
    };
    let logsource = |rest: &[PathPart]| match (rest, &error.kind) {
        ([], YamlDeErrorKind::UnknownKey { key, .. }) => format!("unknown logsource key `{key}`"),
        ([], _) => "`logsource` must map product, service and category".to_owned(),
        ([element, ..], _) => format!("logsource `{}` must be a string", key(element)),
    };
    let reason = match (error.path.as_slice(), &error.kind) {
        (_, YamlDeErrorKind::Syntax(message)) => format!("not YAML: {message}"),
        (_, YamlDeErrorKind::Documents(_)) => {
            "a test file holds exactly one YAML document".to_owned()
        }
        ([], YamlDeErrorKind::UnknownKey { key, .. }) => {
            format!("unknown key `{key}`; expected `rule`, `logsource`, `match` and `no_match`")
        }
        ([], _) => "a test file is a mapping with `match` and `no_match` lists".to_owned(),
        ([Key(rule)], _) if rule == "rule" => "`rule` must be a rule's id or name".to_owned(),
        ([Key(ls), rest @ ..], _) if ls == "logsource" => logsource(rest),
        ([Key(list)], _) => format!("`{list}` must be a list of cases"),
        ([Key(list), Index(index), rest @ ..], kind) => {
            let reason = match (rest, kind) {
                ([], YamlDeErrorKind::UnknownKey { key, .. }) => format!(
                    "unexpected `{key}`; a case has `name`, `event` or `events`, and `logsource`"
                ),
                ([], _) => "a case is a mapping with `event` or `events`".to_owned(),
                ([Key(ls), rest @ ..], _) if ls == "logsource" => logsource(rest),
                (rest, kind) => {
                    let at: Vec<String> = rest.iter().map(key).collect();
                    format!("`{}`: {kind}", at.join("."))
                }
            };
            format!("{list} {}: {reason}", index + 1)
        }
        (path, kind) => {
            let at: Vec<String> = path.iter().map(key).collect();
            format!("`{}`: {kind}", at.join("."))
        }
    };
    match error.line {
        Some(line) => format!("{reason} (line {line})"),
        None => reason,
    }
}

fn to_case(
    item: CaseText,
    expect_match: bool,
    index: usize,
    logsource: Option<&LogSource>,
) -> Result<Case, String> {
    let events: Vec<String> = item
        .event
        .iter()
        .chain(&item.events)
        .map(to_line)
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        return Err("the case has no `event` or `events`".into());
    }
    Ok(Case {
        expect_match,
        index,
        name: item.name,
        logsource: item
            .logsource
            .map(LogSource::from)
            .or_else(|| logsource.cloned()),
        events,
    })
}

fn to_line(event: &Value) -> Result<String, String> {
    match event {
        Value::Object(_) => Ok(event.to_string()),
        Value::String(line) if !line.contains('\n') => Ok(line.clone()),
        _ => Err("an event is a mapping (a JSON record) or a single text line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cases() {
        let text = "\
rule: r1
logsource: {product: aws}
match:
  - name: one
    event: {a: 1, b: [x, 'no']}
  - events:
      - {a: 2}
      - '1.2.3.4 - - [28/Nov/2026:09:03:11 +0000] \"GET / HTTP/1.1\" 200 1'
no_match:
  - event: {a: 3}
    logsource: {service: s}
";
        let file = parse_test_file(text).unwrap();
        assert_eq!(file.rule.as_deref(), Some("r1"));
        assert_eq!(file.cases.len(), 3);
        assert_eq!(file.cases[0].events, vec![r#"{"a":1,"b":["x","no"]}"#]);
        assert_eq!(file.cases[0].label(), "match 1: one");
        assert_eq!(file.cases[1].events.len(), 2);
        assert_eq!(
            file.cases[2].logsource,
            Some(LogSource::new(None, Some("s"), None))
        );
        assert_eq!(
            file.cases[1].logsource,
            Some(LogSource::new(Some("aws"), None, None))
        );
    }

    /// Errors found while reading name the case and key, in the format's words, and the line.
    #[test]
    fn says_where_a_file_is_malformed() {
        for (text, reason) in [
            (
                "match:\n  - event: {a: 1}\n    logsource: {prodct: x}\n",
                "match 1: unknown logsource key `prodct` (line 3)",
            ),
            (
                "match: [{event: {a: 1}}]\nno_match:\n  - event: {a: 1}\n  - events: {a: 2}\n",
                "no_match 2: `events`: invalid type: map, expected a sequence (line 4)",
            ),
            ("rule: [a]\n", "`rule` must be a rule's id or name (line 1)"),
            (
                "match: []\nmatch: []\n",
                "not YAML: duplicate key `match` (line 2)",
            ),
        ] {
            let error = parse_test_file(text).unwrap_err();
            assert_eq!(error, reason, "{text:?}");
        }
    }

    #[test]
    fn refuses_malformed_files() {
        for (text, reason) in [
            (
                "match: [{event: {a: 1}}]\nno-match: []\n",
                "unknown key `no-match`",
            ),
            ("match: {a: 1}\n", "must be a list"),
            ("match: [{evnt: {a: 1}}]\n", "unexpected `evnt`"),
            ("match: [{name: x}]\n", "no `event`"),
            ("match: [{event: 3}]\n", "an event is a mapping"),
            ("- a\n", "a test file is a mapping"),
            ("a: [\n", "not YAML"),
        ] {
            let error = parse_test_file(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }
}
