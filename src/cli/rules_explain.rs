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
use serde_json::{json, Value};
use vigil_detect::{
    explain, explain_correlation, parse_rules_with, CorrelationExplanation, Explained, FieldValues,
    LoadOptions, ReferenceKind, RuleLibrary, RuleVerdict,
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
        let library = load_library(&args.rule, &rule_text, &places, &options)?;
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

fn to_json(
    explained: &Explained,
    correlations: &[CorrelationExplanation],
    logsource: &LogSource,
    origin: &str,
) -> serde_json::Result<String> {
    let rules: Vec<RuleVerdict> = explained
        .rules
        .iter()
        .map(|rule| RuleVerdict::new(rule.clone(), logsource))
        .collect();
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
        let routed = rule.applies_to(logsource);
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
fn load_library(
    rule_file: &std::path::Path,
    rule_text: &str,
    places: &[PathBuf],
    options: &LoadOptions,
) -> anyhow::Result<RuleLibrary> {
    let mut library = RuleLibrary::new();
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
            .map(|t| format!("{} {}", t.op, t.value))
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
                if reference.kind == ReferenceKind::Correlation {
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
            if let (Some(rule_origin), Some(verdict)) = (&reference.file, &reference.explanation) {
                let single = Explained {
                    rules: vec![verdict.rule.clone()],
                    ..Explained::default()
                };
                for line in to_text(&single, logsource, rule_origin).lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            let shown = |values: &FieldValues| -> String {
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
