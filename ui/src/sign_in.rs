//! Signing in and out: the sign-in form, server-side sessions started and ended, and the
//! throttle that stands in front of every password check.
//!
//! A sign-in always starts a new session with a new random id (the one the browser sent, if
//! any, is ended with it), so an id planted in a browser before sign-in is worth nothing
//! after it. The cookie carries only that id; the session, its expiry and its CSRF token
//! live in the access database.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;
use tokio::sync::Semaphore;
use vigil_access::throttle::Verdict;
use vigil_access::{AuditRecord, Outcome};

use crate::auth::{
    count_failure, same_origin, session_cookie_name, session_id, Caller, ClientAddress,
    FailureKind, Gate,
};
use crate::frame::{check_form, layout, Refused};
use crate::UiState;

/// Password checks run at once. Each argon2id verification holds 19 MiB for tens of
/// milliseconds: unbounded, a burst of sign-ins would hold that much per request, and every
/// request in the burst would pass the throttle before the first failure was counted.
const CONCURRENT_PASSWORD_CHECKS: usize = 4;
static PASSWORD_CHECKS: Semaphore = Semaphore::const_new(CONCURRENT_PASSWORD_CHECKS);

/// What a failed sign-in says, whatever the cause, so that it does not tell which names exist.
pub(crate) const NO_MATCH: &str = "That user name and password do not match.";

/// The longest name a failed sign-in records as its actor. User names are at most 64
/// characters; anything longer names no one, and the audit log need not keep it whole.
const MAX_RECORDED_NAME_CHARS: usize = 64;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

fn login_form(problem: Option<&str>, name: &str) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            form.login method="post" action="/login" {
                h1 { "Sign in to Vigil" }
                @if let Some(problem) = problem { div.error role="alert" { (problem) } }
                label for="username" { "User name" }
                input #username type="text" name="username" value=(name) autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus[name.is_empty()];
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required autofocus[!name.is_empty()];
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_page() -> Markup {
    login_form(None, "")
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Why a sign-in failed, as the audit log and the metric name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    WrongPassword,
    UnknownOrDisabled,
    /// Refused by the throttle's backoff, before any password check.
    Throttled,
    /// Refused by the throttle's lockout, before any password check.
    LockedOut,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::WrongPassword => "wrong_password",
            Failure::UnknownOrDisabled => "unknown_or_disabled",
            Failure::Throttled => "backoff",
            Failure::LockedOut => "locked_out",
        }
    }
}

async fn login(
    State(state): State<UiState>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            login_form(Some("The form was malformed; try again."), ""),
        )
            .into_response();
    };
    // Signing a browser in to someone else's account from another site (login CSRF) would
    // have its owner's triage recorded under that account.
    if !same_origin(&headers) {
        return Refused("cross-site sign-ins are refused\n").into_response();
    }
    let gate = &state.gate;
    // The gate puts the address it trusts in every request, signed in or not.
    let address = client.and_then(|Extension(ClientAddress(address))| address);
    let name = form.username.trim().to_owned();
    if name.is_empty() || form.password.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            login_form(Some("Enter a user name and a password."), &name),
        )
            .into_response();
    }
    let shown_name = bounded(&name);
    // Names compare without case in the database, so the throttle counts them the same way:
    // `Alice` and `alice` are one account to guess at.
    let account = shown_name.to_lowercase();

    let throttled = || async {
        let failure = match gate.throttle.check(Some(&account), address, Instant::now()) {
            Verdict::Allowed => return None,
            Verdict::Wait(wait) => (Failure::Throttled, wait),
            Verdict::LockedOut(wait) => (Failure::LockedOut, wait),
        };
        Some(refuse_throttled(&state, &shown_name, address, failure.0, failure.1).await)
    };
    if let Some(refusal) = throttled().await {
        return refusal;
    }
    let Ok(_permit) = PASSWORD_CHECKS.acquire().await else {
        return server_error("the password checks' semaphore closed", &"closed");
    };
    // Again, now that it is this request's turn: the failures of the checks it waited for
    // count against it, so a burst of guesses sent at once is throttled like a series.
    if let Some(refusal) = throttled().await {
        return refusal;
    }

    let db = gate.db.clone();
    let (tried, password) = (name.clone(), form.password);
    let verified = tokio::task::spawn_blocking(move || {
        let user = db.verify_password(&tried, &password)?;
        // Which failure it was is for the audit log only, asked after the check (which takes
        // as long either way) and never told to the client.
        let failure = match &user {
            Some(_) => None,
            None => match db.user(&tried)? {
                Some(known) if !known.disabled => Some(Failure::WrongPassword),
                _ => Some(Failure::UnknownOrDisabled),
            },
        };
        Ok::<_, vigil_access::AccessError>((user, failure))
    })
    .await;
    let user = match verified {
        Ok(Ok((Some(user), _))) => user,
        Ok(Ok((None, failure))) => {
            let failure = failure.unwrap_or(Failure::UnknownOrDisabled);
            gate.throttle
                .record_failure(Some(&account), address, Instant::now());
            count_failure(FailureKind::SignIn, failure.as_str());
            audit_failure(gate, &shown_name, address, failure).await;
            return (StatusCode::UNAUTHORIZED, login_form(Some(NO_MATCH), &name)).into_response();
        }
        Ok(Err(error)) => return server_error("checking a password failed", &error),
        Err(error) => return server_error("the password check's task failed", &error),
    };
    gate.throttle.record_success(Some(&account));

    let db = gate.db.clone();
    let replacing = session_id(&headers, gate.tls).map(str::to_owned);
    let user_name = user.name.clone();
    let started = tokio::task::spawn_blocking(move || {
        db.start_session(&user_name, replacing.as_deref(), Utc::now())
    })
    .await;
    let session = match started {
        Ok(Ok(session)) => session,
        Ok(Err(error)) => return server_error("starting a session failed", &error),
        Err(error) => return server_error("the session's task failed", &error),
    };
    gate.audit(AuditRecord {
        actor: user.name.clone(),
        action: "sign_in".into(),
        outcome: Outcome::Success,
        target: None,
        client_address: address.map(|a| a.to_string()),
        reason: None,
        detail: serde_json::json!({ "role": user.role.as_str() }),
    })
    .await;
    let cookie = session_cookie(gate.tls, session.id.expose(), false);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// A name as the audit log keeps it: whole when it could be a user's, else cut short.
fn bounded(name: &str) -> String {
    match name.char_indices().nth(MAX_RECORDED_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

async fn refuse_throttled(
    state: &UiState,
    name: &str,
    address: Option<IpAddr>,
    failure: Failure,
    wait: Duration,
) -> Response {
    count_failure(FailureKind::SignIn, failure.as_str());
    if state
        .gate
        .throttle
        .record_refusal(address, REFUSAL_AUDIT_INTERVAL, Instant::now())
    {
        audit_failure(&state.gate, name, address, failure).await;
    }
    // Whole seconds, rounded up: a client that waits as told is not refused again.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let message = match failure {
        Failure::LockedOut => {
            format!("Too many failed sign-ins: signing in is locked for {seconds} seconds.\n")
        }
        _ => format!("Too many failed sign-ins: try again in {seconds} seconds.\n"),
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from(seconds))],
        message,
    )
        .into_response()
}

/// How often a throttled refusal from one client address is written to the audit log.
const REFUSAL_AUDIT_INTERVAL: Duration = Duration::from_secs(1);

async fn audit_failure(gate: &Gate, name: &str, address: Option<IpAddr>, failure: Failure) {
    gate.audit(AuditRecord {
        actor: name.to_owned(),
        action: "sign_in".into(),
        outcome: Outcome::Failure,
        target: None,
        client_address: address.map(|a| a.to_string()),
        reason: Some(failure.as_str().to_owned()),
        detail: serde_json::Value::Null,
    })
    .await;
}

fn server_error(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{what}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Signing in failed on our side; the server log has the details.\n",
    )
        .into_response()
}

/// The `Set-Cookie` value for the session: only sent back to this site, never to scripts,
/// and over TLS only when Vigil serves TLS. `clear` makes the browser forget it.
fn session_cookie(tls: bool, value: &str, clear: bool) -> String {
    let name = session_cookie_name(tls);
    let secure = if tls { "; Secure" } else { "" };
    let expiry = if clear { "; Max-Age=0" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{expiry}")
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<UiState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    let gate = &state.gate;
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let Some(Extension(caller)) = caller else {
        return Refused("sign in first\n").into_response();
    };
    if let Err(refused) = check_form(&caller, &headers, &csrf) {
        return refused.into_response();
    }
    let Some(id) = session_id(&headers, gate.tls).map(str::to_owned) else {
        return Refused("there is no session to end\n").into_response();
    };
    let db = gate.db.clone();
    match tokio::task::spawn_blocking(move || db.end_session(&id)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return server_error("ending a session failed", &error),
        Err(error) => return server_error("the session's task failed", &error),
    }
    gate.audit(AuditRecord {
        actor: caller.principal.actor(),
        action: "sign_out".into(),
        outcome: Outcome::Success,
        target: None,
        client_address: caller.address.map(|a| a.to_string()),
        reason: None,
        detail: serde_json::Value::Null,
    })
    .await;
    let cookie = session_cookie(gate.tls, "", true);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_strict_http_only_and_secure_over_tls() {
        let plain = session_cookie(false, "abc", false);
        assert!(plain.starts_with(&format!("{}=abc;", session_cookie_name(false))));
        assert!(plain.contains("; HttpOnly") && plain.contains("; SameSite=Strict"));
        assert!(!plain.contains("Secure") && !plain.contains("Max-Age"));
        let tls = session_cookie(true, "abc", false);
        assert!(tls.starts_with("__Host-"), "{tls}");
        assert!(tls.contains("; Secure") && tls.contains("; Path=/"));
        assert!(session_cookie(true, "", true).ends_with("; Max-Age=0"));
    }

    #[test]
    fn recorded_names_are_bounded() {
        assert_eq!(bounded("alice"), "alice");
        let long = "é".repeat(100);
        let kept = bounded(&long);
        assert_eq!(kept.chars().count(), MAX_RECORDED_NAME_CHARS + 1);
        assert!(kept.ends_with('…'));
    }
}
