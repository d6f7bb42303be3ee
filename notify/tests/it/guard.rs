//! The guard at connect time, through reqwest as receivers and actions use it. Names resolve
//! through a static table, so no test depends on DNS and none sends a packet anywhere but
//! loopback: a refused address is dropped before any connection is tried.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use vigil_notify::guard::{Guard, StaticHosts};

use crate::common::HttpReceiver;

fn guard(allow_link_local: bool) -> Guard {
    Guard::new(allow_link_local).with_static_hosts(StaticHosts::from([
        (
            "rebound.test".to_owned(),
            vec!["169.254.169.254".parse().unwrap()],
        ),
        ("local.test".to_owned(), vec!["127.0.0.1".parse().unwrap()]),
    ]))
}

fn chain(error: &reqwest::Error) -> String {
    std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[tokio::test]
async fn a_name_resolving_to_the_metadata_service_is_refused_at_connect() {
    let client = guard(false).client_builder().build().unwrap();
    // The name passes the check at load (it is no metadata name); the connection is refused.
    let url = reqwest::Url::parse("http://rebound.test:8080/latest/meta-data/").unwrap();
    assert!(guard(false).check_url(&url).is_ok());
    let error = client.get(url).send().await.unwrap_err();
    let text = chain(&error);
    assert!(
        error.is_connect() && text.contains("rebound.test resolves only to link-local"),
        "{text}"
    );
}

#[tokio::test]
async fn loopback_is_reached_through_the_guards_resolver_and_redirects_are_not_followed() {
    let receiver = HttpReceiver::start(std::sync::Arc::new(|_| {
        (
            StatusCode::FOUND,
            [("Location", "http://169.254.169.254/latest/meta-data/")],
        )
            .into_response()
    }))
    .await;
    let client = guard(false).client_builder().build().unwrap();
    // local.test exists only in the guard's table: reaching it shows the guard resolved it.
    let url = format!("http://local.test:{}/hook", receiver.addr.port());
    let response = client.post(url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(receiver.recorded().len(), 1);
}

#[tokio::test]
async fn literal_metadata_addresses_are_refused_unless_allowed() {
    let url = reqwest::Url::parse("http://169.254.169.254/latest/meta-data/").unwrap();
    assert!(guard(false).check_url(&url).is_err());
    assert!(guard(true).check_url(&url).is_ok());
    // Allowed, the resolver keeps the address (nothing connects to it here).
    assert_eq!(
        guard(true).resolve("rebound.test", 80).await.unwrap(),
        vec!["169.254.169.254:80".parse().unwrap()]
    );
}
