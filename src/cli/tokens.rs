//! `vigil tokens create|list|revoke`: scoped API tokens in the access database of a data
//! directory, changed even while Vigil runs on it. A token's secret is printed once, alone
//! on standard output, and kept only as a hash. Exit codes as for `vigil users`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{Duration, Utc};
use clap::{Args, Subcommand};
use vigil_access::Scopes;

use super::users::{
    audited, exit_code, open_db, show_once, write_table, DataDirArgs, ListArgs, NameArgs, Refusal,
};
use super::Format;

/// The longest life a token may be given: ten years, so the expiry date stays representable
/// and a typo of extra digits is caught.
const MAX_EXPIRES_IN_DAYS: u32 = 3650;

/// `vigil tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Creates a token and prints its secret once.
    Create(CreateArgs),
    /// Lists the tokens (never their secrets): name, scopes, creation, expiry, revocation,
    /// last use.
    List(ListArgs),
    /// Revokes a token: requests with it are refused from now on. Its name stays taken.
    Revoke(NameArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// 1 to 64 letters, digits, '.', '_', '-' and '@'; the audit log names the token by it.
    #[arg(long)]
    pub name: String,
    /// What the token may do, comma-separated: ingest, ingest:SOURCE, read, triage, admin.
    #[arg(long, value_parser = parse_scopes)]
    pub scope: Scopes,
    /// The token stops working this many days from now [default: never].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EXPIRES_IN_DAYS)))]
    pub expires_in_days: Option<u32>,
    #[command(flatten)]
    pub dir: DataDirArgs,
}

fn parse_scopes(text: &str) -> Result<Scopes, String> {
    text.parse()
}

pub fn run(command: TokensCommand) -> ExitCode {
    exit_code(match command {
        TokensCommand::Create(args) => create(args),
        TokensCommand::List(args) => list(args),
        TokensCommand::Revoke(args) => revoke(args),
    })
}

fn create(args: CreateArgs) -> Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    let expires = args
        .expires_in_days
        .map(|days| Utc::now() + Duration::days(i64::from(days)));
    let actor = super::users::cli_actor();
    let token = audited(
        &db,
        "token.create",
        &args.name,
        || db.create_token(&args.name, &args.scope, expires, &actor),
        |token| {
            serde_json::json!({
                "scopes": token.info.scopes.to_string(),
                "expires": token.info.expires,
            })
        },
    )?;
    show_once(&token.secret)?;
    let expiry = match token.info.expires {
        Some(expires) => format!("expires {}", expires.format("%Y-%m-%d %H:%M UTC")),
        None => "never expires".to_owned(),
    };
    eprintln!(
        "Created token {} with scopes {} ({expiry}). Its secret, above, is shown once and \
         stored only as a hash: send it as `Authorization: Bearer <secret>`.",
        token.info.name, token.info.scopes
    );
    Ok(())
}

fn list(args: ListArgs) -> Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    let tokens = db.tokens()?;
    let mut out = std::io::stdout().lock();
    let when = |time: Option<chrono::DateTime<Utc>>| {
        time.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&tokens).context("cannot write the tokens as JSON")?
        ),
        Format::Text => {
            let rows: Vec<[String; 7]> = tokens
                .iter()
                .map(|token| {
                    [
                        token.name.clone(),
                        token.scopes.to_string(),
                        when(Some(token.created)),
                        token.created_by.clone(),
                        when(token.expires),
                        when(token.revoked),
                        when(token.last_used),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                [
                    "NAME",
                    "SCOPES",
                    "CREATED",
                    "CREATED BY",
                    "EXPIRES",
                    "REVOKED",
                    "LAST USED",
                ],
                &rows,
            )
        }
    }
    .context("cannot write to standard output")?;
    Ok(())
}

fn revoke(args: NameArgs) -> Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    audited(
        &db,
        "token.revoke",
        &args.name,
        || db.revoke_token(&args.name),
        |_| serde_json::Value::Null,
    )?;
    eprintln!(
        "Revoked token {}; requests with it are refused from now on.",
        args.name
    );
    Ok(())
}
