//! Vigil's web pages and JSON API for analysts.
//!
//! Handlers are thin: they parse the request, ask [`vigil_store::Store`] on a blocking thread,
//! and render JSON or HTML. Every page escapes what it shows (maud escapes by default), and the
//! responses forbid framing and every script but the pages' own files from this origin (which
//! put event text in the page as text only), because events and alerts carry attacker-controlled
//! text.

mod admin_api;
mod alert_story;
mod alerts_bulk;
mod alerts_page;
mod api;
mod attack_page;
mod audit_page;
pub mod auth;
pub mod backtest_jobs;
mod backtest_page;
mod deliveries;
mod frame;
mod health_page;
mod live_tail;
mod notifications_page;
pub mod openapi;
mod pages;
pub mod playbook_runs;
pub mod rule_catalog;
pub mod rule_runtime;
mod rules_page;
mod saved_searches;
mod scripts;
mod search_export;
mod search_page;
mod search_terms;
mod sign_in;
mod silences_page;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::Router;
use vigil_store::{Store, StoreError};

pub use auth::{guard, ApiToken, Caller, Gate};
pub use backtest_jobs::{BacktestJobs, Backtester};
pub use live_tail::Stopping;
pub use playbook_runs::{PlaybookRuns, RunView};
pub use rule_catalog::{RuleCatalog, RuleInfo};
pub use rule_runtime::{RuleRuntime, Rules};
pub use search_page::{sidebar_fields, SIDEBAR_FIELDS, SIDEBAR_SAMPLE, SIDEBAR_VALUES};

/// What the handlers share.
#[derive(Clone)]
pub struct UiState {
    pub store: Arc<Store>,
    /// Users, tokens, sessions and the audit log; also what [`guard`] checks requests with.
    pub gate: Arc<Gate>,
    /// The loaded rules (their own words for an alert's page, and the rules pages' reload and
    /// enable/disable); none when this process does not detect (see [`Rules::default`]).
    pub rules: Rules,
    /// Backtests of rules over stored events; `None` when this process does not detect, so
    /// has no rules to run.
    pub backtests: Option<Arc<BacktestJobs>>,
    /// Playbook runs (approve, undo) when this process responds; `None` otherwise.
    pub playbook_runs: Option<Arc<dyn PlaybookRuns>>,
    /// The notification outbox (dead letters, re-sending, each alert's deliveries) when this
    /// process delivers notifications; `None` otherwise.
    pub notifications: Option<Arc<vigil_notify::Outbox>>,
    /// Silences (list, make, expire) when this process notifies; `None` otherwise.
    pub silences: Option<Arc<vigil_notify::silences::Silences>>,
}

/// The JSON API under `/api/v1`; the caller puts it behind [`guard`] with every other route.
pub fn api_router(state: UiState) -> Router {
    api::router()
        .merge(admin_api::router())
        .merge(rules_page::api_router())
        .merge(backtest_page::api_router())
        .merge(notifications_page::api_router())
        .merge(silences_page::api_router())
        .merge(playbook_runs::api_router())
        .merge(openapi::router())
        .with_state(state)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(no_store))
}

/// The HTML pages, which authenticate by a session cookie set at `/login`.
pub fn page_router(state: UiState) -> Router {
    pages::router()
        .merge(alerts_page::router())
        .merge(health_page::router())
        .merge(rules_page::router())
        .merge(alerts_bulk::router())
        .merge(sign_in::router())
        .merge(audit_page::router())
        .merge(search_page::router())
        .merge(search_export::router())
        .merge(backtest_page::router())
        .merge(notifications_page::router())
        .merge(silences_page::router())
        .merge(playbook_runs::router())
        .merge(attack_page::router())
        .merge(saved_searches::router())
        .merge(live_tail::router())
        .merge(scripts::router())
        .with_state(state)
        .layer(axum::middleware::map_response(no_store))
}

/// Marks a response as not to be kept by the browser or any cache on the way: what the API
/// and the signed-in pages show is attacker-written event text and the analysts' triage,
/// which must not outlive the session on a shared machine or in a proxy.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The most of a plain-text refusal [`json_errors`] reads; axum's are a line or two.
const MAX_PLAIN_ERROR_BYTES: usize = 16 * 1024;

/// Gives every API refusal the one shape the API documents, `{"error": TEXT}`: the handlers
/// write their own so, but axum's extractors answer a query string or path that does not
/// deserialize (`limit=abc`, a missing `field`) in plain text.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_owned(),
        Err(_) => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": text }).to_string();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// Headers that keep a browser from running or framing anything our pages did not mean to show.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// Why a store call made on behalf of a request failed.
pub(crate) enum CallError {
    /// The user's query is wrong; the message says how, and the position (a byte offset in
    /// the query) where, when known.
    BadQuery(String, Option<usize>),
    /// The request asks for something the data does not allow, such as an invalid alert
    /// transition; the message says why.
    Invalid(String),
    /// The thing asked for does not exist.
    NotFound(String),
    /// Something on our side failed; details go to the log, not to the client.
    Failed,
}

/// Runs a store call off the async workers, since Tantivy searches block on disk.
pub(crate) async fn call_store<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CallError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(StoreError::Query { message, position })) => {
            Err(CallError::BadQuery(message, position))
        }
        Ok(Err(StoreError::InvalidChange(message))) => Err(CallError::Invalid(message)),
        Ok(Err(error @ StoreError::NotFound { .. })) => Err(CallError::NotFound(error.to_string())),
        Ok(Err(error)) => {
            tracing::error!(%error, "store request failed");
            Err(CallError::Failed)
        }
        Err(error) => {
            tracing::error!(%error, "store task failed");
            Err(CallError::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// A state over an empty store in `dir`, and its gate, which takes `token` as the
    /// bootstrap token.
    pub(crate) fn test_state(dir: &std::path::Path, token: Option<&str>) -> (UiState, Arc<Gate>) {
        let db = Arc::new(vigil_access::AccessDb::open_in(dir).unwrap());
        let gate = Arc::new(Gate::new(
            db,
            token.map(ApiToken::new),
            Default::default(),
            false,
        ));
        let state = UiState {
            store: Arc::new(Store::open(dir).unwrap()),
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        };
        (state, gate)
    }

    /// What axum's extractors refuse in plain text reaches the client as the API's JSON
    /// error; the handlers' own errors pass unchanged.
    #[tokio::test]
    async fn api_refusals_are_json() {
        const TOKEN: &str = "json-errors-test-token";
        let dir = tempfile::TempDir::new().unwrap();
        let (state, gate) = test_state(dir.path(), Some(TOKEN));
        for (uri, says) in [
            ("/api/v1/search?limit=abc", "limit"),
            ("/api/v1/search/facets?q=", "field"),
            ("/api/v1/audit?before=soon", "before"),
            ("/api/v1/alerts?status=nope", "status: unknown status"),
        ] {
            let request = Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap();
            let router = guard(api_router(state.clone()), gate.clone());
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE).unwrap(),
                "application/json",
                "{uri}"
            );
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let error = body["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{uri}: {body}"));
            assert!(error.contains(says), "{uri}: {error}");
        }
    }

    #[tokio::test]
    async fn pages_and_api_responses_are_not_stored() {
        const TOKEN: &str = "no-store-test-token";
        let dir = tempfile::TempDir::new().unwrap();
        let db = Arc::new(vigil_access::AccessDb::open_in(dir.path()).unwrap());
        db.add_user(
            "viewer",
            vigil_access::Role::Viewer,
            &vigil_access::Secret::new("a long enough password"),
        )
        .unwrap();
        let started = db
            .start_session("viewer", None, chrono::Utc::now())
            .unwrap();
        let gate = Arc::new(Gate::new(
            db,
            Some(ApiToken::new(TOKEN)),
            Default::default(),
            false,
        ));
        let state = UiState {
            store: Arc::new(Store::open(dir.path()).unwrap()),
            gate: gate.clone(),
            rules: Default::default(),
            backtests: None,
            playbook_runs: None,
            notifications: None,
            silences: None,
        };
        let session = format!("{}={}", auth::SESSION_COOKIE, started.id.expose());
        let bearer = format!("Bearer {TOKEN}");
        for (router, uri) in [
            (page_router(state.clone()), "/"),
            (page_router(state.clone()), "/login"),
            (api_router(state.clone()), "/api/v1/alerts"),
        ] {
            let request = Request::get(uri)
                .header(header::COOKIE, &session)
                .header(header::AUTHORIZATION, &bearer)
                .body(Body::empty())
                .unwrap();
            let router = guard(router, gate.clone());
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                response.headers().get(header::CACHE_CONTROL).unwrap(),
                "no-store",
                "{uri}"
            );
        }
    }
}
