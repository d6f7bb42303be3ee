//! Sessions and sign-in through the real binary: random ids rotated at sign-in, idle and
//! absolute expiry, a cookie refused after sign-out, a password change or disabling its user,
//! CSRF tokens per session, the cookie's attributes, and the throttle in front of sign-in.
//!
//! Users are made directly in the access database (`AccessDb::open_in` on the data
//! directory), as `vigil users add` does, while Vigil runs.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use reqwest::StatusCode;
use vigil_access::{AccessDb, AuditEntry, AuditFilter, Outcome, Role, Secret};

use crate::common::{client_without_redirects as client, Vigil};

const PASSWORD: &str = "correct horse battery staple";

/// Starts Vigil on a new data directory holding `users`, with `env` settings.
fn start(users: &[(&str, Role)], env: &[(&str, &str)]) -> (tempfile::TempDir, Vigil, AccessDb) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let access = add_users(&data, users);
    let vigil = Vigil::start_with_env(&data, env);
    (dir, vigil, access)
}

fn add_users(data: &Path, users: &[(&str, Role)]) -> AccessDb {
    let access = AccessDb::open_in(data).unwrap();
    for (name, role) in users {
        access
            .add_user(name, *role, &Secret::new(PASSWORD))
            .unwrap();
    }
    access
}

/// Posts the sign-in form, sending `cookie` (`name=value`) if given.
fn post_sign_in(vigil: &Vigil, name: &str, password: &str, cookie: Option<&str>) -> Response {
    let mut request = client()
        .post(vigil.url("/login"))
        .form(&[("username", name), ("password", password)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().unwrap()
}

/// Signs in and gives the whole `Set-Cookie` value.
fn sign_in_cookie(vigil: &Vigil, name: &str, cookie: Option<&str>) -> String {
    let response = post_sign_in(vigil, name, PASSWORD, cookie);
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "signing in {name}"
    );
    assert_eq!(response.headers()["location"], "/");
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs in and gives the cookie as a browser sends it back: `name=value`.
fn sign_in(vigil: &Vigil, name: &str) -> String {
    pair(&sign_in_cookie(vigil, name, None))
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

fn get_page(vigil: &Vigil, path: &str, cookie: &str) -> Response {
    client()
        .get(vigil.url(path))
        .header("cookie", cookie)
        .send()
        .unwrap()
}

/// Whether the session behind `cookie` is live: the home page is served, rather than the
/// browser being sent to sign in.
fn live(vigil: &Vigil, cookie: &str) -> bool {
    let response = get_page(vigil, "/", cookie);
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(response.headers()["location"], "/login");
            false
        }
        other => panic!("GET / answered {other}"),
    }
}

/// The CSRF token of the session behind `cookie`, from the sign-out form in a page's header.
fn csrf(vigil: &Vigil, cookie: &str) -> String {
    let html = get_page(vigil, "/", cookie).text().unwrap();
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

fn sign_out(vigil: &Vigil, cookie: &str, csrf: &str) -> Response {
    client()
        .post(vigil.url("/logout"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf)])
        .send()
        .unwrap()
}

fn audit(access: &AccessDb, actor: &str, action: &str) -> Vec<AuditEntry> {
    access
        .audit_entries(&AuditFilter {
            actor: Some(actor.into()),
            action: Some(action.into()),
            before: None,
            limit: 100,
        })
        .unwrap()
}

#[test]
fn sign_in_rotates_random_sessions_and_sign_out_password_changes_and_disabling_end_them() {
    let (_dir, vigil, access) = start(&[("alice", Role::Analyst), ("bob", Role::Viewer)], &[]);

    // The cookie: only for this site's requests, never for scripts; plain HTTP, so not
    // `Secure` and without the `__Host-` prefix.
    let first_set = sign_in_cookie(&vigil, "alice", None);
    let attributes: Vec<&str> = first_set.split(';').map(str::trim).collect();
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&wanted), "{first_set}");
    }
    assert!(!first_set.contains("Secure"), "{first_set}");
    let first = pair(&first_set);
    let (name, id) = first.split_once('=').unwrap();
    assert_eq!(name, "vigil_session");
    assert!(
        id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(live(&vigil, &first));

    // Signing in again from the same browser starts a new session and ends the one it sent;
    // a fresh browser gets yet another id. No id is ever handed out twice.
    let second = pair(&sign_in_cookie(&vigil, "alice", Some(&first)));
    assert_ne!(second, first);
    assert!(!live(&vigil, &first), "the replaced session still works");
    assert!(live(&vigil, &second));
    let third = sign_in(&vigil, "alice");
    assert!(third != first && third != second);
    // An id planted in the browser before sign-in (session fixation) is not adopted.
    let planted = "vigil_session=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let fourth = pair(&sign_in_cookie(&vigil, "alice", Some(planted)));
    assert!(fourth != planted && ![&first, &second, &third].contains(&&fourth));
    assert!(!live(&vigil, planted));

    // CSRF tokens are per session: each session's token is refused in another, even the same
    // user's, and the refused sign-out leaves the session live.
    let (csrf_second, csrf_third) = (csrf(&vigil, &second), csrf(&vigil, &third));
    assert_ne!(csrf_second, csrf_third);
    assert_eq!(
        sign_out(&vigil, &third, &csrf_second).status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(sign_out(&vigil, &third, "").status(), StatusCode::FORBIDDEN);
    assert!(live(&vigil, &third));

    // Signing out ends the session on the server: the browser is told to forget the cookie,
    // and the cookie is refused if it is sent again.
    let signed_out = sign_out(&vigil, &third, &csrf_third);
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_out.headers()["location"], "/login");
    let cleared = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("vigil_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(!live(&vigil, &third));
    assert!(
        live(&vigil, &second),
        "signing out one session ended another"
    );

    // A new password ends every session of its user; the old password no longer signs in.
    let bob = sign_in(&vigil, "bob");
    assert!(live(&vigil, &bob));
    let new_password = "a different long password";
    access
        .set_password("bob", &Secret::new(new_password))
        .unwrap();
    assert!(!live(&vigil, &bob), "a session outlived its password");
    assert_eq!(
        post_sign_in(&vigil, "bob", PASSWORD, None).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_sign_in(&vigil, "bob", new_password, None).status(),
        StatusCode::SEE_OTHER
    );

    // Disabling a user ends their sessions and refuses their sign-in.
    access.disable_user("alice").unwrap();
    assert!(
        !live(&vigil, &second),
        "a disabled user's session still works"
    );
    assert!(!live(&vigil, &fourth));
    let refused = post_sign_in(&vigil, "alice", PASSWORD, None);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused
        .text()
        .unwrap()
        .contains("That user name and password do not match."));

    // The audit log has each of them, with the client's address.
    let sign_ins = audit(&access, "alice", "sign_in");
    let outcomes: Vec<Outcome> = sign_ins.iter().map(|e| e.record.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failure,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success
        ]
    );
    assert_eq!(
        sign_ins[0].record.reason.as_deref(),
        Some("unknown_or_disabled")
    );
    assert!(sign_ins
        .iter()
        .all(|e| e.record.client_address.as_deref() == Some("127.0.0.1")));
    assert_eq!(audit(&access, "alice", "sign_out").len(), 1);
    let bob_failure = &audit(&access, "bob", "sign_in")[1];
    assert_eq!(bob_failure.record.reason.as_deref(), Some("wrong_password"));
}

#[test]
fn sessions_end_when_idle_and_at_their_absolute_limit() {
    // The database marks a session used at most every 5 seconds, so idle is longer than that
    // for a session kept in use to show it.
    let (_dir, vigil, access) = start(
        &[("alice", Role::Viewer)],
        &[
            ("VIGIL_AUTH__SESSION_IDLE_SECONDS", "6"),
            ("VIGIL_AUTH__SESSION_MAX_SECONDS", "8"),
        ],
    );
    // Started here rather than through the form, so the test knows when to the millisecond;
    // the form starts them the same way (rotation and the form are tested above).
    let started = Instant::now();
    let start_session = || {
        let session = access
            .start_session("alice", None, chrono::Utc::now())
            .unwrap();
        format!("vigil_session={}", session.id.expose())
    };
    let (kept_busy, left_idle) = (start_session(), start_session());
    let at = |seconds: f64| {
        let due = started + Duration::from_secs_f64(seconds);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    };

    assert!(live(&vigil, &kept_busy) && live(&vigil, &left_idle));
    at(5.4);
    assert!(live(&vigil, &kept_busy));
    at(6.6);
    assert!(
        !live(&vigil, &left_idle),
        "a session idle for longer than idle_seconds"
    );
    assert!(live(&vigil, &kept_busy), "a session in use ended early");
    at(8.4);
    // Used 3 seconds ago, so not idle; but started longer ago than max_seconds.
    assert!(!live(&vigil, &kept_busy), "a session outlived max_seconds");
    // Signing in again starts afresh.
    assert!(live(&vigil, &sign_in(&vigil, "alice")));
}

/// `vigil_auth_failures_total{kind="sign_in",reason="REASON"}` on `/metrics`.
fn sign_in_failures(vigil: &Vigil, reason: &str) -> f64 {
    vigil.labelled_metric(
        "vigil_auth_failures_total",
        &[r#"kind="sign_in""#, &format!(r#"reason="{reason}""#)],
    )
}

fn retry_after(response: &Response) -> Duration {
    let seconds: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    Duration::from_secs(seconds)
}

#[test]
fn guessing_a_password_is_slowed_then_locked_out_and_the_right_one_works_after() {
    const LOCKOUT_FAILURES: usize = 4;
    let (_dir, vigil, access) = start(
        &[("alice", Role::Analyst)],
        &[
            ("VIGIL_AUTH__THROTTLE__FREE_FAILURES", "2"),
            ("VIGIL_AUTH__THROTTLE__BACKOFF_BASE_MS", "1000"),
            ("VIGIL_AUTH__THROTTLE__LOCKOUT_FAILURES", "4"),
            ("VIGIL_AUTH__THROTTLE__ADDRESS_LOCKOUT_FAILURES", "100"),
            ("VIGIL_AUTH__THROTTLE__LOCKOUT_SECONDS", "3"),
        ],
    );

    // Wrong passwords: refused (401) while free (a failure more than `free_failures`), then
    // made to wait (429 with Retry-After, the password not even checked), then locked out.
    let mut statuses = Vec::new();
    let locked_at = loop {
        assert!(statuses.len() < 20, "never locked out: {statuses:?}");
        let response = post_sign_in(&vigil, "alice", "a wrong guess, again", None);
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(&response);
            assert!(wait >= Duration::from_secs(1), "{wait:?}");
            if response.text().unwrap().contains("locked") {
                break Instant::now();
            }
            std::thread::sleep(wait);
        } else {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    };
    let guessed = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(guessed, LOCKOUT_FAILURES, "{statuses:?}");
    assert_eq!(&statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert!(
        statuses[3] == StatusCode::TOO_MANY_REQUESTS,
        "no backoff after the free failures: {statuses:?}"
    );

    // Locked out: the right password is refused too, without being checked. A flood of
    // refusals is counted in full, but the audit log takes at most one a second from an
    // address, so it cannot be made to fill the disk.
    let audited_before = audit(&access, "alice", "sign_in").len();
    for _ in 0..20 {
        let refused = post_sign_in(&vigil, "alice", PASSWORD, None);
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after(&refused) <= Duration::from_secs(3));
        assert!(refused.headers().get("set-cookie").is_none());
    }
    assert!(audit(&access, "alice", "sign_in").len() <= audited_before + 2);
    assert_eq!(sign_in_failures(&vigil, "locked_out"), 21.0);

    // Once the lockout has passed, the right password signs in.
    std::thread::sleep(
        (locked_at + Duration::from_millis(3_200)).saturating_duration_since(Instant::now()),
    );
    let cookie = sign_in(&vigil, "alice");
    assert!(live(&vigil, &cookie));

    // Every failure was counted and audited with its reason; then the success.
    assert_eq!(
        sign_in_failures(&vigil, "wrong_password"),
        LOCKOUT_FAILURES as f64
    );
    let entries = audit(&access, "alice", "sign_in");
    assert_eq!(entries[0].record.outcome, Outcome::Success);
    let reasons: Vec<&str> = entries[1..]
        .iter()
        .map(|e| {
            assert_eq!(e.record.outcome, Outcome::Failure);
            assert_eq!(e.record.client_address.as_deref(), Some("127.0.0.1"));
            e.record.reason.as_deref().unwrap()
        })
        .collect();
    assert_eq!(reasons[0], "locked_out", "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|r| **r == "wrong_password").count(),
        LOCKOUT_FAILURES
    );
    assert!(reasons.contains(&"backoff"), "{reasons:?}");
}
