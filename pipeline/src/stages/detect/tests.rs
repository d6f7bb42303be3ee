//! Taking up new rules between batches: the windows of unchanged correlations carry over,
//! those of changed ones start empty, and suppressed rules report nothing.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use vigil_bus::Delivery;
use vigil_detect::{Engine, Limits, RuleSetBuilder};
use vigil_event::{Event, EventId, LogSource, Record, Source};

use super::partitions::{detect_batch, PartitionDetectors};
use super::ActiveRules;

const RULE: &str = r#"
title: Failed login
id: 11111111-0000-4000-8000-000000000001
name: login_failed
logsource: {product: test, service: app}
detection:
    selection: {action: login_failed}
    condition: selection
level: low
"#;

/// A correlation of `count` failed logins per `group` within 5 minutes, with its own id.
fn correlation(id: &str, group: &str, count: u32) -> String {
    format!(
        "title: Repeated failed logins {id}\nid: {id}\ncorrelation:\n  type: event_count\n  \
         rules: [login_failed]\n  group-by: [{group}]\n  timespan: 5m\n  condition: {{gte: {count}}}\nlevel: high\n"
    )
}

const KEPT: &str = "22222222-0000-4000-8000-000000000001";
const CHANGED: &str = "22222222-0000-4000-8000-000000000002";

fn rules(generation: u64, texts: &[String], suppressed: &[&str]) -> ActiveRules {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(RULE, "rule.yml");
    for (index, text) in texts.iter().enumerate() {
        builder.add_text(text, &format!("correlation{index}.yml"));
    }
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    let engine: Engine = built.engine;
    ActiveRules {
        generation,
        engine,
        suppressed: Arc::new(suppressed.iter().map(|id| (*id).to_owned()).collect()),
    }
}

fn event(offset: u64) -> Event {
    let time = DateTime::<Utc>::from_timestamp(1_795_000_000 + offset as i64, 0).unwrap();
    Event {
        id: EventId::derive("swap test", &[&offset.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "json".into(),
            name: "app".into(),
        },
        logsource: LogSource::new(Some("test"), Some("app"), None),
        record: Record::json(r#"{"action":"login_failed","user":"alice"}"#).unwrap(),
        fields: Default::default(),
    }
}

fn delivery_of(offset: u64, payload: Vec<u8>) -> Delivery {
    Delivery {
        partition: 0,
        offset,
        key: Bytes::from_static(b"app"),
        payload: Bytes::from(payload),
    }
}

fn delivery(offset: u64) -> Delivery {
    delivery_of(offset, event(offset).to_bus())
}

fn raised(detectors: &mut PartitionDetectors, offset: u64) -> HashSet<String> {
    let outcome = detect_batch(detectors, "events", &[delivery(offset)]);
    outcome.alerts.into_iter().map(|a| a.rule_id).collect()
}

#[test]
fn a_swap_keeps_the_windows_of_unchanged_correlations_only() {
    let before = rules(
        1,
        &[
            correlation(KEPT, "user", 3),
            correlation(CHANGED, "user", 3),
        ],
        &[],
    );
    let mut detectors = PartitionDetectors::new(before, Limits::default(), "events");
    for offset in 0..2 {
        let ids = raised(&mut detectors, offset);
        assert!(!ids.contains(KEPT) && !ids.contains(CHANGED), "{ids:?}");
    }
    // The second correlation now groups by another field: changed, so its two events are
    // forgotten. (A new threshold alone keeps the windows, which still mean the same.)
    detectors.take_up(rules(
        2,
        &[
            correlation(KEPT, "user", 3),
            correlation(CHANGED, "action", 3),
        ],
        &[],
    ));
    assert_eq!(detectors.generation(), 2);
    let ids = raised(&mut detectors, 2);
    assert!(
        ids.contains(KEPT),
        "the unchanged correlation lost its window: {ids:?}"
    );
    assert!(
        !ids.contains(CHANGED),
        "the changed correlation kept its window: {ids:?}"
    );
    raised(&mut detectors, 3);
    assert!(raised(&mut detectors, 4).contains(CHANGED));
}

#[test]
fn suppressed_rules_feed_their_correlation_but_raise_nothing() {
    let generating =
        correlation(KEPT, "user", 2).replace("correlation:\n", "correlation:\n  generate: true\n");
    let id = "11111111-0000-4000-8000-000000000001";
    let mut detectors = PartitionDetectors::new(
        rules(1, std::slice::from_ref(&generating), &[]),
        Limits::default(),
        "events",
    );
    assert!(raised(&mut detectors, 0).contains(id));
    detectors.take_up(rules(2, &[generating], &[id]));
    let ids = raised(&mut detectors, 1);
    assert!(!ids.contains(id), "{ids:?}");
    assert!(ids.contains(KEPT), "{ids:?}");
}

/// Events in the bus's format and in the one before it are matched alike; a message that is no
/// event, or whose record does not parse, is quarantined with the reason.
#[test]
fn bus_messages_of_either_format_are_read_and_damaged_ones_quarantined() {
    let mut detectors = PartitionDetectors::new(rules(1, &[], &[]), Limits::default(), "events");
    let framed = event(0).to_bus();
    let mut cut = framed.clone();
    cut.truncate(framed.len() - 8);
    let batch = [
        delivery_of(0, framed),
        delivery_of(1, serde_json::to_vec(&event(1)).unwrap()),
        delivery_of(2, b"\x07 not an event".to_vec()),
        delivery_of(3, cut),
    ];
    let outcome = detect_batch(&mut detectors, "events", &batch);
    assert_eq!(outcome.events, 2);
    let alerted: Vec<_> = outcome.alerts.iter().map(|a| a.event_ids[0]).collect();
    assert_eq!(alerted, [event(0).id, event(1).id]);
    let reasons: Vec<_> = outcome
        .quarantined
        .iter()
        .map(|q| (q.line, q.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, Some(2));
    assert!(
        reasons[0].1.contains("unreadable event on the bus"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, Some(3));
    assert!(reasons[1].1.contains("not valid JSON"), "{reasons:?}");
}
