//! `GET /search/export?format=ndjson|csv&q=&from=&to=`: the events a search finds, as a
//! download, streamed page by page with the search cursor so that neither side holds the
//! whole export, and capped at [`MAX_EXPORTED`] events.
//!
//! NDJSON lines are the events as the API serialises them. CSV rows give the time, source,
//! id and the search page's summary fields; every cell is quoted, and one a spreadsheet would
//! read as a formula (starting `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with
//! `'`, since the records are attacker-written.

use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tokio::sync::mpsc;
use vigil_event::Event;
use vigil_store::{SearchRequest, SearchResults, Store};

use crate::auth::Caller;
use crate::search_page::{read_range, summary};
use crate::{call_store, CallError, UiState};

/// The most events one export holds.
pub(crate) const MAX_EXPORTED: usize = 100_000;
/// Events fetched per store call.
const PAGE: usize = 1000;
/// Chunks buffered between the store and a slow client.
const BUFFERED_CHUNKS: usize = 4;

/// The summary columns of every source kind (see [`summary`]), in CSV order; a summary
/// field under any other label goes to the last column, `fields`.
const SUMMARY_COLUMNS: [&str; 10] = [
    "event", "verb", "resource", "object", "level", "message", "user", "address", "region", "error",
];

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/search/export", get(export))
}

#[derive(Debug, Deserialize)]
struct ExportParams {
    #[serde(default)]
    format: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

async fn export(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ExportParams>,
) -> Response {
    let format = match params.format.as_str() {
        "" | "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => {
            return bad_request(format!(
                "format: unknown format {other:?}; use ndjson or csv"
            ))
        }
    };
    let (from, to) = match read_range(&params.from, &params.to) {
        Ok(range) => range,
        Err(message) => return bad_request(message),
    };
    let request = SearchRequest {
        query: params.q,
        from,
        to,
        limit: PAGE,
        cursor: None,
        visibility: caller.visibility(),
    };
    // The first page is fetched before answering, so a bad query is a 400, not a cut file.
    let first = {
        let store = state.store.clone();
        let request = request.clone();
        call_store(move || store.search(&request)).await
    };
    let first = match first {
        Ok(first) => first,
        Err(CallError::BadQuery(message, _) | CallError::Invalid(message)) => {
            return bad_request(format!("query: {message}"))
        }
        Err(CallError::NotFound(message)) => return bad_request(message),
        Err(CallError::Failed) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "the search failed\n").into_response()
        }
    };
    let (sender, receiver) = mpsc::channel(BUFFERED_CHUNKS);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || produce(&store, request, first, format, &sender));
    let (content_type, file) = match format {
        Format::Ndjson => ("application/x-ndjson", "vigil-events.ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "vigil-events.csv"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::new(ChunkBody(receiver)),
    )
        .into_response()
}

type Chunk = Result<Bytes, io::Error>;

/// Writes the export into `sender` a page at a time until the results, the cap, or the
/// client (which drops the receiver) ends it. A failure mid-way ends the body with an error,
/// so the client sees a broken transfer rather than a file that looks whole.
fn produce(
    store: &Store,
    mut request: SearchRequest,
    first: SearchResults,
    format: Format,
    sender: &mpsc::Sender<Chunk>,
) {
    let mut page = first;
    let mut sent = 0usize;
    let mut chunk = Vec::new();
    if format == Format::Csv {
        chunk.extend_from_slice(csv_header().as_bytes());
    }
    loop {
        for event in page.hits.iter().take(MAX_EXPORTED - sent) {
            match format {
                Format::Ndjson => event.write_json(&mut chunk),
                Format::Csv => chunk.extend_from_slice(csv_row(event).as_bytes()),
            }
            chunk.push(b'\n');
            sent += 1;
        }
        if sender
            .blocking_send(Ok(Bytes::from(std::mem::take(&mut chunk))))
            .is_err()
        {
            return; // The client went away.
        }
        let Some(cursor) = page.next_cursor.take() else {
            return;
        };
        if sent >= MAX_EXPORTED {
            return;
        }
        request.cursor = Some(cursor);
        // A panic in the search ends the body with an error rather than silently.
        page = match std::panic::catch_unwind(AssertUnwindSafe(|| store.search(&request))) {
            Ok(Ok(page)) => page,
            Ok(Err(error)) => {
                tracing::error!(%error, "an export's search failed");
                let _ = sender.blocking_send(Err(io::Error::other("export failed")));
                return;
            }
            Err(_) => {
                tracing::error!("an export's search panicked");
                let _ = sender.blocking_send(Err(io::Error::other("export failed")));
                return;
            }
        };
    }
}

fn csv_header() -> String {
    let mut cells = vec!["time", "source_kind", "source_name", "id"];
    cells.extend(SUMMARY_COLUMNS);
    cells.push("fields");
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
        + "\n"
}

/// One event's CSV row, without its line end.
fn csv_row(event: &Event) -> String {
    let document = event.document().unwrap_or_default();
    let mut columns = vec![String::new(); SUMMARY_COLUMNS.len()];
    let mut others = Vec::new();
    for cell in summary(event, &document) {
        let Some(value) = cell.value else { continue };
        match SUMMARY_COLUMNS.iter().position(|c| *c == cell.label) {
            Some(at) => columns[at] = value,
            None => others.push(format!("{}={value}", cell.label)),
        }
    }
    let mut cells = vec![
        event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        event.source.kind.clone(),
        event.source.name.clone(),
        event.id.to_string(),
    ];
    cells.extend(columns);
    cells.push(others.join("; "));
    cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",")
}

/// A CSV cell: quoted, quotes doubled, and text a spreadsheet would run as a formula
/// prefixed with `'` so that it stays text.
pub(crate) fn csv_cell(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    format!(
        "\"{}{}\"",
        if formula { "'" } else { "" },
        text.replace('"', "\"\"")
    )
}

/// A response body fed by the exporting thread.
struct ChunkBody(mpsc::Receiver<Chunk>);

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_stay_text() {
        assert_eq!(csv_cell("plain"), r#""plain""#);
        assert_eq!(csv_cell(r#"say "hi", ok"#), r#""say ""hi"", ok""#);
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), r#""'=HYPERLINK(""x"")""#);
        for formula in ["+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"] {
            assert!(csv_cell(formula).starts_with("\"'"), "{formula:?}");
        }
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
    }
}
