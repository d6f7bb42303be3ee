//! The pages' scripts, served from this origin as the stylesheet is: small enhancements of
//! pages that work without them (`script-src 'self'`; no inline script, no `eval`).
//!
//! - `tail.js` turns the search page's "Live tail" link into a toggle that streams matching
//!   events into the page ([`crate::live_tail`]), pausable;
//! - `keys.js` adds keyboard shortcuts: `/` for the query box, `j`/`k` between rows,
//!   `o` or `Enter` to open one, `?` for the list.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::UiState;

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/static/tail.js", get(tail_js))
        .route("/static/keys.js", get(keys_js))
}

async fn tail_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, JAVASCRIPT)],
        include_str!("../assets/tail.js"),
    )
}

async fn keys_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, JAVASCRIPT)],
        include_str!("../assets/keys.js"),
    )
}
