//! `vigil rules explain RULE_FILE EVENT_FILE`: why each rule of a file did or did not match
//! one event.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use chrono::Utc;
use clap::Args;
use serde_json::json;
use vigil_detect::{explain, Explained, RuleExplanation};
use vigil_event::{Event, LogSource};

use super::events::line_event;
use super::{describe_logsource, parse_logsource, Format, LoadArgs};
use crate::rules::read_text;

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
    let explained = explain(&rule_text, &origin, &args.load.options()?, &doc);
    if explained.rules.is_empty() && explained.skipped.is_empty() && explained.errors.is_empty() {
        bail!("{origin}: holds no rule");
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", to_json(&explained, &event.logsource, &origin)?)?,
        Format::Text => write!(out, "{}", to_text(&explained, &event.logsource, &origin))?,
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

fn to_json(
    explained: &Explained,
    logsource: &LogSource,
    origin: &str,
) -> serde_json::Result<String> {
    let rules: Vec<serde_json::Value> = explained
        .rules
        .iter()
        .map(|rule| {
            let routed = applies(rule, logsource);
            let mut value = serde_json::to_value(rule)?;
            value["logsource_applies"] = json!(routed);
            value["verdict"] = json!(routed && rule.matched);
            Ok(value)
        })
        .collect::<serde_json::Result<_>>()?;
    let report = json!({
        "file": origin,
        "event_logsource": logsource,
        "rules": rules,
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
