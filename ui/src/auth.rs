//! Access control: a bearer token for the API, and a session cookie derived from it for pages.

use std::sync::Arc;
use subtle::ConstantTimeEq;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The secret that grants access to Vigil's API and pages.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

pub const SESSION_COOKIE: &str = "vigil_session";

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

    /// The session cookie value: derived, so a leaked cookie is not the API token itself.
    pub fn session_value(&self) -> String {
        blake3::derive_key("vigil ui session v1", self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The token every page form carries and every page POST must send back: derived from
    /// the session, so only a page served to a signed-in browser can know it. A cross-site
    /// form can make the browser send the cookie (were it not `SameSite=Strict`), but it
    /// cannot read this token out of our pages.
    pub fn csrf_token(&self) -> String {
        let key = blake3::derive_key("vigil ui csrf v1", self.0.as_bytes());
        blake3::keyed_hash(&key, self.session_value().as_bytes())
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Compares a form's CSRF token in constant time.
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        bool::from(self.csrf_token().as_bytes().ct_eq(candidate.as_bytes()))
    }

    pub fn session_matches(&self, headers: &HeaderMap) -> bool {
        let expected = self.session_value();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name == SESSION_COOKIE && bool::from(expected.as_bytes().ct_eq(value.as_bytes()))
            })
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

/// Middleware: lets a request through only with `Authorization: Bearer <token>`.
pub async fn require_bearer(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_credentials);
    match presented {
        Some(candidate) if token.matches(candidate) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({
                "error": "missing or wrong API token; send `Authorization: Bearer <token>`"
            })),
        )
            .into_response(),
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
    fn session_cookie_is_found_among_others() {
        let token = ApiToken::new("secret");
        let mut headers = HeaderMap::new();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={}", token.session_value());
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(token.session_matches(&headers));
        assert!(!ApiToken::new("other").session_matches(&headers));
        assert_ne!(token.session_value(), "secret");
    }

    #[test]
    fn csrf_tokens_are_tied_to_the_api_token() {
        let token = ApiToken::new("secret");
        let csrf = token.csrf_token();
        assert_eq!(csrf.len(), 64);
        assert!(token.csrf_matches(&csrf));
        assert!(!token.csrf_matches(&csrf[1..]));
        assert!(!token.csrf_matches(""));
        assert!(!ApiToken::new("other").csrf_matches(&csrf));
        assert_ne!(csrf, token.session_value());
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
