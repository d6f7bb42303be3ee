//! `vigil rules check DIR...`: load every rule as `vigil run` would and report what fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use vigil_detect::RuleError;

use super::{Format, LoadArgs};
use crate::rules;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rule directories (searched recursively for .yml and .yaml) or rule files.
    #[arg(value_name = "DIR", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// `text` for people, `json` for tools.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let loaded = rules::load_dirs(&args.paths, &args.load.options()?)
        .context("cannot read the rule directories")?;
    let built = &loaded.built;
    let mut errors = built.errors.clone();
    errors.sort_by(|a, b| (&a.origin, a.line).cmp(&(&b.origin, b.line)));
    let mut warnings = built.warnings.clone();
    warnings.sort_by(|a, b| (&a.origin, a.line).cmp(&(&b.origin, b.line)));
    let failed_files: BTreeSet<&str> = errors.iter().map(|e| e.origin.as_str()).collect();
    let by_reason = by_reason(&errors);
    let rules = built.engine.rules().len();
    let correlations = built.engine.correlations().len();

    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let problem = |e: &RuleError| {
                json!({"file": e.origin, "line": e.line, "reason": e.message,
                       "category": category(&e.message)})
            };
            let report = json!({
                "ok": errors.is_empty(),
                "files": loaded.files,
                "rules": rules,
                "correlations": correlations,
                "filters": loaded.filters,
                "failed": errors.len(),
                "failed_files": failed_files.len(),
                "failures": errors.iter().map(problem).collect::<Vec<_>>(),
                "warnings": warnings.iter().map(problem).collect::<Vec<_>>(),
                "by_reason": by_reason.iter()
                    .map(|(reason, count)| json!({"reason": reason, "count": count}))
                    .collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Format::Text => {
            for error in &errors {
                writeln!(out, "{}:{}: {}", error.origin, error.line, error.message)?;
            }
            for warning in &warnings {
                writeln!(
                    out,
                    "{}:{}: warning: {}",
                    warning.origin, warning.line, warning.message
                )?;
            }
            writeln!(
                out,
                "{} files: {rules} rules, {correlations} correlations and {} filters loaded; \
                 {} failures in {} files; {} warnings",
                loaded.files,
                loaded.filters,
                errors.len(),
                failed_files.len(),
                warnings.len()
            )?;
            if !by_reason.is_empty() {
                writeln!(out, "failures by reason:")?;
                for (reason, count) in &by_reason {
                    writeln!(out, "{count:>6}  {reason}")?;
                }
            }
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Failure counts per category, most frequent first.
fn by_reason(errors: &[RuleError]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for error in errors {
        *counts.entry(category(&error.message)).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// A failure's reason without its specifics, so that the same problem in many rules counts
/// once: double-quoted text (titles, values, references) becomes `"…"`, numbers become `N`,
/// and `file:line` locations become `…`. Backquoted words stay, since they name the key or
/// modifier the reason is about.
pub fn category(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    let mut in_backquote = false;
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                in_backquote = !in_backquote;
                out.push(c);
            }
            '"' if !in_backquote => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                out.push_str("\"…\"");
            }
            c if c.is_ascii_digit() && !in_backquote => {
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                }
                out.push('N');
            }
            c => out.push(c),
        }
    }
    // Locations such as `rules/a.yml:N` in "already used by ..." differ per rule.
    out.split(' ')
        .map(|word| {
            if word.contains('/') && word.contains(":N") || word.ends_with(".yml:N") {
                "…"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::category;

    #[test]
    fn categories_drop_specifics() {
        assert_eq!(
            category(r#"correlation "Many \"A\"" refers to unknown rule "b""#),
            r#"correlation "…" refers to unknown rule "…""#
        );
        assert_eq!(
            category("unknown modifier `foo` at byte 12"),
            "unknown modifier `foo` at byte N"
        );
        assert_eq!(
            category("id x is already used by rules/a.yml:3"),
            "id x is already used by …"
        );
    }
}
