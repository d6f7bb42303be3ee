//! The search page: a query box and the newest matching events.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{html, Markup};
use serde::Deserialize;
use vigil_event::Event;
use vigil_store::SearchRequest;

use crate::api::clamp_limit;
use crate::auth::Caller;
use crate::frame::layout;
use crate::pages::{error_box, search_form, time_cell};
use crate::{call_store, UiState};

/// The longest record text a results table shows; the API gives the whole record.
const RECORD_PREVIEW_CHARS: usize = 4000;

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/search", get(search_page))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<SearchParams>,
) -> Response {
    let request = SearchRequest {
        visibility: caller.visibility(),
        ..SearchRequest::new(params.q.clone(), clamp_limit(params.limit))
    };
    let store = state.store.clone();
    let results = call_store(move || store.search(&request)).await;
    let body = html! {
        h1 { "Search events" }
        (search_form(&params.q))
        @match &results {
            Err(error) => (error_box(error)),
            Ok(results) => {
                p.muted { (results.total) " matching events; newest " (results.hits.len()) " shown." }
                (events_table(&results.hits))
            }
        }
    };
    layout("Search", Some(&caller), body).into_response()
}

fn events_table(events: &[Event]) -> Markup {
    html! {
        table {
            thead { tr { th { "Time" } th { "Source" } th { "Logsource" } th { "Record" } } }
            tbody {
                @for event in events {
                    tr {
                        (time_cell(&event.time))
                        td { (event.source.kind) br; span.muted { (event.source.name) } }
                        td.muted {
                            @for part in [&event.logsource.product, &event.logsource.service, &event.logsource.category].into_iter().flatten() {
                                (part) br;
                            }
                        }
                        td { pre { (preview(event.record.as_str())) } }
                    }
                }
            }
        }
    }
}

fn preview(text: &str) -> String {
    match text.char_indices().nth(RECORD_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
