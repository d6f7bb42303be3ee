//! Correlation state under attack: inputs that arrive late, and floods of made-up groups. The
//! sender chooses every time and every group-by value, so neither may blind a correlation that
//! is counting up a real attack.

use serde_json::{json, Map, Value};
use vigil_detect::{Detector, Finding, Limits, RuleSetBuilder};
use vigil_event::LogSource;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Some time in late 2026, in milliseconds.
const NOW: i64 = 1_796_000_000_000;

const RULES: &str = "
title: Failed login
id: 33333333-0000-0000-0000-000000000001
name: login_failed
level: low
logsource: {product: test}
detection:
  sel:
    kind: login_failed
  condition: sel
---
title: Other
id: 33333333-0000-0000-0000-000000000002
name: other
level: low
logsource: {product: test}
detection:
  sel:
    kind: other
  condition: sel
---
title: Brute force
id: 33333333-0000-0000-0000-000000000003
level: high
correlation:
  type: event_count
  rules: [login_failed]
  group-by: [user]
  timespan: 5m
  condition:
    gte: 5
";

fn detector(limits: Limits) -> Detector {
    let mut builder = RuleSetBuilder::new();
    builder.add_text(RULES, "rules.yml");
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

fn failed(user: &str) -> Map<String, Value> {
    doc(json!({"kind": "login_failed", "user": user}))
}

fn other() -> Map<String, Value> {
    doc(json!({"kind": "other"}))
}

/// Feeds one event of `stream` at `time`; gives the brute-force matches (as their input
/// counts) and how many of its inputs were late.
fn feed(
    d: &mut Detector,
    stream: &str,
    time: i64,
    event: Map<String, Value>,
) -> (Vec<usize>, usize) {
    let ls = LogSource::new(Some("test"), None, None);
    let evaluation = d.evaluate(stream, time, None, &ls, &event);
    let fired = evaluation
        .detections
        .iter()
        .filter_map(|detection| match detection {
            Finding::Correlation(m) => Some(m.inputs),
            Finding::Rule { .. } => None,
        })
        .collect();
    (fired, evaluation.late_inputs)
}

#[test]
fn a_backdated_burst_correlates_apart_and_is_reported_late() {
    let mut d = detector(Limits::default());
    // The Flask stream is live: its watermark is now.
    feed(&mut d, "flask-app", NOW, other());
    // Six failed logins stamped three days back arrive together.
    let mut fired = Vec::new();
    let mut late = 0;
    for i in 0..6 {
        let (matches, late_inputs) = feed(
            &mut d,
            "flask-app",
            NOW - 3 * DAY + i * SEC,
            failed("m.chen"),
        );
        fired.extend(matches);
        late += late_inputs;
    }
    assert_eq!(late, 6, "every one is late for the live windows");
    assert_eq!(fired, vec![5], "the burst still raises its brute force");
    let stats = d.stats();
    assert_eq!(stats.counters.late, 6);
    assert_eq!(stats.groups, 0, "the live windows never saw the burst");
    assert_eq!(
        stats.late_groups, 1,
        "the sixth failure starts a new late window"
    );
}

#[test]
fn late_inputs_neither_join_nor_expire_live_windows() {
    let mut d = detector(Limits::default());
    // A real brute force, counting up in the live window.
    for i in 0..3 {
        assert!(feed(&mut d, "flask-app", NOW + i * SEC, failed("alice"))
            .0
            .is_empty());
    }
    // The attacker floods the same group, and others, with backdated failures: they are late,
    // and none of them counts towards alice's live window or closes it.
    for i in 0..4 {
        let (fired, late) = feed(
            &mut d,
            "flask-app",
            NOW - HOUR + i * 2 * MIN,
            failed("alice"),
        );
        assert_eq!((fired, late), (Vec::<usize>::new(), 1));
        feed(&mut d, "flask-app", NOW - 2 * DAY, failed(&format!("u{i}")));
    }
    assert_eq!(d.stats().groups, 1);
    assert!(feed(&mut d, "flask-app", NOW + 10 * SEC, failed("alice"))
        .0
        .is_empty());
    assert_eq!(
        feed(&mut d, "flask-app", NOW + 11 * SEC, failed("alice")).0,
        vec![5],
        "exactly the five live failures fire"
    );
}

#[test]
fn an_older_late_burst_starts_its_group_afresh() {
    let mut d = detector(Limits::default());
    feed(&mut d, "flask-app", NOW, other());
    // A decoy a day back, then the real burst three days back for the same user: the burst is
    // older than the decoy's window, so it starts the late group again rather than being
    // dropped as late behind the decoy.
    feed(&mut d, "flask-app", NOW - DAY, failed("bob"));
    let mut fired = Vec::new();
    for i in 0..5 {
        fired.extend(feed(&mut d, "flask-app", NOW - 3 * DAY + i * SEC, failed("bob")).0);
    }
    assert_eq!(fired, vec![5]);
}

#[test]
fn late_groups_are_bounded_and_can_be_turned_off() {
    let limits = Limits {
        max_late_groups: 10,
        ..Limits::default()
    };
    let mut d = detector(limits);
    feed(&mut d, "s", NOW, other());
    for i in 0..1_000 {
        feed(&mut d, "s", NOW - DAY + i, failed(&format!("u{i}")));
        assert!(d.stats().late_groups <= 10);
    }
    assert_eq!(d.stats().counters.evicted_groups, 990);

    let limits = Limits {
        max_late_groups: 0,
        ..Limits::default()
    };
    let mut d = detector(limits);
    feed(&mut d, "s", NOW, other());
    let mut fired = Vec::new();
    for i in 0..6 {
        let (matches, late) = feed(&mut d, "s", NOW - DAY + i, failed("alice"));
        assert_eq!(late, 1);
        fired.extend(matches);
    }
    assert!(fired.is_empty());
    assert_eq!(d.stats().late_groups, 0);
}

#[test]
fn late_windows_survive_a_snapshot() {
    let mut d = detector(Limits::default());
    feed(&mut d, "flask-app", NOW, other());
    for i in 0..4 {
        feed(
            &mut d,
            "flask-app",
            NOW - 3 * DAY + i * SEC,
            failed("carol"),
        );
    }
    let mut restored = detector(Limits::default());
    restored.restore(&d.snapshot()).expect("restores");
    assert_eq!(restored.stats().late_groups, 1);
    assert_eq!(restored.stats().counters.late, 4);
    let (fired, late) = feed(
        &mut restored,
        "flask-app",
        NOW - 3 * DAY + 4 * SEC,
        failed("carol"),
    );
    assert_eq!((fired, late), (vec![5], 1));
}

#[test]
fn a_counting_group_survives_a_flood_of_one_off_groups() {
    // A real brute force: two failures, then one more after every 17,000 made-up users, 51,000
    // one-off groups in all against a limit of 10,000, each stamped later than the real
    // group's last input (so evicting the stalest group would pick the real one).
    let mut d = detector(Limits::default());
    let mut fired = Vec::new();
    let mut time = NOW;
    fired.extend(feed(&mut d, "flask-app", time, failed("m.chen")).0);
    for round in 0..3 {
        time += 1;
        fired.extend(feed(&mut d, "flask-app", time, failed("m.chen")).0);
        for i in 0..17_000 {
            time += 1;
            let made_up = format!("made-up-{round}-{i}");
            fired.extend(feed(&mut d, "flask-app", time, failed(&made_up)).0);
        }
    }
    assert_eq!(
        fired,
        Vec::<usize>::new(),
        "four real failures so far, and no made-up user fires"
    );
    let stats = d.stats();
    assert_eq!(stats.groups, 10_000);
    assert_eq!(
        stats.counters.evicted_groups,
        51_001 - 10_000,
        "evictions are counted"
    );
    assert_eq!(
        d.counters(0).unwrap().evicted_groups,
        stats.counters.evicted_groups
    );
    // The fifth failure for the real user still finds the other four.
    fired.extend(feed(&mut d, "flask-app", time + 1, failed("m.chen")).0);
    assert_eq!(fired, vec![5]);
}

#[test]
fn protected_groups_are_bounded_so_new_groups_still_have_room() {
    // Every made-up group gets two inputs, so each would be protected; the protected share is
    // bounded, so a new real group still lives long enough to count up.
    let limits = Limits {
        max_groups: 100,
        ..Limits::default()
    };
    let mut d = detector(limits);
    let mut time = NOW;
    for i in 0..1_000 {
        for _ in 0..2 {
            time += 1;
            feed(&mut d, "s", time, failed(&format!("pair-{i}")));
        }
    }
    let mut fired = Vec::new();
    for _ in 0..5 {
        time += 1;
        fired.extend(feed(&mut d, "s", time, failed("real")).0);
        for j in 0..10 {
            time += 1;
            feed(&mut d, "s", time, failed(&format!("one-off-{time}-{j}")));
        }
    }
    assert_eq!(fired, vec![5]);
    assert!(d.stats().groups <= 100);
}

#[test]
fn eviction_state_survives_a_snapshot() {
    let limits = Limits {
        max_groups: 100,
        ..Limits::default()
    };
    let mut d = detector(limits);
    let mut time = NOW;
    for _ in 0..2 {
        time += 1;
        feed(&mut d, "s", time, failed("real"));
    }
    for i in 0..50 {
        time += 1;
        feed(&mut d, "s", time, failed(&format!("one-off-{i}")));
    }
    let mut restored = detector(limits);
    restored.restore(&d.snapshot()).expect("restores");
    assert_eq!(restored.stats().groups, 51);
    // The restored real group is still protected: 200 more one-offs do not push it out.
    for i in 0..200 {
        time += 1;
        feed(&mut restored, "s", time, failed(&format!("later-{i}")));
    }
    let mut fired = Vec::new();
    for _ in 0..3 {
        time += 1;
        fired.extend(feed(&mut restored, "s", time, failed("real")).0);
    }
    assert_eq!(fired, vec![5]);
}
