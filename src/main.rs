//! The `vigil` binary: the command line over `vigil-pipeline`, which holds the stages, the
//! configuration and their wiring.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vigil_pipeline::config::{Config, Overrides, Role};
use vigil_pipeline::run;
// The rule commands read rule files as `vigil run` does.
use vigil_pipeline::rules;

use crate::cli::backup;

/// Vigil: a security event pipeline and lightweight SIEM.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every stage in one process: ingest, detection, indexing and the web UI.
    Run {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory for the bus, the indices and the API token [default: ./vigil-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Configuration file [default: ./vigil.toml, if present].
        #[arg(long)]
        config: Option<PathBuf>,
        /// More rule directories, beside the configured ones (./rules by default).
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
        /// Also feed the bundled demo events.
        #[arg(long)]
        demo: bool,
        /// Start even when no detection rule loads; Vigil then raises no alert.
        #[arg(long)]
        allow_no_rules: bool,
        /// The stages this process runs, comma-separated [default: all]. With the Kafka bus,
        /// stages can run as separate processes, and several `detect` or `index` processes
        /// share the work.
        #[arg(long = "role", value_delimiter = ',', value_parser = role_parser())]
        roles: Vec<Role>,
    },
    /// Checks, tests and explains Sigma rules.
    #[command(subcommand)]
    Rules(cli::RulesCommand),
    /// Runs rules over NDJSON events (or access log lines) and prints each match as NDJSON.
    Detect(cli::DetectArgs),
    /// Searches events in a data directory (even while Vigil runs) or on a running server.
    Search(cli::search::SearchArgs),
    /// Backs up the indices and the alert triage to a new directory, even while Vigil runs.
    Backup(backup::BackupArgs),
    /// Restores a backup into a data directory; Vigil must be stopped.
    Restore(backup::RestoreArgs),
    /// Adds, lists and disables local users and sets their passwords, even while Vigil runs.
    #[command(subcommand)]
    Users(cli::users::UsersCommand),
    /// Creates, lists and revokes scoped API tokens, even while Vigil runs.
    #[command(subcommand)]
    Tokens(cli::tokens::TokensCommand),
    /// Exits 0 when a running Vigil's /healthz answers 200, else 1: a container health check.
    Healthcheck(cli::healthcheck::HealthcheckArgs),
}

/// `--role` takes the names `roles = [...]` takes, each listed with what it runs.
fn role_parser() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new(
        Role::ALL.map(|role| PossibleValue::new(role.name()).help(role.description())),
    )
    .map(|name| Role::from_name(&name).expect("clap admits only the names listed"))
}

fn main() -> ExitCode {
    vigil_allocator::configure();
    vigil_notify::install_tls_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run_command(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            listen,
            data_dir,
            config,
            rules,
            demo,
            allow_no_rules,
            roles,
        } => {
            private_files();
            let roles = (!roles.is_empty()).then_some(roles);
            let overrides = Overrides {
                listen,
                data_dir,
                roles,
            };
            let config = Config::load(config.as_deref(), &overrides)?;
            // Every setting is checked, and the rules loaded, before the data directory is
            // touched or anything is bound.
            let startup = run::Startup::new(run::RunOptions {
                config,
                extra_rules: rules,
                demo,
                allow_no_rules,
            })?;
            private_dir(startup.data_dir())?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(startup.run())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rules(command) => cli::run_rules(command),
        Command::Detect(args) => cli::run_detect(args),
        Command::Search(args) => {
            cli::search::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            private_files();
            backup::backup(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            private_files();
            backup::restore(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(command) => {
            private_files();
            Ok(cli::users::run(command))
        }
        Command::Tokens(command) => {
            private_files();
            Ok(cli::tokens::run(command))
        }
        Command::Healthcheck(args) => Ok(cli::healthcheck::run(args)),
    }
}

/// Makes every file and directory this process creates private to its user (0600 and 0700):
/// the data directory holds the API token, the events (attacker text, but also secrets that
/// leak into logs) and the analysts' triage, and backups hold the same.
#[allow(unsafe_code, reason = "umask(2) through libc")]
fn private_files() {
    // SAFETY: umask(2) only sets the process's file mode creation mask; it cannot fail and
    // touches no memory of ours.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates the data directory with mode 0700, or makes an existing one 0700: its files from
/// before this rule may be readable, but not through a directory others cannot enter.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    use anyhow::Context;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory was open to others; making it private (0700)"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `vigil run` stops with, given `toml` as its configuration and `data_dir` as
    /// its data directory; a panic if it starts instead (its thread is left running).
    fn run_error(toml: &str, data_dir: &std::path::Path) -> String {
        let file = data_dir.with_extension("toml");
        std::fs::write(&file, toml).unwrap();
        let command = Command::Run {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data_dir.to_owned()),
            config: Some(file),
            rules: Vec::new(),
            demo: false,
            allow_no_rules: false,
            roles: Vec::new(),
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(run_command(command).map_err(|error| format!("{error:#}")));
        });
        match receiver.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Err(error)) => error,
            Ok(Ok(code)) => panic!("{toml:?} ran and ended with {code:?}"),
            Err(_) => panic!("{toml:?} started"),
        }
    }

    /// Each mistake is reported by the setting it is in, before the data directory is made or
    /// anything is bound.
    #[test]
    fn every_config_error_is_reported_before_anything_starts() {
        let cases = [
            ("[firehose]\naccess_key = \"short\"\n", "firehose.access_key"),
            (
                "[firehose]\naccess_key = \"0123456789abcdef\"\nmax_inflated_bytes = 100\n",
                "firehose.max_inflated_bytes is 100",
            ),
            (
                "[firehose]\naccess_key = \"0123456789abcdef\"\noverrides = { \"/app\" = \"nope\" }\n",
                "unknown preset \"nope\" for log group \"/app\"",
            ),
            ("[detect]\nmax_groups = 0\n", "detect.max_groups"),
            ("[detect]\nmax_stream_lag_ms = 99999999999999\n", "detect.max_stream_lag_ms"),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[index]\npartition = \"month\"\n", "index.partition"),
            ("[index]\nretention_interval_ms = 0\n", "index.retention_interval_ms"),
            (
                "[ingest.presets]\n\"billing\" = \"cloudtrial\"\n",
                "unknown preset \"cloudtrial\" for push source \"billing\"",
            ),
            (
                "[[sources.files]]\nname = \"app\"\npreset = \"nope\"\npaths = [\"/tmp/x\"]\n",
                "file source \"app\": unknown preset \"nope\"",
            ),
            (
                "[[sources.files]]\nname = \"a/b\"\npreset = \"json\"\npaths = [\"/tmp/x\"]\n",
                "file source name \"a/b\"",
            ),
            (
                "[[sources.cloudwatch]]\nlog_groups = [\"/a\"]\n[[sources.cloudwatch]]\nlog_groups = [\"/b\"]\n",
                "two CloudWatch sources are named \"cloudwatch\"",
            ),
            (
                "[[notify.webhooks]]\nname = \"ops\"\nurl = \"ftp://example.com/hook\"\n",
                "only http and https",
            ),
            ("api_token = \"short\"\n", "API token must be at least 16 characters"),
            ("roles = [\"ui\"]\n", "the ui role searches the index"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (index, (toml, expected)) in cases.iter().enumerate() {
            let data_dir = dir.path().join(format!("data-{index}"));
            let error = run_error(toml, &data_dir);
            assert!(error.contains(expected), "{toml:?}: {error}");
            assert!(!data_dir.exists(), "{toml:?} made the data directory");
        }
    }
}
