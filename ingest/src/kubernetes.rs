//! The Kubernetes audit webhook: the API server's webhook backend posts `EventList` batches
//! (up to 400 events by default) to `POST /api/v1/webhooks/kubernetes-audit/{source}`.
//!
//! The reply is 200 only once every event is durable; a storage failure answers 503 so that
//! the API server's batch backend retries the batch. `audit.k8s.io/v1` and `v1beta1` lists
//! are accepted as they are, each event kept byte for byte.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::http::{error_response, read_body, report_response};
use crate::{IncomingRecord, Ingestor, SourceSpec};

pub fn router(ingestor: Arc<Ingestor>) -> Router {
    Router::new()
        .route(
            "/api/v1/webhooks/kubernetes-audit/{source}",
            post(receive_event_list),
        )
        .with_state(ingestor)
}

#[derive(Deserialize)]
struct EventList<'a> {
    #[serde(default)]
    kind: Option<&'a str>,
    #[serde(rename = "apiVersion", default)]
    api_version: Option<&'a str>,
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

/// What identifies an audit event: the API server writes one event per stage of a request,
/// all with the request's audit id.
#[derive(Deserialize)]
struct AuditKey<'a> {
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    stage: Option<std::borrow::Cow<'a, str>>,
}

/// The natural key of an audit event, when it has an audit id.
pub fn audit_event_key(raw: &str) -> Option<Vec<u8>> {
    let key: AuditKey = serde_json::from_str(raw).ok()?;
    let audit_id = key.audit_id?;
    // Length-prefixed: an audit id may hold any character, NUL included.
    let stage = key.stage.as_deref().unwrap_or_default();
    let mut bytes = Vec::with_capacity(16 + audit_id.len() + stage.len());
    bytes.extend_from_slice(&(audit_id.len() as u64).to_le_bytes());
    bytes.extend_from_slice(audit_id.as_bytes());
    bytes.extend_from_slice(&(stage.len() as u64).to_le_bytes());
    bytes.extend_from_slice(stage.as_bytes());
    Some(bytes)
}

async fn receive_event_list(
    State(ingestor): State<Arc<Ingestor>>,
    Path(source): Path<String>,
    body: Body,
) -> Response {
    // A name that already stands for another kind of log (`cloudtrail`, or one configured
    // as such) is not a cluster: were it taken, a token bound to that name could write
    // Kubernetes events under it, and the rules and searches for either kind would be fooled.
    let kind = ingestor.spec_for(&source).kind;
    if kind != SourceSpec::generic().kind && kind != SourceSpec::kubernetes_audit().kind {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "the source {source:?} is a {kind} source, not a Kubernetes cluster; name the \
                 cluster instead"
            ),
        );
    }
    let body = match read_body(&ingestor, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // serde reads a struct from a JSON array too, so `[]` would pass as an empty list.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return error_response(
            StatusCode::BAD_REQUEST,
            "not an audit EventList: the body must be a JSON object with kind EventList".into(),
        );
    }
    let list: EventList = match serde_json::from_slice(&body) {
        Ok(list) => list,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("not an audit EventList: {e}"),
            )
        }
    };
    if list.kind.is_some_and(|kind| kind != "EventList")
        || list
            .api_version
            .is_some_and(|version| !version.starts_with("audit.k8s.io/"))
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "expected kind EventList of audit.k8s.io, got {} {}",
                list.kind.unwrap_or("?"),
                list.api_version.unwrap_or("?")
            ),
        );
    }
    // The API server never sends an empty batch; an empty one is a client that is wrong.
    if list.items.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the EventList has no items: send at least one audit event".into(),
        );
    }
    let records = list
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| IncomingRecord {
            bytes: item.get().as_bytes(),
            position: index as u64 + 1,
            key: audit_event_key(item.get()),
            time: None,
        });
    let result = ingestor
        .ingest_records(&source, &SourceSpec::kubernetes_audit(), records)
        .await;
    // Quarantined items are kept and listed; retrying the batch would not fix them.
    report_response(result, StatusCode::OK)
}
