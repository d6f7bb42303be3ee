//! Bulk triage from the alerts list: `POST /alerts/bulk`, the one form around the list's
//! checkboxes (one per alert, one per group). It is checked like every other form (the
//! session's CSRF token, same origin; the gate has already refused those who may not
//! triage), changes at most [`BULK_AT_MOST`] alerts in one store batch, audits each, and
//! sends the browser back to the list with its filters and a summary of what changed and
//! what was refused.

use std::collections::BTreeMap;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Extension, Form, Router};
use vigil_access::{AuditRecord, Outcome};
use vigil_store::{AlertChange, AlertFilter, AlertStatus, CloseReason};

use crate::alerts_page::{BulkOutcome, ListParams, BULK_AT_MOST, GROUPED_AT_MOST};
use crate::auth::Caller;
use crate::frame::check_form;
use crate::pages::change_detail;
use crate::{call_store, CallError, UiState};

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/alerts/bulk", post(bulk_triage))
}

/// Parses the bulk form by hand: it repeats `id` and `group`, which a struct cannot hold.
struct BulkForm {
    csrf: String,
    action: String,
    reason: String,
    assignee: String,
    ids: Vec<String>,
    groups: Vec<String>,
    list: ListParams,
}

impl BulkForm {
    fn read(pairs: Vec<(String, String)>) -> BulkForm {
        let mut form = BulkForm {
            csrf: String::new(),
            action: String::new(),
            reason: String::new(),
            assignee: String::new(),
            ids: Vec::new(),
            groups: Vec::new(),
            list: ListParams::default(),
        };
        for (key, value) in pairs {
            match key.as_str() {
                "csrf" => form.csrf = value,
                "action" => form.action = value,
                "reason" => form.reason = value,
                // Not `assignee`, which is the list's filter, carried along.
                "assign_to" => form.assignee = value,
                "id" => form.ids.push(value),
                "group" => form.groups.push(value),
                _ => {
                    form.list.set(&key, value);
                }
            }
        }
        form
    }

    /// The change the form asks for, or why it is not one.
    fn change(&self) -> Result<AlertChange, String> {
        match self.action.as_str() {
            "acknowledge" => Ok(AlertChange {
                status: Some(AlertStatus::Acknowledged),
                ..AlertChange::default()
            }),
            "close" => {
                let reason = CloseReason::parse(&self.reason).ok_or_else(|| {
                    "closing needs a reason: resolved, false_positive, duplicate or other"
                        .to_owned()
                })?;
                Ok(AlertChange {
                    status: Some(AlertStatus::Closed),
                    reason: Some(reason),
                    ..AlertChange::default()
                })
            }
            "assign" => Ok(AlertChange {
                assignee: Some(self.assignee.trim().to_owned()),
                ..AlertChange::default()
            }),
            other => Err(format!(
                "unknown action {other:?}; use acknowledge, close or assign"
            )),
        }
    }
}

/// How one alert of a bulk request fared.
enum Fate {
    Changed,
    RefusedSame,
    RefusedClosed,
    RefusedOther,
}

/// The alerts the form names: those ticked one by one, and those of each ticked group as
/// the list's filters (carried in the form) show it, each once, in order.
fn selected_ids(
    store: &vigil_store::Store,
    form: &BulkForm,
) -> Result<Vec<String>, vigil_store::StoreError> {
    let mut ids: Vec<String> = form
        .ids
        .iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    if !form.groups.is_empty() {
        // A filter the page showed was valid; one that is not now selects nothing.
        if let Ok(filter) = form.list.filter(GROUPED_AT_MOST) {
            for token in &form.groups {
                let Ok((rule, group)) =
                    serde_json::from_str::<(String, BTreeMap<String, String>)>(token)
                else {
                    continue;
                };
                let of_rule = AlertFilter {
                    rule: Some(rule),
                    ..filter.clone()
                };
                for view in store.list_alerts(&of_rule)? {
                    if view.alert.group == group {
                        ids.push(view.alert.id.to_string());
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    Ok(ids)
}

/// How a change went, with the reason of a refusal.
fn fate_of(outcome: Result<(), vigil_store::StoreError>) -> (Fate, Option<String>) {
    use vigil_store::StoreError;
    match outcome {
        Ok(()) => (Fate::Changed, None),
        Err(StoreError::InvalidChange(message)) => {
            let fate = if message.starts_with("the alert is already") {
                Fate::RefusedSame
            } else if message.starts_with("a closed alert cannot") {
                Fate::RefusedClosed
            } else {
                Fate::RefusedOther
            };
            (fate, Some(message))
        }
        Err(error) => (Fate::RefusedOther, Some(error.to_string())),
    }
}

async fn bulk_triage(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(pairs)) = form else {
        // Without the session's token this is no more than a refusal.
        if let Err(refused) = check_form(&caller, &headers, "") {
            return refused.into_response();
        }
        return (StatusCode::BAD_REQUEST, "the form is malformed\n").into_response();
    };
    let form = BulkForm::read(pairs);
    if let Err(refused) = check_form(&caller, &headers, &form.csrf) {
        return refused.into_response();
    }
    let change = match form.change() {
        Ok(change) => change,
        Err(problem) => return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response(),
    };
    let actor = caller.principal.actor();
    let detail = change_detail(&change);
    let done = match change.status {
        Some(AlertStatus::Acknowledged) => "acknowledge",
        Some(_) => "close",
        None => "assign",
    };
    let store = state.store.clone();
    let work = {
        let actor = actor.clone();
        call_store(move || {
            let mut ids = selected_ids(&store, &form)?;
            let skipped = ids.len().saturating_sub(BULK_AT_MOST);
            ids.truncate(BULK_AT_MOST);
            let outcomes = store.update_alerts(&ids, &change, &actor)?;
            let fates = ids
                .into_iter()
                .zip(outcomes)
                .map(|(id, outcome)| {
                    let (fate, reason) = fate_of(outcome);
                    (id, fate, reason)
                })
                .collect::<Vec<_>>();
            Ok((form.list, skipped, fates))
        })
        .await
    };
    let (list, skipped, fates) = match work {
        Ok(done) => done,
        Err(CallError::BadQuery(message, _) | CallError::Invalid(message)) => {
            return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
        }
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the bulk change failed; the server log has the details\n",
            )
                .into_response()
        }
    };
    let mut outcome = BulkOutcome {
        done: done.to_owned(),
        skipped,
        ..BulkOutcome::default()
    };
    // One `alert.update` entry per alert, as a change through the alert's own page or the
    // API writes: whoever reads the audit log for one alert finds its bulk changes too, and
    // no entry grows with the size of the selection.
    for (id, fate, reason) in fates {
        let success = matches!(fate, Fate::Changed);
        match fate {
            Fate::Changed => outcome.changed += 1,
            Fate::RefusedSame => outcome.refused_same += 1,
            Fate::RefusedClosed => outcome.refused_closed += 1,
            Fate::RefusedOther => outcome.refused_other += 1,
        }
        let mut detail = detail.clone();
        if let serde_json::Value::Object(map) = &mut detail {
            map.insert("bulk".into(), true.into());
        }
        state
            .gate
            .audit(AuditRecord {
                actor: actor.clone(),
                action: "alert.update".into(),
                outcome: if success {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                target: Some(id),
                client_address: caller.address.map(|a| a.to_string()),
                reason,
                detail,
            })
            .await;
    }
    let summary = format!(
        "done={}&changed={}&refused_same={}&refused_closed={}&refused_other={}&skipped={}",
        outcome.done,
        outcome.changed,
        outcome.refused_same,
        outcome.refused_closed,
        outcome.refused_other,
        outcome.skipped
    );
    let query = list.query_with(&[]);
    let target = if query.is_empty() {
        format!("/?{summary}")
    } else {
        format!("/?{query}&{summary}")
    };
    Redirect::to(&target).into_response()
}
