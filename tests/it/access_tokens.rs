//! API tokens through the real binary: what an ingest-only token may not do, tokens bound to
//! a source, the reserved `vigil-audit` source, revocation taking effect at once, tokens and
//! users made through the API, and bearer brute force throttled per address.

use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};
use vigil_access::{AccessDb, Role, Secret};

use crate::common::{Vigil, TOKEN};

const LINE: &str = "{\"eventVersion\":\"1.09\",\"eventTime\":\"2026-11-28T10:00:00Z\",\"eventSource\":\"cloudtrail.amazonaws.com\",\"eventName\":\"DescribeTrails\",\"eventID\":\"tokens-1\"}\n";

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Vigil) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let vigil = Vigil::start_with_env(&data, env);
    (dir, vigil)
}

fn token(vigil: &Vigil, name: &str, scopes: &str) -> String {
    let db = AccessDb::open_in(&vigil.data_dir).unwrap();
    db.create_token(name, &scopes.parse().unwrap(), None, "test")
        .unwrap()
        .secret
        .expose()
        .to_owned()
}

fn post(vigil: &Vigil, bearer: &str, source: &str) -> Response {
    client()
        .post(vigil.url(&format!("/api/v1/ingest/{source}")))
        .bearer_auth(bearer)
        .body(LINE)
        .send()
        .unwrap()
}

fn get(vigil: &Vigil, bearer: &str, path: &str) -> Response {
    client()
        .get(vigil.url(path))
        .bearer_auth(bearer)
        .send()
        .unwrap()
}

fn error_of(response: Response) -> String {
    response.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn ingest_tokens_post_events_and_nothing_else() {
    let (_dir, vigil) = start(&[]);
    let shipper = token(&vigil, "shipper", "ingest");
    let cloudtrail = token(&vigil, "trail-shipper", "ingest:cloudtrail");
    let admin = token(&vigil, "ops", "admin");

    assert_eq!(
        post(&vigil, &shipper, "cloudtrail").status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(post(&vigil, &shipper, "waf").status(), StatusCode::ACCEPTED);
    for bearer in [&shipper, &cloudtrail] {
        for path in ["/api/v1/search?q=*", "/api/v1/alerts", "/api/v1/quarantine"] {
            assert_eq!(
                get(&vigil, bearer, path).status(),
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        let triage = client()
            .patch(vigil.url("/api/v1/alerts/0123456789abcdef0123456789abcdef"))
            .bearer_auth(bearer)
            .json(&json!({"status": "closed", "reason": "false_positive"}))
            .send()
            .unwrap();
        assert_eq!(triage.status(), StatusCode::FORBIDDEN);
    }

    // Bound to its source.
    assert_eq!(
        post(&vigil, &cloudtrail, "cloudtrail").status(),
        StatusCode::ACCEPTED
    );
    let elsewhere = post(&vigil, &cloudtrail, "waf");
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    assert!(error_of(elsewhere).contains("waf"));

    // Nobody forges Vigil's own audit events, however the name is written.
    for bearer in [shipper.as_str(), admin.as_str(), TOKEN] {
        for source in ["vigil-audit", "VIGIL-Audit"] {
            let forged = post(&vigil, bearer, source);
            assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{source}");
            assert!(error_of(forged).contains("reserved"));
        }
    }
    let forged = client()
        .post(vigil.url("/api/v1/webhooks/kubernetes-audit/vigil-audit"))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[test]
fn tokens_and_users_are_made_and_revoked_through_the_api_and_audited() {
    let (_dir, vigil) = start(&[]);
    let client = client();
    let created: Value = {
        let response = client
            .post(vigil.url("/api/v1/tokens"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "reader", "scopes": "read", "expires_in_days": 30}))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().unwrap()
    };
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(created["token"]["scopes"], "read");
    assert!(created["token"]["expires"].is_string());
    let listed = get(&vigil, TOKEN, "/api/v1/tokens").text().unwrap();
    assert!(
        listed.contains("\"reader\"") && !listed.contains(&secret),
        "{listed}"
    );

    let me: Value = get(&vigil, &secret, "/api/v1/whoami").json().unwrap();
    assert_eq!(me["actor"], "token:reader");
    assert_eq!(
        get(&vigil, &secret, "/api/v1/alerts").status(),
        StatusCode::OK
    );
    // A reader may not make itself an admin.
    let escalate = client
        .post(vigil.url("/api/v1/tokens"))
        .bearer_auth(&secret)
        .json(&json!({"name": "mine", "scopes": "admin"}))
        .send()
        .unwrap();
    assert_eq!(escalate.status(), StatusCode::FORBIDDEN);
    let bad = client
        .post(vigil.url("/api/v1/tokens"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "odd", "scopes": "write"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(bad).contains("unknown scope"));

    // Revoked through the API: refused at once.
    let revoked = client
        .delete(vigil.url("/api/v1/tokens/reader"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let after = get(&vigil, &secret, "/api/v1/alerts");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(after.headers()["www-authenticate"], "Bearer");
    // And through the database, as `vigil tokens revoke` does while Vigil runs.
    let shipper = token(&vigil, "shipper", "ingest");
    assert_eq!(
        post(&vigil, &shipper, "cloudtrail").status(),
        StatusCode::ACCEPTED
    );
    AccessDb::open_in(&vigil.data_dir)
        .unwrap()
        .revoke_token("shipper")
        .unwrap();
    assert_eq!(
        post(&vigil, &shipper, "cloudtrail").status(),
        StatusCode::UNAUTHORIZED
    );

    // A user without a password gets one, shown once, that signs in.
    let response = client
        .post(vigil.url("/api/v1/users"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "dana", "role": "analyst"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().unwrap();
    assert_eq!(user["user"]["role"], "analyst");
    let password = user["password"].as_str().unwrap().to_owned();
    let users = get(&vigil, TOKEN, "/api/v1/users").text().unwrap();
    assert!(users.contains("dana") && !users.contains(&password));
    let sign_in = client
        .post(vigil.url("/login"))
        .form(&[("username", "dana"), ("password", password.as_str())])
        .send()
        .unwrap();
    assert_eq!(sign_in.status(), StatusCode::SEE_OTHER);
    let again = client
        .post(vigil.url("/api/v1/users"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "dana", "role": "viewer", "password": "another long password"}))
        .send()
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let disabled = client
        .post(vigil.url("/api/v1/users/dana/disable"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);

    let log: Value = get(
        &vigil,
        TOKEN,
        "/api/v1/audit?actor=bootstrap-token&limit=100",
    )
    .json()
    .unwrap();
    let actions: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["target"].as_str().unwrap_or_default().to_owned(),
                entry["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("token.create", "reader", "success"),
        ("token.create", "odd", "failure"),
        ("token.revoke", "reader", "success"),
        ("user.add", "dana", "success"),
        ("user.add", "dana", "failure"),
        ("user.disable", "dana", "success"),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    let entry = &log["entries"][0];
    assert_eq!(entry["client_address"], "127.0.0.1");
}

/// The value of `vigil_auth_failures_total` for `kind` summed over reasons.
fn auth_failures(vigil: &Vigil, kind: &str) -> f64 {
    vigil.labelled_metric("vigil_auth_failures_total", &[&format!("kind=\"{kind}\"")])
}

#[test]
fn guessing_tokens_is_locked_out_per_address_but_good_tokens_still_pass() {
    let (_dir, vigil) = start(&[
        ("VIGIL_AUTH__THROTTLE__FREE_FAILURES", "2"),
        ("VIGIL_AUTH__THROTTLE__BACKOFF_BASE_MS", "1"),
        ("VIGIL_AUTH__THROTTLE__LOCKOUT_FAILURES", "4"),
        ("VIGIL_AUTH__THROTTLE__ADDRESS_LOCKOUT_FAILURES", "4"),
        ("VIGIL_AUTH__THROTTLE__LOCKOUT_SECONDS", "2"),
    ]);
    let mut refused = 0;
    let mut locked = None;
    for guess in 0..12 {
        let response = get(&vigil, &format!("vgl_guess_{guess:040}"), "/api/v1/alerts");
        match response.status() {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                locked = Some(response);
                break;
            }
            other => panic!("guess {guess}: {other}"),
        }
        // Past the millisecond backoff, so only the lockout refuses.
        std::thread::sleep(Duration::from_millis(30));
    }
    let locked = locked.expect("the guesses were locked out");
    assert_eq!(
        refused, 4,
        "each guess up to the lockout is checked and refused"
    );
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let locked_at = Instant::now();
    // Bad tokens from the address stay refused, but a sender with a good token behind the
    // same address is not locked out by them: a token cannot be guessed, and refusing it
    // would let anyone on a shared address silence the log shippers.
    assert_eq!(
        get(&vigil, "vgl_guess_while_locked", "/api/v1/alerts").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(&vigil, TOKEN, "/api/v1/alerts").status(),
        StatusCode::OK
    );
    assert!(auth_failures(&vigil, "bearer") >= 5.0);
    // Nor are the people at that address kept from signing in: bad tokens and bad
    // passwords are counted apart.
    AccessDb::open_in(&vigil.data_dir)
        .unwrap()
        .add_user("ana", Role::Analyst, &Secret::new("ana's long password"))
        .unwrap();
    let signed_in = crate::common::client_without_redirects()
        .post(vigil.url("/login"))
        .form(&[("username", "ana"), ("password", "ana's long password")])
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);

    std::thread::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200));
    assert!(locked_at.elapsed() >= Duration::from_secs(retry_after));
    assert_eq!(
        get(&vigil, "vgl_guess_after_the_lockout", "/api/v1/alerts").status(),
        StatusCode::UNAUTHORIZED
    );

    let log: Value = get(&vigil, TOKEN, "/api/v1/audit?action=bearer")
        .json()
        .unwrap();
    let failures = log["entries"].as_array().unwrap();
    // The refusals during the lockout are counted, not audited one by one.
    assert_eq!(failures.len(), 5, "{log}");
    for entry in failures {
        assert_eq!(entry["outcome"], "failure");
        assert_eq!(entry["client_address"], "127.0.0.1");
        assert!(entry["reason"].as_str().unwrap().contains("token"));
    }
}

#[test]
fn the_bootstrap_token_can_be_turned_off() {
    let (_dir, vigil) = start(&[("VIGIL_AUTH__BOOTSTRAP_TOKEN", "false")]);
    assert_eq!(
        get(&vigil, TOKEN, "/api/v1/alerts").status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(!vigil.data_dir.join("api-token").exists());
    let reader = token(&vigil, "reader", "read");
    assert_eq!(
        get(&vigil, &reader, "/api/v1/alerts").status(),
        StatusCode::OK
    );
}
