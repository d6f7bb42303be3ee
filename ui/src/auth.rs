//! Access control: who a request comes from, and whether the route it matched lets them in.
//!
//! [`guard`] puts one middleware, [`authorize`], in front of every route. It looks the
//! matched route up in [`vigil_access::routes::ROUTES`] (a route missing there is refused to
//! everyone), authenticates the caller the way the route's surface allows (the API by
//! `Authorization: Bearer` only, so it has nothing a cross-site form could ride on; pages by
//! the session cookie or a trusted single sign-on proxy's header), and checks the
//! caller's [`Principal`] against what the route needs. A request with valid credentials
//! carries a [`Caller`] in its extensions for the handlers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Json, Router};
use serde_json::json;
use vigil_access::routes::{self, Need, Surface};
use vigil_access::throttle::{Throttle, Verdict};
use vigil_access::{
    AccessConfig, AccessDb, AuditRecord, Outcome, Permission, Principal, Session, SessionLimits,
    Via,
};
use vigil_store::Visibility;

/// The bootstrap token (`VIGIL_API_TOKEN`, the `api-token` file), an admin's; also Firehose's
/// access key, compared the same way.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

/// The session cookie's name over plain HTTP; see [`session_cookie_name`].
pub const SESSION_COOKIE: &str = "vigil_session";

/// The session cookie's name over TLS: the `__Host-` prefix makes the browser refuse it
/// unless it is `Secure`, has no `Domain` and the path `/`, so no sibling host or plain-HTTP
/// page can plant or overwrite it.
pub const TLS_SESSION_COOKIE: &str = "__Host-vigil_session";

// Refused here before a push body is read, and again by ingest on every path.
use vigil_event::AUDIT_SOURCE;

impl Caller {
    /// The events this caller may see: Vigil's own audit log reaches the index as events of
    /// source `vigil-audit`, and only those who may read the audit log may find them there
    /// (failed sign-ins record what was typed as a name, which is sometimes a password).
    pub fn visibility(&self) -> Visibility {
        if self.principal.may(Permission::ReadAudit) {
            Visibility::everything()
        } else {
            Visibility::hiding(&[AUDIT_SOURCE])
        }
    }

    /// Whether this caller may see `event`, by the same rule as [`Caller::visibility`].
    pub fn may_see(&self, event: &vigil_event::Event) -> bool {
        self.visibility()
            .hidden_source_kinds
            .iter()
            .all(|kind| *kind != event.source.kind)
    }
}

impl ApiToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        ApiToken(token.into())
    }

    /// A fresh random token: 32 bytes from the OS, hex encoded.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(ApiToken::new(hex))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in constant time, so response timing does not reveal the token.
    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

/// Whether a state-changing page request comes from one of our own pages, judged by what the
/// browser says about its origin: `Sec-Fetch-Site` when sent, else `Origin` against `Host`.
/// Requests without either (old browsers, scripts) pass here and rely on the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// The credentials of an `Authorization` header value that uses the bearer scheme. The scheme
/// name is case-insensitive (RFC 9110, section 11.1): clients send `bearer` too.
pub fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
        .filter(|credentials| !credentials.is_empty())
}

/// What the access middleware needs: the database of users, tokens and sessions, the
/// bootstrap token, the `[auth]` settings and the failure counters.
pub struct Gate {
    pub db: Arc<AccessDb>,
    /// `VIGIL_API_TOKEN` or the `api-token` file: an admin token for older deployments.
    pub bootstrap: Option<ApiToken>,
    pub config: AccessConfig,
    /// Sign-in failures, per account and per address.
    pub throttle: Throttle,
    /// Bearer token failures, per address, kept apart from sign-ins: a log shipper left with
    /// a revoked token must not lock the people behind the same address out of signing in.
    pub bearer_throttle: Throttle,
    /// Whether pages are served over TLS, which decides the session cookie's name.
    pub tls: bool,
}

impl Gate {
    pub fn new(
        db: Arc<AccessDb>,
        bootstrap: Option<ApiToken>,
        config: AccessConfig,
        tls: bool,
    ) -> Gate {
        let throttle = Throttle::new(config.throttle.clone());
        let bearer_throttle = Throttle::new(config.throttle.clone());
        Gate {
            db,
            bootstrap,
            config,
            throttle,
            bearer_throttle,
            tls,
        }
    }

    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            idle: Duration::from_secs(self.config.session_idle_seconds),
            max: Duration::from_secs(self.config.session_max_seconds),
        }
    }

    /// Appends to the audit log on a blocking thread (it is a synchronous SQLite write). A
    /// failure is logged: the request it records has already been decided.
    pub async fn audit(&self, record: AuditRecord) {
        let db = self.db.clone();
        let action = record.action.clone();
        match tokio::task::spawn_blocking(move || db.audit(record)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, action, "cannot write the audit log"),
            Err(error) => tracing::error!(%error, action, "the audit log task failed"),
        }
    }
}

/// Who made a request that carried valid credentials, in the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// The session, for a person signed in here (its CSRF token guards the page forms).
    pub session: Option<Session>,
    pub address: Option<IpAddr>,
}

/// The client's address as [`client_address`] reads it, in every request's extensions the
/// access middleware saw, credentials or not (sign-in throttles and audits by it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub Option<IpAddr>);

/// Why an authentication failed, as the metric and the audit log name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Bearer,
    SignIn,
}

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Bearer => "bearer",
            FailureKind::SignIn => "sign_in",
        }
    }
}

/// Counts one failed authentication in `vigil_auth_failures_total{kind, reason}`.
pub fn count_failure(kind: FailureKind, reason: &'static str) {
    metrics::counter!("vigil_auth_failures_total", "kind" => kind.as_str(), "reason" => reason)
        .increment(1);
}

pub fn session_cookie_name(tls: bool) -> &'static str {
    if tls {
        TLS_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The session id the browser sent, if any. Over TLS only the `__Host-` cookie counts.
pub fn session_id(headers: &HeaderMap, tls: bool) -> Option<&str> {
    let wanted = session_cookie_name(tls);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == wanted && !value.is_empty())
        .map(|(_, value)| value)
}

/// The client's address: the connection's peer, or, when the peer is a trusted proxy, the
/// rightmost address of `X-Forwarded-For` (the one the proxy itself appended; addresses left
/// of it are whatever the client wrote).
pub fn client_address(
    gate: &Gate,
    headers: &HeaderMap,
    connect_info: Option<&ConnectInfo<SocketAddr>>,
) -> Option<IpAddr> {
    let peer = connect_info.map(|ConnectInfo(address)| address.ip())?;
    let trusted = gate
        .config
        .proxy
        .as_ref()
        .is_some_and(|proxy| proxy.trusts(peer));
    if !trusted {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
}

/// Puts the access middleware in front of every route of `router`. It is a route layer, so
/// it runs after routing (it needs the matched route) and before anything a route's own
/// layers do, such as buffering a push body: a refused sender holds no memory.
pub fn guard(router: Router, gate: Arc<Gate>) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(gate, authorize))
}

/// The access middleware; see the module documentation.
pub async fn authorize(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let Some(matched) = request.extensions().get::<MatchedPath>().cloned() else {
        tracing::error!(uri = %request.uri(), "a request reached the access check without a matched route; refused");
        return forbidden(Surface::Api, "this route is not in the access table");
    };
    let method = request.method().clone();
    let Some(route) = routes::lookup(method.as_str(), matched.as_str()) else {
        if routes::knows_path(matched.as_str()) {
            // Another method on a known route. Answered here, not by the router, so that a
            // method added to a route without its entry is refused rather than let through.
            let allowed: Vec<&str> = routes::ROUTES
                .iter()
                .filter(|route| route.path == matched.as_str())
                .map(|route| route.method)
                .collect();
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, allowed.join(", "))],
            )
                .into_response();
        }
        tracing::error!(
            %method,
            route = matched.as_str(),
            "a route is missing from vigil_access::routes::ROUTES; refused to everyone"
        );
        return forbidden(
            surface_of(matched.as_str()),
            "this route is not in the access table",
        );
    };
    if route.need == Need::OwnKey {
        // Its handler checks a key of its own, which no user or token carries.
        return next.run(request).await;
    }
    let address = client_address(
        &gate,
        request.headers(),
        request.extensions().get::<ConnectInfo<SocketAddr>>(),
    );
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ClientAddress(address));
    let caller = match authenticate(
        &gate,
        route.surface,
        &parts.headers,
        &parts.extensions,
        address,
    )
    .await
    {
        Ok(caller) => caller,
        // Refused credentials do not keep anyone from a public route.
        Err(_) if route.need == Need::Public => None,
        Err(refusal) => return refusal.response(route.surface),
    };
    if route.need == Need::Permission(Permission::Ingest) {
        let source = match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(params) => params
                .iter()
                .find(|(name, _)| *name == "source")
                .map(|(_, value)| value.to_owned()),
            Err(rejection) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({ "error": format!("the source name in the path is unreadable: {rejection}") })),
                )
                    .into_response()
            }
        };
        let Some(source) = source else {
            tracing::error!(
                route = route.path,
                "an ingest route without {{source}}; refused"
            );
            return forbidden(route.surface, "this route names no source");
        };
        if source.eq_ignore_ascii_case(AUDIT_SOURCE) {
            return forbidden(
                route.surface,
                "the source name vigil-audit is reserved for Vigil's own audit log",
            );
        }
        if let Some(caller) = &caller {
            if caller.principal.may(Permission::Ingest) && !caller.principal.may_ingest(&source) {
                return forbidden(
                    route.surface,
                    &format!("this token may not post to the source {source:?}"),
                );
            }
        }
    }
    let allowed = match (route.need, &caller) {
        // OwnKey went straight to its handler above.
        (Need::Public | Need::OwnKey, _) => true,
        (_, None) => return unauthenticated(route.surface),
        (Need::SignedIn, Some(_)) => true,
        (Need::Permission(permission), Some(caller)) => caller.principal.may(permission),
    };
    if !allowed {
        return forbidden(route.surface, "your role or token does not allow this");
    }
    if let Some(caller) = caller {
        parts.extensions.insert(caller);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// How to refuse a route the table does not know: by its path's look.
fn surface_of(path: &str) -> Surface {
    if path.starts_with("/api/") {
        Surface::Api
    } else {
        Surface::Page
    }
}

/// The caller, if the request carries credentials its surface accepts; an error response
/// when it carries bearer credentials that are wrong or throttled, or names a proxy user
/// with no role.
async fn authenticate(
    gate: &Arc<Gate>,
    surface: Surface,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    address: Option<IpAddr>,
) -> Result<Option<Caller>, Refusal> {
    let caller = |principal: Principal, session: Option<Session>| Caller {
        principal,
        session,
        address,
    };
    match surface {
        Surface::Api => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(bearer_credentials);
            if let Some(candidate) = bearer {
                return bearer_principal(gate, candidate, address)
                    .await
                    .map(|principal| Some(caller(principal, None)));
            }
        }
        Surface::Page => {
            if let Some(id) = session_id(headers, gate.tls) {
                let db = gate.db.clone();
                let id = id.to_owned();
                let limits = gate.session_limits();
                let found = tokio::task::spawn_blocking(move || {
                    db.session(&id, limits, chrono::Utc::now())
                })
                .await;
                match found {
                    Ok(Ok(Some(session))) => {
                        let principal = Principal::User {
                            name: session.user.name.clone(),
                            role: session.user.role,
                            via: Via::Session,
                        };
                        return Ok(Some(caller(principal, Some(session))));
                    }
                    // Expired, signed out or never ours: as if there were no cookie.
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => {
                        tracing::error!(%error, "cannot look up a session");
                        return Err(Refusal::Unavailable);
                    }
                    Err(error) => {
                        tracing::error!(%error, "the session lookup task failed");
                        return Err(Refusal::Unavailable);
                    }
                }
            }
            // A proxy's sign-in is a cookie of the proxy's, which a browser also sends with
            // requests another site makes; pages check a CSRF token on every form, the API
            // has none to check, so the API takes bearer tokens only.
            return proxy_principal(gate, headers, extensions)
                .map(|principal| principal.map(|principal| caller(principal, None)));
        }
    }
    Ok(None)
}

/// The person a trusted single sign-on proxy names, if it is configured, the connection
/// comes from it and it names someone.
fn proxy_principal(
    gate: &Gate,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Option<Principal>, Refusal> {
    let Some(proxy) = &gate.config.proxy else {
        return Ok(None);
    };
    let mut names = headers.get_all(proxy.user_header.as_str()).iter();
    let Some(name) = names.next() else {
        return Ok(None);
    };
    // Two values mean a proxy that appended to what the client sent instead of replacing it:
    // which one is the proxy's cannot be told, so neither is believed.
    if names.next().is_some() {
        tracing::warn!(
            header = proxy.user_header,
            "a trusted proxy sent the user header twice; refused"
        );
        return Err(Refusal::BadProxyUser);
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    if !peer.is_some_and(|peer| proxy.trusts(peer)) {
        tracing::debug!(
            peer = ?peer,
            header = proxy.user_header,
            "ignored a single sign-on user header from a connection that is not a trusted proxy"
        );
        return Ok(None);
    }
    // Held to the rules for local user names, so that a proxy's user prints plainly and can
    // never read as a token (`token:NAME`) or the bootstrap token in history and the audit log.
    let name = name
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|name| vigil_access::check_name("user", name).is_ok());
    let Some(name) = name else {
        tracing::warn!(
            header = proxy.user_header,
            "a trusted proxy named a user that is not a valid user name; refused"
        );
        return Err(Refusal::BadProxyUser);
    };
    let groups = headers
        .get(proxy.groups_header.as_str())
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match proxy.role_for(groups) {
        Some(role) => Ok(Some(Principal::User {
            name: name.to_owned(),
            role,
            via: Via::Proxy,
        })),
        None => {
            tracing::info!(
                user = name,
                groups,
                "a single sign-on user in no group mapped to a role was refused"
            );
            Err(Refusal::NoRole)
        }
    }
}

/// The principal a bearer token stands for. Failures are throttled per client address,
/// counted and audited. A valid token is honoured even from a throttled address: tokens are
/// 256 random bits, so the throttle is not what stops guessing, and refusing valid tokens
/// would let anyone behind the same address (a NAT, a node of log shippers) lock the
/// senders out by sending bad tokens. What the throttle bounds is the failures: past it they
/// get 429, and are counted but no longer audited one by one, so they cannot flood the log.
async fn bearer_principal(
    gate: &Arc<Gate>,
    candidate: &str,
    address: Option<IpAddr>,
) -> Result<Principal, Refusal> {
    if let Some(bootstrap) = &gate.bootstrap {
        if bootstrap.matches(candidate) {
            return Ok(Principal::Bootstrap);
        }
    }
    let db = gate.db.clone();
    let secret = candidate.to_owned();
    let found =
        tokio::task::spawn_blocking(move || db.token_by_secret(&secret, chrono::Utc::now())).await;
    match found {
        Ok(Ok(Some(token))) => Ok(Principal::Token {
            name: token.name,
            scopes: token.scopes,
        }),
        Ok(Ok(None)) => {
            match gate.bearer_throttle.check(None, address, Instant::now()) {
                Verdict::Allowed => {}
                Verdict::Wait(wait) => {
                    count_failure(FailureKind::Bearer, "backoff");
                    return Err(Refusal::Throttled(wait));
                }
                Verdict::LockedOut(wait) => {
                    count_failure(FailureKind::Bearer, "locked_out");
                    return Err(Refusal::Throttled(wait));
                }
            }
            const REASON: &str = "unknown_revoked_or_expired_token";
            gate.bearer_throttle
                .record_failure(None, address, Instant::now());
            count_failure(FailureKind::Bearer, REASON);
            gate.audit(AuditRecord {
                actor: "unknown-token".to_owned(),
                action: "bearer".to_owned(),
                outcome: Outcome::Failure,
                target: None,
                client_address: address.map(|a| a.to_string()),
                reason: Some(REASON.to_owned()),
                detail: serde_json::Value::Null,
            })
            .await;
            Err(Refusal::BadToken)
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot look up an API token");
            Err(Refusal::Unavailable)
        }
        Err(error) => {
            tracing::error!(%error, "the token lookup task failed");
            Err(Refusal::Unavailable)
        }
    }
}

/// Why credentials a request carried were not accepted.
#[derive(Debug)]
enum Refusal {
    /// Too many recent bearer failures from the client's address.
    Throttled(Duration),
    /// An unknown, revoked or expired bearer token.
    BadToken,
    /// A trusted proxy named a user whose groups map to no role.
    NoRole,
    /// A trusted proxy named no valid user: a bad name, or the header twice.
    BadProxyUser,
    /// The access database failed.
    Unavailable,
}

impl Refusal {
    fn response(self, surface: Surface) -> Response {
        match self {
            Refusal::Throttled(wait) => too_many(wait),
            Refusal::BadToken => unauthenticated(surface),
            Refusal::NoRole => forbidden(
                surface,
                "you are signed in, but none of your groups is given a role in Vigil",
            ),
            Refusal::BadProxyUser => forbidden(
                surface,
                "the single sign-on proxy did not name one valid user; ask its operator",
            ),
            Refusal::Unavailable => unavailable(surface),
        }
    }
}

/// No (valid) credentials: the API asks for a bearer token, a page sends the browser to
/// sign in.
fn unauthenticated(surface: Surface) -> Response {
    match surface {
        Surface::Api => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({
                "error": "missing, wrong, revoked or expired API token; send `Authorization: Bearer <token>`"
            })),
        )
            .into_response(),
        Surface::Page => Redirect::to("/login").into_response(),
    }
}

fn forbidden(surface: Surface, message: &str) -> Response {
    match surface {
        Surface::Api => (StatusCode::FORBIDDEN, Json(json!({ "error": message }))).into_response(),
        Surface::Page => (
            StatusCode::FORBIDDEN,
            Html(maud::html! {
                (maud::DOCTYPE)
                html lang="en" {
                    head { meta charset="utf-8"; title { "Not allowed · Vigil" } link rel="stylesheet" href="/static/vigil.css"; }
                    body { main { h1 { "Not allowed" } p { (message) } p { a href="/" { "Back to Vigil" } } } }
                }
            }.into_string()),
        )
            .into_response(),
    }
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "error": format!("too many failed attempts from this address; try again in {seconds} s")
        })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn unavailable(surface: Surface) -> Response {
    let message = "the access database failed; see the server log";
    match surface {
        Surface::Api => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": message })),
        )
            .into_response(),
        Surface::Page => (StatusCode::INTERNAL_SERVER_ERROR, Html(message)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_compare_exactly() {
        let token = ApiToken::new("secret");
        assert!(token.matches("secret"));
        assert!(!token.matches("secreT"));
        assert!(!token.matches("secret2"));
        assert!(!token.matches(""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "BeArEr   tok ",
            "bearer\ttok",
        ] {
            assert_eq!(bearer_credentials(value), Some("tok"), "{value:?}");
        }
        for value in ["Basic tok", "Bearertok", "Bearer", "Bearer   ", "tok", ""] {
            assert_eq!(bearer_credentials(value), None, "{value:?}");
        }
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = ApiToken::generate().unwrap();
        let b = ApiToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "a")])));
    }
}
