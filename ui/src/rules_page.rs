//! The rules, for rule authors: `GET /rules` lists every loaded rule with its hits and the
//! files that failed to load, `GET /rules/{id}` shows one with its file's YAML, and the
//! forms `POST /rules/reload` and `POST /rules/{id}/state` reload the rules from their files
//! and enable or disable one. The API has the same under `/api/v1/rules`.
//!
//! Rule files come from pull requests and are attacker-written like events: every text of a
//! rule, its YAML and the load errors (which quote it) are shown as text. The gate lets only
//! those who may manage rules reach the changing routes; the forms also carry the session's
//! CSRF token, and every change (or refusal to change) goes to the audit log with its actor.

use std::collections::BTreeMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_access::{AuditRecord, Outcome, Permission};
use vigil_event::{Level, LogSource};
use vigil_store::RuleHits;

use crate::auth::Caller;
use crate::frame::{check_form, csrf, layout};
use crate::rule_catalog::{RuleCatalog, RuleFailure, RuleInfo};
use crate::rule_runtime::{ReloadOutcome, RuleRuntimeError};
use crate::search_terms::encode;
use crate::{call_store, UiState};

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/rules", get(list_page))
        .route("/rules/reload", post(reload_form))
        .route("/rules/{id}", get(rule_page))
        .route("/rules/{id}/state", post(state_form))
}

pub(crate) fn api_router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/rules", get(api_list))
        .route("/api/v1/rules/reload", post(api_reload))
        .route("/api/v1/rules/{id}/enable", post(api_enable))
        .route("/api/v1/rules/{id}/disable", post(api_disable))
}

/// Audit targets hold at most this much of a rule id, which the request names.
const MAX_TARGET_CHARS: usize = 200;

/// Reloads the rules off the async workers and audits the outcome.
async fn reload(
    state: &UiState,
    caller: &Caller,
    trigger: &'static str,
) -> Result<ReloadOutcome, RuleRuntimeError> {
    let rules = state.rules.clone();
    let result = tokio::task::spawn_blocking(move || rules.reload(trigger))
        .await
        .unwrap_or_else(|error| Err(RuleRuntimeError::Failed(error.to_string())));
    let (outcome, reason, detail) = match &result {
        Ok(done) => (
            if done.swapped {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            (!done.swapped).then(|| {
                done.message
                    .clone()
                    .unwrap_or_else(|| format!("{} rule files had errors", done.errors.len()))
            }),
            json!({
                "trigger": trigger,
                "generation": done.generation,
                "rules": done.rules,
                "errors": done.errors.len(),
            }),
        ),
        Err(error) => (
            Outcome::Failure,
            Some(error.to_string()),
            json!({ "trigger": trigger }),
        ),
    };
    state
        .gate
        .audit(AuditRecord {
            actor: caller.principal.actor(),
            action: "rules.reload".into(),
            outcome,
            target: None,
            client_address: caller.address.map(|a| a.to_string()),
            reason,
            detail,
        })
        .await;
    result
}

/// Enables or disables a rule off the async workers and audits the outcome.
async fn set_enabled(
    state: &UiState,
    caller: &Caller,
    id: String,
    enabled: bool,
) -> Result<ReloadOutcome, RuleRuntimeError> {
    let rules = state.rules.clone();
    let actor = caller.principal.actor();
    let result = {
        let (id, actor) = (id.clone(), actor.clone());
        tokio::task::spawn_blocking(move || rules.set_enabled(&id, enabled, &actor))
            .await
            .unwrap_or_else(|error| Err(RuleRuntimeError::Failed(error.to_string())))
    };
    let detail = match &result {
        Ok(done) => json!({ "generation": done.generation }),
        Err(_) => serde_json::Value::Null,
    };
    state
        .gate
        .audit(AuditRecord {
            actor,
            action: if enabled {
                "rule.enable"
            } else {
                "rule.disable"
            }
            .into(),
            outcome: if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            target: Some(id.chars().take(MAX_TARGET_CHARS).collect()),
            client_address: caller.address.map(|a| a.to_string()),
            // The id is the caller's text: the target holds it, bounded, not the reason.
            reason: result.as_ref().err().map(|error| match error {
                RuleRuntimeError::UnknownRule(_) => "unknown rule".to_owned(),
                other => other.to_string(),
            }),
            detail,
        })
        .await;
    result
}

fn error_status(error: &RuleRuntimeError) -> StatusCode {
    match error {
        RuleRuntimeError::NotDetecting => StatusCode::CONFLICT,
        RuleRuntimeError::UnknownRule(_) => StatusCode::NOT_FOUND,
        RuleRuntimeError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

// ---- API ----

/// One rule as the API lists it.
#[derive(Serialize)]
struct ApiRule<'a> {
    id: &'a str,
    title: &'a str,
    level: Option<Level>,
    status: Option<&'a str>,
    logsource: &'a LogSource,
    file: &'a str,
    line: usize,
    enabled: bool,
    correlation: bool,
}

async fn api_list(State(state): State<UiState>) -> Response {
    let catalog = state.rules.catalog();
    let rules: Vec<ApiRule> = catalog
        .iter()
        .map(|(id, rule)| ApiRule {
            id,
            title: &rule.title,
            level: rule.level,
            status: rule.status.as_deref(),
            logsource: &rule.logsource,
            file: &rule.file,
            line: rule.line,
            enabled: rule.enabled,
            correlation: rule.correlation,
        })
        .collect();
    Json(json!({
        "detecting": catalog.is_loaded(),
        "generation": catalog.generation(),
        "rules": rules,
        "failures": catalog.failures(),
        "last_reload": state.rules.last_reload(),
    }))
    .into_response()
}

fn api_outcome(result: Result<ReloadOutcome, RuleRuntimeError>) -> Response {
    match result {
        Ok(outcome) if outcome.swapped => Json(outcome).into_response(),
        // The rules running stay; the body says why the new ones were refused.
        Ok(outcome) => (StatusCode::UNPROCESSABLE_ENTITY, Json(outcome)).into_response(),
        Err(error) => (
            error_status(&error),
            Json(json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn api_reload(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    api_outcome(reload(&state, &caller, "api").await)
}

async fn api_enable(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    api_outcome(set_enabled(&state, &caller, id, true).await)
}

async fn api_disable(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    api_outcome(set_enabled(&state, &caller, id, false).await)
}

// ---- Forms ----

#[derive(Deserialize)]
struct ReloadForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct StateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enabled: String,
}

async fn reload_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<ReloadForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(form)| form.csrf).unwrap_or_default();
    if let Err(refused) = check_form(&caller, &headers, &csrf) {
        return refused.into_response();
    }
    match reload(&state, &caller, "page").await {
        // The list shows the outcome as the last reload.
        Ok(_) => Redirect::to("/rules").into_response(),
        Err(error) => (error_status(&error), format!("{error}\n")).into_response(),
    }
}

async fn state_form(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<StateForm>, FormRejection>,
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
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return (StatusCode::BAD_REQUEST, "enabled must be true or false\n").into_response(),
    };
    match set_enabled(&state, &caller, id.clone(), enabled).await {
        Ok(_) => Redirect::to(&format!("/rules/{}", encode(&id))).into_response(),
        Err(error) => (error_status(&error), format!("{error}\n")).into_response(),
    }
}

// ---- Pages ----

/// The list's filters, as the filter form sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListParams {
    /// Text in the title, id, tags or file.
    q: String,
    level: String,
    /// `yes`, `no` or empty for both.
    enabled: String,
}

impl ListParams {
    fn keeps(&self, id: &str, rule: &RuleInfo) -> bool {
        let needle = self.q.trim().to_lowercase();
        let text_fits = needle.is_empty()
            || rule.title.to_lowercase().contains(&needle)
            || id.to_lowercase().contains(&needle)
            || rule.file.to_lowercase().contains(&needle)
            || rule
                .tags
                .iter()
                .any(|tag| tag.to_lowercase().contains(&needle));
        let level_fits =
            self.level.is_empty() || rule.level.is_some_and(|level| level.as_str() == self.level);
        let enabled_fits = match self.enabled.as_str() {
            "yes" => rule.enabled,
            "no" => !rule.enabled,
            _ => true,
        };
        text_fits && level_fits && enabled_fits
    }
}

/// Each rule's alerts in the last day and week, and its last, as the caller may see them;
/// `None` when the store could not say.
async fn hits(
    state: &UiState,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Option<BTreeMap<String, RuleHits>> {
    let store = state.store.clone();
    let visibility = caller.visibility();
    call_store(move || {
        store.rule_hits(
            now - Duration::hours(24),
            now - Duration::days(7),
            &visibility,
        )
    })
    .await
    .ok()
}

fn logsource_text(logsource: &LogSource) -> String {
    [&logsource.product, &logsource.service, &logsource.category]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" / ")
}

fn level_badge(level: Option<Level>) -> Markup {
    html! {
        @if let Some(level) = level {
            span class=(format!("level level-{}", level.as_str())) { (level.as_str()) }
        }
    }
}

fn reload_section(caller: &Caller, last: Option<&ReloadOutcome>) -> Markup {
    html! {
        section.reload {
            @if caller.principal.may(Permission::ManageRules) {
                form.reload method="post" action="/rules/reload" {
                    input type="hidden" name="csrf" value=(csrf(caller));
                    button type="submit" { "Reload rules from their files" }
                }
            }
            @if let Some(last) = last {
                @let when = last.at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
                @if last.swapped {
                    p.notice {
                        "Last change (" (last.trigger) ", " (when) "): generation " (last.generation)
                        " is running, with " (last.rules) " rules and correlations."
                    }
                } @else {
                    div.error {
                        p {
                            "Last reload (" (last.trigger) ", " (when) ") was refused; the rules running stay (generation "
                            (last.generation) ")."
                        }
                        @if let Some(message) = &last.message { p { (message) } }
                        @if !last.errors.is_empty() { (failures_table(&last.errors)) }
                    }
                }
            }
        }
    }
}

fn failures_table(failures: &[RuleFailure]) -> Markup {
    html! {
        table.failures {
            thead { tr { th { "File" } th { "Line" } th { "Reason" } } }
            tbody {
                @for failure in failures {
                    tr {
                        td { code { (failure.file) } }
                        td { (failure.line) }
                        td { (failure.reason) }
                    }
                }
            }
        }
    }
}

fn filters_form(params: &ListParams) -> Markup {
    html! {
        form.filters method="get" action="/rules" {
            label { "Text " input type="text" name="q" value=(params.q) placeholder="title, id, tag or file"; }
            " "
            label { "Level "
                select name="level" {
                    option value="" selected[params.level.is_empty()] { "any" }
                    @for level in Level::ALL {
                        option value=(level.as_str()) selected[params.level == level.as_str()] { (level.as_str()) }
                    }
                }
            }
            " "
            label { "State "
                select name="enabled" {
                    option value="" selected[params.enabled.is_empty()] { "any" }
                    option value="yes" selected[params.enabled == "yes"] { "enabled" }
                    option value="no" selected[params.enabled == "no"] { "disabled" }
                }
            }
            " "
            button type="submit" { "Filter" }
        }
    }
}

fn not_detecting() -> Markup {
    html! {
        p.muted { "This process does not run detection, so it has loaded no rules; the detecting process has the rules pages." }
    }
}

fn summary(catalog: &RuleCatalog) -> Markup {
    html! {
        p.summary {
            (catalog.len()) " rules and correlations loaded, "
            (catalog.failures().len()) " failed to load, "
            (catalog.disabled()) " disabled (generation " (catalog.generation()) ")."
        }
    }
}

async fn list_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ListParams>,
) -> Response {
    let catalog = state.rules.catalog();
    let now = Utc::now();
    let hits = if catalog.is_loaded() {
        hits(&state, &caller, now).await
    } else {
        None
    };
    let shown: Vec<(&String, &RuleInfo)> = catalog
        .iter()
        .filter(|(id, rule)| params.keeps(id, rule))
        .collect();
    let body = html! {
        h1 { "Rules" }
        @if !catalog.is_loaded() {
            (not_detecting())
        } @else {
            (summary(&catalog))
            (reload_section(&caller, state.rules.last_reload().as_ref()))
            (filters_form(&params))
            @if hits.is_none() {
                p.muted { "Hit counts are unavailable: the alerts index could not be read (see the server log)." }
            }
            table.rules {
                thead {
                    tr {
                        th { "Title" } th { "Level" } th { "Logsource" } th { "Status" } th { "File" }
                        th { "State" } th { "Hits 24 h" } th { "Hits 7 d" } th { "Last hit" }
                    }
                }
                tbody {
                    @for (id, rule) in &shown {
                        @let hit = hits.as_ref().and_then(|hits| hits.get(id.as_str()));
                        tr {
                            td {
                                a href=(format!("/rules/{}", encode(id))) { (rule.title) }
                                @if rule.correlation { " " span.muted { "(correlation)" } }
                            }
                            td { (level_badge(rule.level)) }
                            td { (logsource_text(&rule.logsource)) }
                            td { (rule.status.as_deref().unwrap_or("")) }
                            td { code { (rule.file) ":" (rule.line) } }
                            td { @if rule.enabled { "enabled" } @else { strong { "disabled" } } }
                            td.count { (hit.map_or(0, |h| h.last_24h)) }
                            td.count { (hit.map_or(0, |h| h.last_7d)) }
                            @match hit.and_then(|h| h.last_hit) {
                                Some(time) => td.time { (time.format("%Y-%m-%d %H:%M:%S")) },
                                None => td.muted { "never" },
                            }
                        }
                    }
                }
            }
            @if shown.is_empty() { p.muted { "No rule fits these filters." } }
            h2 { "Load failures" }
            @if catalog.failures().is_empty() {
                p.muted { "Every rule file loaded." }
            } @else {
                (failures_table(catalog.failures()))
            }
        }
    };
    layout("Rules", Some(&caller), body).into_response()
}

async fn rule_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let catalog = state.rules.catalog();
    let Some(rule) = catalog.get(&id) else {
        let body = html! {
            h1 { "Rule not found" }
            @if catalog.is_loaded() {
                p { "No loaded rule has the id " code { (id) } "." }
            } @else {
                (not_detecting())
            }
            p { a href="/rules" { "All rules" } }
        };
        return (
            StatusCode::NOT_FOUND,
            layout("Rule not found", Some(&caller), body),
        )
            .into_response();
    };
    let hits = hits(&state, &caller, Utc::now()).await;
    let hit = hits.as_ref().and_then(|hits| hits.get(&id));
    let body = html! {
        p { a href="/rules" { "All rules" } }
        h1 { (rule.title) }
        dl.facts {
            dt { "Id" } dd { code { (id) } }
            dt { "Kind" } dd { @if rule.correlation { "correlation" } @else { "detection rule" } }
            dt { "Level" } dd { (level_badge(rule.level)) }
            dt { "Status" } dd { (rule.status.as_deref().unwrap_or("not given")) }
            @if !rule.correlation { dt { "Logsource" } dd { (logsource_text(&rule.logsource)) } }
            dt { "File" } dd { code { (rule.file) ":" (rule.line) } }
            dt { "State" } dd { @if rule.enabled { "enabled" } @else { strong { "disabled" } } }
            @if let Some(description) = &rule.description { dt { "Description" } dd { (description) } }
            @if !rule.tags.is_empty() { dt { "Tags" } dd { (rule.tags.join(", ")) } }
            dt { "Hits" } dd {
                @match hit {
                    Some(hit) => {
                        (hit.last_24h) " in 24 h, " (hit.last_7d) " in 7 d"
                        @if let Some(last) = hit.last_hit { ", last " (last.format("%Y-%m-%d %H:%M:%S UTC")) }
                    },
                    None => { "none recorded" },
                }
            }
        }
        @if caller.principal.may(Permission::ManageRules) {
            form.rule-state method="post" action=(format!("/rules/{}/state", encode(&id))) {
                input type="hidden" name="csrf" value=(csrf(&caller));
                input type="hidden" name="enabled" value=(if rule.enabled { "false" } else { "true" });
                button type="submit" { @if rule.enabled { "Disable this rule" } @else { "Enable this rule" } }
            }
        }
        h2 { "YAML" }
        @if rule.yaml.is_empty() {
            p.muted { "The file's text is not available." }
        } @else {
            // Focusable, so that a keyboard can scroll a long rule sideways.
            pre.yaml tabindex="0" aria-label="The rule's YAML" { (rule.yaml) }
        }
    };
    layout(&rule.title, Some(&caller), body).into_response()
}
