//! Saved searches, per person: `GET /searches` lists the caller's own, each a link to the
//! search page with its parameters (which is also the URL to share: it runs the same search
//! for whoever opens it, as far as they may see); `POST /searches` saves the search the
//! search page's form carries; `POST /searches/{id}/delete` deletes one of the caller's own.
//!
//! Nobody reads or deletes another's: every query names the caller as the owner, and another
//! person's id answers as a missing one. Both changes check the form's CSRF token and are
//! audited.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use serde::Deserialize;
use vigil_access::{AccessError, AuditRecord, Outcome, SavedSearch, SearchParams};

use crate::auth::Caller;
use crate::frame::{check_form, csrf, layout};
use crate::search_page::search_url;
use crate::UiState;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/searches", get(list).post(save))
        .route("/searches/{id}/delete", post(delete))
}

#[derive(Debug, Deserialize)]
struct SaveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    columns: String,
}

#[derive(Debug, Deserialize)]
struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

/// The share URL of a saved search: the search page with its parameters.
fn share_url(search: &SavedSearch) -> String {
    let p = &search.params;
    search_url(&p.q, &p.from, &p.to, &p.columns)
}

/// Runs an access database call off the async workers; a failure other than a refusal the
/// caller can act on is logged and becomes `None`.
async fn call_db<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, AccessError> + Send + 'static,
) -> Result<T, Option<String>> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(AccessError::Invalid(message))) => Err(Some(message)),
        Ok(Err(error)) => {
            tracing::error!(%error, "a saved search request failed");
            Err(None)
        }
        Err(error) => {
            tracing::error!(%error, "a saved search task failed");
            Err(None)
        }
    }
}

async fn list(State(state): State<UiState>, Extension(caller): Extension<Caller>) -> Response {
    let owner = caller.principal.actor();
    let db = state.gate.db.clone();
    let searches = call_db(move || db.saved_searches(&owner)).await;
    render(&caller, StatusCode::OK, searches, None)
}

/// The list page, with `problem` (a refused save) above it.
fn render(
    caller: &Caller,
    status: StatusCode,
    searches: Result<Vec<SavedSearch>, Option<String>>,
    problem: Option<&str>,
) -> Response {
    let token = csrf(caller);
    let body = html! {
        h1 { "Saved searches" }
        @if let Some(problem) = problem { div.error { "Not saved: " (problem) } }
        p.muted {
            "Your own searches; nobody else sees this list. A search's link is the one to share: "
            "it opens the same search, showing each person what they may see. Save one from the "
            a href="/search" { "search page" } "."
        }
        @match &searches {
            Err(_) => div.error { "The saved searches could not be read; the server log has the details." },
            Ok(searches) if searches.is_empty() => p.muted { "No saved searches yet." },
            Ok(searches) => table.saved-searches {
                thead { tr { th { "Name" } th { "Query" } th { "Time range" } th { "Saved" } th { span.visually-hidden { "Delete" } } } }
                tbody {
                    @for search in searches {
                        tr {
                            td { a.saved-search href=(share_url(search)) { (search.name) } }
                            td { code { (search.params.q) } }
                            td {
                                @if search.params.from.is_empty() && search.params.to.is_empty() { span.muted { "all time" } }
                                @else { (search.params.from) " – " (search.params.to) }
                            }
                            td.time { (search.updated.format("%Y-%m-%d %H:%M")) }
                            td {
                                form.delete-search method="post" action={ "/searches/" (search.id) "/delete" } {
                                    input type="hidden" name="csrf" value=(token);
                                    button type="submit" aria-label={ "Delete " (search.name) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            },
        }
    };
    (status, layout("Saved searches", Some(caller), body)).into_response()
}

async fn save(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<SaveForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        if let Err(refused) = check_form(&caller, &headers, "") {
            return refused.into_response();
        }
        return (StatusCode::BAD_REQUEST, "the form is malformed\n").into_response();
    };
    if let Err(refused) = check_form(&caller, &headers, &form.csrf) {
        return refused.into_response();
    }
    let owner = caller.principal.actor();
    let db = state.gate.db.clone();
    // A query the store cannot read would only fail again when opened.
    if let Err(error) = vigil_store::check_query(&form.q) {
        let searches = call_db(move || db.saved_searches(&owner)).await;
        let problem = format!("the query does not parse: {error}");
        return render(&caller, StatusCode::BAD_REQUEST, searches, Some(&problem));
    }
    let params = SearchParams {
        q: form.q,
        from: form.from.trim().to_owned(),
        to: form.to.trim().to_owned(),
        columns: form.columns.trim().to_owned(),
    };
    let saved = {
        let (db, owner, name) = (db.clone(), owner.clone(), form.name.clone());
        call_db(move || db.save_search(&owner, &name, &params)).await
    };
    match saved {
        Ok(saved) => {
            state
                .gate
                .audit(AuditRecord {
                    actor: owner,
                    action: "saved_search.save".into(),
                    outcome: Outcome::Success,
                    target: Some(saved.name.clone()),
                    client_address: caller.address.map(|a| a.to_string()),
                    reason: None,
                    detail: serde_json::json!({ "id": saved.id, "params": saved.params }),
                })
                .await;
            Redirect::to("/searches").into_response()
        }
        Err(problem) => {
            let status = if problem.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let problem = problem.unwrap_or_else(|| "the server log has the details".into());
            let searches = call_db(move || db.saved_searches(&owner)).await;
            render(&caller, status, searches, Some(&problem))
        }
    }
}

async fn delete(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    let csrf_field = form.map(|Form(form)| form.csrf).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &csrf_field) {
        return refused.into_response();
    }
    let owner = caller.principal.actor();
    let not_found = || {
        let body = html! { h1 { "Saved searches" } div.error { "You have no saved search with that id." } p { a href="/searches" { "Your saved searches" } } };
        (
            StatusCode::NOT_FOUND,
            layout("Saved searches", Some(&caller), body),
        )
            .into_response()
    };
    let Ok(number) = id.parse::<i64>() else {
        return not_found();
    };
    let db = state.gate.db.clone();
    let deleted = {
        let owner = owner.clone();
        call_db(move || db.delete_saved_search(&owner, number)).await
    };
    let audit = |outcome, reason: Option<&str>, name: Option<String>| AuditRecord {
        actor: owner.clone(),
        action: "saved_search.delete".into(),
        outcome,
        target: Some(name.unwrap_or_else(|| format!("#{number}"))),
        client_address: caller.address.map(|a| a.to_string()),
        reason: reason.map(str::to_owned),
        detail: serde_json::json!({ "id": number }),
    };
    match deleted {
        Ok(Some(search)) => {
            state
                .gate
                .audit(audit(Outcome::Success, None, Some(search.name)))
                .await;
            Redirect::to("/searches").into_response()
        }
        Ok(None) => {
            // Someone else's, or none: recorded, since guessing at others' ids is worth seeing.
            state
                .gate
                .audit(audit(Outcome::Failure, Some("not_found"), None))
                .await;
            not_found()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the saved search could not be deleted; the server log has the details\n",
        )
            .into_response(),
    }
}
