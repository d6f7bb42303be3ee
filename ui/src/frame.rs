//! What every page shares: the frame around it (the header with who is signed in, their
//! role and the way out), and the check every form that changes something passes.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use subtle::ConstantTimeEq;
use vigil_access::{Permission, Principal, Via};

use crate::auth::{same_origin, Caller};

/// The CSRF token every form that changes something carries: the session's own, or for a
/// person a single sign-on proxy names (who has no session here) one bound to their name.
pub(crate) fn csrf(caller: &Caller) -> String {
    match (&caller.session, &caller.principal) {
        (Some(session), _) => session.csrf.clone(),
        (
            None,
            Principal::User {
                name,
                via: Via::Proxy,
                ..
            },
        ) => proxy_csrf(name),
        // Pages authenticate people only; no form is shown to anyone else.
        (None, _) => String::new(),
    }
}

/// The CSRF token of a person the single sign-on proxy names: a keyed hash of their name
/// under a key this process drew at random when it first needed one. Another site cannot
/// compute it, so a form it plants is refused, as with a session's token; a restart changes
/// it, and a form loaded before one asks to reload the page.
fn proxy_csrf(name: &str) -> String {
    static KEY: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        match getrandom::fill(&mut key) {
            Ok(()) => Some(key),
            Err(error) => {
                tracing::error!(%error, "no randomness for the proxy users' CSRF key; their forms are refused");
                None
            }
        }
    });
    match key {
        // Never empty, and so never matching an empty field, only when there is a key.
        Some(key) => blake3::keyed_hash(key, format!("vigil proxy csrf v1\0{name}").as_bytes())
            .to_hex()
            .to_string(),
        None => String::new(),
    }
}

/// Who the header says is signed in: a name and a role.
fn who(principal: &Principal) -> (String, &'static str) {
    match principal {
        Principal::User { name, role, .. } => (name.clone(), role.as_str()),
        Principal::Token { name, .. } => (name.clone(), "token"),
        Principal::Bootstrap => ("bootstrap token".to_owned(), "admin"),
    }
}

/// The page frame. `caller` is the signed-in person, shown with their role and a sign-out
/// button; `None` on the sign-in page.
pub(crate) fn layout(title: &str, caller: Option<&Caller>, body: Markup) -> Markup {
    layout_refreshing(title, caller, None, body)
}

/// [`layout`] for a page that reloads itself every `refresh` seconds, such as a running
/// backtest's, by a `meta` refresh rather than a script.
pub(crate) fn layout_refreshing(
    title: &str,
    caller: Option<&Caller>,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · Vigil" }
                link rel="stylesheet" href="/static/vigil.css";
                // Enhancements only: every page works without them (see scripts.rs).
                script src="/static/keys.js" defer {}
                script src="/static/tail.js" defer {}
            }
            body {
                header {
                    a href="/" { "Vigil" }
                    @if let Some(caller) = caller {
                        a href="/" { "Alerts" }
                        a href="/search" { "Search" }
                        @if caller.principal.may(Permission::Read) {
                            a href="/health" { "Health" }
                        }
                        @if caller.principal.may(Permission::Read) {
                            a href="/rules" { "Rules" }
                        }
                        @if caller.principal.may(Permission::Read) {
                            a href="/rules/attack" { "ATT&CK" }
                        }
                        @if caller.principal.may(Permission::Backtest) {
                            a href="/rules/backtest" { "Backtest" }
                        }
                        @if caller.principal.may(Permission::Read) {
                            a href="/notifications" { "Notifications" }
                        }
                        @if caller.principal.may(Permission::Read) {
                            a href="/silences" { "Silences" }
                        }
                        @if caller.principal.may(Permission::ReadAudit) {
                            a href="/audit" { "Audit" }
                        }
                        @let (name, role) = who(&caller.principal);
                        span.who {
                            span.name { (name) } " "
                            span.role { (role) }
                        }
                        // A single sign-on proxy's users have no session here to end.
                        @if caller.session.is_some() {
                            form.sign-out method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf(caller));
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Refuses a state-changing page request that comes from another site, or lacks the CSRF
/// token of the caller's session; the error is the 403 to send.
/// A count in words: `1 rule`, `2 rules` (for nouns whose plural adds an s).
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(crate) fn check_form(caller: &Caller, headers: &HeaderMap, csrf: &str) -> Result<(), Refused> {
    if !same_origin(headers) {
        return Err(Refused("cross-site form submissions are refused\n"));
    }
    // Per session: a token from another session, even the same user's, is refused.
    let matches = match &caller.session {
        Some(session) => !csrf.is_empty() && session.csrf_matches(csrf),
        None => {
            let expected = self::csrf(caller);
            !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(csrf.as_bytes()))
        }
    };
    if !matches {
        return Err(Refused(
            "the form's CSRF token is missing or wrong; reload the page\n",
        ));
    }
    Ok(())
}

/// Why a form was refused.
pub(crate) struct Refused(pub(crate) &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, self.0).into_response()
    }
}
