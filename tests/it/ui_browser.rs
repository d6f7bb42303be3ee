//! The web UI in a real browser: headless Chromium driven through chromedriver (the W3C
//! WebDriver protocol), against the real `vigil` binary.
//!
//! An attacker chooses much of what the pages show (user names, messages, anything in a log
//! line), so the test feeds Vigil events carrying HTML and script, raises an alert from them,
//! and walks the pages an analyst would: sign in with a user name and password, the alert
//! list, the alert, its events, a status change with a note, sign out. On every page the
//! hostile text must be shown as text, and must not have become elements or run. Then a
//! viewer signs in and is shown the alert without any triage form.
//!
//! The browser is driven by `crate::browser`; the console's own flows are in `ui_console`,
//! and hostile text on every page in `ui_xss`.

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use serde_json::json;

use vigil_access::{AccessDb, Role, Secret};

use crate::browser::Browser;
use crate::common::{wait_for, Vigil};

const ANALYST_PASSWORD: &str = "analyst password, long enough";
const VIEWER_PASSWORD: &str = "viewer password, long enough";

/// What an attacker puts in the user name of failed logins: markup that would load an image
/// and run script if a page built elements from it.
const HOSTILE_USER: &str = r#"<img src="x" onerror="window.vigilXss='user'"><script>window.vigilXss='user-script'</script>"#;
/// ...and in the reason and a note an analyst pastes from it.
const HOSTILE_REASON: &str =
    r#"</pre><b id="injected">bold</b><svg onload="window.vigilXss='svg'">"#;

/// Five failed logins for `HOSTILE_USER` within a minute: the brute-force correlation's
/// threshold, which raises a high alert grouped by the user name.
fn failed_logins() -> String {
    let start = Utc::now() - Span::minutes(2);
    (0..5)
        .map(|i| {
            let at = start + Span::seconds(i * 10);
            json!({
                "asctime": at.format("%Y-%m-%d %H:%M:%S,%3f").to_string(),
                "levelname": "WARNING",
                "name": "usermgmt.auth",
                "message": "Login failed",
                "event": "login_failed",
                "username": HOSTILE_USER,
                "reason": HOSTILE_REASON,
                "remote_addr": "203.0.113.66",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn an_analyst_triages_hostile_events_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let access = AccessDb::open_in(&data).unwrap();
    access
        .add_user("ana", Role::Analyst, &Secret::new(ANALYST_PASSWORD))
        .unwrap();
    access
        .add_user("vic", Role::Viewer, &Secret::new(VIEWER_PASSWORD))
        .unwrap();
    let vigil = Vigil::start(&data);
    let response = vigil.post_ndjson("flask-app", failed_logins());
    assert!(response.status().is_success(), "{}", response.status());
    let alert_id = wait_for("the brute-force alert", Duration::from_secs(60), || {
        let alerts = vigil.get_json("/api/v1/alerts");
        alerts["alerts"]
            .as_array()?
            .iter()
            .find(|alert| alert["rule_title"] == "Flask User Management Login Brute Force")?["id"]
            .as_str()
            .map(str::to_owned)
    });

    let browser = Browser::start();

    // Pages need a session: the browser is sent to sign in first.
    browser.goto(&vigil.url("/"));
    assert_eq!(browser.current_url(), vigil.url("/login"));
    browser.type_into("#username", "ana");
    browser.type_into("#password", "not the password");
    browser.click("form.login button[type=submit]");
    browser.text_showing(&["That user name and password do not match."]);
    // The form keeps the name tried; the password is typed again.
    browser.type_into("#password", ANALYST_PASSWORD);
    browser.click("form.login button[type=submit]");
    browser.wait_for_url(&vigil.url("/"));
    browser.text_showing(&["ana", "analyst", "Sign out"]);

    // The alert list, then the alert, which shows the user name it was grouped by.
    browser.text_showing(&["Flask User Management Login Brute Force"]);
    // Alerts are grouped by rule and group key; a group opens to its alerts.
    browser.click("table.alert-groups tr.group summary");
    browser.click(&format!("a[href='/alerts/{alert_id}']"));
    browser.wait_for_url(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.assert_shown_as_text("the alert", &[HOSTILE_USER]);

    // Acknowledge it with a note quoting the attacker, through the page's own form (and its
    // CSRF token).
    browser.eval(
        "const form = document.querySelector('form.triage');
         form.querySelector('select[name=status]').value = 'acknowledged';",
        json!([]),
    );
    browser.type_into("form.triage textarea[name=note]", HOSTILE_REASON);
    browser.click("form.triage button[type=submit]");
    browser.assert_shown_as_text("the acknowledged alert", &[HOSTILE_USER, HOSTILE_REASON]);
    let detail = wait_for("the alert acknowledged", Duration::from_secs(30), || {
        let detail = vigil.get_json(&format!("/api/v1/alerts/{alert_id}"));
        (detail["status"] == "acknowledged").then_some(detail)
    });
    assert_eq!(detail["notes"][0]["text"], HOSTILE_REASON, "{detail}");

    // The alert's events, whose records carry the hostile text in full.
    browser.goto(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.click("dl.facts a[href^='/search']");
    browser.text_showing(&["5 matching events"]);
    // The search page folds each event's tree and raw JSON into `<details>`: open them all.
    browser.open_all_details();
    browser.assert_shown_as_text(
        "the alert's events",
        &["window.vigilXss", "id=\\\"injected\\\""],
    );

    // A search typed into the page's own form finds them too.
    browser.goto(&vigil.url("/search"));
    browser.type_into("form.search input[name=q]", "username:*onerror*");
    browser.click("form.search button[type=submit]");
    // The empty search may list the same five events, so wait for the query's own page.
    browser.wait_until("the search's results", || {
        let url = browser.try_command("/url", None).ok()?;
        (url.as_str()?.contains("q=username") && browser.loaded()).then_some(())
    });
    browser.text_showing(&["5 matching events"]);
    // The search page folds each event's tree and raw JSON into `<details>`: open them all.
    browser.open_all_details();
    browser.assert_shown_as_text("the search", &["window.vigilXss"]);

    // Signing out ends the session: the pages send the browser back to sign in.
    browser.click("header form button[type=submit]");
    browser.wait_for_url(&vigil.url("/login"));
    browser.goto(&vigil.url("/"));
    assert_eq!(browser.current_url(), vigil.url("/login"));

    // A viewer reads the same alert, hostile text as text, and is shown no triage form.
    browser.sign_in(&vigil, "vic", VIEWER_PASSWORD);
    browser.text_showing(&["vic", "viewer"]);
    browser.goto(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.wait_for_url(&vigil.url(&format!("/alerts/{alert_id}")));
    browser.assert_shown_as_text("the alert, to a viewer", &[HOSTILE_USER, HOSTILE_REASON]);
    assert_eq!(browser.count("main form"), 0, "a viewer was shown a form");
    assert_eq!(browser.count("main select, main textarea"), 0);
    assert_eq!(browser.count("header form[action='/logout']"), 1);
}
