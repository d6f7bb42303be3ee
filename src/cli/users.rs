//! `vigil users add|list|disable|passwd`: local users in the access database of a data
//! directory, changed even while Vigil runs on it (SQLite's locking keeps both consistent).
//!
//! Also the pieces `vigil tokens` and `vigil backup` share: which data directory a command
//! means, the actor the audit log names for the command line, and the exit codes.
//!
//! Exit codes: 2 for a usage mistake (a malformed name, role or scope, a weak password, a
//! missing data directory), 1 when the change itself fails (the name exists, the user is
//! unknown, the database cannot be written).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use vigil_access::{password, AccessDb, AccessError, AuditRecord, Outcome, Role, Secret};
use vigil_pipeline::config::{Config, Overrides};

use super::Format;

/// Exit code for a usage mistake, as clap uses for the ones it catches.
const USAGE: u8 = 2;

/// Set when a change was made but its audit entry could not be written: the command then
/// finishes its output and exits with a failure.
static UNAUDITED: AtomicBool = AtomicBool::new(false);

/// Where a command finds the data directory: as `vigil run` does.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The data directory [default: as `vigil run`: the config's `data_dir`,
    /// VIGIL_DATA_DIR, or ./vigil-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: ./vigil.toml, if present].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory `vigil run` with these flags would use.
    pub fn resolve(&self) -> Result<PathBuf> {
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            ..Overrides::default()
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?.data_dir)
    }
}

/// A command's outcome: done, or refused for a usage mistake or a failure, with the message.
pub enum Refusal {
    Usage(String),
    Failure(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(error: anyhow::Error) -> Refusal {
        Refusal::Failure(error)
    }
}

/// What the access database said no to: a malformed request is a usage mistake; the rest
/// (a name taken or unknown, a broken database) are failures.
impl From<AccessError> for Refusal {
    fn from(error: AccessError) -> Refusal {
        match error {
            AccessError::Invalid(message) => Refusal::Usage(message),
            other => Refusal::Failure(other.into()),
        }
    }
}

/// Prints a refusal and gives the exit code it calls for.
pub fn exit_code(result: std::result::Result<(), Refusal>) -> ExitCode {
    match result {
        Ok(()) if UNAUDITED.load(Ordering::SeqCst) => ExitCode::FAILURE,
        Ok(()) => ExitCode::SUCCESS,
        Err(Refusal::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(USAGE)
        }
        Err(Refusal::Failure(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the access database of an existing data directory. A missing directory is refused
/// rather than created: a mistyped `--data-dir` must not start a second, empty user list.
pub fn open_db(args: &DataDirArgs) -> std::result::Result<AccessDb, Refusal> {
    // A configuration that does not load is the caller's to fix: a usage mistake.
    let data_dir = args
        .resolve()
        .map_err(|error| Refusal::Usage(format!("{error:#}")))?;
    open_db_in(&data_dir)
}

pub fn open_db_in(data_dir: &Path) -> std::result::Result<AccessDb, Refusal> {
    if !data_dir.is_dir() {
        return Err(Refusal::Usage(format!(
            "no data directory {}; pass --data-dir (or --config), or start `vigil run` once",
            data_dir.display()
        )));
    }
    Ok(AccessDb::open_in(data_dir)?)
}

/// The actor the audit log names for this command: `cli:` and the operating system user,
/// from `$USER` when it is a plain name, else the numeric uid.
pub fn cli_actor() -> String {
    let plain = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    };
    match std::env::var("USER") {
        Ok(user) if plain(&user) => format!("cli:{user}"),
        _ => {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata("/proc/self") {
                Ok(meta) => format!("cli:uid-{}", meta.uid()),
                Err(_) => "cli:unknown".to_owned(),
            }
        }
    }
}

/// Appends an audit entry for a change the command line made (or tried to make).
pub fn audit(
    db: &AccessDb,
    action: &str,
    target: &str,
    outcome: std::result::Result<serde_json::Value, &AccessError>,
) -> Result<()> {
    let (outcome, reason, detail) = match outcome {
        Ok(detail) => (Outcome::Success, None, detail),
        Err(error) => (
            Outcome::Failure,
            Some(failure_reason(error).to_owned()),
            serde_json::Value::Null,
        ),
    };
    db.audit(AuditRecord {
        actor: cli_actor(),
        action: action.to_owned(),
        outcome,
        target: Some(target.to_owned()),
        client_address: None,
        reason,
        detail,
    })
    .with_context(|| format!("the change was made but could not be audited ({action} {target})"))?;
    Ok(())
}

fn failure_reason(error: &AccessError) -> &'static str {
    match error {
        AccessError::Exists { .. } => "exists",
        AccessError::NotFound { .. } => "not_found",
        AccessError::Invalid(_) => "invalid",
        _ => "error",
    }
}

/// Runs `change`, audits its outcome as `action` on `target`, and hands back its result.
/// Usage mistakes found before the database is touched are not audited: nothing was tried.
pub fn audited<T>(
    db: &AccessDb,
    action: &str,
    target: &str,
    change: impl FnOnce() -> std::result::Result<T, AccessError>,
    detail: impl FnOnce(&T) -> serde_json::Value,
) -> std::result::Result<T, Refusal> {
    match change() {
        Ok(value) => {
            // The change is made: hand its result on (a generated secret must still be
            // shown), but end with a failure so the missing entry is not missed.
            if let Err(audit_error) = audit(db, action, target, Ok(detail(&value))) {
                eprintln!("error: {audit_error:#}");
                UNAUDITED.store(true, Ordering::SeqCst);
            }
            Ok(value)
        }
        Err(error) => {
            // The refusal matters more than a failure to record it: report the refusal.
            if let Err(audit_error) = audit(db, action, target, Err(&error)) {
                eprintln!("warning: {audit_error:#}");
            }
            Err(error.into())
        }
    }
}

/// `vigil users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Adds a user. The password is read from standard input (one line), or generated with
    /// --generate and printed once.
    Add(AddArgs),
    /// Lists the users: name, role, whether disabled, when created.
    List(ListArgs),
    /// Disables a user and ends their sessions; the name stays taken.
    Disable(NameArgs),
    /// Sets a user's password (from standard input, or --generate) and ends their sessions.
    Passwd(PasswdArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// 1 to 64 letters, digits, '.', '_', '-' and '@'.
    pub name: String,
    /// viewer, analyst, rule-author or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Generate a password and print it once, instead of reading one.
    #[arg(long)]
    pub generate: bool,
    #[command(flatten)]
    pub dir: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub dir: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    pub name: String,
    #[command(flatten)]
    pub dir: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    pub name: String,
    /// Generate a password and print it once, instead of reading one.
    #[arg(long)]
    pub generate: bool,
    #[command(flatten)]
    pub dir: DataDirArgs,
}

fn parse_role(text: &str) -> std::result::Result<Role, String> {
    text.parse()
}

pub fn run(command: UsersCommand) -> ExitCode {
    exit_code(match command {
        UsersCommand::Add(args) => add(args),
        UsersCommand::List(args) => list(args),
        UsersCommand::Disable(args) => disable(args),
        UsersCommand::Passwd(args) => passwd(args),
    })
}

fn add(args: AddArgs) -> std::result::Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    let password = new_password(&args.name, args.generate)?;
    let user = audited(
        &db,
        "user.add",
        &args.name,
        || db.add_user(&args.name, args.role, &password),
        |user| serde_json::json!({ "role": user.role }),
    )?;
    if args.generate {
        show_once(&password)?;
    }
    eprintln!(
        "Added user {} with role {}{}.",
        user.name,
        user.role,
        if args.generate {
            "; the password above is shown once and stored only as a hash"
        } else {
            ""
        }
    );
    Ok(())
}

fn list(args: ListArgs) -> std::result::Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    let users = db.users()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&users).context("cannot write the users as JSON")?
        ),
        Format::Text => {
            let rows: Vec<[String; 4]> = users
                .iter()
                .map(|user| {
                    [
                        user.name.clone(),
                        user.role.to_string(),
                        if user.disabled { "yes" } else { "no" }.to_owned(),
                        user.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    ]
                })
                .collect();
            write_table(&mut out, ["NAME", "ROLE", "DISABLED", "CREATED"], &rows)
        }
    }
    .context("cannot write to standard output")?;
    Ok(())
}

fn disable(args: NameArgs) -> std::result::Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    audited(
        &db,
        "user.disable",
        &args.name,
        || db.disable_user(&args.name),
        |_| serde_json::Value::Null,
    )?;
    eprintln!("Disabled user {}; their sessions are ended.", args.name);
    Ok(())
}

fn passwd(args: PasswdArgs) -> std::result::Result<(), Refusal> {
    let db = open_db(&args.dir)?;
    // An unknown name is reported before a password is asked for.
    if db.user(&args.name)?.is_none() {
        let error = AccessError::NotFound {
            kind: "user",
            name: args.name.clone(),
        };
        audit(&db, "user.password", &args.name, Err(&error))?;
        return Err(error.into());
    }
    let password = new_password(&args.name, args.generate)?;
    audited(
        &db,
        "user.password",
        &args.name,
        || db.set_password(&args.name, &password),
        |_| serde_json::Value::Null,
    )?;
    if args.generate {
        show_once(&password)?;
    }
    eprintln!(
        "Set a new password for {}; their sessions are ended.",
        args.name
    );
    Ok(())
}

/// A generated password, or one read from standard input and checked for strength.
fn new_password(name: &str, generate: bool) -> std::result::Result<Secret, Refusal> {
    if generate {
        return Ok(password::generate()?);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Typed at a terminal it echoes; whoever wants it hidden pipes it in or generates one.
        eprint!(
            "Password for {name} (at least {} characters): ",
            password::MIN_PASSWORD_CHARS
        );
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let typed = line.strip_suffix('\n').unwrap_or(&line);
    let typed = typed.strip_suffix('\r').unwrap_or(typed);
    if typed.is_empty() {
        return Err(Refusal::Usage(
            "no password on standard input: write one line with it, or pass --generate".into(),
        ));
    }
    password::check_strength(typed)?;
    Ok(Secret::new(typed))
}

/// Prints a secret alone on its own line of standard output, so scripts can take it.
pub fn show_once(secret: &Secret) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", secret.expose())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Writes rows in columns padded to their widest cell.
pub fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header.to_vec())?;
    for row in rows {
        line(out, row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let mut out = Vec::new();
        let rows = [
            ["alice".to_owned(), "analyst".to_owned()],
            ["bo".to_owned(), "admin".to_owned()],
        ];
        write_table(&mut out, ["NAME", "ROLE"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME   ROLE\nalice  analyst\nbo     admin\n"
        );
    }

    #[test]
    fn the_actor_is_the_plain_user_name_or_the_uid() {
        let actor = cli_actor();
        assert!(actor.starts_with("cli:"), "{actor}");
        assert!(actor.len() > 4, "{actor}");
    }

    #[test]
    fn malformed_requests_are_usage_mistakes_and_conflicts_are_failures() {
        assert!(matches!(
            Refusal::from(AccessError::Invalid("weak".into())),
            Refusal::Usage(_)
        ));
        assert!(matches!(
            Refusal::from(AccessError::Exists {
                kind: "user",
                name: "a".into()
            }),
            Refusal::Failure(_)
        ));
    }
}
