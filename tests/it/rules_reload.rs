//! Rules changed while Vigil runs, through the real binary: a rule file added and reloaded
//! by the API raises alerts from the next event on; a file with an error is refused and the
//! rules running stay; SIGHUP reloads too; a rule disabled through the API stays disabled
//! after a restart; and with `detect.watch_rules` a new file is taken in by itself.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{wait_for, Vigil, TOKEN};

const MARKER: &str = "rules-reload-e2e";
const ADDED: &str = "7e57a11e-0000-4000-8000-000000000001";
const BY_SIGNAL: &str = "7e57a11e-0000-4000-8000-000000000002";
const WATCHED: &str = "7e57a11e-0000-4000-8000-000000000003";

/// A rule that matches this test's events, under its own id.
fn rule(id: &str) -> String {
    format!(
        "title: Reload test {id}\nid: {id}\nstatus: test\nlogsource: {{product: python, service: flask}}\n\
         detection: {{selection: {{marker: {MARKER}}}, condition: selection}}\nlevel: medium\n"
    )
}

fn post_event(vigil: &Vigil, seq: u32) {
    let line = format!(
        "{{\"timestamp\":\"2026-12-01T10:00:{seq:02}Z\",\"marker\":\"{MARKER}\",\"seq\":{seq}}}\n"
    );
    assert_eq!(
        vigil.post_ndjson("flask-app", line).status(),
        StatusCode::ACCEPTED
    );
}

/// The alerts raised by rule `id`.
fn alerts_of(vigil: &Vigil, id: &str) -> usize {
    vigil.get_json("/api/v1/alerts?limit=100")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|alert| alert["rule_id"] == id)
        .count()
}

fn wait_alerts(vigil: &Vigil, id: &str, count: usize) {
    wait_for(
        &format!("{count} alerts of {id}"),
        Duration::from_secs(30),
        || (alerts_of(vigil, id) == count).then_some(()),
    );
}

/// Waits until detection has counted `events` events since start-up, so an alert they would
/// raise has been raised.
fn wait_detected(vigil: &Vigil, events: f64) {
    wait_for("detection", Duration::from_secs(30), || {
        (vigil.metric("vigil_events_detected_total") >= events).then_some(())
    });
}

fn post(vigil: &Vigil, path: &str) -> (StatusCode, Value) {
    let response = vigil
        .client
        .post(vigil.url(path))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap())
}

fn listed<'a>(rules: &'a Value, id: &str) -> Option<&'a Value> {
    rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["id"] == id)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn rules_reload_by_api_and_signal_and_stay_disabled_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rules = dir.path().join("more-rules");
    std::fs::create_dir_all(&rules).unwrap();
    let rules_arg = rules.to_str().unwrap();
    let vigil = Vigil::start_with(&data, &["--rules", rules_arg], &[]);

    // Before the rule exists its event raises nothing.
    post_event(&vigil, 1);
    wait_detected(&vigil, 1.0);
    assert_eq!(alerts_of(&vigil, ADDED), 0);

    // A file with an error: the reload is refused, and says where.
    write(&rules, "added.yml", &rule(ADDED));
    write(
        &rules,
        "broken.yml",
        "title: Broken\nlogsource: {product: python}\n",
    );
    let (status, refused) = post(&vigil, "/api/v1/rules/reload");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["swapped"], false);
    assert!(
        refused["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("broken.yml"),
        "{refused}"
    );
    assert!(listed(&vigil.get_json("/api/v1/rules"), ADDED).is_none());

    std::fs::remove_file(rules.join("broken.yml")).unwrap();
    let (status, swapped) = post(&vigil, "/api/v1/rules/reload");
    assert_eq!(status, StatusCode::OK, "{swapped}");
    assert_eq!(swapped["swapped"], true);
    post_event(&vigil, 2);
    wait_alerts(&vigil, ADDED, 1);

    // SIGHUP reloads the files too.
    write(&rules, "by-signal.yml", &rule(BY_SIGNAL));
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &vigil.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for("the SIGHUP reload", Duration::from_secs(30), || {
        let rules = vigil.get_json("/api/v1/rules");
        (listed(&rules, BY_SIGNAL).is_some() && rules["last_reload"]["trigger"] == "sighup")
            .then_some(())
    });

    // Disabled through the API: kept across a restart, and its events raise nothing.
    let (status, body) = post(&vigil, &format!("/api/v1/rules/{ADDED}/disable"));
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(vigil);
    let vigil = Vigil::start_with(
        &data,
        &["--rules", rules_arg],
        &[("VIGIL_DETECT__WATCH_RULES", "true")],
    );
    let listing = vigil.get_json("/api/v1/rules");
    assert_eq!(
        listed(&listing, ADDED).unwrap()["enabled"],
        false,
        "{listing}"
    );
    assert_eq!(listed(&listing, BY_SIGNAL).unwrap()["enabled"], true);
    post_event(&vigil, 3);
    wait_alerts(&vigil, BY_SIGNAL, 1);
    assert_eq!(
        alerts_of(&vigil, ADDED),
        1,
        "a disabled rule raised an alert"
    );

    // Watched: a new file is taken in without being asked.
    write(&rules, "watched.yml", &rule(WATCHED));
    wait_for("the watcher's reload", Duration::from_secs(30), || {
        listed(&vigil.get_json("/api/v1/rules"), WATCHED).map(|_| ())
    });
    post_event(&vigil, 4);
    wait_alerts(&vigil, WATCHED, 1);
    assert_eq!(alerts_of(&vigil, ADDED), 1);
}
