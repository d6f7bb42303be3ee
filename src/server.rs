//! The one HTTP listener: push sources, the API and the pages, plus health and metrics.

use std::sync::Arc;

use axum::middleware;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::set_header::SetResponseHeaderLayer;
use vigil_ingest::cloudwatch::firehose::FirehoseState;
use vigil_ingest::Ingestor;
use vigil_ui::{auth::require_bearer, UiState};

pub fn router(
    ingestor: Arc<Ingestor>,
    firehose: Option<FirehoseState>,
    ui: UiState,
    metrics: PrometheusHandle,
) -> Router {
    // Every /api/v1 route, whichever crate serves it, sits behind the bearer token.
    let api = Router::new()
        .merge(vigil_ingest::http::router(ingestor.clone()))
        .merge(vigil_ingest::kubernetes::router(ingestor))
        .merge(vigil_ui::api_router(ui.clone()))
        .layer(middleware::from_fn_with_state(
            ui.token.clone(),
            require_bearer,
        ));
    let mut router = Router::new()
        .merge(api)
        // Firehose authenticates with its own access key header, checked by its handler.
        .merge(
            firehose
                .map(vigil_ingest::cloudwatch::firehose::router)
                .unwrap_or_default(),
        )
        .merge(vigil_ui::page_router(ui))
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
