//! deploy/monitoring: the Grafana dashboard and the Prometheus alerting rules read only
//! metrics Vigil exports, the dashboard's queries are valid PromQL, every alert has its
//! severity, summary, description and runbook note, and the rules pass `promtool check rules`
//! and their own `promtool test rules`.
//!
//! The names are checked against a running Vigil's `/metrics` after a little traffic: events,
//! a broken line (quarantined), an alert delivered to one webhook and refused by another (a
//! dead letter), and a wrong token. The metrics that traffic drives ([`DRIVEN`]) must be in
//! the scrape. Other metrics count rare things (a failed TLS reload, a CloudWatch retry, a
//! playbook action), and the Prometheus exporter shows a metric only once it has a value, so
//! a name the scrape does not show must at least be one Vigil describes at start-up: an entry
//! of `vigil_pipeline::metric_catalogue::CATALOGUE`, which a test in the pipeline crate keeps
//! equal to what the code emits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use vigil_pipeline::metric_catalogue::CATALOGUE;

use crate::common::{wait_for, Vigil};
use crate::notify::{cloudtrail, write_config, Receiver};

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring")
}

fn read(relative: &str) -> String {
    let path = monitoring_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `vigil_*` metric names in a PromQL expression.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in expression.match_indices("vigil_") {
        let before = expression[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = expression[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// Every PromQL expression of the dashboard: panel targets' `expr` and the template
/// variables' queries.
fn dashboard_expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr" | "query" | "definition", Value::String(text)) => {
                        out.push(text.clone())
                    }
                    _ => dashboard_expressions(item, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| dashboard_expressions(item, out)),
        _ => {}
    }
}

/// Every alert's `expr` in the rule file: a one-line value, or a block (`expr: |`) of the
/// lines indented deeper than the key.
fn rule_expressions(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut expressions = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == "|" || value == ">" {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            expressions.push(block.join("\n"));
        } else {
            expressions.push(value.to_owned());
        }
    }
    expressions
}

/// The metric names a Prometheus text exposition shows, from `# HELP`/`# TYPE` lines and
/// samples.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| {
            let line = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Whether `name` is in `names`, as itself or as a histogram's or summary's series.
fn known(name: &str, names: &BTreeSet<String>) -> bool {
    names.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| names.contains(base))
        })
}

/// The metrics this test's traffic makes Vigil show, whatever else the files read.
const DRIVEN: &[&str] = &[
    "vigil_events_in_total",
    "vigil_ingest_bytes_total",
    "vigil_quarantined_total",
    "vigil_events_detected_total",
    "vigil_alerts_raised_total",
    "vigil_events_indexed_total",
    "vigil_quarantine_indexed_total",
    "vigil_bus_lag",
    "vigil_rules_loaded",
    "vigil_auth_failures_total",
    "vigil_alerts_indexed_total",
    "vigil_notifications_enqueued_total",
    "vigil_notifications_sent_total",
    "vigil_notification_latency_seconds",
    "vigil_notifications_failed_total",
    "vigil_notifications_refused_total",
    "vigil_notifications_dead_lettered_total",
    "vigil_notification_outbox",
    "vigil_http_request_duration_seconds",
    "vigil_store_bytes",
    "vigil_store_quarantine_max_bytes",
];

#[test]
fn the_dashboard_and_the_rules_read_only_metrics_vigil_exports() {
    let dashboard: Value = serde_json::from_str(&read("grafana/vigil.json"))
        .expect("deploy/monitoring/grafana/vigil.json is JSON");
    let mut expressions = Vec::new();
    dashboard_expressions(&dashboard, &mut expressions);
    let dashboard_names: BTreeSet<String> =
        expressions.iter().flat_map(|e| metric_names(e)).collect();
    let rule_names: BTreeSet<String> = rule_expressions(&read("prometheus/vigil-rules.yaml"))
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    // Guards against a parser that finds nothing, which would pass everything.
    assert!(
        dashboard_names.len() >= 40,
        "only {} metric names found in the dashboard: {dashboard_names:?}",
        dashboard_names.len()
    );
    assert!(
        rule_names.len() >= 25,
        "only {} metric names found in the rules: {rule_names:?}",
        rule_names.len()
    );

    // Two webhooks: one takes notifications, one refuses them for good (dead letters).
    let taking = Receiver::start(200);
    let refusing = Receiver::start(400);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!(
            "[[notify.webhooks]]\nname = \"taking\"\nurl = \"{}\"\n\n\
             [[notify.webhooks]]\nname = \"refusing\"\nurl = \"{}\"\n",
            taking.url, refusing.url
        ),
    );
    let vigil = Vigil::start(&dir.path().join("data"));
    // Two events and a broken line, which is quarantined; a stopped trail, which raises an
    // alert for the webhooks; and a request with a wrong token.
    let body = concat!(
        r#"{"eventName":"monitorone","user":"alice"}"#,
        "\n",
        r#"{"broken": "#,
        "\n",
        r#"{"eventName":"monitortwo","user":"bob"}"#,
        "\n"
    );
    let response = vigil.post_ndjson("monitoring", body);
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        vigil.post_ndjson("cloudtrail", cloudtrail(0, 1)).status(),
        StatusCode::ACCEPTED
    );
    let refused = vigil
        .client
        .post(vigil.url("/api/v1/ingest/monitoring"))
        .bearer_auth("not-the-token-0123456789")
        .body("{}\n")
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    wait_for("the events indexed", Duration::from_secs(30), || {
        (vigil.search_total("eventName:monitorone OR eventName:monitortwo") == 2).then_some(())
    });
    wait_for("both webhooks called", Duration::from_secs(60), || {
        (!taking.accepted_ids().is_empty() && !refusing.received().is_empty()).then_some(())
    });
    let exposition = wait_for(
        "the driven metrics on /metrics",
        Duration::from_secs(45),
        || {
            let text = vigil.metrics_text();
            let names = exported_names(&text);
            DRIVEN
                .iter()
                .all(|name| names.contains(*name))
                .then_some(text)
        },
    );
    // The broken line is counted under its reason's kind, and requests under their route's
    // template, never the path or text a sender chose.
    let sample = |prefix: &str, needles: &[&str]| {
        exposition
            .lines()
            .any(|line| line.starts_with(prefix) && needles.iter().all(|n| line.contains(n)))
    };
    assert!(
        sample(
            "vigil_quarantined_total{",
            &[r#"source="monitoring""#, r#"reason="json""#]
        ),
        "{exposition}"
    );
    assert!(
        sample(
            "vigil_http_request_duration_seconds_bucket{",
            &[r#"route="/api/v1/ingest/{source}""#, r#"status="4xx""#]
        ),
        "{exposition}"
    );
    assert!(
        sample(r#"vigil_store_bytes{part="events"}"#, &[]),
        "{exposition}"
    );
    let scraped = exported_names(&exposition);
    let described: BTreeSet<String> = CATALOGUE.iter().map(|m| m.name.to_owned()).collect();

    let mut missing = Vec::new();
    let mut described_only = BTreeSet::new();
    for (file, names) in [
        ("grafana/vigil.json", &dashboard_names),
        ("prometheus/vigil-rules.yaml", &rule_names),
    ] {
        for name in names {
            if known(name, &scraped) {
                continue;
            }
            if known(name, &described) {
                described_only.insert(name.clone());
            } else {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics Vigil neither shows on /metrics nor describes in pipeline/src/metric_catalogue.rs:\n{}",
        missing.join("\n")
    );
    // The dashboard shows the whole pipeline: every metric this traffic drives is on it
    // (a histogram through its `_bucket`, `_sum` or `_count` series).
    for name in DRIVEN {
        assert!(
            dashboard_names
                .iter()
                .any(|used| used == name || known(used, &BTreeSet::from([name.to_string()]))),
            "the dashboard has no panel on {name}"
        );
    }
    eprintln!(
        "{} names are in the scrape; {} only in the catalogue (they appear once what they count happens): {described_only:?}",
        dashboard_names.union(&rule_names).count() - described_only.len(),
        described_only.len()
    );
}

/// The path of promtool, which scripts/test exports (scripts/tools.sh installs it).
fn promtool() -> String {
    std::env::var("VIGIL_PROMTOOL").unwrap_or_else(|_| {
        panic!(
            "VIGIL_PROMTOOL is not set: run the tests through ./scripts/test, which installs \
             promtool (scripts/tools.sh), or set it to promtool's path"
        )
    })
}

fn run_promtool(args: &[&str]) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(monitoring_dir().join("prometheus"))
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The dashboard's expressions with Grafana's variables given values, as PromQL.
fn as_promql(expression: &str) -> String {
    expression
        .replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$job", ".*")
        .replace("$role", ".*")
        .replace("$instance", ".*")
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    let dashboard: Value = serde_json::from_str(&read("grafana/vigil.json")).unwrap();
    let mut expressions = Vec::new();
    dashboard_expressions(&dashboard, &mut expressions);
    // The variables' `label_values(...)` and the data source's type are Grafana's own.
    let queries: Vec<String> = expressions
        .iter()
        .filter(|e| !e.starts_with("label_values(") && e.as_str() != "prometheus")
        .map(|e| as_promql(e))
        .collect();
    assert!(queries.len() >= 50, "only {} queries", queries.len());
    // promtool parses PromQL when it checks rules: one recording rule per query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(query).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&file, rules).unwrap();
    run_promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn every_alert_has_its_notes_a_firing_test_and_passes_promtool() {
    let rules = read("prometheus/vigil-rules.yaml");
    let tests = read("prometheus/vigil-rules.test.yaml");

    let mut alerts = Vec::new();
    for block in rules.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap().trim().to_owned();
        let severity = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("severity: "))
            .unwrap_or_else(|| panic!("{name} has no severity label"));
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity}"
        );
        for annotation in ["summary: ", "description: ", "runbook: "] {
            assert!(
                block.lines().any(|l| l.trim().starts_with(annotation)),
                "{name} has no {annotation}annotation"
            );
        }
        alerts.push(name);
    }
    assert!(
        alerts.len() >= 20,
        "only {} alerts: {alerts:?}",
        alerts.len()
    );

    // Each alert is expected to fire somewhere in the tests (exp_alerts with labels), and
    // is expected quiet somewhere (exp_alerts: []) or next to a healthy series in the same
    // case (checked by promtool: the expected list must match exactly).
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let mut fired = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            if lines.get(i + 1) == Some(&"exp_alerts:") {
                fired.insert(name.to_owned());
            }
        }
    }
    let untested: Vec<&String> = alerts.iter().filter(|a| !fired.contains(*a)).collect();
    assert!(
        untested.is_empty(),
        "alerts no test makes fire: {untested:?}"
    );

    run_promtool(&["check", "rules", "vigil-rules.yaml"]);
    run_promtool(&["test", "rules", "vigil-rules.test.yaml"]);
}
