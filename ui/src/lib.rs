//! Vigil's web pages and JSON API for analysts.
//!
//! Handlers are thin: they parse the request, ask [`vigil_store::Store`] on a blocking thread,
//! and render JSON or HTML. Every page escapes what it shows (maud escapes by default), and the
//! responses forbid scripts and framing, because events and alerts carry attacker-controlled text.

mod api;
pub mod auth;
mod pages;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::Router;
use vigil_store::{Store, StoreError};

pub use auth::ApiToken;

/// What the handlers share.
#[derive(Clone)]
pub struct UiState {
    pub store: Arc<Store>,
    pub token: ApiToken,
}

/// The JSON API under `/api/v1`; the caller wraps it with [`auth::require_bearer`].
pub fn api_router(state: UiState) -> Router {
    api::router().with_state(state)
}

/// The HTML pages, which authenticate by a session cookie set at `/login`.
pub fn page_router(state: UiState) -> Router {
    pages::router().with_state(state)
}

/// Headers that keep a browser from running or framing anything our pages did not mean to show.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
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
