//! The one HTTP listener: push sources, the API and the pages, plus health and metrics.
//! A process mounts the parts its roles serve; health and metrics are always there.
//!
//! Slow and numerous clients are bounded here (see [`ServerConfig`]): a connection must send
//! its request head within `header_read_timeout_ms` (which is also how long an idle
//! keep-alive connection stays open), a request its body within `body_read_timeout_ms`, and
//! at most `max_connections` connections are served at once. At the cap, the oldest
//! connection with no authenticated request in flight (a half-sent head, an idle or refused
//! client) is closed to make room for the newcomer, so strangers cannot lock senders out;
//! only when every connection carries authenticated work does a newcomer wait for room.
//! Push bodies are read before a request takes one of ingest's turns, so senders that stall
//! mid-body hold only the bytes they sent, never the turns other senders need.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use vigil_ingest::cloudwatch::firehose::FirehoseState;
use vigil_ingest::Ingestor;
use vigil_ui::auth::ApiToken;
use vigil_ui::{Caller, Gate, UiState};

use crate::tls::Tls;

/// `[server]` in `vigil.toml`: how long clients may take and how many may connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A connection must send a whole request head within this time, counted from when the
    /// server starts waiting for it; an idle keep-alive connection is closed after it too.
    pub header_read_timeout_ms: u64,
    /// A request must send its whole body within this time, counted from its head; then it
    /// gets 408 and its connection is closed.
    pub body_read_timeout_ms: u64,
    /// Connections served at once. A newcomer past it closes the oldest connection without
    /// an authenticated request in flight, or waits while there is none.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_ms: 20_000,
            body_read_timeout_ms: 60_000,
            max_connections: 512,
        }
    }
}

impl ServerConfig {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        const MAX_TIMEOUT_MS: u64 = 3_600_000;
        for (name, value) in [
            ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            ("server.body_read_timeout_ms", self.body_read_timeout_ms),
        ] {
            if value == 0 || value > MAX_TIMEOUT_MS {
                return Err(format!(
                    "{name} is {value}; use 1 to {MAX_TIMEOUT_MS} milliseconds"
                ));
            }
        }
        // Each connection is a file descriptor; beyond this the process limit is the cap.
        const MAX_CONNECTIONS: usize = 1_000_000;
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(format!(
                "server.max_connections is {}; use 1 to {MAX_CONNECTIONS}",
                self.max_connections
            ));
        }
        Ok(())
    }

    fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// What the ingest role serves over HTTP.
pub struct IngestRoutes {
    pub ingestor: Arc<Ingestor>,
    pub firehose: Option<FirehoseState>,
    /// Push requests handled at once; more wait their turn. With the body limit this bounds
    /// the memory ingest holds, however many senders there are.
    pub max_concurrent_requests: usize,
}

/// Every route this process serves, each behind the access check ([`vigil_ui::guard`]):
/// what a route needs is in `vigil_access::routes::ROUTES`.
pub fn router(
    gate: Arc<Gate>,
    ingest: Option<IngestRoutes>,
    ui: Option<UiState>,
    metrics: PrometheusHandle,
) -> Router {
    let mut api = Router::new();
    let mut open = Router::new();
    if let Some(ingest) = ingest {
        let limit = GlobalConcurrencyLimitLayer::new(ingest.max_concurrent_requests.max(1));
        let budget = BodyBudget::new(&ingest);
        // Layers run outermost last-added first: the body is buffered, then a turn is taken.
        api = api.merge(
            Router::new()
                .merge(vigil_ingest::http::router(ingest.ingestor.clone()))
                .merge(vigil_ingest::kubernetes::router(ingest.ingestor))
                .layer(limit.clone())
                .layer(middleware::from_fn_with_state(
                    budget.clone(),
                    buffer_push_body,
                )),
        );
        // Firehose authenticates with its own access key header, checked by its handler; its
        // body is buffered ahead only when the key is right, so strangers hold no budget.
        if let Some(firehose) = ingest.firehose {
            let key = ApiToken::new(firehose.access_key.clone());
            open = open.merge(
                vigil_ingest::cloudwatch::firehose::router(firehose)
                    .layer(limit)
                    .layer(middleware::from_fn_with_state(
                        (budget, key),
                        buffer_firehose_body,
                    )),
            );
        }
    }
    if let Some(ui) = ui {
        api = api.merge(vigil_ui::api_router(ui.clone()));
        open = open.merge(vigil_ui::page_router(ui));
    }
    let router = Router::new()
        .merge(api)
        .merge(open)
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        // Inside the access check: a request it let through with credentials marks its
        // connection as one not to close at the cap.
        .route_layer(middleware::from_fn(count_authenticated));
    // Every route, whichever crate serves it, is looked up in the one access table.
    // Timed outside the access check, so that its refusals are timed too.
    let mut router = vigil_ui::guard(router, gate).route_layer(middleware::from_fn(time_request));
    for (name, value) in vigil_ui::security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets the requests in flight
/// finish (each bounded by the deadlines) and returns. With `tls`, every connection must
/// first complete a TLS handshake within the head deadline; each gets the certificate
/// loaded when it connects.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let header_read_timeout = config.header_read_timeout();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let registry = Arc::new(Registry::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper enforces the head deadline only with a timer; axum::serve sets none.
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let body_read_timeout = config.body_read_timeout();
    let mut served: JoinSet<()> = JoinSet::new();
    let mut stop = shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let mut stopped = std::pin::pin!(stopped);
    let mut next_id: u64 = 0;
    loop {
        let (stream, client_address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped.as_mut() => break,
        };
        // At the cap, the oldest connection without authenticated work makes room: one that
        // has not sent a whole head, or sits idle, or was refused. When every connection
        // carries authenticated work, the new one waits here (and further ones in the
        // backlog) until one ends; the ones being served carry on undisturbed.
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if registry.close_oldest_unauthenticated() {
                    metrics::counter!("vigil_http_connections_evicted_total").increment(1);
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => permit.expect("never closed"),
                    () = stopped.as_mut() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let authenticated = InFlight::default();
        let close = registry.add(id, authenticated.clone());
        let app = app.clone();
        // Streams that would outlive a graceful shutdown (the live tail) end when it begins.
        let stop_streams = vigil_ui::Stopping(shutdown.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let deadline = BodyDeadline(Instant::now() + body_read_timeout);
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, deadline.0)));
            request.extensions_mut().insert(deadline);
            request.extensions_mut().insert(authenticated.clone());
            request.extensions_mut().insert(stop_streams.clone());
            // Handlers and middleware read the client's address with axum's `ConnectInfo`.
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(client_address));
            tower::Service::call(&mut app.clone(), request)
        });
        let http = http.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let stop = shutdown.clone();
        let registry = registry.clone();
        served.spawn(async move {
            let _permit: OwnedSemaphorePermit = permit;
            let mut close = close;
            // The handshake runs here, not in the accept loop, so a slow one holds up no one;
            // until it ends the connection counts as unauthenticated, to be closed at the cap.
            let stream: Option<Box<dyn ClientStream>> = match acceptor {
                None => Some(Box::new(stream)),
                Some(acceptor) => {
                    let handshake = handshake(acceptor, stream, header_read_timeout);
                    tokio::select! {
                        stream = handshake => stream,
                        // Made room for a newer connection: dropping it closes the socket.
                        _ = &mut close => None,
                        () = stopping(stop.clone()) => None,
                    }
                }
            };
            if let Some(stream) = stream {
                let connection = http.serve_connection(TokioIo::new(stream), service);
                let mut connection = std::pin::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    // Made room for a newer connection: dropping it closes the socket.
                    _ = close => Ok(()),
                    () = stopping(stop) => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            registry.remove(id);
        });
        while served.try_join_next().is_some() {}
    }
    drop(listener);
    while served.join_next().await.is_some() {}
    Ok(())
}

/// A client's connection, over TLS or not.
trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for S {}

/// Shakes hands with a TLS client within `deadline`, as the head of a request must arrive
/// within it: a client that opens a socket and stalls holds it no longer than one that
/// stalls mid-head. None when the client failed or ran out of time.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    deadline: Duration,
) -> Option<Box<dyn ClientStream>> {
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(Box::new(stream)),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake not completed within server.header_read_timeout_ms");
            None
        }
    }
}

/// Resolves once `shutdown` turns true.
async fn stopping(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The authenticated requests in flight on one connection, counted from when they pass
/// authentication until their response has been sent.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<AtomicUsize>);

/// Counts one authenticated request while it lives.
struct InFlightGuard(InFlight);

impl InFlightGuard {
    fn new(in_flight: InFlight) -> Self {
        in_flight.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(in_flight)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connections being served, oldest first, so that at the cap an unauthenticated one
/// can be closed to make room.
#[derive(Default)]
struct Registry {
    connections: Mutex<VecDeque<Tracked>>,
}

struct Tracked {
    id: u64,
    authenticated: InFlight,
    close: oneshot::Sender<()>,
}

impl Registry {
    /// Tracks a new connection; the receiver fires when it is to be closed.
    fn add(&self, id: u64, authenticated: InFlight) -> oneshot::Receiver<()> {
        let (close, closed) = oneshot::channel();
        self.lock().push_back(Tracked {
            id,
            authenticated,
            close,
        });
        closed
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|tracked| tracked.id != id);
    }

    /// Closes the oldest connection with no authenticated request in flight, if any.
    fn close_oldest_unauthenticated(&self) -> bool {
        let mut connections = self.lock();
        let position = connections
            .iter()
            .position(|tracked| tracked.authenticated.0.load(Ordering::SeqCst) == 0);
        match position.and_then(|position| connections.remove(position)) {
            Some(tracked) => tracked.close.send(()).is_ok(),
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Tracked>> {
        // The list stays consistent whatever panicked while holding it.
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Middleware inside the access check: marks the connection as carrying authenticated work
/// until the response has been sent, so it is never closed to make room for a stranger.
/// Only a request with valid credentials (a [`Caller`]) counts, not one to a public route.
/// Records how long a request took to be answered (its response head, not the streaming of
/// its body) in `vigil_http_request_duration_seconds`, by route template, method and status
/// class. Labels come only from bounded sets: the template the router matched (never the
/// path the client sent), a known method or `other`, and a status class.
async fn time_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics::histogram!(
        "vigil_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status_class(response.status()),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: a standard one, or `other` (a client may send any token).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `2xx`, `4xx` and the like.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

async fn count_authenticated(request: Request, next: Next) -> Response {
    let guard = request
        .extensions()
        .get::<InFlight>()
        .filter(|_| request.extensions().get::<Caller>().is_some())
        .cloned()
        .map(InFlightGuard::new);
    let response = next.run(request).await;
    match guard {
        Some(guard) => response.map(|body| {
            Body::new(GuardedBody {
                inner: body,
                _guard: guard,
            })
        }),
        None => response,
    }
}

/// A response body that holds its [`InFlightGuard`] until it is sent or dropped.
struct GuardedBody {
    inner: Body,
    _guard: InFlightGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When the body of the request it is attached to must have arrived.
#[derive(Debug, Clone, Copy)]
struct BodyDeadline(Instant);

/// The error a request body gives once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyReadTimeout;

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes, however the
/// bytes trickle in: the deadline covers the whole body, not each read.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyReadTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The bytes of push bodies held in memory at once, buffered or being handled. It is as
/// much as ingest's turns could hold before (`max_concurrent_requests` full bodies), but a
/// stalled body holds only what it sent.
#[derive(Clone)]
struct BodyBudget {
    bytes: Arc<Semaphore>,
    max_body_bytes: usize,
}

impl BodyBudget {
    fn new(ingest: &IngestRoutes) -> Self {
        let max_body_bytes = ingest.ingestor.limits().max_body_bytes;
        let total = max_body_bytes
            .saturating_mul(ingest.max_concurrent_requests.max(1))
            .clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            max_body_bytes,
        }
    }
}

/// Why a push body could not be buffered.
enum BufferError {
    TooLarge(usize),
    TimedOut,
    Unreadable,
}

impl BufferError {
    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            BufferError::TooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than the {max}-byte limit; split it into smaller batches"),
            ),
            BufferError::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".to_owned(),
            ),
            BufferError::Unreadable => (
                StatusCode::BAD_REQUEST,
                "the request body could not be read".to_owned(),
            ),
        }
    }
}

/// Reads the whole body of `request` within its deadline and the memory budget, and gives it
/// back with the body in memory, and the budget it holds until the response is made.
async fn buffer_body(
    budget: &BodyBudget,
    request: Request,
) -> Result<(Request, Option<OwnedSemaphorePermit>), BufferError> {
    let deadline = request
        .extensions()
        .get::<BodyDeadline>()
        .map(|deadline| deadline.0);
    let (parts, mut body) = request.into_parts();
    // A declared length past the limit is refused before a byte of it is read.
    if body.size_hint().lower() > budget.max_body_bytes as u64 {
        discard_rest(body, budget.max_body_bytes);
        return Err(BufferError::TooLarge(budget.max_body_bytes));
    }
    let mut buffered = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(
                |error| match error.into_inner().downcast_ref::<BodyReadTimeout>() {
                    Some(_) => BufferError::TimedOut,
                    None => BufferError::Unreadable,
                },
            )?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: nothing a push source reads
        };
        if buffered.len() + data.len() > budget.max_body_bytes {
            discard_rest(body, budget.max_body_bytes);
            return Err(BufferError::TooLarge(budget.max_body_bytes));
        }
        let wanted =
            u32::try_from(data.len()).map_err(|_| BufferError::TooLarge(budget.max_body_bytes))?;
        let acquire = budget.bytes.clone().acquire_many_owned(wanted);
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, acquire)
                .await
                .map_err(|_| BufferError::TimedOut)?,
            None => acquire.await,
        }
        .expect("never closed");
        match &mut held {
            Some(held) => held.merge(permit),
            None => held = Some(permit),
        }
        buffered.extend_from_slice(&data);
    }
    let request = Request::from_parts(parts, Body::from(buffered.freeze()));
    Ok((request, held))
}

/// Reads and drops what is left of a refused body, in the background and within its deadline,
/// when it is declared (or turns out) to be at most `DISCARD_FACTOR` times the limit. A client
/// still sending when its connection closed would see a broken pipe instead of the 413 that
/// says what to do; what the discard reads costs no memory, and the body's deadline still ends
/// a sender that stalls. A body declared larger than that is not worth reading: its connection
/// closes at once.
fn discard_rest(mut body: Body, max_body_bytes: usize) {
    const DISCARD_FACTOR: usize = 4;
    let mut left = max_body_bytes.saturating_mul(DISCARD_FACTOR);
    if body.size_hint().lower() > left as u64 {
        return;
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            let read = frame.data_ref().map_or(0, Bytes::len);
            left = left.saturating_sub(read);
            if left == 0 {
                break;
            }
        }
    });
}

/// Middleware for the NDJSON and Kubernetes push routes: the body first, then the handler.
async fn buffer_push_body(
    State(budget): State<BodyBudget>,
    request: Request,
    next: Next,
) -> Response {
    match buffer_body(&budget, request).await {
        Ok((request, held)) => {
            let response = next.run(request).await;
            drop(held);
            response
        }
        Err(error) => {
            let (status, message) = error.status_and_message();
            closing((status, Json(json!({ "error": message }))).into_response())
        }
    }
}

/// Middleware for the Firehose route: as [`buffer_push_body`] for requests with the right
/// access key, in Firehose's reply shape; others go straight to the handler, which refuses
/// them without reading their body.
async fn buffer_firehose_body(
    State((budget, key)): State<(BodyBudget, ApiToken)>,
    request: Request,
    next: Next,
) -> Response {
    let authorised = request
        .headers()
        .get("x-amz-firehose-access-key")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|candidate| key.matches(candidate));
    if !authorised {
        return next.run(request).await;
    }
    let request_id = request
        .headers()
        .get("x-amz-firehose-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let guard = request
        .extensions()
        .get::<InFlight>()
        .cloned()
        .map(InFlightGuard::new);
    match buffer_body(&budget, request).await {
        Ok((request, held)) => {
            let response = next.run(request).await;
            drop((held, guard));
            response
        }
        Err(error) => {
            let (status, message) = error.status_and_message();
            let body = json!({
                "requestId": request_id,
                "timestamp": chrono::Utc::now().timestamp_millis(),
                "errorMessage": message,
            });
            closing((status, Json(body)).into_response())
        }
    }
}

/// Marks a response as the last on its connection: the rest of an unread body would
/// otherwise be read as the next request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_are_checked() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let with = |change: fn(&mut ServerConfig)| {
            let mut config = ServerConfig::default();
            change(&mut config);
            config.validate()
        };
        let error = with(|c| c.header_read_timeout_ms = 0).unwrap_err();
        assert!(error.contains("server.header_read_timeout_ms"), "{error}");
        let error = with(|c| c.body_read_timeout_ms = u64::MAX).unwrap_err();
        assert!(error.contains("server.body_read_timeout_ms"), "{error}");
        let error = with(|c| c.max_connections = 0).unwrap_err();
        assert!(error.contains("server.max_connections"), "{error}");
        assert_eq!(with(|c| c.max_connections = 1), Ok(()));
    }

    #[test]
    fn requests_are_timed_by_route_template_and_status_class_in_buckets() {
        use tower::Service;
        let recorder = crate::metric_catalogue::builder().unwrap().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let mut app = Router::new()
                    .route(
                        "/items/{id}",
                        get(|| async { "item" }).post(|| async { StatusCode::FORBIDDEN }),
                    )
                    .route_layer(middleware::from_fn(time_request));
                for (method, path) in [
                    ("GET", "/items/secret-1"),
                    ("GET", "/items/secret-2"),
                    ("POST", "/items/secret-3"),
                    ("GET", "/nothing-here"),
                ] {
                    let request = Request::builder()
                        .method(method)
                        .uri(path)
                        .body(Body::empty())
                        .unwrap();
                    app.call(request).await.unwrap();
                }
            })
        });
        let text = handle.render();
        let series = |labels: &str| {
            format!("vigil_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}")
        };
        let count = |labels: &str| {
            let prefix = series(labels);
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .map(|value| value.trim().to_owned())
        };
        // Buckets, not a summary's quantiles, and the template, not the path asked for.
        assert_eq!(
            count(r#"route="/items/{id}",method="GET",status="2xx""#).as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            count(r#"route="/items/{id}",method="POST",status="4xx""#).as_deref(),
            Some("1"),
            "{text}"
        );
        assert!(text.contains(r#"le="0.005""#), "{text}");
        assert!(!text.contains("quantile"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("nothing-here"), "{text}");
    }

    #[tokio::test]
    async fn handlers_see_the_client_address() {
        use std::io::{Read, Write};
        let app = Router::new().route(
            "/whoami",
            get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move { client.to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(async move {
            serve(listener, app, &ServerConfig::default(), None, shutdown).await
        });
        let (client, reply) = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            let client = stream.local_addr().unwrap();
            stream
                .write_all(b"GET /whoami HTTP/1.1\r\nhost: vigil\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            (client, reply)
        })
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(body, client.to_string(), "{reply}");
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
    }
}
