//! Identity in the JSON API: `GET /api/v1/whoami` for anyone with credentials, and for
//! admins the users (`GET`/`POST /api/v1/users`, `POST /api/v1/users/{name}/disable`,
//! `POST /api/v1/users/{name}/password`), the API tokens (`GET`/`POST /api/v1/tokens`,
//! `DELETE /api/v1/tokens/{name}`) and the audit log (`GET /api/v1/audit`: `actor`,
//! `action`, `before`, `limit`).
//!
//! The access check ([`crate::auth::authorize`]) has already decided who may call each route;
//! the handlers here record every change in the audit log, successful or refused, under the
//! caller's name and address.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_access::{
    password, AccessDb, AccessError, AuditFilter, AuditRecord, Outcome, Principal, Role, Scopes,
    Secret,
};

use crate::auth::Caller;
use crate::UiState;

/// Audit entries a page of `GET /api/v1/audit` holds unless `limit` says otherwise.
const DEFAULT_AUDIT_LIMIT: usize = 100;
const MAX_AUDIT_LIMIT: usize = 1000;
/// The furthest a token's expiry may be set: ten years.
const MAX_TOKEN_DAYS: u32 = 3650;

pub(crate) fn router() -> Router<UiState> {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}/disable", post(disable_user))
        .route("/api/v1/users/{name}/password", post(set_password))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
        .route("/api/v1/audit", get(audit_log))
}

/// Who the caller is, and what they may do: a user's role, a token's scopes.
async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    let actor = caller.principal.actor();
    let body = match &caller.principal {
        Principal::User { name, role, via } => json!({
            "actor": actor,
            "kind": "user",
            "name": name,
            "role": role,
            "via": match via {
                vigil_access::Via::Session => "session",
                vigil_access::Via::Proxy => "proxy",
            },
        }),
        Principal::Token { name, scopes } => json!({
            "actor": actor,
            "kind": "token",
            "name": name,
            "scopes": scopes.to_string(),
        }),
        Principal::Bootstrap => json!({
            "actor": actor,
            "kind": "bootstrap",
            "scopes": "admin",
        }),
    };
    Json(body).into_response()
}

/// Why an access call made for a request failed, as the client sees it.
enum Failure {
    Access(AccessError),
    /// The blocking task died; details are in the log.
    Task,
}

impl Failure {
    /// What the audit log records as the reason.
    fn reason(&self) -> String {
        match self {
            Failure::Access(AccessError::Invalid(message)) => message.clone(),
            Failure::Access(
                error @ (AccessError::NotFound { .. } | AccessError::Exists { .. }),
            ) => error.to_string(),
            _ => "internal_error".to_owned(),
        }
    }

    fn response(self) -> Response {
        let (status, message) = match self {
            Failure::Access(AccessError::Invalid(message)) => (StatusCode::BAD_REQUEST, message),
            Failure::Access(error @ AccessError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, error.to_string())
            }
            Failure::Access(error @ AccessError::Exists { .. }) => {
                (StatusCode::CONFLICT, error.to_string())
            }
            Failure::Access(error) => {
                tracing::error!(%error, "an access database request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the access database failed; see the server log".to_owned(),
                )
            }
            Failure::Task => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request failed; see the server log".to_owned(),
            ),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// Runs an access database call off the async workers: SQLite and argon2 block.
async fn access_call<T: Send + 'static>(
    state: &UiState,
    call: impl FnOnce(&AccessDb) -> Result<T, AccessError> + Send + 'static,
) -> Result<T, Failure> {
    let db = state.gate.db.clone();
    match tokio::task::spawn_blocking(move || call(&db)).await {
        Ok(result) => result.map_err(Failure::Access),
        Err(error) => {
            tracing::error!(%error, "an access database task failed");
            Err(Failure::Task)
        }
    }
}

/// Records a change made by `caller`: a success, or with `failure` a refusal and its reason.
async fn audit_change(
    state: &UiState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: Value,
    failure: Option<&Failure>,
) {
    let (outcome, reason) = match failure {
        None => (Outcome::Success, None),
        Some(failure) => (Outcome::Failure, Some(failure.reason())),
    };
    state
        .gate
        .audit(AuditRecord {
            actor: caller.principal.actor(),
            action: action.to_owned(),
            outcome,
            target: Some(target.to_owned()),
            client_address: caller.address.map(|address| address.to_string()),
            reason,
            detail,
        })
        .await;
}

/// Refuses a change the request itself gets wrong (an unknown role or scope), recording the
/// attempt as the database's own refusals are.
async fn refuse(
    state: &UiState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: Value,
    message: String,
) -> Response {
    let failure = Failure::Access(AccessError::Invalid(message));
    audit_change(state, caller, action, target, detail, Some(&failure)).await;
    failure.response()
}

fn bad_body(expected: &str, rejection: JsonRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": format!("the body must be a JSON object {expected}: {}", rejection.body_text())
        })),
    )
        .into_response()
}

async fn list_users(State(state): State<UiState>) -> Response {
    match access_call(&state, |db| db.users()).await {
        Ok(users) => Json(json!({ "users": users })).into_response(),
        Err(failure) => failure.response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: String,
    password: Option<String>,
}

/// Adds a user. Without a password one is generated and returned, once.
async fn add_user(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    let new =
        match body {
            Ok(Json(new)) => new,
            Err(rejection) => return bad_body(
                "with name, role (viewer, analyst, rule-author or admin) and optionally password",
                rejection,
            ),
        };
    let role = match new.role.parse::<Role>() {
        Ok(role) => role,
        Err(message) => {
            let detail = json!({ "role": new.role });
            return refuse(&state, &caller, "user.add", &new.name, detail, message).await;
        }
    };
    let generated = new.password.is_none();
    let name = new.name.clone();
    let result = access_call(&state, move |db| {
        let password = match new.password {
            Some(password) => Secret::new(password),
            None => password::generate()?,
        };
        let user = db.add_user(&new.name, role, &password)?;
        Ok((user, password))
    })
    .await;
    let detail = json!({ "role": role, "password": if generated { "generated" } else { "given" } });
    audit_change(
        &state,
        &caller,
        "user.add",
        &name,
        detail,
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok((user, password)) => {
            let mut body = json!({ "user": user });
            if generated {
                body["password"] = Value::from(password.expose());
            }
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(failure) => failure.response(),
    }
}

/// Disables a user, which also ends their sessions.
async fn disable_user(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    let result = access_call(&state, move |db| db.disable_user(&target)).await;
    audit_change(
        &state,
        &caller,
        "user.disable",
        &name,
        Value::Null,
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(json!({ "disabled": name })).into_response(),
        Err(failure) => failure.response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// Sets a user's password, which also ends their sessions.
async fn set_password(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Response {
    let new = match body {
        Ok(Json(new)) => new,
        Err(rejection) => return bad_body("with password", rejection),
    };
    let target = name.clone();
    let result = access_call(&state, move |db| {
        db.set_password(&target, &Secret::new(new.password))
    })
    .await;
    audit_change(
        &state,
        &caller,
        "user.password",
        &name,
        Value::Null,
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(json!({ "password_set": name })).into_response(),
        Err(failure) => failure.response(),
    }
}

async fn list_tokens(State(state): State<UiState>) -> Response {
    match access_call(&state, |db| db.tokens()).await {
        Ok(tokens) => Json(json!({ "tokens": tokens })).into_response(),
        Err(failure) => failure.response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenRequest {
    name: String,
    /// `ingest:cloudtrail,read`, as on the command line.
    scopes: String,
    expires_in_days: Option<u32>,
}

/// Creates a token and returns its secret, once.
async fn create_token(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewTokenRequest>, JsonRejection>,
) -> Response {
    let new = match body {
        Ok(Json(new)) => new,
        Err(rejection) => {
            return bad_body(
                "with name, scopes (such as \"ingest:cloudtrail,read\") and optionally \
                 expires_in_days",
                rejection,
            )
        }
    };
    let scopes = match new.scopes.parse::<Scopes>() {
        Ok(scopes) => scopes,
        Err(message) => {
            let detail = json!({ "scopes": new.scopes });
            return refuse(&state, &caller, "token.create", &new.name, detail, message).await;
        }
    };
    let expires = match new.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_TOKEN_DAYS).contains(&days) => {
            Some(Utc::now() + Duration::days(i64::from(days)))
        }
        Some(days) => {
            let message = format!(
                "expires_in_days: use 1 to {MAX_TOKEN_DAYS}, or leave it out for a token \
                 that does not expire"
            );
            let detail = json!({ "scopes": scopes.to_string(), "expires_in_days": days });
            return refuse(&state, &caller, "token.create", &new.name, detail, message).await;
        }
    };
    let detail = json!({ "scopes": scopes.to_string(), "expires": expires });
    let name = new.name.clone();
    let created_by = caller.principal.actor();
    let result = access_call(&state, move |db| {
        db.create_token(&new.name, &scopes, expires, &created_by)
    })
    .await;
    audit_change(
        &state,
        &caller,
        "token.create",
        &name,
        detail,
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(token) => (
            StatusCode::CREATED,
            Json(json!({ "token": token.info, "secret": token.secret.expose() })),
        )
            .into_response(),
        Err(failure) => failure.response(),
    }
}

/// Revokes a token; requests carrying it are refused from now on.
async fn revoke_token(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let target = name.clone();
    let result = access_call(&state, move |db| db.revoke_token(&target)).await;
    audit_change(
        &state,
        &caller,
        "token.revoke",
        &name,
        Value::Null,
        result.as_ref().err(),
    )
    .await;
    match result {
        Ok(()) => Json(json!({ "revoked": name })).into_response(),
        Err(failure) => failure.response(),
    }
}

#[derive(Deserialize)]
struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// The audit log, newest first; `before` (the last `seq` of a page) continues it.
async fn audit_log(State(state): State<UiState>, Query(params): Query<AuditParams>) -> Response {
    let nonempty = |text: Option<String>| text.filter(|text| !text.trim().is_empty());
    let filter = AuditFilter {
        actor: nonempty(params.actor),
        action: nonempty(params.action),
        before: params.before,
        limit: params
            .limit
            .unwrap_or(DEFAULT_AUDIT_LIMIT)
            .clamp(1, MAX_AUDIT_LIMIT),
    };
    let limit = filter.limit;
    match access_call(&state, move |db| db.audit_entries(&filter)).await {
        Ok(entries) => {
            let next_before = (entries.len() == limit)
                .then(|| entries.last().map(|entry| entry.seq))
                .flatten();
            Json(json!({ "entries": entries, "next_before": next_before })).into_response()
        }
        Err(failure) => failure.response(),
    }
}
