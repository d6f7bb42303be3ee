//! Vigil watches itself: wrong passwords posted to its sign-in form become audit entries,
//! the forwarder turns them into `vigil-audit` events, and the shipped brute-force rule
//! raises an alert on them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use vigil_access::{AccessDb, AuditFilter, Role, Secret};

use crate::common::{wait_for, Vigil};

/// The shipped rule's title (rules/vigil/vigil_sign_in_brute_force.yml).
const BRUTE_FORCE_RULE: &str = "Vigil Sign-In Brute Force";

/// How many failures from one address the rule needs within five minutes.
const THRESHOLD: usize = 10;

#[test]
fn wrong_passwords_at_the_sign_in_form_raise_the_shipped_brute_force_alert() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The throttle's backoff would hold back this address's API calls too; with more free
    // failures than the rule's threshold, every attempt is a plain wrong password.
    let vigil = Vigil::start_with_env(
        &data,
        &[
            ("VIGIL_AUTH__THROTTLE__FREE_FAILURES", "20"),
            ("VIGIL_AUTH__THROTTLE__LOCKOUT_FAILURES", "30"),
            ("VIGIL_AUTH__THROTTLE__ADDRESS_LOCKOUT_FAILURES", "100"),
        ],
    );
    // A second handle on the database, as `vigil users add` would open it beside the server.
    let db = AccessDb::open_in(&data).unwrap();
    db.add_user("alice", Role::Analyst, &Secret::new("alice's long secret"))
        .unwrap();

    // One failure short of the rule: no alert may come of it.
    let post_wrong_password = |attempt: usize| {
        let response = vigil
            .client
            .post(vigil.url("/login"))
            .form(&[
                ("username", "alice"),
                ("password", format!("not alice's secret {attempt}").as_str()),
            ])
            .send()
            .unwrap();
        // Refused (a sign-in would answer with a redirect, followed to a 200 page).
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    };
    for attempt in 0..THRESHOLD - 1 {
        post_wrong_password(attempt);
    }
    wait_for(
        "nine sign-in failures as vigil-audit events",
        Duration::from_secs(30),
        || {
            let failures =
                vigil.search_total("source_kind:vigil-audit action:sign_in outcome:failure");
            (failures as usize >= THRESHOLD - 1).then_some(())
        },
    );
    assert!(
        brute_force_alert(&vigil).is_none(),
        "the alert was raised on {} failures",
        THRESHOLD - 1
    );

    post_wrong_password(THRESHOLD - 1);
    let alert = wait_for("the brute-force alert", Duration::from_secs(30), || {
        brute_force_alert(&vigil)
    });
    assert_eq!(alert["level"], "high");
    assert_eq!(alert["source"]["kind"], "vigil-audit");
    assert_eq!(alert["group"]["client_address"], "127.0.0.1", "{alert}");

    // The events are searchable by what the audit log says, and carry the forwarder's
    // hour and weekday.
    let found = vigil.get_json(
        "/api/v1/search?q=source_kind:vigil-audit%20action:sign_in%20actor:alice&limit=1",
    );
    assert!(
        found["total"].as_u64().unwrap() >= THRESHOLD as u64,
        "{found}"
    );
    let event = &found["hits"][0]["record"]["json"];
    assert_eq!(event["client_address"], "127.0.0.1", "{event}");
    assert_eq!(event["outcome"], "failure");
    assert!(event["hour_utc"].as_u64().unwrap() < 24, "{event}");
    assert!(event["weekday_utc"].as_str().unwrap().len() == 3, "{event}");
    assert_eq!(found["hits"][0]["logsource"]["product"], "vigil");

    // Only those who may read the audit log find it in search: for a `read` token the
    // entries are not there, by query, histogram, facet or under the alert they raised.
    let reader = db
        .create_token("reader", &"read".parse().unwrap(), None, "test")
        .unwrap()
        .secret;
    let as_reader = |path: &str| -> Value {
        let response = vigil
            .client
            .get(vigil.url(path))
            .bearer_auth(reader.expose())
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().unwrap()
    };
    for query in [
        "source_kind:vigil-audit",
        "alice",
        "",
        "NOT source_kind:cloudtrail",
    ] {
        let found = as_reader(&format!("/api/v1/search?q={query}&limit=5"));
        assert!(
            found["hits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|hit| hit["source"]["kind"] != "vigil-audit"),
            "{query}: {found}"
        );
        assert_eq!(found["total"], 0, "{query}: {found}");
    }
    let histogram = as_reader("/api/v1/search/histogram?q=source_kind:vigil-audit");
    let counted: u64 = histogram["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 0, "{histogram}");
    let facets = as_reader("/api/v1/search/facets?field=source_kind");
    assert!(!facets.to_string().contains("vigil-audit"), "{facets}");
    let alert_id = alert["id"].as_str().unwrap();
    let under_alert = as_reader(&format!("/api/v1/alerts/{alert_id}/events"));
    assert_eq!(under_alert["events"], Value::Array(vec![]), "{under_alert}");
    let as_admin = vigil.get_json(&format!("/api/v1/alerts/{alert_id}/events"));
    assert_eq!(
        as_admin["events"].as_array().unwrap().len(),
        THRESHOLD,
        "{as_admin}"
    );

    // And the audit log itself lists each failure by the name tried and the address.
    let entries = db
        .audit_entries(&AuditFilter {
            action: Some("sign_in".into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(entries.len(), THRESHOLD, "{entries:?}");
    for entry in &entries {
        assert_eq!(entry.record.actor, "alice");
        assert_eq!(entry.record.client_address.as_deref(), Some("127.0.0.1"));
    }
}

fn brute_force_alert(vigil: &Vigil) -> Option<Value> {
    let alerts = vigil.get_json("/api/v1/alerts");
    alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|alert| alert["rule_title"] == BRUTE_FORCE_RULE)
        .cloned()
}
