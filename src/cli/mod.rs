//! The rule author's and analyst's commands: `vigil rules check|test|explain` and
//! `vigil detect`. Each runs over files, prints its report and returns the exit code; none
//! starts a server or touches the data directory.

pub mod backup;
mod detect;
mod events;
pub mod healthcheck;
mod rules_backtest;
mod rules_check;
mod rules_explain;
mod rules_test;
pub mod search;
pub mod tokens;
pub mod users;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use vigil_detect::LoadOptions;
use vigil_event::LogSource;

pub use detect::DetectArgs;

/// `vigil rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Parses and compiles every rule, reporting each failure as `file:line: reason`.
    Check(rules_check::CheckArgs),
    /// Runs the test cases beside the rules (`<rule>.tests.yml`; see rules/README.md).
    Test(rules_test::TestArgs),
    /// Shows why the rules of one file did or did not match one event.
    Explain(rules_explain::ExplainArgs),
    /// Runs a rule file, or a loaded rule by id, over the stored events of a running Vigil.
    Backtest(rules_backtest::BacktestArgs),
}

pub fn run_rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check(args) => rules_check::run(args),
        RulesCommand::Test(args) => rules_test::run(args),
        RulesCommand::Explain(args) => rules_explain::run(args),
        RulesCommand::Backtest(args) => rules_backtest::run(args),
    }
}

pub fn run_detect(args: DetectArgs) -> anyhow::Result<ExitCode> {
    detect::run(args)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Options that change how rules load, shared by the commands that load rules.
#[derive(Debug, Clone, Default, Args)]
pub struct LoadArgs {
    /// A value for an `expand` placeholder: `--placeholder Admins='*admin*'`. Repeat it for
    /// more values or more placeholders.
    #[arg(long = "placeholder", value_name = "NAME=VALUE", value_parser = parse_placeholder)]
    pub placeholders: Vec<(String, String)>,
    /// A field-mapping pipeline file (or a directory of them) to load the rules with; repeat
    /// for more. They apply in the order given.
    #[arg(long = "pipeline", value_name = "FILE")]
    pub pipelines: Vec<PathBuf>,
}

impl LoadArgs {
    pub fn options(&self) -> anyhow::Result<LoadOptions> {
        let mut placeholders: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in &self.placeholders {
            placeholders
                .entry(name.clone())
                .or_default()
                .push(value.clone());
        }
        Ok(LoadOptions {
            placeholders,
            pipelines: crate::rules::load_pipelines(&self.pipelines)?,
        })
    }
}

fn parse_placeholder(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Reads `product=aws,service=cloudtrail`: any of `product`, `service` and `category`.
pub fn parse_logsource(text: &str) -> Result<LogSource, String> {
    let mut logsource = LogSource::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("expected key=value, got {part:?}"));
        };
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match key.trim() {
            "product" => logsource.product = value,
            "service" => logsource.service = value,
            "category" => logsource.category = value,
            other => {
                return Err(format!(
                    "unknown logsource key {other:?}; expected product, service or category"
                ))
            }
        }
    }
    if logsource == LogSource::default() {
        return Err("the logsource names no product, service or category".into());
    }
    Ok(logsource)
}

/// How a logsource reads in reports: `product=aws, service=cloudtrail`.
pub fn describe_logsource(
    product: &Option<String>,
    service: &Option<String>,
    category: &Option<String>,
) -> String {
    let parts: Vec<String> = [
        ("product", product),
        ("service", service),
        ("category", category),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={v}")))
    .collect();
    if parts.is_empty() {
        "(none)".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsource_flag() {
        let ls = parse_logsource("product=aws, service=cloudtrail").unwrap();
        assert_eq!(ls, LogSource::new(Some("aws"), Some("cloudtrail"), None));
        assert!(parse_logsource("vendor=x").is_err());
        assert!(parse_logsource("product").is_err());
        assert!(parse_logsource("").is_err());
    }

    #[test]
    fn placeholders_collect_values() {
        let args = LoadArgs {
            placeholders: vec![
                parse_placeholder("A=1").unwrap(),
                parse_placeholder("A=x=2").unwrap(),
            ],
            pipelines: Vec::new(),
        };
        assert_eq!(args.options().unwrap().placeholders["A"], vec!["1", "x=2"]);
        assert!(parse_placeholder("=1").is_err());
    }
}
