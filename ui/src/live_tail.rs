//! The live tail: `GET /search/tail?q=` streams, as server-sent events, the events matching a
//! query as they are indexed; `GET /search/live?q=` is the page for browsers without
//! scripts, the newest matches among the events indexed last, reloading itself.
//!
//! "As they are indexed" means in the store's commit order ([`Store::arrived_since`]), never
//! by the events' own times, which senders choose: a record dated last year shows up when it
//! arrives. Each message's id is its number in that order, so a browser that reconnects
//! (`Last-Event-ID`) or resumes after a pause (`after=`) carries on where it stopped.
//!
//! Bounded every way: the store is asked once a second for at most [`EVENTS_PER_TICK`];
//! a person may have [`MAX_TAILS_PER_PERSON`] tails open and the process [`MAX_TAILS`]; a
//! tail ends after [`MAX_TAIL_SECONDS`] (the browser reconnects through the access check,
//! so a signed-out session's tail does not live on) and when the server stops
//! ([`Stopping`]). What the caller may not see (Vigil's own audit events, for most) is left
//! out by the store's visibility and checked again here.
//!
//! Messages are JSON whose strings are attacker-written; the page's script puts them in the
//! page as text only (`textContent`), never as markup.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use vigil_event::Event;
use vigil_store::{Store, Visibility};

use crate::auth::Caller;
use crate::frame::layout;
use crate::pages::time_cell;
use crate::search_page::{search_url, summary};
use crate::search_terms::encode;
use crate::{call_store, UiState};

/// How often the store is asked for new events.
const POLL: Duration = Duration::from_secs(1);
/// The most events one poll sends; the rest come with the next.
pub(crate) const EVENTS_PER_TICK: usize = 100;
/// Tails open at once, in all and per person.
pub(crate) const MAX_TAILS: usize = 32;
pub(crate) const MAX_TAILS_PER_PERSON: usize = 3;
/// How long one stream lasts before the browser is made to reconnect.
pub(crate) const MAX_TAIL_SECONDS: u64 = 300;
/// The longest summary value sent.
const VALUE_CHARS: usize = 200;
/// What the page without scripts looks back over, and shows at most.
const LIVE_PAGE_LOOKBACK: u64 = 5_000;
const LIVE_PAGE_EVENTS: usize = 50;
/// How often the page without scripts reloads itself, in seconds.
const LIVE_PAGE_REFRESH: u32 = 5;

/// Turns true when the server begins to stop: open tails end, so that the connections they
/// hold let the server finish. The server puts it in every request's extensions; without
/// it (a router served some other way) tails end only by themselves.
#[derive(Clone)]
pub struct Stopping(pub watch::Receiver<bool>);

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/search/tail", get(tail))
        .route("/search/live", get(live_page))
        .layer(Extension(Arc::new(Tails::new(
            MAX_TAILS,
            MAX_TAILS_PER_PERSON,
        ))))
}

/// The tails open now, in all and per person.
pub(crate) struct Tails {
    open: Mutex<HashMap<String, usize>>,
    most: usize,
    most_each: usize,
}

/// One open tail; dropping it closes it.
pub(crate) struct TailPermit {
    tails: Arc<Tails>,
    who: String,
}

impl Tails {
    pub(crate) fn new(most: usize, most_each: usize) -> Tails {
        Tails {
            open: Mutex::new(HashMap::new()),
            most,
            most_each,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit for `who`'s next tail, unless they or everyone have as many as allowed.
    pub(crate) fn open(self: &Arc<Self>, who: &str) -> Option<TailPermit> {
        let mut open = self.lock();
        let total: usize = open.values().sum();
        let theirs = open.get(who).copied().unwrap_or(0);
        if total >= self.most || theirs >= self.most_each {
            return None;
        }
        open.insert(who.to_owned(), theirs + 1);
        Some(TailPermit {
            tails: self.clone(),
            who: who.to_owned(),
        })
    }
}

impl Drop for TailPermit {
    fn drop(&mut self) {
        let mut open = self.tails.lock();
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct TailParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
}

/// One event as a message: what a row of the search page shows, as plain strings.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    time: String,
    /// When Vigil received it, which senders cannot choose.
    received: String,
    source_kind: String,
    source_name: String,
    summary: Vec<(String, String)>,
    /// The search for this event alone; a same-origin path.
    link: String,
}

fn row(event: &Event) -> Row {
    let document = event.document().unwrap_or_default();
    let cut = |text: &str| -> String {
        match text.char_indices().nth(VALUE_CHARS) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.to_owned(),
        }
    };
    Row {
        id: event.id.to_string(),
        time: event.time.format("%Y-%m-%d %H:%M:%S").to_string(),
        received: event.received.format("%Y-%m-%d %H:%M:%S").to_string(),
        source_kind: event.source.kind.clone(),
        source_name: event.source.name.clone(),
        summary: summary(event, &document)
            .into_iter()
            .filter_map(|cell| Some((cut(&cell.label), cut(&cell.value?))))
            .collect(),
        link: format!("/search?q={}", encode(&format!("id:{}", event.id))),
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// Where a tail starts: the browser's `Last-Event-ID` when it reconnects, else `after`,
/// else now.
fn start_cursor(store: &Store, headers: &HeaderMap, after: &str) -> Result<u64, String> {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    match resumed.or(Some(after).filter(|a| !a.trim().is_empty())) {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("after: {text:?} is not a tail position")),
        None => Ok(store.arrival_cursor()),
    }
}

async fn tail(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Extension(tails): Extension<Arc<Tails>>,
    stopping: Option<Extension<Stopping>>,
    headers: HeaderMap,
    Query(params): Query<TailParams>,
) -> Response {
    if let Err(error) = vigil_store::check_query(&params.q) {
        return plain(StatusCode::BAD_REQUEST, format!("query: {error}"));
    }
    let cursor = match start_cursor(&state.store, &headers, &params.after) {
        Ok(cursor) => cursor,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let Some(permit) = tails.open(&caller.principal.actor()) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "30")],
            format!(
                "too many live tails are open (at most {MAX_TAILS_PER_PERSON} each, {MAX_TAILS} in all); close one\n"
            ),
        )
            .into_response();
    };
    let (sender, receiver) = mpsc::channel(EVENTS_PER_TICK + 4);
    let stopping = stopping.map(|Extension(Stopping(stop))| stop);
    let tail = Tail {
        store: state.store.clone(),
        query: params.q,
        caller,
        cursor,
        sender,
        _permit: permit,
    };
    tokio::spawn(tail.run(stopping));
    Sse::new(Messages(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One open tail, polling the store for the stream it feeds.
struct Tail {
    store: Arc<Store>,
    query: String,
    caller: Caller,
    cursor: u64,
    sender: mpsc::Sender<Result<SseEvent, Infallible>>,
    _permit: TailPermit,
}

impl Tail {
    async fn run(mut self, stopping: Option<watch::Receiver<bool>>) {
        let ends = tokio::time::Instant::now() + Duration::from_secs(MAX_TAIL_SECONDS);
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = async move {
            match stopping {
                Some(mut stop) => {
                    let _ = stop.wait_for(|stop| *stop).await;
                }
                None => std::future::pending().await,
            }
        };
        let mut stopped = std::pin::pin!(stopped);
        // The position it starts from, so that a reconnect right away loses nothing.
        let first = SseEvent::default()
            .event("ready")
            .id(self.cursor.to_string())
            .retry(Duration::from_secs(3))
            .data("{}");
        if self.sender.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.sender.closed() => return,
                () = stopped.as_mut() => {
                    self.end("shutdown").await;
                    return;
                }
            }
            if tokio::time::Instant::now() >= ends {
                // The browser reconnects with the last id, through the access check again.
                self.end("renew").await;
                return;
            }
            if !self.poll().await {
                return;
            }
        }
    }

    async fn end(&self, reason: &str) {
        let message = SseEvent::default()
            .event("end")
            .data(serde_json::json!({ "reason": reason }).to_string());
        let _ = self.sender.send(Ok(message)).await;
    }

    /// Sends what arrived since the cursor; false once the tail is over.
    async fn poll(&mut self) -> bool {
        let store = self.store.clone();
        let (cursor, query, visibility): (u64, String, Visibility) =
            (self.cursor, self.query.clone(), self.caller.visibility());
        let arrived =
            call_store(move || store.arrived_since(cursor, &query, &visibility, EVENTS_PER_TICK))
                .await;
        let arrived = match arrived {
            Ok(arrived) => arrived,
            Err(_) => {
                let message = SseEvent::default()
                    .event("failed")
                    .data(r#"{"message":"the search failed; the server log has the details"}"#);
                let _ = self.sender.send(Ok(message)).await;
                return false;
            }
        };
        if arrived.gap {
            let message = SseEvent::default().event("gap").data(
                r#"{"message":"more events arrived than the tail keeps; some may be missing here, so search for them"}"#,
            );
            if self.sender.send(Ok(message)).await.is_err() {
                return false;
            }
        }
        let sent_any = !arrived.events.is_empty();
        for (number, event) in arrived.events {
            if !self.caller.may_see(&event) {
                continue;
            }
            let message = match SseEvent::default()
                .id(number.to_string())
                .json_data(row(&event))
            {
                Ok(message) => message,
                Err(error) => {
                    tracing::error!(%error, "a live tail's event could not be written");
                    continue;
                }
            };
            if self.sender.send(Ok(message)).await.is_err() {
                return false;
            }
        }
        if !sent_any && arrived.cursor != self.cursor {
            // Nothing matched, but the position moved: keep the browser's last id with it.
            let message = SseEvent::default()
                .event("cursor")
                .id(arrived.cursor.to_string())
                .data("{}");
            if self.sender.send(Ok(message)).await.is_err() {
                return false;
            }
        }
        self.cursor = arrived.cursor;
        true
    }
}

/// The stream of messages a tail's task sends.
struct Messages(mpsc::Receiver<Result<SseEvent, Infallible>>);

impl futures_core::Stream for Messages {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[derive(Debug, Deserialize)]
struct LiveParams {
    #[serde(default)]
    q: String,
}

/// The live tail without scripts: the newest matches among the last events indexed, newest
/// first, and a `Refresh` header that reloads the page.
async fn live_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<LiveParams>,
) -> Response {
    let store = state.store.clone();
    let (query, visibility) = (params.q.clone(), caller.visibility());
    let arrived = call_store(move || {
        let since = store.arrival_cursor().saturating_sub(LIVE_PAGE_LOOKBACK);
        store.arrived_since(since, &query, &visibility, LIVE_PAGE_LOOKBACK as usize)
    })
    .await;
    let back = search_url(&params.q, "", "", "");
    let (status, content) = match arrived {
        Ok(arrived) => {
            let events: Vec<&Event> = arrived
                .events
                .iter()
                .rev()
                .map(|(_, event)| event)
                .filter(|event| caller.may_see(event))
                .take(LIVE_PAGE_EVENTS)
                .collect();
            (
                StatusCode::OK,
                html! {
                    p.muted {
                        "The newest events matching this query among the last " (LIVE_PAGE_LOOKBACK)
                        " indexed, whatever their own time, newest first. The page reloads every "
                        (LIVE_PAGE_REFRESH) " seconds."
                    }
                    @if events.is_empty() { p.muted { "None yet." } } @else {
                        table.events.live-events {
                            thead { tr { th { "Time" } th { "Received" } th { "Source" } th { "Event" } } }
                            tbody {
                                @for event in &events {
                                    @let row = row(event);
                                    tr {
                                        (time_cell(&event.time))
                                        (time_cell(&event.received))
                                        td { (row.source_kind) br; span.muted { (row.source_name) } }
                                        td.event {
                                            @for (label, value) in &row.summary {
                                                span.cell { span.label { (label) } " " (value) } " "
                                            }
                                            a href=(row.link) { "open" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            )
        }
        Err(error) => (StatusCode::BAD_REQUEST, crate::pages::error_box(&error)),
    };
    let body = html! {
        h1 { "Live tail" }
        p { "Query: " code { (params.q) } " · " a href=(back) { "back to the search" } }
        (content)
    };
    (
        status,
        [(header::REFRESH, LIVE_PAGE_REFRESH.to_string())],
        layout("Live tail", Some(&caller), body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_are_capped_per_person_and_in_all_and_freed_when_dropped() {
        let tails = Arc::new(Tails::new(3, 2));
        let a1 = tails.open("alice").unwrap();
        let a2 = tails.open("alice").unwrap();
        assert!(tails.open("alice").is_none());
        let b1 = tails.open("bob").unwrap();
        assert!(tails.open("carol").is_none(), "three in all");
        drop(a1);
        assert!(tails.open("carol").is_some());
        drop((a2, b1));
        assert!(tails.lock().values().all(|n| *n > 0));
        assert!(tails.open("alice").is_some());
    }
}
