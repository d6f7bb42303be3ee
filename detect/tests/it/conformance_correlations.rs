//! Correlation rules, written from the Sigma 2.1 correlation specification: sequences of events
//! with timestamps for every correlation type, at the edges of their windows.

use serde_json::{json, Map, Value};
use vigil_detect::{
    CorrelationMatch, Detector, Finding, Limits, RuleSetBuilder, SnapshotError, DEFAULT_STREAM,
};
use vigil_event::{Id, LogSource};

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;

/// Base rules used by the tests: `login_failed`, `login_ok`, `recon_a/b/c`, `upload`, and
/// `net_conn`, each matching events with that `kind`.
fn base_rules() -> String {
    let mut text = String::new();
    for (id, name) in [
        ("11111111-0000-0000-0000-000000000001", "login_failed"),
        ("11111111-0000-0000-0000-000000000002", "login_ok"),
        ("11111111-0000-0000-0000-000000000003", "recon_a"),
        ("11111111-0000-0000-0000-000000000004", "recon_b"),
        ("11111111-0000-0000-0000-000000000005", "recon_c"),
        ("11111111-0000-0000-0000-000000000006", "upload"),
        ("11111111-0000-0000-0000-000000000007", "net_conn"),
        ("11111111-0000-0000-0000-000000000008", "http_error"),
    ] {
        text.push_str(&format!(
            "---\ntitle: Rule {name}\nid: {id}\nname: {name}\nlevel: low\n\
             logsource:\n  product: test\ndetection:\n  sel:\n    kind: {name}\n  condition: sel\n"
        ));
    }
    text
}

fn detector(correlations: &str) -> Detector {
    detector_with(correlations, Limits::default())
}

fn detector_with(correlations: &str, limits: Limits) -> Detector {
    let mut builder = RuleSetBuilder::new();
    builder
        .add_text(&base_rules(), "base.yml")
        .add_text(correlations, "correlations.yml");
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:#?}", built.errors);
    Detector::with_limits(built.engine, limits)
}

fn doc(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn id(n: u8) -> Id {
    Id::from_bytes([n; 16])
}

struct Run {
    detector: Detector,
    next_id: u8,
}

impl Run {
    fn new(correlations: &str) -> Self {
        Run {
            detector: detector(correlations),
            next_id: 1,
        }
    }

    /// Feeds one event; returns the correlation matches it completed.
    fn at(&mut self, time: i64, event: Value) -> Vec<CorrelationMatch> {
        self.all(time, event)
            .into_iter()
            .filter_map(|d| match d {
                Finding::Correlation(m) => Some(m),
                Finding::Rule { .. } => None,
            })
            .collect()
    }

    fn all(&mut self, time: i64, event: Value) -> Vec<Finding> {
        let event_id = id(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.detector.process(
            time,
            Some(event_id),
            &LogSource::new(Some("test"), None, None),
            &doc(event),
        )
    }

    fn title(&self, m: &CorrelationMatch) -> String {
        self.detector.engine().correlations()[m.correlation]
            .title
            .clone()
    }
}

fn failed(user: &str) -> Value {
    json!({"kind": "login_failed", "user": user})
}

const EVENT_COUNT: &str = "
title: Brute force
id: 22222222-0000-0000-0000-000000000001
level: high
tags: [attack.credential-access]
correlation:
  type: event_count
  rules: [login_failed]
  group-by: [user]
  timespan: 5m
  condition:
    gte: 3
";

#[test]
fn event_count_fires_at_the_threshold_with_group_and_ids() {
    let mut run = Run::new(EVENT_COUNT);
    assert!(run.at(0, failed("alice")).is_empty());
    assert!(run.at(MIN, failed("alice")).is_empty());
    let matches = run.at(2 * MIN, failed("alice"));
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    assert_eq!(run.title(m), "Brute force");
    let rule = &run.detector.engine().correlations()[m.correlation];
    assert_eq!(rule.level, vigil_event::Level::High);
    assert_eq!(rule.tags, vec!["attack.credential-access"]);
    assert_eq!(m.group, vec![("user".to_owned(), "alice".to_owned())]);
    assert_eq!(m.aggregate, 3.0);
    assert_eq!(m.inputs, 3);
    assert_eq!((m.first_time, m.last_time), (0, 2 * MIN));
    assert_eq!(m.event_ids, vec![id(1), id(2), id(3)]);
    assert!(!m.event_ids_truncated);
}

#[test]
fn event_count_window_slides_exactly_at_its_edge() {
    // Just inside: the first and the third event are exactly 5m apart.
    let mut run = Run::new(EVENT_COUNT);
    run.at(0, failed("alice"));
    run.at(2 * MIN, failed("alice"));
    assert_eq!(run.at(5 * MIN, failed("alice")).len(), 1);

    // Just outside: 5m and 1ms apart, so only two are in the window...
    let mut run = Run::new(EVENT_COUNT);
    run.at(0, failed("alice"));
    run.at(2 * MIN, failed("alice"));
    assert!(run.at(5 * MIN + 1, failed("alice")).is_empty());
    // ...and the window keeps sliding: the events at 2m, 5m+1ms and 7m are within 5m.
    assert_eq!(run.at(7 * MIN, failed("alice")).len(), 1);
}

#[test]
fn sliding_not_tumbling() {
    // Straddling a clock boundary (4:59 to 5:01) still correlates.
    let mut run = Run::new(EVENT_COUNT);
    run.at(4 * MIN + 59 * SEC, failed("bob"));
    run.at(5 * MIN, failed("bob"));
    assert_eq!(run.at(5 * MIN + SEC, failed("bob")).len(), 1);
}

#[test]
fn group_by_separates_groups() {
    let mut run = Run::new(EVENT_COUNT);
    run.at(0, failed("alice"));
    run.at(SEC, failed("bob"));
    run.at(2 * SEC, failed("alice"));
    assert!(run.at(3 * SEC, failed("bob")).is_empty());
    let m = run.at(4 * SEC, failed("alice"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].group[0].1, "alice");
    // Events without the group-by field never count.
    for t in 0..5 {
        assert!(run
            .at(5 * SEC + t, json!({"kind": "login_failed"}))
            .is_empty());
    }
    assert!(run.detector.stats().counters.missing_fields >= 5);
}

#[test]
fn a_burst_raises_one_match_per_threshold_not_per_event() {
    let mut run = Run::new(EVENT_COUNT);
    let fired: usize = (0..9).map(|i| run.at(i * SEC, failed("alice")).len()).sum();
    assert_eq!(fired, 3);
}

#[test]
fn multiple_group_by_fields_are_anded() {
    let mut run = Run::new(
        "title: Per user and host\ncorrelation:\n  type: event_count\n  rules: [login_failed]\n  \
         group-by: [user, host]\n  timespan: 1h\n  condition:\n    gte: 2\n",
    );
    run.at(
        0,
        json!({"kind": "login_failed", "user": "a", "host": "h1"}),
    );
    assert!(run
        .at(
            SEC,
            json!({"kind": "login_failed", "user": "a", "host": "h2"})
        )
        .is_empty());
    let m = run.at(
        2 * SEC,
        json!({"kind": "login_failed", "user": "a", "host": "h1"}),
    );
    assert_eq!(
        m[0].group,
        vec![
            ("user".to_owned(), "a".to_owned()),
            ("host".to_owned(), "h1".to_owned())
        ]
    );
}

#[test]
fn condition_ranges_and_other_operators() {
    // A range: more than 1 and at most 2, as the spec allows with two operators.
    let mut run = Run::new(
        "title: Range\ncorrelation:\n  type: event_count\n  rules: [login_failed]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    gt: 1\n    lte: 2\n",
    );
    assert!(run.at(0, failed("a")).is_empty());
    assert_eq!(run.at(1, failed("a")).len(), 1);

    let mut run = Run::new(
        "title: Eq\ncorrelation:\n  type: event_count\n  rules: [login_failed]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    eq: 2\n",
    );
    assert!(run.at(0, failed("a")).is_empty());
    assert_eq!(run.at(1, failed("a")).len(), 1);

    let mut run = Run::new(
        "title: Neq\ncorrelation:\n  type: event_count\n  rules: [login_failed]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    neq: 1\n    lt: 4\n",
    );
    assert!(run.at(0, failed("a")).is_empty());
    assert_eq!(run.at(1, failed("a")).len(), 1);
}

const VALUE_COUNT: &str = "
title: Password spraying
correlation:
  type: value_count
  rules: [login_failed]
  group-by: [src]
  timespan: 10m
  condition:
    field: user
    gte: 3
";

#[test]
fn value_count_counts_distinct_values() {
    let mut run = Run::new(VALUE_COUNT);
    let ev = |user: &str| json!({"kind": "login_failed", "src": "10.0.0.1", "user": user});
    run.at(0, ev("alice"));
    run.at(SEC, ev("alice"));
    assert!(run.at(2 * SEC, ev("bob")).is_empty(), "two distinct so far");
    run.at(3 * SEC, ev("bob"));
    let m = run.at(4 * SEC, ev("carol"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].aggregate, 3.0);
    assert_eq!(m[0].inputs, 5);
}

#[test]
fn value_count_window_edge() {
    let mut run = Run::new(VALUE_COUNT);
    let ev = |user: &str| json!({"kind": "login_failed", "src": "s", "user": user});
    run.at(0, ev("a"));
    run.at(MIN, ev("b"));
    assert!(run.at(10 * MIN + 1, ev("c")).is_empty(), "a fell out");
    assert_eq!(run.at(10 * MIN + 2, ev("d")).len(), 1, "b, c, d");

    let mut run = Run::new(VALUE_COUNT);
    run.at(0, ev("a"));
    run.at(MIN, ev("b"));
    assert_eq!(
        run.at(10 * MIN, ev("c")).len(),
        1,
        "exactly 10m: a still in"
    );
}

#[test]
fn value_count_over_several_fields_counts_combinations() {
    let mut run = Run::new(
        "title: Combos\ncorrelation:\n  type: value_count\n  rules: [login_failed]\n  \
         group-by: [src]\n  timespan: 1h\n  condition:\n    field: [user, host]\n    gte: 3\n",
    );
    let ev = |u: &str, h: &str| json!({"kind": "login_failed", "src": "s", "user": u, "host": h});
    run.at(0, ev("a", "x"));
    run.at(1, ev("a", "y"));
    run.at(2, ev("a", "x"));
    assert_eq!(run.at(3, ev("b", "x")).len(), 1);
}

const TEMPORAL: &str = "
title: Recon burst
correlation:
  type: temporal
  rules: [recon_a, recon_b, recon_c]
  group-by: [host]
  timespan: 5m
";

const TEMPORAL_ORDERED: &str = "
title: Recon in order
correlation:
  type: temporal_ordered
  rules: [recon_a, recon_b, recon_c]
  group-by: [host]
  timespan: 5m
";

fn recon(which: &str, host: &str) -> Value {
    json!({"kind": format!("recon_{which}"), "host": host})
}

#[test]
fn temporal_needs_every_rule_in_any_order() {
    let mut run = Run::new(TEMPORAL);
    run.at(0, recon("c", "h"));
    run.at(SEC, recon("a", "h"));
    run.at(2 * SEC, recon("a", "h"));
    let m = run.at(3 * SEC, recon("b", "h"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].aggregate, 3.0);

    // Other hosts do not help.
    let mut run = Run::new(TEMPORAL);
    run.at(0, recon("a", "h1"));
    run.at(1, recon("b", "h2"));
    assert!(run.at(2, recon("c", "h3")).is_empty());
}

#[test]
fn temporal_window_edge() {
    let mut run = Run::new(TEMPORAL);
    run.at(0, recon("a", "h"));
    run.at(MIN, recon("b", "h"));
    assert_eq!(run.at(5 * MIN, recon("c", "h")).len(), 1);

    let mut run = Run::new(TEMPORAL);
    run.at(0, recon("a", "h"));
    run.at(MIN, recon("b", "h"));
    assert!(run.at(5 * MIN + 1, recon("c", "h")).is_empty());
    // A fresh `a` completes the set again within the window of b and c.
    assert_eq!(run.at(5 * MIN + 2, recon("a", "h")).len(), 1);
}

#[test]
fn temporal_with_a_condition_counts_distinct_rules() {
    let mut run = Run::new(
        "title: Two of three\ncorrelation:\n  type: temporal\n  rules: [recon_a, recon_b, recon_c]\n  \
         group-by: [host]\n  timespan: 5m\n  condition:\n    gte: 2\n",
    );
    run.at(0, recon("b", "h"));
    assert!(run.at(1, recon("b", "h")).is_empty());
    assert_eq!(run.at(2, recon("c", "h")).len(), 1);
}

#[test]
fn temporal_ordered_is_order_sensitive() {
    // In order: fires.
    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(0, recon("a", "h"));
    run.at(SEC, recon("b", "h"));
    assert_eq!(run.at(2 * SEC, recon("c", "h")).len(), 1);

    // Out of order: the unordered correlation would fire, this one does not.
    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(0, recon("c", "h"));
    run.at(SEC, recon("b", "h"));
    assert!(run.at(2 * SEC, recon("a", "h")).is_empty());
    // ...until the rest of the sequence follows the `a`.
    run.at(3 * SEC, recon("b", "h"));
    assert_eq!(run.at(4 * SEC, recon("c", "h")).len(), 1);

    // b before a is skipped over: a, then a later b, then c.
    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(0, recon("b", "h"));
    run.at(1, recon("a", "h"));
    run.at(2, recon("c", "h"));
    assert!(run.at(3, recon("c", "h")).is_empty());
    assert_eq!(run.at(4, recon("b", "h")).len(), 0, "b after the c's");
    assert_eq!(run.at(5, recon("c", "h")).len(), 1);
}

#[test]
fn temporal_ordered_window_edge() {
    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(0, recon("a", "h"));
    run.at(MIN, recon("b", "h"));
    assert_eq!(run.at(5 * MIN, recon("c", "h")).len(), 1);

    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(0, recon("a", "h"));
    run.at(MIN, recon("b", "h"));
    assert!(run.at(5 * MIN + 1, recon("c", "h")).is_empty());
}

#[test]
fn out_of_order_arrival_uses_event_time() {
    // Events arrive c, b, a but their times say a, b, c.
    let mut run = Run::new(TEMPORAL_ORDERED);
    run.at(3 * SEC, recon("c", "h"));
    run.at(2 * SEC, recon("b", "h"));
    assert_eq!(run.at(SEC, recon("a", "h")).len(), 1);

    // An event older than its group's window is dropped and counted as late.
    let mut run = Run::new(EVENT_COUNT);
    run.at(10 * MIN, failed("alice"));
    run.at(10 * MIN, failed("alice"));
    assert!(run.at(4 * MIN, failed("alice")).is_empty());
    assert_eq!(run.detector.stats().counters.late, 1);
    assert_eq!(
        run.at(5 * MIN, failed("alice")).len(),
        1,
        "exactly at the edge"
    );
}

fn upload(user: &str, bytes: Value) -> Value {
    json!({"kind": "upload", "user": user, "bytes": bytes})
}

#[test]
fn value_sum() {
    let mut run = Run::new(
        "title: Exfiltration\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    gt: 1000\n",
    );
    run.at(0, upload("u", json!(400)));
    assert!(
        run.at(MIN, upload("u", json!("600"))).is_empty(),
        "1000 is not > 1000"
    );
    // Not a number: skipped.
    assert!(run.at(2 * MIN, upload("u", json!("lots"))).is_empty());
    let m = run.at(3 * MIN, upload("u", json!(1.5)));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].aggregate, 1001.5);

    // Window edge: the first upload falls out at 1h + 1ms.
    let mut run = Run::new(
        "title: Exfiltration\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    gte: 1000\n",
    );
    run.at(0, upload("u", json!(500)));
    assert!(run.at(60 * MIN + 1, upload("u", json!(500))).is_empty());
    let mut run = Run::new(
        "title: Exfiltration\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    gte: 1000\n",
    );
    run.at(0, upload("u", json!(500)));
    assert_eq!(run.at(60 * MIN, upload("u", json!(500))).len(), 1);
}

#[test]
fn value_avg() {
    let text = "title: Average\ncorrelation:\n  type: value_avg\n  rules: [upload]\n  \
                group-by: [user]\n  timespan: 10m\n  condition:\n    field: bytes\n    gt: 500\n";
    let mut run = Run::new(text);
    assert!(run.at(0, upload("u", json!(100))).is_empty());
    assert!(run.at(SEC, upload("u", json!(900))).is_empty(), "avg 500");
    let m = run.at(2 * SEC, upload("u", json!(1000)));
    assert_eq!(m.len(), 1);
    assert!((m[0].aggregate - 2000.0 / 3.0).abs() < 1e-9);

    // Once the 100 slides out, the average of the rest is what counts.
    let mut run = Run::new(text);
    run.at(0, upload("u", json!(100)));
    run.at(SEC, upload("u", json!(900)));
    assert!(
        run.at(10 * MIN, upload("u", json!(0))).is_empty(),
        "avg 333"
    );
    // At 10m1s the 100 is out and the 900 exactly at the edge: (900 + 0 + 1000) / 3 > 500.
    assert_eq!(run.at(10 * MIN + SEC, upload("u", json!(1000))).len(), 1);
}

#[test]
fn value_percentile_and_median() {
    let mut run = Run::new(
        "title: P90\ncorrelation:\n  type: value_percentile\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    percentile: 95\n    gte: 500\n",
    );
    // Values 1..=10: the 95th percentile stays below 10; with 1000 added it interpolates
    // halfway between 10 and 1000.
    let mut fired = Vec::new();
    for v in 1..=10 {
        fired.extend(run.at(v * SEC, upload("u", json!(v))));
    }
    assert!(fired.is_empty());
    let m = run.at(11 * SEC, upload("u", json!(1000)));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].aggregate, 505.0);

    let mut run = Run::new(
        "title: Median\ncorrelation:\n  type: value_median\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    gte: 50\n",
    );
    assert!(run.at(0, upload("u", json!(10))).is_empty());
    assert_eq!(
        run.at(1, upload("u", json!(1000))).len(),
        1,
        "median of 10, 1000 is 505"
    );

    let mut run = Run::new(
        "title: Median\ncorrelation:\n  type: value_median\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    lt: 5\n",
    );
    // `lt` holds as soon as the first small value arrives (documented streaming semantics).
    assert_eq!(run.at(0, upload("u", json!(1))).len(), 1);
}

#[test]
fn value_percentile_defaults_to_the_median() {
    let mut run = Run::new(
        "title: P\ncorrelation:\n  type: value_percentile\n  rules: [upload]\n  \
         group-by: [user]\n  timespan: 1h\n  condition:\n    field: bytes\n    gte: 20\n",
    );
    run.at(0, upload("u", json!(10)));
    run.at(1, upload("u", json!(10)));
    assert!(run.at(2, upload("u", json!(100))).is_empty(), "median 10");
    assert_eq!(run.at(3, upload("u", json!(100))).len(), 1, "median 55");
}

#[test]
fn aliases_group_across_differently_named_fields() {
    let mut run = Run::new(
        "title: Error then connection\ncorrelation:\n  type: temporal\n  \
         rules: [http_error, net_conn]\n  group-by: [internal_ip, remote_ip]\n  timespan: 10s\n  \
         aliases:\n    internal_ip:\n      http_error: destination.ip\n      net_conn: source.ip\n    \
         remote_ip:\n      http_error: source.ip\n      net_conn: destination.ip\n",
    );
    let error = json!({"kind": "http_error", "destination": {"ip": "10.0.0.5"}, "source": {"ip": "1.2.3.4"}});
    // Same addresses, but not mirrored: no match.
    let same =
        json!({"kind": "net_conn", "destination": {"ip": "10.0.0.5"}, "source": {"ip": "1.2.3.4"}});
    let mirrored =
        json!({"kind": "net_conn", "source": {"ip": "10.0.0.5"}, "destination": {"ip": "1.2.3.4"}});
    run.at(0, error);
    assert!(run.at(SEC, same).is_empty());
    let m = run.at(2 * SEC, mirrored);
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].group,
        vec![
            ("internal_ip".to_owned(), "10.0.0.5".to_owned()),
            ("remote_ip".to_owned(), "1.2.3.4".to_owned())
        ]
    );
}

const CHAIN: &str = "
title: Brute force then success
id: 33333333-0000-0000-0000-000000000001
level: critical
correlation:
  type: temporal_ordered
  rules: [many_failed, login_ok]
  group-by: [user]
  timespan: 10m
---
title: Many failed logins
id: 33333333-0000-0000-0000-000000000002
name: many_failed
correlation:
  type: event_count
  rules: [login_failed]
  group-by: [user]
  timespan: 10m
  condition:
    gte: 3
";

#[test]
fn chained_correlations() {
    let mut run = Run::new(CHAIN);
    let ok = |user: &str| json!({"kind": "login_ok", "user": user});
    // A success before the brute force does not count (ordered).
    assert!(run.at(0, ok("alice")).is_empty());
    run.at(MIN, failed("alice"));
    run.at(2 * MIN, failed("alice"));
    // The inner correlation fires here, but is not reported on its own (no `generate`).
    assert!(run.at(3 * MIN, failed("alice")).is_empty());
    let m = run.at(4 * MIN, ok("alice"));
    assert_eq!(m.len(), 1);
    assert_eq!(run.title(&m[0]), "Brute force then success");
    assert_eq!(m[0].group, vec![("user".to_owned(), "alice".to_owned())]);
    // Contributing ids reach through the chain: the three failures and the success.
    assert_eq!(m[0].event_ids, vec![id(2), id(3), id(4), id(5)]);

    // Another user's success does not complete alice's sequence.
    let mut run = Run::new(CHAIN);
    for t in 0..3 {
        run.at(t, failed("alice"));
    }
    assert!(run.at(10, ok("bob")).is_empty());
}

#[test]
fn chained_window_edge() {
    let mut run = Run::new(CHAIN);
    for t in 0..3 {
        run.at(t * SEC, failed("alice"));
    }
    // The inner match happened at 2s; the success at 10m2s is exactly at the edge.
    assert_eq!(
        run.at(
            10 * MIN + 2 * SEC,
            json!({"kind": "login_ok", "user": "alice"})
        )
        .len(),
        1
    );
    let mut run = Run::new(CHAIN);
    for t in 0..3 {
        run.at(t * SEC, failed("alice"));
    }
    assert!(run
        .at(
            10 * MIN + 2 * SEC + 1,
            json!({"kind": "login_ok", "user": "alice"})
        )
        .is_empty());
}

#[test]
fn generate_false_hides_base_rule_matches() {
    let mut run = Run::new(EVENT_COUNT);
    let detections = run.all(0, failed("alice"));
    assert!(detections.is_empty(), "{detections:?}");
    // Rules not referred to by any correlation still report.
    let detections = run.all(1, json!({"kind": "upload", "user": "u", "bytes": 1}));
    assert_eq!(detections.len(), 1);
    let Finding::Rule { rule } = detections[0] else {
        panic!("{detections:?}")
    };
    assert_eq!(run.detector.engine().rules()[rule].title, "Rule upload");
    // The stateless API still sees every match.
    let engine = run.detector.engine();
    let hits = engine.evaluate(&LogSource::new(Some("test"), None, None), &doc(failed("a")));
    assert_eq!(hits.len(), 1);
}

#[test]
fn generate_true_keeps_base_rule_matches() {
    let mut run = Run::new(&EVENT_COUNT.replace("  condition:", "  generate: true\n  condition:"));
    let mut rules = 0;
    let mut correlations = 0;
    for t in 0..3 {
        for d in run.all(t, failed("alice")) {
            match d {
                Finding::Rule { .. } => rules += 1,
                Finding::Correlation(_) => correlations += 1,
            }
        }
    }
    assert_eq!((rules, correlations), (3, 1));
}

#[test]
fn generate_true_on_the_outer_reports_the_inner_correlation() {
    let mut run = Run::new(&CHAIN.replacen(
        "  timespan: 10m\n",
        "  timespan: 10m\n  generate: true\n",
        1,
    ));
    for t in 0..2 {
        run.at(t, failed("alice"));
    }
    let m = run.at(2, failed("alice"));
    assert_eq!(m.len(), 1);
    assert_eq!(run.title(&m[0]), "Many failed logins");
}

#[test]
fn rules_are_referred_to_by_id_too() {
    let mut run = Run::new(
        "title: By id\ncorrelation:\n  type: event_count\n  \
         rules: [11111111-0000-0000-0000-000000000001]\n  group-by: [user]\n  timespan: 1m\n  \
         condition:\n    gte: 2\n",
    );
    run.at(0, failed("a"));
    assert_eq!(run.at(1, failed("a")).len(), 1);
}

#[test]
fn no_group_by_means_one_group() {
    let mut run = Run::new(
        "title: All\ncorrelation:\n  type: event_count\n  rules: [login_failed]\n  timespan: 1m\n  \
         condition:\n    gte: 2\n",
    );
    run.at(0, failed("a"));
    let m = run.at(1, failed("b"));
    assert_eq!(m.len(), 1);
    assert!(m[0].group.is_empty());
}

#[test]
fn timespan_units() {
    for (span, inside, outside) in [
        ("30s", 30 * SEC, 30 * SEC + 1),
        ("2h", 120 * MIN, 120 * MIN + 1),
        ("2d", 2 * 24 * 60 * MIN, 2 * 24 * 60 * MIN + 1),
    ] {
        let text = EVENT_COUNT.replace("timespan: 5m", &format!("timespan: {span}"));
        let text = text.replace("gte: 3", "gte: 2");
        let mut run = Run::new(&text);
        run.at(0, failed("a"));
        assert_eq!(run.at(inside, failed("a")).len(), 1, "{span}");
        let mut run = Run::new(&text);
        run.at(0, failed("a"));
        assert!(run.at(outside, failed("a")).is_empty(), "{span}");
    }
}

#[test]
fn bad_correlations_are_reported() {
    let bad = |body: &str| {
        let mut builder = RuleSetBuilder::new();
        builder
            .add_text(&base_rules(), "base.yml")
            .add_text(&format!("title: Bad\ncorrelation:\n{body}"), "bad.yml");
        let built = builder.build();
        assert!(
            built.engine.correlations().is_empty(),
            "{body} loaded: {:?}",
            built.engine.correlations()
        );
        built
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let common = "  rules: [login_failed]\n  group-by: [user]\n  timespan: 5m\n";
    assert!(
        bad(&format!("  type: nope\n{common}  condition: {{gte: 1}}\n"))
            .contains("unknown correlation type")
    );
    assert!(bad(&format!("  type: event_count\n{common}")).contains("no `condition`"));
    assert!(bad(&format!(
        "  type: value_count\n{common}  condition: {{gte: 1}}\n"
    ))
    .contains("needs a `field`"));
    assert!(bad(&format!(
        "  type: event_count\n{common}  condition: {{about: 1}}\n"
    ))
    .contains("unknown correlation condition"));
    assert!(bad(
        "  type: event_count\n  rules: [login_failed]\n  timespan: 5x\n  condition: {gte: 1}\n"
    )
    .contains("invalid timespan"));
    assert!(bad(
        "  type: event_count\n  rules: [login_failed]\n  timespan: 0m\n  condition: {gte: 1}\n"
    )
    .contains("greater than zero"));
    assert!(bad("  type: event_count\n  rules: [login_failed]\n  timespan: 99999999999999999d\n  condition: {gte: 1}\n").contains("timespan"));
    assert!(
        bad("  type: event_count\n  rules: [nobody]\n  timespan: 5m\n  condition: {gte: 1}\n")
            .contains("unknown rule \"nobody\"")
    );
    assert!(
        bad("  type: temporal_ordered\n  rules: [login_failed]\n  timespan: 5m\n")
            .contains("at least two")
    );
    assert!(bad(&format!(
        "  type: event_count\n{common}  condition: {{gte: 1}}\n  generate: maybe\n"
    ))
    .contains("generate"));

    // A cycle, and a correlation on one that failed.
    let mut builder = RuleSetBuilder::new();
    builder.add_text(
        "title: A\nname: ca\ncorrelation:\n  type: event_count\n  rules: [cb]\n  timespan: 1m\n  condition: {gte: 1}\n\
         ---\ntitle: B\nname: cb\ncorrelation:\n  type: event_count\n  rules: [ca]\n  timespan: 1m\n  condition: {gte: 1}\n",
        "cycle.yml",
    );
    let built = builder.build();
    assert!(built.engine.correlations().is_empty());
    assert_eq!(built.errors.len(), 2, "{:?}", built.errors);
    assert!(built.errors[0].message.contains("cycle"));
}

#[test]
fn documents_in_separate_files_resolve() {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(EVENT_COUNT, "a_correlation_first.yml");
    builder.add_text(&base_rules(), "z_rules_later.yml");
    let built = builder.build();
    assert!(built.errors.is_empty(), "{:?}", built.errors);
    assert_eq!(built.engine.correlations().len(), 1);
    let mut detector = Detector::new(built.engine);
    let ls = LogSource::new(Some("test"), None, None);
    let mut fired = 0;
    for t in 0..3 {
        fired += detector.process(t, None, &ls, &doc(failed("a"))).len();
    }
    assert_eq!(fired, 1);
}

#[test]
fn snapshot_round_trip_survives_a_restart() {
    let mut run = Run::new(CHAIN);
    run.at(0, failed("alice"));
    run.at(SEC, failed("alice"));
    run.at(SEC, failed("bob"));
    let bytes = run.detector.snapshot();
    let before = run.detector.stats();
    assert_eq!(before.groups, 2);

    // A new process: same rules, state restored from the bytes.
    let mut restored = detector(CHAIN);
    let report = restored.restore(&bytes).expect("restore");
    assert_eq!(report.groups, 2);
    assert!(report.dropped_correlations.is_empty());
    assert_eq!(restored.stats(), before);
    assert_eq!(
        restored.snapshot(),
        bytes,
        "restoring then saving is stable"
    );
    assert_eq!(restored.watermark(), Some(SEC));

    let ls = LogSource::new(Some("test"), None, None);
    let mut run = Run {
        detector: restored,
        next_id: 10,
    };
    run.at(2 * SEC, failed("alice"));
    let m = run.at(3 * SEC, json!({"kind": "login_ok", "user": "alice"}));
    assert_eq!(m.len(), 1, "the restored failures count");
    assert_eq!(m[0].event_ids, vec![id(1), id(2), id(10), id(11)]);
    let _ = ls;
}

#[test]
fn snapshot_errors_and_rule_changes() {
    let mut d = detector(EVENT_COUNT);
    assert!(matches!(
        d.restore(b"not json"),
        Err(SnapshotError::Malformed(_))
    ));
    assert!(matches!(
        d.restore(br#"{"format":"vigil-detect correlation state","version":99}"#),
        Err(SnapshotError::Version { found: 99 })
    ));
    assert!(matches!(
        d.restore(br#"{"format":"something else","version":1}"#),
        Err(SnapshotError::Malformed(_))
    ));

    let ls = LogSource::new(Some("test"), None, None);
    d.process(0, None, &ls, &doc(failed("a")));
    let bytes = d.snapshot();
    // The correlation changed its group-by: its saved windows no longer mean the same.
    let mut changed = detector(&EVENT_COUNT.replace("group-by: [user]", "group-by: [host]"));
    let report = changed.restore(&bytes).expect("restore");
    assert_eq!(report.groups, 0);
    assert_eq!(
        report.dropped_correlations,
        vec!["22222222-0000-0000-0000-000000000001"]
    );
}

#[test]
fn memory_stays_bounded_under_many_groups() {
    let limits = Limits {
        max_groups: 100,
        max_entries: 10,
        max_ids: 4,
        ..Limits::default()
    };
    let mut d = detector_with(&EVENT_COUNT.replace("gte: 3", "gte: 1000000"), limits);
    let ls = LogSource::new(Some("test"), None, None);
    for i in 0..5_000u32 {
        d.process(
            i64::from(i),
            Some(Id::from_bytes([(i % 251) as u8; 16])),
            &ls,
            &doc(failed(&format!("user{i}"))),
        );
        assert!(d.stats().groups <= 100);
    }
    let stats = d.stats();
    assert_eq!(stats.groups, 100);
    assert_eq!(stats.counters.evicted_groups, 4_900);
    // One group with many events: capped entries, evictions counted.
    for i in 0..1_000 {
        d.process(10_000 + i, None, &ls, &doc(failed("busy")));
    }
    let stats = d.stats();
    assert!(stats.entries <= 100 * 10);
    assert_eq!(stats.counters.evicted_entries, 990);
    // Time passing frees everything.
    d.advance(10 * 24 * 60 * MIN);
    assert_eq!(d.stats().groups, 0);
    assert_eq!(d.stats().entries, 0);
    // Snapshots respect the limits too.
    assert!(d.snapshot().len() < 10_000);
}

#[test]
fn match_ids_are_bounded() {
    let limits = Limits {
        max_groups: 10,
        max_entries: 100,
        max_ids: 4,
        ..Limits::default()
    };
    let mut d = detector_with(&EVENT_COUNT.replace("gte: 3", "gte: 10"), limits);
    let ls = LogSource::new(Some("test"), None, None);
    let mut matches = Vec::new();
    for i in 0..10u8 {
        matches.extend(d.process(i64::from(i), Some(id(i)), &ls, &doc(failed("a"))));
    }
    let [Finding::Correlation(m)] = matches.as_slice() else {
        panic!("{matches:?}")
    };
    assert_eq!(m.event_ids, vec![id(6), id(7), id(8), id(9)]);
    assert!(m.event_ids_truncated);
    assert_eq!(m.inputs, 10);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let mut run = Run::new(VALUE_COUNT);
    for (t, event) in [
        (
            i64::MIN,
            json!({"kind": "login_failed", "src": "s", "user": "x"}),
        ),
        (
            i64::MAX,
            json!({"kind": "login_failed", "src": [1, 2], "user": {"a": 1}}),
        ),
        (0, json!({"kind": "login_failed", "src": null, "user": "y"})),
        (
            i64::MAX,
            json!({"kind": "login_failed", "src": "s", "user": "z"}),
        ),
    ] {
        let _ = run.at(t, event);
    }
    let mut run = Run::new(
        "title: Sum\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  group-by: [user]\n  \
         timespan: 1m\n  condition:\n    field: bytes\n    gt: 1\n",
    );
    for value in [
        json!(f64::MAX),
        json!(f64::MAX),
        json!("1e400"),
        json!("NaN"),
        json!(-1),
    ] {
        let _ = run.at(0, upload("u", value));
    }
}

// Streams: each source has its own watermark, so a source lagging behind another still
// correlates, while lateness within one source is unchanged.

const HOUR: i64 = 60 * MIN;

/// Feeds one event of `stream`; returns the correlation matches it completed.
fn in_stream(d: &mut Detector, stream: &str, time: i64, event: Value) -> Vec<CorrelationMatch> {
    d.evaluate(
        stream,
        time,
        None,
        &LogSource::new(Some("test"), None, None),
        &doc(event),
    )
    .detections
    .into_iter()
    .filter_map(|d| match d {
        Finding::Correlation(m) => Some(m),
        Finding::Rule { .. } => None,
    })
    .collect()
}

fn other() -> Value {
    json!({"kind": "net_conn", "host": "h"})
}

#[test]
fn a_source_lagging_by_hours_still_correlates() {
    let mut d = detector(EVENT_COUNT);
    // CloudTrail's events, three hours ahead, arrive first.
    for t in 0..10 {
        in_stream(&mut d, "cloudtrail", 10 * HOUR + t * MIN, other());
    }
    // Then the Flask app's failed logins of three hours before.
    assert!(in_stream(&mut d, "flask-app", 7 * HOUR, failed("alice")).is_empty());
    assert!(in_stream(&mut d, "flask-app", 7 * HOUR + SEC, failed("alice")).is_empty());
    let m = in_stream(&mut d, "flask-app", 7 * HOUR + 2 * SEC, failed("alice"));
    assert_eq!(m.len(), 1, "the lagging source's brute force fires");
    assert_eq!(m[0].first_time, 7 * HOUR);
    assert_eq!(d.stats().counters.late, 0);
    assert_eq!(d.stream_watermark("flask-app"), Some(7 * HOUR + 2 * SEC));
    assert_eq!(d.stream_watermark("cloudtrail"), Some(10 * HOUR + 9 * MIN));
    assert_eq!(d.watermark(), Some(10 * HOUR + 9 * MIN));

    // The same events in a single stream: the failed logins are judged against the CloudTrail
    // times and are late for the live windows. This is what the streams are for. They still
    // correlate among themselves, apart from the live windows.
    let mut d = detector(EVENT_COUNT);
    for t in 0..10 {
        in_stream(&mut d, DEFAULT_STREAM, 10 * HOUR + t * MIN, other());
    }
    let mut fired = Vec::new();
    for t in 0..3 {
        fired.extend(in_stream(
            &mut d,
            DEFAULT_STREAM,
            7 * HOUR + t * SEC,
            failed("alice"),
        ));
    }
    assert_eq!(d.stats().counters.late, 3);
    assert_eq!(
        fired.len(),
        1,
        "the late burst correlates in its own window"
    );
    assert_eq!((fired[0].first_time, fired[0].inputs), (7 * HOUR, 3));
    assert_eq!(d.stats().groups, 0, "the live windows never saw them");

    // Without room for late groups, they are dropped (and still counted).
    let limits = Limits {
        max_late_groups: 0,
        ..Limits::default()
    };
    let mut d = detector_with(EVENT_COUNT, limits);
    in_stream(&mut d, DEFAULT_STREAM, 10 * HOUR, other());
    for t in 0..3 {
        assert!(in_stream(&mut d, DEFAULT_STREAM, 7 * HOUR + t * SEC, failed("alice")).is_empty());
    }
    assert_eq!(d.stats().counters.late, 3);
    assert_eq!(d.stats().late_groups, 0);
}

#[test]
fn the_lagging_sources_windows_expire_by_its_own_watermark() {
    let mut d = detector(EVENT_COUNT);
    in_stream(&mut d, "cloudtrail", 10 * HOUR, other());
    in_stream(&mut d, "flask-app", 7 * HOUR, failed("alice"));
    in_stream(&mut d, "flask-app", 7 * HOUR, failed("bob"));
    // CloudTrail moving on does not expire the Flask app's windows...
    in_stream(&mut d, "cloudtrail", 11 * HOUR, other());
    assert_eq!(d.stats().groups, 2);
    // ...the Flask app moving past them does (5m window, so 7h05m + 1ms leaves them behind).
    in_stream(&mut d, "flask-app", 7 * HOUR + 5 * MIN, failed("carol"));
    assert_eq!(d.stats().groups, 3, "exactly at the edge, still open");
    in_stream(&mut d, "flask-app", 7 * HOUR + 5 * MIN + 1, other());
    assert_eq!(d.stats().groups, 1, "only carol's window is left");
}

#[test]
fn a_late_event_within_one_source_is_still_late() {
    let mut d = detector(EVENT_COUNT);
    in_stream(&mut d, "cloudtrail", 3 * HOUR, other());
    in_stream(&mut d, "flask-app", 2 * HOUR, failed("alice"));
    // Ten minutes before the Flask app's own watermark, beyond the 5m window: late, although
    // CloudTrail's watermark is far ahead anyway and another stream lags further.
    in_stream(&mut d, "kubernetes-audit", HOUR, other());
    assert!(in_stream(&mut d, "flask-app", 2 * HOUR - 10 * MIN, failed("bob")).is_empty());
    assert_eq!(d.stats().counters.late, 1);
    assert_eq!(d.stats().groups, 1);
    // And in an existing group, older than its window: late too.
    in_stream(&mut d, "flask-app", 2 * HOUR - 6 * MIN, failed("alice"));
    assert_eq!(d.stats().counters.late, 2);
    // Within the window of its own stream, an out-of-order event still counts.
    in_stream(&mut d, "flask-app", 2 * HOUR - 4 * MIN, failed("alice"));
    let m = in_stream(&mut d, "flask-app", 2 * HOUR - 3 * MIN, failed("alice"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].inputs, 3);
}

#[test]
fn a_correlation_across_sources_waits_for_the_lagging_one() {
    let mut d = detector(TEMPORAL);
    // Both sources have fed the correlation; Kubernetes lags two hours behind CloudTrail.
    in_stream(
        &mut d,
        "kubernetes-audit",
        8 * HOUR,
        recon("c", "other-host"),
    );
    in_stream(&mut d, "cloudtrail", 10 * HOUR, recon("a", "h"));
    in_stream(&mut d, "cloudtrail", 10 * HOUR + SEC, recon("b", "h"));
    // CloudTrail moves on by an hour; the window for h stays open for the lagging source.
    in_stream(&mut d, "cloudtrail", 11 * HOUR, other());
    in_stream(&mut d, "kubernetes-audit", 9 * HOUR, other());
    let m = in_stream(
        &mut d,
        "kubernetes-audit",
        10 * HOUR + 2 * SEC,
        recon("c", "h"),
    );
    assert_eq!(m.len(), 1, "c from the lagging source completes a, b");
    assert_eq!(m[0].inputs, 3);
}

#[test]
fn a_stale_source_is_forgotten_and_its_windows_expire() {
    let limits = Limits {
        max_stream_lag: HOUR,
        ..Limits::default()
    };
    let mut d = detector_with(EVENT_COUNT, limits);
    in_stream(&mut d, "flask-app", 0, failed("alice"));
    in_stream(&mut d, "cloudtrail", HOUR, other());
    assert_eq!(d.stats().groups, 1, "an hour behind is allowed");
    in_stream(&mut d, "cloudtrail", HOUR + 5 * MIN + 1, other());
    assert_eq!(
        d.stats().groups,
        0,
        "beyond the lag and the window, the group expires"
    );
    assert_eq!(
        d.stream_watermark("flask-app"),
        None,
        "the stale stream is forgotten"
    );
    // An input from beyond the allowed lag is late in any stream, even a new one.
    assert!(in_stream(&mut d, "replay", 0, failed("alice")).is_empty());
    assert_eq!(d.stats().counters.late, 1);
    assert_eq!(d.stats().groups, 0);
}

#[test]
fn streams_are_bounded() {
    let limits = Limits {
        max_streams: 3,
        ..Limits::default()
    };
    let mut d = detector_with(EVENT_COUNT, limits);
    for i in 0..50 {
        in_stream(&mut d, &format!("source-{i}"), i * SEC, other());
        assert!(d.streams().count() <= 3);
    }
    let mut names: Vec<String> = d.streams().map(|(name, _)| name.to_owned()).collect();
    names.sort();
    assert_eq!(names, ["source-47", "source-48", "source-49"]);
}

#[test]
fn snapshot_round_trip_keeps_stream_watermarks() {
    let mut d = detector(EVENT_COUNT);
    in_stream(&mut d, "cloudtrail", 10 * HOUR, other());
    in_stream(&mut d, "flask-app", 7 * HOUR, failed("alice"));
    in_stream(&mut d, "flask-app", 7 * HOUR + SEC, failed("alice"));
    let bytes = d.snapshot();

    let mut restored = detector(EVENT_COUNT);
    let report = restored.restore(&bytes).expect("restore");
    assert_eq!(report.groups, 1, "the lagging source's window survives");
    assert_eq!(restored.stream_watermark("flask-app"), Some(7 * HOUR + SEC));
    assert_eq!(restored.stream_watermark("cloudtrail"), Some(10 * HOUR));
    assert_eq!(restored.watermark(), Some(10 * HOUR));
    assert_eq!(
        restored.snapshot(),
        bytes,
        "restoring then saving is stable"
    );
    // The restored window still expires by the Flask app's watermark, not CloudTrail's...
    in_stream(&mut restored, "cloudtrail", 11 * HOUR, other());
    assert_eq!(restored.stats().groups, 1);
    // ...and completes.
    let m = in_stream(
        &mut restored,
        "flask-app",
        7 * HOUR + 2 * SEC,
        failed("alice"),
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].inputs, 3);
}

#[test]
fn snapshot_without_streams_restores_as_one_stream() {
    // A snapshot as written before streams existed: one watermark, no stream fields.
    let mut d = detector(EVENT_COUNT);
    in_stream(&mut d, DEFAULT_STREAM, 2 * HOUR, failed("alice"));
    in_stream(&mut d, DEFAULT_STREAM, 2 * HOUR, failed("alice"));
    let mut legacy: Value = serde_json::from_slice(&d.snapshot()).unwrap();
    let object = legacy.as_object_mut().unwrap();
    assert!(object.remove("streams").is_some());
    for correlation in object["correlations"].as_array_mut().unwrap() {
        correlation.as_object_mut().unwrap().remove("streams");
    }
    assert!(!legacy.to_string().contains("streams"));
    let legacy = serde_json::to_vec(&legacy).unwrap();

    let mut d = detector(EVENT_COUNT);
    let report = d.restore(&legacy).expect("restore");
    assert_eq!(report.groups, 1, "{report:?}");
    assert_eq!(d.stream_watermark(DEFAULT_STREAM), Some(2 * HOUR));
    let m = in_stream(&mut d, DEFAULT_STREAM, 2 * HOUR + SEC, failed("alice"));
    assert_eq!(m.len(), 1, "the saved window counts");
    // The window expires by the old global watermark, as before.
    let mut d = detector(EVENT_COUNT);
    d.restore(&legacy).expect("restore");
    assert_eq!(d.stats().groups, 1);
    in_stream(&mut d, DEFAULT_STREAM, 2 * HOUR + 5 * MIN + 1, other());
    assert_eq!(d.stats().groups, 0);
}
