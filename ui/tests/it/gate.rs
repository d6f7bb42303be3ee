//! The access gate in front of stand-in handlers: a trusted single sign-on proxy's user and
//! groups, the client's address behind it, the session cookie's name over TLS, routes the
//! table lacks, and ingest tokens bound to sources.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use tempfile::TempDir;
use tower::ServiceExt;
use vigil_access::{AccessConfig, AccessDb, ProxyConfig, Role};
use vigil_ui::auth::{client_address, session_id, ClientAddress};
use vigil_ui::{guard, ApiToken, Caller, Gate};

const BOOTSTRAP: &str = "gate-test-bootstrap-token";

fn proxy() -> ProxyConfig {
    ProxyConfig {
        trusted: vec!["10.0.0.0/8".parse().unwrap()],
        user_header: "x-forwarded-user".into(),
        groups_header: "x-forwarded-groups".into(),
        roles: BTreeMap::from([
            ("soc".to_owned(), Role::Analyst),
            ("secops".to_owned(), Role::Admin),
        ]),
        default_role: None,
    }
}

fn gate(dir: &TempDir, tls: bool) -> Arc<Gate> {
    let config = AccessConfig {
        proxy: Some(proxy()),
        ..AccessConfig::default()
    };
    Arc::new(Gate::new(
        Arc::new(AccessDb::open_in(dir.path()).unwrap()),
        Some(ApiToken::new(BOOTSTRAP)),
        config,
        tls,
    ))
}

/// Says who the gate let in and from where.
async fn who(caller: Option<Extension<Caller>>, address: Extension<ClientAddress>) -> String {
    let address = address.0 .0.map(|a| a.to_string()).unwrap_or_default();
    match caller {
        Some(Extension(caller)) => format!("{} {address}", caller.principal.actor()),
        None => format!("nobody {address}"),
    }
}

/// Stand-ins on real routes of the table, and one route the table lacks.
fn app(gate: Arc<Gate>) -> Router {
    let router = Router::new()
        .route("/api/v1/whoami", get(who))
        .route("/api/v1/ingest/{source}", post(who))
        // DELETE / is served here but has no entry in the route table.
        .route("/", get(who).delete(who))
        .route("/audit", get(who))
        .route("/login", get(who))
        .route("/api/v1/not-in-the-table", get(who));
    guard(router, gate)
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    peer: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_trusted_proxy_names_the_user_and_anyone_else_is_ignored() {
    let dir = TempDir::new().unwrap();
    let app = app(gate(&dir, false));
    let alice = [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-groups", "staff, soc"),
    ];

    let (status, body) = send(&app, "GET", "/", "10.1.2.3", &alice).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice 10.1.2.3"));
    // The API takes bearer tokens only: the proxy's sign-in rides on a cookie a browser
    // also sends with another site's requests, and the API has no CSRF token to check.
    let (status, _) = send(&app, "POST", "/api/v1/ingest/x", "10.1.2.3", &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, "GET", "/api/v1/whoami", "10.1.2.3", &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An analyst is not an admin.
    let (status, _) = send(&app, "GET", "/audit", "10.1.2.3", &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = [
        ("x-forwarded-user", "root"),
        ("x-forwarded-groups", "soc,secops"),
    ];
    let (status, _) = send(&app, "GET", "/audit", "10.9.9.9", &admin).await;
    assert_eq!(status, StatusCode::OK);

    // The same headers from anywhere else name no one.
    let (status, _) = send(&app, "GET", "/api/v1/whoami", "192.0.2.7", &alice).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&app, "GET", "/", "192.0.2.7", &alice).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A user in no mapped group is refused, not treated as signed out.
    let stranger = [("x-forwarded-user", "eve"), ("x-forwarded-groups", "staff")];
    let (status, _) = send(&app, "GET", "/", "10.1.2.3", &stranger).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A name that is not a valid user name, or two of them, names no one.
    for forged in [
        &[
            ("x-forwarded-user", "token:ci"),
            ("x-forwarded-groups", "secops"),
        ][..],
        &[
            ("x-forwarded-user", "<b>eve</b>"),
            ("x-forwarded-groups", "secops"),
        ][..],
        &[
            ("x-forwarded-user", "eve"),
            ("x-forwarded-user", "root"),
            ("x-forwarded-groups", "secops"),
        ][..],
    ] {
        let (status, _) = send(&app, "GET", "/", "10.1.2.3", forged).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{forged:?}");
    }
    // A method the router serves on a known path, but the table does not list, is refused
    // to everyone, however signed in.
    let (status, _) = send(&app, "DELETE", "/", "10.9.9.9", &admin).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A public page still opens for them.
    let (status, body) = send(&app, "GET", "/login", "10.1.2.3", &stranger).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "nobody 10.1.2.3"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_rightmost_forwarded_address() {
    let dir = TempDir::new().unwrap();
    let gate = gate(&dir, false);
    let peer = |ip: &str| ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 1234));
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("203.0.113.66, 198.51.100.4"),
    );
    let from = |ip: &str| client_address(&gate, &headers, Some(&peer(ip))).map(|a| a.to_string());
    assert_eq!(from("10.0.0.5").as_deref(), Some("198.51.100.4"));
    // Written by a client that is not the proxy: its own address stands.
    assert_eq!(from("192.0.2.9").as_deref(), Some("192.0.2.9"));
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("not an address"),
    );
    let from = |ip: &str| client_address(&gate, &headers, Some(&peer(ip))).map(|a| a.to_string());
    assert_eq!(from("10.0.0.5").as_deref(), Some("10.0.0.5"));
    assert_eq!(client_address(&gate, &headers, None), None);

    let app = app(gate);
    let (_, body) = send(
        &app,
        "GET",
        "/api/v1/whoami",
        "10.0.0.5",
        &[
            ("authorization", &format!("Bearer {BOOTSTRAP}")),
            ("x-forwarded-for", "198.51.100.4"),
        ],
    )
    .await;
    assert_eq!(body, "bootstrap-token 198.51.100.4");
}

#[test]
fn over_tls_only_the_host_prefixed_cookie_counts() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "cookie",
        HeaderValue::from_static("theme=dark; vigil_session=plain"),
    );
    assert_eq!(session_id(&headers, false), Some("plain"));
    assert_eq!(session_id(&headers, true), None);
    headers.insert(
        "cookie",
        HeaderValue::from_static("vigil_session=plain; __Host-vigil_session=secure"),
    );
    assert_eq!(session_id(&headers, true), Some("secure"));
    headers.insert("cookie", HeaderValue::from_static("vigil_session="));
    assert_eq!(session_id(&headers, false), None);
}

#[tokio::test]
async fn a_route_missing_from_the_table_is_refused_to_everyone() {
    let dir = TempDir::new().unwrap();
    let app = app(gate(&dir, false));
    let bearer = format!("Bearer {BOOTSTRAP}");
    let (status, _) = send(
        &app,
        "GET",
        "/api/v1/not-in-the-table",
        "127.0.0.1",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A method the table does not list on a route it knows is the router's 405.
    let (status, _) = send(
        &app,
        "DELETE",
        "/api/v1/whoami",
        "127.0.0.1",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn ingest_tokens_post_only_to_their_sources_and_no_one_to_the_audit_source() {
    let dir = TempDir::new().unwrap();
    let gate = gate(&dir, false);
    let secret = gate
        .db
        .create_token("trail", &"ingest:cloudtrail".parse().unwrap(), None, "test")
        .unwrap()
        .secret;
    let app = app(gate);
    let bearer = format!("Bearer {}", secret.expose());
    let post = |uri: &'static str, bearer: String| {
        let app = app.clone();
        async move {
            send(
                &app,
                "POST",
                uri,
                "127.0.0.1",
                &[("authorization", &bearer)],
            )
            .await
            .0
        }
    };
    assert_eq!(
        post("/api/v1/ingest/cloudtrail", bearer.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        post("/api/v1/ingest/waf", bearer.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(
            "/api/v1/ingest/vigil%2Daudit",
            format!("Bearer {BOOTSTRAP}")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post("/api/v1/ingest/vigil-audit", bearer.clone()).await,
        StatusCode::FORBIDDEN
    );
    // Without credentials, no one posts.
    let (status, _) = send(&app, "POST", "/api/v1/ingest/cloudtrail", "127.0.0.1", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
