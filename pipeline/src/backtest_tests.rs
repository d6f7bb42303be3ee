use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use vigil_detect::{Engine, LoadOptions, RuleSetBuilder};
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::{Store, Visibility};
use vigil_ui::backtest_jobs::{
    BacktestError, BacktestProgress, BacktestReport, BacktestRequest, BacktestRule, Backtester,
};

use super::EngineBacktester;

const RULE: &str = "\
title: Trail stopped
id: trail-stopped
level: high
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: StopLogging}
  condition: sel
";

const CORRELATION: &str = "\
title: Failed console login
id: failed-login
name: failed_login
level: low
logsource: {product: aws, service: cloudtrail}
detection:
  sel: {eventName: ConsoleLogin, errorCode: Failed}
  condition: sel
---
title: Password guessing
id: password-guessing
level: high
correlation:
  type: event_count
  rules: [failed_login]
  group-by: [user]
  timespan: 10m
  condition: {gte: 3}
";

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap()
}

fn event(n: u32, minutes: i64, record: Value) -> Event {
    Event {
        id: EventId::derive("backtest test", &[&n.to_le_bytes()]),
        time: base() + Duration::minutes(minutes),
        received: Utc::now(),
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Map::new(),
    }
}

fn store_with(events: &[Event]) -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.index_events(events).unwrap();
    store.commit().unwrap();
    (dir, store)
}

fn event_name(_: &Event, document: &Map<String, Value>) -> Vec<(String, String)> {
    let name = document["eventName"].as_str().unwrap_or_default();
    vec![("event".to_owned(), name.to_owned())]
}

fn request(from: i64, to: i64) -> BacktestRequest {
    BacktestRequest {
        from: base() + Duration::minutes(from),
        to: base() + Duration::minutes(to),
        visibility: Visibility::everything(),
        max_events: 1000,
        max_matches: 100,
        summarise: event_name,
    }
}

fn loaded(text: &str) -> EngineBacktester {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(text, "loaded.yml");
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    let engine: Engine = built.engine;
    EngineBacktester::new(Arc::new(move || {
        Ok((engine.clone(), LoadOptions::default()))
    }))
}

fn run(
    backtester: &EngineBacktester,
    rule: BacktestRule,
    store: &Store,
    request: &BacktestRequest,
) -> Result<BacktestReport, BacktestError> {
    let prepared = backtester.prepare(&rule)?;
    let progress = BacktestProgress::default();
    let report = prepared.run(store, request, &progress)?;
    assert_eq!(progress.scanned(), report.events_scanned);
    Ok(report)
}

/// Five events in the range, two of which the pasted rule matches, and a matching one an hour
/// after the range, which is not read.
#[test]
fn a_pasted_rule_matches_the_stored_events_of_its_range() {
    let (_dir, store) = store_with(&[
        event(1, 1, json!({"eventName": "DescribeTrails"})),
        event(2, 2, json!({"eventName": "StopLogging"})),
        event(3, 3, json!({"eventName": "ListBuckets"})),
        event(4, 4, json!({"eventName": "StopLogging"})),
        event(5, 5, json!({"eventName": "GetObject"})),
        event(6, 70, json!({"eventName": "StopLogging"})),
    ]);
    let backtester = loaded("title: unrelated\nid: other\nlogsource: {product: aws}\ndetection: {sel: {x: 1}, condition: sel}\n");
    let report = run(
        &backtester,
        BacktestRule::Yaml(RULE.to_owned()),
        &store,
        &request(0, 60),
    )
    .unwrap();
    assert_eq!(report.events_scanned, 5);
    assert_eq!(report.matched_events, 2);
    let ids: Vec<&str> = report.matches.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [event(2, 2, json!({})).id, event(4, 4, json!({})).id]
            .map(|id| id.to_string())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report.matches[0].fields,
        vec![("event".to_owned(), "StopLogging".to_owned())]
    );
    assert_eq!(report.matches[0].rules, vec!["trail-stopped".to_owned()]);
    assert_eq!(report.alerts_total, 2);
    assert_eq!(report.alerts[1].rule_id, "trail-stopped");
    assert!(!report.scan_truncated && !report.matches_truncated && !report.alerts_truncated);
    assert_eq!(report.rules, vec!["trail-stopped".to_owned()]);
}

/// A correlation loaded with the rules, backtested by id over events stored out of order,
/// raises its alert once its third failed login is read, with its group and its events.
#[test]
fn a_stored_correlation_raises_its_alert_over_stored_events() {
    let failed = |n: u32, minutes: i64, user: &str| {
        event(
            n,
            minutes,
            json!({"eventName": "ConsoleLogin", "errorCode": "Failed", "user": user}),
        )
    };
    // Stored newest first: the backtest must read them in time order.
    let (_dir, store) = store_with(&[
        failed(4, 4, "alice"),
        failed(3, 3, "bob"),
        failed(2, 2, "alice"),
        failed(1, 1, "alice"),
    ]);
    let backtester = loaded(&format!("{RULE}---\n{CORRELATION}"));
    let report = run(
        &backtester,
        BacktestRule::Stored("password-guessing".into()),
        &store,
        &request(0, 60),
    )
    .unwrap();
    assert_eq!(report.matched_events, 4);
    // The rule it counts raises nothing of its own; the correlation once.
    assert_eq!(report.alerts_total, 1, "{:?}", report.alerts);
    let alert = &report.alerts[0];
    assert_eq!(alert.rule_id, "password-guessing");
    assert_eq!(alert.group.get("user").map(String::as_str), Some("alice"));
    assert_eq!(alert.event_ids.len(), 3);
    assert_eq!(alert.time, base() + Duration::minutes(4));
    let mut rules = report.rules.clone();
    rules.sort();
    assert_eq!(rules, vec!["failed-login", "password-guessing"]);

    // Backtested on its own, the rule raises an alert per event.
    let alone = run(
        &backtester,
        BacktestRule::Stored("failed-login".into()),
        &store,
        &request(0, 60),
    )
    .unwrap();
    assert_eq!(alone.alerts_total, 4);
}

/// A pasted correlation may count a loaded rule by name.
#[test]
fn a_pasted_correlation_counts_a_loaded_rule() {
    let failed = |n: u32, minutes: i64| {
        event(
            n,
            minutes,
            json!({"eventName": "ConsoleLogin", "errorCode": "Failed", "user": "carol"}),
        )
    };
    let (_dir, store) = store_with(&[failed(1, 1), failed(2, 2), failed(3, 3)]);
    let (rule, correlation) = CORRELATION.split_once("---\n").unwrap();
    let backtester = loaded(rule);
    let report = run(
        &backtester,
        BacktestRule::Yaml(correlation.to_owned()),
        &store,
        &request(0, 60),
    )
    .unwrap();
    assert_eq!(report.alerts_total, 1);
    assert_eq!(report.alerts[0].rule_id, "password-guessing");
}

/// At most `max_events` are read and `max_matches` kept; the totals still count them all.
#[test]
fn scans_and_kept_results_are_capped() {
    let events: Vec<Event> = (0..6)
        .map(|n| event(n, i64::from(n), json!({"eventName": "StopLogging"})))
        .collect();
    let (_dir, store) = store_with(&events);
    let backtester = loaded(RULE);
    let capped = BacktestRequest {
        max_events: 4,
        max_matches: 2,
        ..request(0, 60)
    };
    let report = run(
        &backtester,
        BacktestRule::Stored("trail-stopped".into()),
        &store,
        &capped,
    )
    .unwrap();
    assert_eq!(report.events_scanned, 4);
    assert!(report.scan_truncated);
    assert_eq!(report.matched_events, 4);
    assert_eq!(report.matches.len(), 2);
    assert!(report.matches_truncated);
    assert_eq!(report.alerts_total, 4);
    assert_eq!(report.alerts.len(), 2);
    assert!(report.alerts_truncated);
}

/// Pasted text that does not load says which line and why; an unknown id says so.
#[test]
fn bad_rules_are_refused_with_their_line() {
    let backtester = loaded(RULE);
    let broken = "title: broken\nlogsource: {product: aws}\ndetection:\n  sel: {a: 1}\n  condition: nothere\n";
    match backtester.prepare(&BacktestRule::Yaml(broken.into())) {
        Err(BacktestError::Rule { problems }) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| p.line >= 1), "{problems:?}");
            assert!(
                problems.iter().any(|p| p.reason.contains("nothere")),
                "{problems:?}"
            );
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a broken rule was prepared"),
    }
    match backtester.prepare(&BacktestRule::Stored("no-such-rule".into())) {
        Err(BacktestError::UnknownRule { id }) => assert_eq!(id, "no-such-rule"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("an unknown rule was prepared"),
    }
    assert!(matches!(
        backtester.prepare(&BacktestRule::Yaml("just: text\n".into())),
        Err(BacktestError::Rule { .. })
    ));
}
