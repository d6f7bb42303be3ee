//! `vigil users`, `vigil tokens`, the first start's admin and the audited backup, through the
//! real binary: users and tokens made on the command line while Vigil runs sign in and
//! authenticate at once, each change is in the audit log under `cli:<user>`, and mistakes
//! exit 2 (usage) or 1 (failure).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use vigil_access::{AccessDb, AuditEntry, AuditFilter, Outcome};

use crate::common::{Vigil, TOKEN};

/// The operating system user the commands run as, so the audit log's actor is known.
const OS_USER: &str = "ops-test";

/// Runs `vigil ARGS --data-dir DATA`, with `stdin` as its standard input.
fn vigil(args: &[&str], data: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(data.parent().unwrap())
        .env("VIGIL_LOG", "warn")
        .env("USER", OS_USER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigil starts");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit code, and stderr for the failure message.
fn code(output: &Output) -> (i32, String) {
    (output.status.code().unwrap(), text(&output.stderr))
}

/// A client that does not follow redirects, so a sign-in's 303 shows.
fn client() -> Client {
    // Every reqwest client in this process needs a TLS provider chosen first.
    vigil_notify::install_tls_provider();
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn sign_in(server: &Vigil, name: &str, password: &str) -> StatusCode {
    client()
        .post(server.url("/login"))
        .form(&[("username", name), ("password", password)])
        .send()
        .unwrap()
        .status()
}

fn audit(data: &Path, action: &str) -> Vec<AuditEntry> {
    AccessDb::open_in(data)
        .unwrap()
        .audit_entries(&AuditFilter {
            action: Some(action.into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap()
}

/// A `vigil run` child killed when dropped, so a failed assertion leaves no server behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_first_start_prints_an_admin_password_once_and_it_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--allow-no-rules",
                "--data-dir",
            ])
            .arg(&data)
            .current_dir(dir.path())
            .env("VIGIL_API_TOKEN", TOKEN)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        (Running(child), received)
    };
    // The lines start-up prints: it prints them all at once, so a short quiet means done.
    let printed = |received: &mpsc::Receiver<String>| {
        let mut lines = vec![received.recv_timeout(Duration::from_secs(60)).unwrap()];
        while let Ok(line) = received.recv_timeout(Duration::from_millis(1500)) {
            lines.push(line);
        }
        lines
    };

    let (child, received) = start();
    let lines = printed(&received);
    let base = lines[0].strip_prefix("Vigil is listening on ").unwrap();
    let prefix = "Admin user: admin, password (shown once, stored only as a hash): ";
    let password = lines
        .iter()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no admin password in {lines:?}"))
        .to_owned();
    assert!(password.len() >= 12, "{password}");
    let stored = std::fs::read(data.join("access.sqlite")).unwrap();
    assert!(
        !stored
            .windows(password.len())
            .any(|w| w == password.as_bytes()),
        "the password is stored in clear"
    );
    let signed_in = client()
        .post(format!("{base}/login"))
        .form(&[("username", "admin"), ("password", password.as_str())])
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let added = audit(&data, "user.add");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].record.actor, "vigil");
    assert_eq!(added[0].record.target.as_deref(), Some("admin"));
    drop(child);

    let (child, received) = start();
    let lines = printed(&received);
    assert!(
        lines.iter().all(|line| !line.contains("Admin user")),
        "{lines:?}"
    );
    drop(child);
}

#[test]
fn users_and_tokens_made_on_the_command_line_work_at_once_while_vigil_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Vigil::start(&data);

    // Users: a password from standard input, one generated and printed once.
    let added = vigil(
        &["users", "add", "alice", "--role", "analyst"],
        &data,
        "alice's long secret\n",
    );
    assert_eq!(code(&added).0, 0, "{}", code(&added).1);
    let generated = vigil(
        &["users", "add", "bob", "--role", "viewer", "--generate"],
        &data,
        "",
    );
    assert_eq!(code(&generated).0, 0, "{}", code(&generated).1);
    let bob_password = text(&generated.stdout).trim().to_owned();
    assert_eq!(bob_password.len(), 24, "{bob_password:?}");
    assert_eq!(
        sign_in(&server, "alice", "alice's long secret"),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        sign_in(&server, "bob", &bob_password),
        StatusCode::SEE_OTHER
    );

    // Mistakes: usage (2) for what was typed wrong, failure (1) for what the data refuses.
    for (args, stdin, expected, says) in [
        (
            &["users", "add", "carol", "--role", "root"][..],
            "",
            2,
            "unknown role",
        ),
        (
            &["users", "add", "carol", "--role", "viewer"][..],
            "short\n",
            2,
            "at least 12",
        ),
        (
            &["users", "add", "carol", "--role", "viewer"][..],
            "",
            2,
            "no password",
        ),
        (
            &["users", "add", "al ice", "--role", "viewer"][..],
            "a long enough secret\n",
            2,
            "may hold only",
        ),
        (
            &["users", "add", "ALICE", "--role", "viewer"][..],
            "a long enough secret\n",
            1,
            "already exists",
        ),
        (&["users", "disable", "nobody"][..], "", 1, "nobody"),
        (
            &["tokens", "create", "--name", "x", "--scope", "write"][..],
            "",
            2,
            "unknown scope",
        ),
    ] {
        let output = vigil(args, &data, stdin);
        let (status, stderr) = code(&output);
        assert_eq!(status, expected, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    let listed = vigil(&["users", "list", "--format", "json"], &data, "");
    let users: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    assert_eq!(users[1]["role"], "analyst");

    // Disabled: signing in stops working, and the list says so.
    let disabled = vigil(&["users", "disable", "bob"], &data, "");
    assert_eq!(code(&disabled).0, 0, "{}", code(&disabled).1);
    assert_eq!(
        sign_in(&server, "bob", &bob_password),
        StatusCode::UNAUTHORIZED
    );
    let table = text(&vigil(&["users", "list"], &data, "").stdout);
    let bob_row = table.lines().find(|line| line.starts_with("bob ")).unwrap();
    assert!(bob_row.contains(" yes "), "{table}");

    // A token: its secret alone on stdout, good at once for what its scope allows only.
    let created = vigil(
        &[
            "tokens",
            "create",
            "--name",
            "reader",
            "--scope",
            "read",
            "--expires-in-days",
            "7",
        ],
        &data,
        "",
    );
    assert_eq!(code(&created).0, 0, "{}", code(&created).1);
    let secret = text(&created.stdout);
    assert_eq!(secret.lines().count(), 1, "{secret:?}");
    let secret = secret.trim();
    assert!(code(&created).1.contains("shown once"));
    let search = || {
        server
            .client
            .get(server.url("/api/v1/search?q=*"))
            .bearer_auth(secret)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(search(), StatusCode::OK);
    let ingest = server
        .client
        .post(server.url("/api/v1/ingest/app"))
        .bearer_auth(secret)
        .body("{\"a\":1}\n")
        .send()
        .unwrap();
    assert_eq!(ingest.status(), StatusCode::FORBIDDEN);
    let listed = text(&vigil(&["tokens", "list"], &data, "").stdout);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("reader ") && line.contains(" read ")),
        "{listed}"
    );
    assert!(!listed.contains(secret));

    let revoked = vigil(&["tokens", "revoke", "reader"], &data, "");
    assert_eq!(code(&revoked).0, 0, "{}", code(&revoked).1);
    assert_eq!(search(), StatusCode::UNAUTHORIZED);
    let listed: Value =
        serde_json::from_slice(&vigil(&["tokens", "list", "--format", "json"], &data, "").stdout)
            .unwrap();
    assert!(listed[0]["revoked"].is_string(), "{listed}");

    // Each change is audited under the operating system user, refusals too.
    let actor = format!("cli:{OS_USER}");
    for (action, target, outcome) in [
        ("user.add", "alice", Outcome::Success),
        ("user.add", "bob", Outcome::Success),
        ("user.add", "ALICE", Outcome::Failure),
        ("user.disable", "bob", Outcome::Success),
        ("user.disable", "nobody", Outcome::Failure),
        ("token.create", "reader", Outcome::Success),
        ("token.revoke", "reader", Outcome::Success),
    ] {
        let entries = audit(&data, action);
        assert!(
            entries.iter().any(|entry| entry.record.actor == actor
                && entry.record.target.as_deref() == Some(target)
                && entry.record.outcome == outcome),
            "{action} {target} {outcome:?}: {entries:?}"
        );
    }
    // A usage mistake caught before the database is asked is not a change tried.
    assert!(audit(&data, "user.add")
        .iter()
        .all(|entry| entry.record.target.as_deref() != Some("carol")));
}

#[test]
fn backups_and_restores_are_audited_and_carry_the_users() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let server = Vigil::start(&data);
    let added = vigil(
        &["users", "add", "alice", "--role", "analyst"],
        &data,
        "alice's long secret\n",
    );
    assert_eq!(code(&added).0, 0, "{}", code(&added).1);

    let taken = vigil(&["backup", backup.to_str().unwrap()], &data, "");
    assert_eq!(code(&taken).0, 0, "{}", code(&taken).1);
    assert!(backup.join("access.sqlite").is_file());
    let created = audit(&data, "backup.create");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].record.actor, format!("cli:{OS_USER}"));
    assert_eq!(created[0].record.outcome, Outcome::Success);
    assert_eq!(
        created[0].record.target.as_deref(),
        Some(backup.to_str().unwrap())
    );
    // A backup that cannot be taken is audited as a failure.
    let again = vigil(&["backup", backup.to_str().unwrap()], &data, "");
    assert_eq!(code(&again).0, 1);
    assert_eq!(
        audit(&data, "backup.create")[0].record.outcome,
        Outcome::Failure
    );
    drop(server);

    let fresh = dir.path().join("fresh");
    let restored = vigil(&["restore", backup.to_str().unwrap()], &fresh, "");
    assert_eq!(code(&restored).0, 0, "{}", code(&restored).1);
    let db = AccessDb::open_in(&fresh).unwrap();
    assert!(db.user("alice").unwrap().is_some(), "the users came back");
    let entries = audit(&fresh, "backup.restore");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].record.outcome, Outcome::Success);
    assert_eq!(entries[0].record.actor, format!("cli:{OS_USER}"));
    // The restored log is the backup's, with the restore after it.
    assert_eq!(
        audit(&fresh, "user.add").len(),
        audit(&data, "user.add").len()
    );
}
