//! The one HTTP listener: push sources, the API and the pages, plus health and metrics.
//! A process mounts the parts its roles serve; health and metrics are always there.

use std::sync::Arc;

use axum::middleware;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use vigil_ingest::cloudwatch::firehose::FirehoseState;
use vigil_ingest::Ingestor;
use vigil_ui::auth::{require_bearer, ApiToken};
use vigil_ui::UiState;

/// What the ingest role serves over HTTP.
pub struct IngestRoutes {
    pub ingestor: Arc<Ingestor>,
    pub firehose: Option<FirehoseState>,
    /// Push requests handled at once; more wait their turn. With the body limit this bounds
    /// the memory ingest holds, however many senders there are.
    pub max_concurrent_requests: usize,
}

pub fn router(
    token: ApiToken,
    ingest: Option<IngestRoutes>,
    ui: Option<UiState>,
    metrics: PrometheusHandle,
) -> Router {
    let mut api = Router::new();
    let mut open = Router::new();
    if let Some(ingest) = ingest {
        let limit = GlobalConcurrencyLimitLayer::new(ingest.max_concurrent_requests.max(1));
        api = api.merge(
            Router::new()
                .merge(vigil_ingest::http::router(ingest.ingestor.clone()))
                .merge(vigil_ingest::kubernetes::router(ingest.ingestor))
                .layer(limit.clone()),
        );
        // Firehose authenticates with its own access key header, checked by its handler.
        if let Some(firehose) = ingest.firehose {
            open = open.merge(vigil_ingest::cloudwatch::firehose::router(firehose).layer(limit));
        }
    }
    if let Some(ui) = ui {
        api = api.merge(vigil_ui::api_router(ui.clone()));
        open = open.merge(vigil_ui::page_router(ui));
    }
    // Every /api/v1 route, whichever crate serves it, sits behind the bearer token.
    let api = api.layer(middleware::from_fn_with_state(token, require_bearer));
    let mut router = Router::new()
        .merge(api)
        .merge(open)
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );
    for (name, value) in vigil_ui::security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
}
