//! `vigil rules explain RULE_FILE EVENT_FILE`: why each rule of a file did or did not match
//! one event.
//!
//! A correlation never matches one event: it counts matches of other rules over time. For a
//! correlation, the command explains each rule it refers to on the event (found in the same
//! file, or under `--rules`, by default the rule file's directory), shows the event's group-by
//! values, and says whether the event would count towards the correlation; running it on a
//! sequence of events is `vigil detect`'s or `vigil rules test`'s job.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use serde_json::{json, Map, Value};
use vigil_detect::{
    explain, parse_rules_with, CorrelationRule, Explained, LoadOptions, RuleExplanation,
};
use vigil_event::{Event, LogSource};

use super::events::line_event;
use super::{describe_logsource, parse_logsource, Format, LoadArgs};
use crate::rules::{read_text, rule_files};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The rule file; every detection rule in it is explained.
    #[arg(value_name = "RULE_FILE")]
    pub rule: PathBuf,
    /// One event: a JSON object (which may span lines) or one access log line.
    #[arg(value_name = "EVENT_FILE")]
    pub event: PathBuf,
    /// The event's logsource, such as `product=aws,service=cloudtrail`; recognised from the
    /// event's shape when not given.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_logsource)]
    pub logsource: Option<LogSource>,
    /// Where to find the rules a correlation in RULE_FILE refers to (a directory, searched
    /// recursively, or a file); repeat for more. By default the rule file's own directory.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

const SEQUENCE_NOTE: &str =
    "a correlation matches a sequence of events over time, never one event alone; \
     this shows whether the event counts towards it. Feed a sequence to `vigil detect`, or write \
     cases for `vigil rules test`";

/// One correlation of the rule file against the event.
#[derive(Debug, Serialize)]
struct CorrelationExplanation {
    id: String,
    title: String,
    line: usize,
    #[serde(rename = "type")]
    kind: &'static str,
    timespan: String,
    group_by: Vec<String>,
    condition: Vec<Value>,
    note: &'static str,
    rules: Vec<ReferenceExplanation>,
    /// Whether the event counts towards the correlation through any referenced rule.
    counts: bool,
}

/// Fields and their values as a JSON object, in the order the rule gives them (a JSON map
/// would sort them).
#[derive(Debug, Default)]
struct Ordered(Vec<(String, Value)>);

impl Ordered {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// One rule a correlation refers to, on the event.
#[derive(Debug, Serialize)]
struct ReferenceExplanation {
    /// The id or name as the correlation writes it.
    reference: String,
    /// Where it was found; `None` when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// `rule`, `correlation` or `not found`.
    kind: &'static str,
    /// The detection rule's explanation, with `logsource_applies` and `verdict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Value>,
    /// The event's value for each group-by field (after aliases), `null` when missing.
    group: Ordered,
    /// The event's value for the condition's field(s) of a `value_*` correlation.
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    fields: Ordered,
    counts: bool,
    /// Why it does not count, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip)]
    rule: Option<(String, RuleExplanation)>,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let origin = args.rule.display().to_string();
    let rule_text = read_text(&args.rule).map_err(|e| anyhow!("{origin}: {e}"))?;
    let event_text =
        read_text(&args.event).map_err(|e| anyhow!("{}: {e}", args.event.display()))?;
    let event = read_event(&event_text, args.logsource.as_ref())
        .map_err(|e| anyhow!("{}: {e}", args.event.display()))?;
    let doc = event
        .document()
        .map_err(|e| anyhow!("{}: {e}", args.event.display()))?;
    let options = args.load.options()?;
    let mut explained = explain(&rule_text, &origin, &options, &doc);
    if explained.rules.is_empty() && explained.skipped.is_empty() && explained.errors.is_empty() {
        bail!("{origin}: holds no rule");
    }
    let correlations = parse_rules_with(&rule_text, &origin, &options).correlations;
    let correlations = if correlations.is_empty() {
        Vec::new()
    } else {
        // Explained below instead of skipped.
        explained
            .skipped
            .retain(|skipped| skipped.kind != "correlation");
        let places = if args.rules.is_empty() {
            vec![args
                .rule
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from)]
        } else {
            args.rules.clone()
        };
        let library = Library::load(&args.rule, &rule_text, &places, &options)?;
        correlations
            .iter()
            .map(|c| explain_correlation(c, &library, &options, &doc, &event.logsource))
            .collect()
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            to_json(&explained, &correlations, &event.logsource, &origin)?
        )?,
        Format::Text => {
            write!(out, "{}", to_text(&explained, &event.logsource, &origin))?;
            write!(
                out,
                "{}",
                correlations_text(&correlations, &event.logsource, &origin)
            )?;
        }
    }
    Ok(if explained.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The whole text as one JSON object, pretty-printed or not; else its first non-blank line.
fn read_event(text: &str, logsource: Option<&LogSource>) -> Result<Event, String> {
    let trimmed = text.trim();
    let line = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(value @ serde_json::Value::Object(_)) => value.to_string(),
        _ => trimmed
            .lines()
            .find(|line| !line.trim().is_empty())
            .ok_or("holds no event")?
            .to_owned(),
    };
    line_event(&line, 1, logsource, Utc::now())
}

fn applies(rule: &RuleExplanation, logsource: &LogSource) -> bool {
    let fits = |want: &Option<String>, got: &Option<String>| match (want, got) {
        (None, _) => true,
        (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
        (Some(_), None) => false,
    };
    fits(&rule.logsource.product, &logsource.product)
        && fits(&rule.logsource.service, &logsource.service)
        && fits(&rule.logsource.category, &logsource.category)
}

/// A rule explanation as JSON, with whether its logsource applies and the verdict.
fn rule_json(rule: &RuleExplanation, logsource: &LogSource) -> serde_json::Result<Value> {
    let routed = applies(rule, logsource);
    let mut value = serde_json::to_value(rule)?;
    value["logsource_applies"] = json!(routed);
    value["verdict"] = json!(routed && rule.matched);
    Ok(value)
}

fn to_json(
    explained: &Explained,
    correlations: &[CorrelationExplanation],
    logsource: &LogSource,
    origin: &str,
) -> serde_json::Result<String> {
    let rules: Vec<serde_json::Value> = explained
        .rules
        .iter()
        .map(|rule| rule_json(rule, logsource))
        .collect::<serde_json::Result<_>>()?;
    let report = json!({
        "file": origin,
        "event_logsource": logsource,
        "rules": rules,
        "correlations": correlations,
        "skipped": explained.skipped,
        "errors": explained.errors.iter()
            .map(|e| json!({"file": e.origin, "line": e.line, "reason": e.message}))
            .collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&report)
}

fn mark(result: bool) -> &'static str {
    if result {
        "yes"
    } else {
        "no "
    }
}

fn to_text(explained: &Explained, logsource: &LogSource, origin: &str) -> String {
    let mut out = String::new();
    let event_logsource =
        describe_logsource(&logsource.product, &logsource.service, &logsource.category);
    for error in &explained.errors {
        let _ = writeln!(out, "{}:{}: {}", error.origin, error.line, error.message);
    }
    for skipped in &explained.skipped {
        let _ = writeln!(
            out,
            "{origin}:{}: {} skipped: {}",
            skipped.line, skipped.kind, skipped.reason
        );
    }
    for rule in &explained.rules {
        let routed = applies(rule, logsource);
        let verdict = match (routed, rule.matched) {
            (true, true) => "MATCH",
            (true, false) => "NO MATCH: the condition does not hold",
            (false, true) => "NO MATCH: the detection holds, but the rule's logsource does not apply to this event",
            (false, false) => "NO MATCH: the logsource does not apply and the condition does not hold",
        };
        let _ = writeln!(out, "{origin}:{}: {} ({})", rule.line, rule.title, rule.id);
        let ls = &rule.logsource;
        let _ = writeln!(
            out,
            "  logsource: rule {}; event {} -> {}",
            describe_logsource(&ls.product, &ls.service, &ls.category),
            event_logsource,
            if routed { "applies" } else { "does not apply" }
        );
        for search in &rule.searches {
            let _ = writeln!(
                out,
                "  [{}] {} (line {})",
                mark(search.result),
                search.name,
                search.line
            );
            let several = search.alternatives.len() > 1;
            for (index, alternative) in search.alternatives.iter().enumerate() {
                let indent = if several {
                    let _ = writeln!(
                        out,
                        "    [{}] alternative {} of {} (line {})",
                        mark(alternative.result),
                        index + 1,
                        search.alternatives.len(),
                        alternative.line
                    );
                    "      "
                } else {
                    "    "
                };
                for item in &alternative.items {
                    let mut how = Vec::new();
                    if item.all {
                        how.push("all values must match");
                    }
                    if item.negate {
                        how.push("neq: holds when none match");
                    }
                    let how = if how.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", how.join("; "))
                    };
                    let found = match &item.field {
                        None => "searched in every string of the event".to_owned(),
                        Some(_) if !item.field_present => "field missing".to_owned(),
                        Some(_) if item.found.is_empty() => {
                            "field present, no scalar value".to_owned()
                        }
                        Some(_) => format!(
                            "event has {}",
                            item.found
                                .iter()
                                .map(|v| format!("{v:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    let _ = writeln!(
                        out,
                        "{indent}[{}] {} (line {}){how}: {found}",
                        mark(item.result),
                        item.key,
                        item.line
                    );
                    for value in &item.values {
                        let _ = writeln!(
                            out,
                            "{indent}    {} {:?} (line {})",
                            if value.matched {
                                "matches "
                            } else {
                                "no match"
                            },
                            value.value,
                            value.line
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "  [{}] condition: {}",
            mark(rule.condition_result),
            rule.condition
        );
        let _ = writeln!(out, "  verdict: {verdict}");
    }
    out
}

/// The rule documents a correlation may refer to: those of the rule file itself first, then
/// those under the places searched.
struct Library {
    /// (file, text) of each file read.
    files: Vec<(String, String)>,
    /// (id, name, is a correlation, index into `files`).
    entries: Vec<(String, Option<String>, bool, usize)>,
}

impl Library {
    fn load(
        rule_file: &std::path::Path,
        rule_text: &str,
        places: &[PathBuf],
        options: &LoadOptions,
    ) -> anyhow::Result<Library> {
        let mut library = Library {
            files: Vec::new(),
            entries: Vec::new(),
        };
        library.add(
            rule_file.display().to_string(),
            rule_text.to_owned(),
            options,
        );
        let own = std::fs::canonicalize(rule_file).ok();
        for file in rule_files(places)? {
            if own.is_some() && std::fs::canonicalize(&file).ok() == own {
                continue;
            }
            // Unreadable files are `rules check`'s to report; here they hold nothing found.
            if let Ok(text) = read_text(&file) {
                library.add(file.display().to_string(), text, options);
            }
        }
        Ok(library)
    }

    fn add(&mut self, origin: String, text: String, options: &LoadOptions) {
        let parsed = parse_rules_with(&text, &origin, options);
        let index = self.files.len();
        for rule in parsed.rules {
            self.entries.push((rule.id, rule.name, false, index));
        }
        for correlation in parsed.correlations {
            self.entries
                .push((correlation.id, correlation.name, true, index));
        }
        self.files.push((origin, text));
    }

    /// The first document whose id or name is `reference`: (id, is a correlation, file, text).
    fn find(&self, reference: &str) -> Option<(&str, bool, &str, &str)> {
        self.entries
            .iter()
            .find(|(id, name, _, _)| id == reference || name.as_deref() == Some(reference))
            .map(|(id, _, correlation, index)| {
                let (origin, text) = &self.files[*index];
                (id.as_str(), *correlation, origin.as_str(), text.as_str())
            })
    }
}

/// The first non-null value at a dotted field path (a key holding the dots matches too), as
/// JSON; arrays give their first element.
fn field_value(doc: &Map<String, Value>, field: &str) -> Option<Value> {
    fn walk(value: &Value, rest: &str) -> Option<Value> {
        match value {
            Value::Object(object) => lookup(object, rest),
            Value::Array(items) => items.iter().find_map(|item| walk(item, rest)),
            _ => None,
        }
    }
    fn lookup(object: &Map<String, Value>, path: &str) -> Option<Value> {
        if let Some(value) = object.get(path) {
            let value = match value {
                Value::Array(items) => items.iter().find(|v| !v.is_null()).cloned(),
                Value::Null => None,
                other => Some(other.clone()),
            };
            if value.is_some() {
                return value;
            }
        }
        path.match_indices('.').find_map(|(at, _)| {
            object
                .get(&path[..at])
                .and_then(|value| walk(value, &path[at + 1..]))
        })
    }
    lookup(doc, field)
}

fn explain_correlation(
    correlation: &CorrelationRule,
    library: &Library,
    options: &LoadOptions,
    doc: &Map<String, Value>,
    logsource: &LogSource,
) -> CorrelationExplanation {
    let rules: Vec<ReferenceExplanation> = correlation
        .rules
        .iter()
        .map(|reference| {
            explain_reference(correlation, reference, library, options, doc, logsource)
        })
        .collect();
    CorrelationExplanation {
        id: correlation.id.clone(),
        title: correlation.title.clone(),
        line: correlation.line,
        kind: correlation.kind.as_str(),
        timespan: correlation.timespan.text.clone(),
        group_by: correlation.group_by.clone(),
        condition: correlation
            .condition
            .iter()
            .map(|t| {
                // Whole numbers as integers, as rules write them.
                let value = if t.value.fract() == 0.0 && t.value.abs() < 1e15 {
                    json!(t.value as i64)
                } else {
                    json!(t.value)
                };
                json!({"op": t.op.as_str(), "value": value})
            })
            .collect(),
        note: SEQUENCE_NOTE,
        counts: rules.iter().any(|r| r.counts),
        rules,
    }
}

fn explain_reference(
    correlation: &CorrelationRule,
    reference: &str,
    library: &Library,
    options: &LoadOptions,
    doc: &Map<String, Value>,
    logsource: &LogSource,
) -> ReferenceExplanation {
    let mut explanation = ReferenceExplanation {
        reference: reference.to_owned(),
        file: None,
        kind: "not found",
        explanation: None,
        group: Ordered::default(),
        fields: Ordered::default(),
        counts: false,
        reason: None,
        rule: None,
    };
    let Some((id, is_correlation, origin, text)) = library.find(reference) else {
        explanation.reason = Some(format!(
            "no rule with id or name {reference:?} in the rule file or the places searched (--rules)"
        ));
        return explanation;
    };
    explanation.file = Some(origin.to_owned());
    // Group-by fields by their alias for this rule, if any.
    let names = [reference, id];
    let alias = |field: &str| -> String {
        correlation
            .aliases
            .iter()
            .find(|(alias, _)| alias == field)
            .and_then(|(_, mapping)| mapping.iter().find(|(r, _)| names.contains(&r.as_str())))
            .map_or_else(|| field.to_owned(), |(_, source)| source.clone())
    };
    let mut missing = Vec::new();
    for field in &correlation.group_by {
        let source = alias(field);
        let value = field_value(doc, &source);
        if value.is_none() {
            missing.push(source.clone());
        }
        explanation
            .group
            .0
            .push((source, value.unwrap_or(Value::Null)));
    }
    if correlation.kind.needs_field() {
        for field in &correlation.fields {
            let value = field_value(doc, field);
            if value.is_none() {
                missing.push(field.clone());
            }
            explanation
                .fields
                .0
                .push((field.clone(), value.unwrap_or(Value::Null)));
        }
    }
    if is_correlation {
        explanation.kind = "correlation";
        explanation.reason = Some(format!(
            "{reference:?} is itself a correlation, whose matches feed this one; explain it on its own"
        ));
        return explanation;
    }
    explanation.kind = "rule";
    let Some(rule) = explain(text, origin, options, doc)
        .rules
        .into_iter()
        .find(|rule| rule.id == id)
    else {
        explanation.reason = Some(format!("{reference:?} did not load"));
        return explanation;
    };
    let routed = applies(&rule, logsource);
    explanation.explanation = rule_json(&rule, logsource).ok();
    explanation.reason = if !routed {
        Some("the rule's logsource does not apply to this event".to_owned())
    } else if !rule.matched {
        Some("the rule does not match this event".to_owned())
    } else if !missing.is_empty() {
        Some(format!(
            "the event lacks {}, so it cannot be grouped",
            missing.join(", ")
        ))
    } else {
        None
    };
    explanation.counts = explanation.reason.is_none();
    explanation.rule = Some((origin.to_owned(), rule));
    explanation
}

fn correlations_text(
    correlations: &[CorrelationExplanation],
    logsource: &LogSource,
    origin: &str,
) -> String {
    let mut out = String::new();
    for c in correlations {
        let _ = writeln!(
            out,
            "{origin}:{}: {} ({}) [correlation]",
            c.line, c.title, c.id
        );
        let condition: Vec<String> = c
            .condition
            .iter()
            .map(|t| format!("{} {}", t["op"].as_str().unwrap_or(""), t["value"]))
            .collect();
        let grouped = if c.group_by.is_empty() {
            String::new()
        } else {
            format!(", grouped by {}", c.group_by.join(", "))
        };
        let _ = writeln!(
            out,
            "  {} of {}{grouped}, within {}; condition: {}",
            c.kind,
            c.rules
                .iter()
                .map(|r| r.reference.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            c.timespan,
            condition.join(" and ")
        );
        let _ = writeln!(out, "  note: {}", c.note);
        for reference in &c.rules {
            let _ = writeln!(
                out,
                "  referenced {} {:?}{}",
                if reference.kind == "correlation" {
                    "correlation"
                } else {
                    "rule"
                },
                reference.reference,
                reference
                    .file
                    .as_ref()
                    .map_or_else(String::new, |file| format!(" in {file}"))
            );
            if let Some((rule_origin, rule)) = &reference.rule {
                let single = Explained {
                    rules: vec![rule.clone()],
                    ..Explained::default()
                };
                for line in to_text(&single, logsource, rule_origin).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            let shown = |values: &Ordered| -> String {
                values
                    .0
                    .iter()
                    .map(|(field, value)| match value {
                        Value::Null => format!("{field} missing"),
                        other => format!("{field} = {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !reference.group.is_empty() {
                let _ = writeln!(out, "    group-by: {}", shown(&reference.group));
            }
            if !reference.fields.is_empty() {
                let _ = writeln!(out, "    field: {}", shown(&reference.fields));
            }
            match &reference.reason {
                None => {
                    let _ = writeln!(out, "    -> the event counts towards the correlation");
                }
                Some(reason) => {
                    let _ = writeln!(out, "    -> the event does not count: {reason}");
                }
            }
        }
        let _ = writeln!(
            out,
            "  verdict: {}",
            if c.counts {
                "COUNTS towards the correlation (it raises an alert only when the sequence meets the condition)"
            } else {
                "DOES NOT COUNT towards the correlation"
            }
        );
    }
    out
}
