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
            config
                .server
                .validate()
                .map_err(|message| anyhow::anyhow!(message))?;
            private_dir(&config.data_dir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run::run(run::RunOptions {
                config,
                extra_rules: rules,
                demo,
                allow_no_rules,
            }))?;
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
