//! The dispatcher with explicit time: routing, grouping, repeats, silences, inhibition,
//! acknowledge and resolve, and restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use figment::providers::Format;
use vigil_event::{Alert, AlertId, Level, LogSource, Source};

use super::*;
use crate::silences::{NewSilence, Silences};
use crate::NotificationKind;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

fn alert(n: u32, rule: &str, level: Level) -> Alert {
    let id = Alert::derive_id(rule, &[vigil_event::EventId::from_bytes([n as u8; 16])]);
    Alert {
        id,
        rule_id: rule.into(),
        rule_title: format!("title of {rule}"),
        level,
        tags: vec!["attack.t1078".into()],
        event_ids: vec![],
        time: t(0),
        detected: t(0),
        source: Source {
            kind: "cloudtrail".into(),
            name: "org-trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        group: BTreeMap::new(),
        matched: Vec::new(),
        event_position: None,
    }
}

/// Triage as the test says it.
#[derive(Default)]
struct Triage(Mutex<BTreeMap<AlertId, AlertState>>, AtomicUsize);

impl Triage {
    fn set(&self, alert: &Alert, state: AlertState) {
        self.0.lock().unwrap().insert(alert.id, state);
    }
}

impl AlertStates for Triage {
    fn states(&self, ids: &[AlertId]) -> BTreeMap<AlertId, AlertState> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let known = self.0.lock().unwrap();
        ids.iter()
            .filter_map(|id| known.get(id).map(|s| (*id, *s)))
            .collect()
    }
}

fn config(toml_text: &str) -> (RouteConfig, Vec<InhibitConfig>) {
    #[derive(serde::Deserialize)]
    struct Notify {
        route: RouteConfig,
        #[serde(default)]
        inhibit: Vec<InhibitConfig>,
    }
    let parsed: Notify = figment::Figment::from(figment::providers::Toml::string(toml_text))
        .extract()
        .unwrap();
    (parsed.route, parsed.inhibit)
}

const SIMPLE: &str = r#"
[route]
receivers = ["team"]
group_by = ["rule_id"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
"#;

fn open(dir: &Path, toml_text: &str) -> Dispatcher {
    let (route, inhibit) = config(toml_text);
    Dispatcher::open(&dir.join("notify.sqlite"), &route, &inhibit).unwrap()
}

/// Takes what is due and confirms it, as the stage does.
fn flush(dispatcher: &Dispatcher, now: DateTime<Utc>, triage: &Triage) -> Vec<Notification> {
    let due = dispatcher.due(now, triage).unwrap();
    let ids: Vec<String> = due.iter().map(|n| n.id.clone()).collect();
    dispatcher.emitted(&ids).unwrap();
    due
}

#[test]
fn group_wait_collects_alerts_into_one_notification() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let triage = Triage::default();
    for (n, at) in [(1, 0), (2, 10), (3, 29)] {
        let accepted = dispatcher
            .accept(&alert(n, "r1", Level::High), t(at))
            .unwrap();
        assert_eq!(accepted.grouped, vec!["root".to_owned()]);
    }
    assert!(
        flush(&dispatcher, t(29), &triage).is_empty(),
        "group_wait not over"
    );
    let sent = flush(&dispatcher, t(30), &triage);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let n = &sent[0];
    assert_eq!(n.kind, NotificationKind::Firing);
    assert_eq!(n.receiver, "team");
    assert_eq!((n.total_alerts, n.new_alerts, n.alerts.len()), (3, 3, 3));
    assert_eq!(
        n.alerts[0].id,
        alert(3, "r1", Level::High).id,
        "newest first"
    );
    assert_eq!(n.group.get("rule_id").map(String::as_str), Some("r1"));
    assert!(n.id.ends_with(":team:1"), "{}", n.id);
    // Another rule is another group.
    dispatcher
        .accept(&alert(4, "r2", Level::High), t(31))
        .unwrap();
    assert!(flush(&dispatcher, t(40), &triage).is_empty());
    let other = flush(&dispatcher, t(61), &triage);
    assert_eq!(other.len(), 1);
    assert_ne!(other[0].group_key, n.group_key);
    // The same alert again (redelivered by the bus) is not news.
    dispatcher
        .accept(&alert(4, "r2", Level::High), t(62))
        .unwrap();
    assert!(flush(&dispatcher, t(1000), &triage).is_empty());
}

#[test]
fn new_alerts_wait_for_group_interval_and_quiet_groups_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let triage = Triage::default();
    dispatcher
        .accept(&alert(1, "r1", Level::High), t(0))
        .unwrap();
    assert_eq!(flush(&dispatcher, t(30), &triage).len(), 1);
    // A new alert a minute later waits until 5 minutes after the first notification.
    dispatcher
        .accept(&alert(2, "r1", Level::High), t(90))
        .unwrap();
    assert!(flush(&dispatcher, t(91), &triage).is_empty());
    assert!(flush(&dispatcher, t(329), &triage).is_empty());
    let update = flush(&dispatcher, t(330), &triage);
    assert_eq!(update.len(), 1);
    assert_eq!((update[0].total_alerts, update[0].new_alerts), (2, 1));
    assert!(update[0].id.ends_with(":team:2"));
    // Nothing new: quiet until repeat_interval (4 h) after the last notification.
    assert!(flush(&dispatcher, t(330 + 4 * 3600 - 1), &triage).is_empty());
    let repeat = flush(&dispatcher, t(330 + 4 * 3600), &triage);
    assert_eq!(repeat.len(), 1);
    assert_eq!(
        (repeat[0].kind, repeat[0].new_alerts),
        (NotificationKind::Firing, 0)
    );
    assert!(repeat[0].id.ends_with(":team:3"));
    // Acknowledged: no more repeats.
    triage.set(&alert(1, "r1", Level::High), AlertState::Acknowledged);
    triage.set(&alert(2, "r1", Level::High), AlertState::Acknowledged);
    let ack = flush(&dispatcher, t(330 + 4 * 3600 + 5), &triage);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].kind, NotificationKind::Acknowledged);
    assert!(flush(&dispatcher, t(330 + 9 * 3600), &triage).is_empty());
}

#[test]
fn continue_sends_to_two_routes_and_children_inherit() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(
        dir.path(),
        r#"
[route]
receivers = ["team"]
group_by = ["rule_id"]
group_wait = "10s"
[[route.routes]]
name = "pager"
match = { level = ">=high" }
receivers = ["pager"]
continue = true
[[route.routes]]
name = "aws"
match = { "logsource.product" = "aws", tag = "attack.*" }
[[route.routes]]
name = "never"
match = { source = "*" }
receivers = ["unused"]
"#,
    );
    let triage = Triage::default();
    let accepted = dispatcher
        .accept(&alert(1, "r1", Level::Critical), t(0))
        .unwrap();
    assert_eq!(accepted.grouped, vec!["pager".to_owned(), "aws".to_owned()]);
    let mut receivers: Vec<String> = flush(&dispatcher, t(10), &triage)
        .into_iter()
        .map(|n| n.receiver)
        .collect();
    receivers.sort();
    // "aws" inherits the root's receivers; "never" is not reached after "aws" matched.
    assert_eq!(receivers, vec!["pager".to_owned(), "team".to_owned()]);
    // A medium alert skips the pager.
    let accepted = dispatcher
        .accept(&alert(2, "r2", Level::Medium), t(20))
        .unwrap();
    assert_eq!(accepted.grouped, vec!["aws".to_owned()]);
    assert_eq!(
        dispatcher.receiver_names().into_iter().collect::<Vec<_>>(),
        vec!["pager", "team", "unused"]
    );
}

#[test]
fn a_silence_suppresses_and_its_expiry_restores() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let silences = Silences::open(&dir.path().join("notify.sqlite")).unwrap();
    let triage = Triage::default();
    let silence = silences
        .create(
            &NewSilence {
                matchers: BTreeMap::from([(
                    "rule_id".to_owned(),
                    crate::routing::MatchValue::One("r1".into()),
                )]),
                comment: "maintenance".into(),
                duration: Some("1h".into()),
                ..NewSilence::default()
            },
            "alice",
            t(0),
        )
        .unwrap();
    let accepted = dispatcher
        .accept(&alert(1, "r1", Level::High), t(10))
        .unwrap();
    assert_eq!(accepted.silenced, vec!["root".to_owned()]);
    assert!(accepted.grouped.is_empty());
    // Another rule is not silenced.
    let accepted = dispatcher
        .accept(&alert(2, "r2", Level::High), t(10))
        .unwrap();
    assert_eq!(accepted.grouped, vec!["root".to_owned()]);
    assert_eq!(flush(&dispatcher, t(100), &triage).len(), 1);

    let expired = silences.expire(silence.id, "bob", t(200)).unwrap().unwrap();
    assert_eq!(expired.expired_by.as_deref(), Some("bob"));
    assert!(!expired.is_active(t(200)));
    let accepted = dispatcher
        .accept(&alert(3, "r1", Level::High), t(201))
        .unwrap();
    assert_eq!(accepted.grouped, vec!["root".to_owned()]);
    let sent = flush(&dispatcher, t(231), &triage);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].total_alerts, 1,
        "the silenced alert joined no group"
    );
}

#[test]
fn a_silence_made_after_grouping_holds_the_group_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let silences = Silences::open(&dir.path().join("notify.sqlite")).unwrap();
    let triage = Triage::default();
    dispatcher
        .accept(&alert(1, "r1", Level::High), t(0))
        .unwrap();
    let new = NewSilence {
        matchers: BTreeMap::from([(
            "level".to_owned(),
            crate::routing::MatchValue::One(">=medium".into()),
        )]),
        comment: "noisy".into(),
        duration: Some("10m".into()),
        ..NewSilence::default()
    };
    silences.create(&new, "alice", t(5)).unwrap();
    assert!(flush(&dispatcher, t(30), &triage).is_empty());
    assert!(flush(&dispatcher, t(599), &triage).is_empty());
    assert_eq!(flush(&dispatcher, t(605), &triage).len(), 1);
}

#[test]
fn silences_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let silences = Silences::open(&dir.path().join("notify.sqlite")).unwrap();
    let one = |field: &str, value: &str| {
        BTreeMap::from([(
            field.to_owned(),
            crate::routing::MatchValue::One(value.into()),
        )])
    };
    let attempt = |matchers, comment: &str, duration: Option<&str>| {
        silences.create(
            &NewSilence {
                matchers,
                comment: comment.into(),
                duration: duration.map(str::to_owned),
                ..NewSilence::default()
            },
            "alice",
            t(0),
        )
    };
    for (matchers, comment, duration, says) in [
        (BTreeMap::new(), "c", Some("1h"), "at least one matcher"),
        (one("colour", "red"), "c", Some("1h"), "unknown alert field"),
        (one("level", ">=severe"), "c", Some("1h"), "unknown level"),
        (one("rule_id", "r1"), " ", Some("1h"), "comment"),
        (one("rule_id", "r1"), "c", None, "how long"),
        (one("rule_id", "r1"), "c", Some("soon"), "not a duration"),
        (one("rule_id", "r1"), "c", Some("100d"), "90 days"),
    ] {
        let err = attempt(matchers, comment, duration)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err:?} should say {says:?}");
    }
    assert!(attempt(one("rule_id", "r1"), "c", Some("1h")).is_ok());
    assert_eq!(silences.list(10).unwrap().len(), 1);
}

const INHIBIT: &str = r#"
[route]
receivers = ["team"]
group_by = ["rule_id"]
group_wait = "0s"
[[inhibit]]
source = { level = "critical" }
target = { level = "medium" }
equal = ["group.user"]
"#;

#[test]
fn a_firing_critical_alert_inhibits_medium_ones_of_the_same_group_key() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), INHIBIT);
    let triage = Triage::default();
    let with_user = |n, rule, level, user: &str| {
        let mut a = alert(n, rule, level);
        a.group.insert("user".into(), user.into());
        a
    };
    let medium = with_user(1, "r-medium", Level::Medium, "alice");
    // No critical alert yet: the medium one is grouped.
    assert_eq!(dispatcher.accept(&medium, t(0)).unwrap().grouped.len(), 1);
    let critical = with_user(2, "r-critical", Level::Critical, "alice");
    assert_eq!(dispatcher.accept(&critical, t(1)).unwrap().grouped.len(), 1);
    let medium_alice = with_user(3, "r-medium2", Level::Medium, "alice");
    let accepted = dispatcher.accept(&medium_alice, t(2)).unwrap();
    assert_eq!(accepted.inhibited, vec!["root".to_owned()]);
    // Another user's medium alert is not inhibited, nor is a high one.
    let medium_bob = with_user(4, "r-medium2", Level::Medium, "bob");
    assert_eq!(
        dispatcher.accept(&medium_bob, t(3)).unwrap().grouped.len(),
        1
    );
    let high = with_user(5, "r-high", Level::High, "alice");
    assert_eq!(dispatcher.accept(&high, t(3)).unwrap().grouped.len(), 1);
    // Once the critical alert's group has resolved, it inhibits no more.
    flush(&dispatcher, t(4), &triage);
    triage.set(&critical, AlertState::Closed);
    let resolved = flush(&dispatcher, t(9), &triage);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, NotificationKind::Resolved);
    let later = with_user(6, "r-medium3", Level::Medium, "alice");
    assert_eq!(dispatcher.accept(&later, t(10)).unwrap().grouped.len(), 1);
}

#[test]
fn acknowledge_and_resolve_are_said_once_and_a_resolved_group_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let triage = Triage::default();
    let (a1, a2) = (alert(1, "r1", Level::High), alert(2, "r1", Level::High));
    dispatcher.accept(&a1, t(0)).unwrap();
    dispatcher.accept(&a2, t(1)).unwrap();
    let firing = flush(&dispatcher, t(30), &triage);
    assert_eq!(firing.len(), 1);
    // One acknowledged, one open: nothing to say yet.
    triage.set(&a1, AlertState::Acknowledged);
    assert!(flush(&dispatcher, t(40), &triage).is_empty());
    triage.set(&a2, AlertState::Closed);
    let ack = flush(&dispatcher, t(50), &triage);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].kind, NotificationKind::Acknowledged);
    assert_eq!(ack[0].group_key, firing[0].group_key);
    assert!(flush(&dispatcher, t(60), &triage).is_empty(), "said once");
    triage.set(&a1, AlertState::Closed);
    let resolved = flush(&dispatcher, t(70), &triage);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, NotificationKind::Resolved);
    assert!(flush(&dispatcher, t(80), &triage).is_empty(), "said once");
    assert!(
        dispatcher.live_groups().unwrap().is_empty(),
        "the group ended"
    );
    // A later alert starts the group anew, under ids never used before.
    dispatcher
        .accept(&alert(3, "r1", Level::High), t(100))
        .unwrap();
    let again = flush(&dispatcher, t(130), &triage);
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].kind, again[0].total_alerts),
        (NotificationKind::Firing, 1)
    );
    let used: Vec<&String> = [&firing, &ack, &resolved]
        .iter()
        .flat_map(|ns| ns.iter().map(|n| &n.id))
        .collect();
    assert!(!used.contains(&&again[0].id), "{} reused", again[0].id);
    // Closed before anyone was told: the group ends without a word.
    let quiet = alert(4, "r9", Level::High);
    dispatcher.accept(&quiet, t(200)).unwrap();
    triage.set(&quiet, AlertState::Closed);
    assert!(flush(&dispatcher, t(300), &triage).is_empty());
}

#[test]
fn a_restart_keeps_groups_and_re_emits_the_same_ids_until_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let triage = Triage::default();
    let first = {
        let dispatcher = open(dir.path(), SIMPLE);
        dispatcher
            .accept(&alert(1, "r1", Level::High), t(0))
            .unwrap();
        dispatcher
            .accept(&alert(2, "r1", Level::High), t(5))
            .unwrap();
        // Handed out, then the process dies before the outbox took it.
        dispatcher.due(t(30), &triage).unwrap()
    };
    assert_eq!(first.len(), 1);
    let dispatcher = open(dir.path(), SIMPLE);
    let again = dispatcher.due(t(31), &triage).unwrap();
    assert_eq!(
        again.iter().map(|n| &n.id).collect::<Vec<_>>(),
        first.iter().map(|n| &n.id).collect::<Vec<_>>()
    );
    assert_eq!(again[0].total_alerts, 2);
    dispatcher
        .emitted(&again.iter().map(|n| n.id.clone()).collect::<Vec<_>>())
        .unwrap();
    assert!(dispatcher.due(t(32), &triage).unwrap().is_empty());
    // Emitting again is harmless.
    dispatcher.emitted(&[again[0].id.clone()]).unwrap();
    drop(dispatcher);
    // The group survives a restart: a new alert waits for group_interval, not group_wait.
    let dispatcher = open(dir.path(), SIMPLE);
    dispatcher
        .accept(&alert(3, "r1", Level::High), t(60))
        .unwrap();
    assert!(flush(&dispatcher, t(90), &triage).is_empty());
    let next = flush(&dispatcher, t(330), &triage);
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].total_alerts, next[0].new_alerts), (3, 1));
    assert!(next[0].id.ends_with(":team:2"));
}

#[test]
fn legacy_webhooks_become_continuing_routes_sent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let route = RouteConfig {
        routes: vec![
            RouteConfig::legacy_webhook("all", Level::Medium, &[], &[]),
            RouteConfig::legacy_webhook("r1-only", Level::Low, &["r1".into()], &[]),
            RouteConfig::legacy_webhook("tagged", Level::Low, &[], &["ATTACK.T1078".into()]),
        ],
        ..RouteConfig::default()
    };
    let dispatcher = Dispatcher::open(&dir.path().join("n.sqlite"), &route, &[]).unwrap();
    let triage = Triage::default();
    let accepted = dispatcher
        .accept(&alert(1, "r1", Level::High), t(0))
        .unwrap();
    assert_eq!(
        accepted.grouped,
        vec!["webhook:all", "webhook:r1-only", "webhook:tagged"]
    );
    let mut low = alert(2, "r2", Level::Low);
    low.tags.clear();
    let accepted = dispatcher.accept(&low, t(0)).unwrap();
    assert!(accepted.grouped.is_empty());
    assert_eq!(accepted.unrouted, vec!["root".to_owned()]);
    // One notification per alert and webhook, at once.
    assert_eq!(flush(&dispatcher, t(0), &triage).len(), 3);
    dispatcher
        .accept(&alert(3, "r1", Level::High), t(1))
        .unwrap();
    assert_eq!(flush(&dispatcher, t(1), &triage).len(), 3);
    // And never repeated; a week after, the groups of one alert each are over.
    assert_eq!(dispatcher.live_groups().unwrap().values().sum::<u64>(), 6);
    assert!(flush(&dispatcher, t(400 * 86400), &triage).is_empty());
    assert!(dispatcher.live_groups().unwrap().is_empty());
}

#[test]
fn bad_routes_are_refused_with_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    for (toml_text, says) in [
        ("[route]\ngroup_wait = \"soon\"", "notify.route: group_wait"),
        (
            "[route]\n[[route.routes]]\nmatch = { colour = \"red\" }",
            "notify.route.routes[0]: match: unknown alert field \"colour\"",
        ),
        ("[route]\ngroup_by = [\"tag\"]", "group_by"),
        ("[route]\nrepeat_interval = \"0s\"", "never"),
        (
            "[route]\n[[route.routes]]\nname = \"x\"\n[[route.routes]]\nname = \"x\"",
            "two routes are named \"x\"",
        ),
        (
            "[route]\n[[inhibit]]\nsource = {}\ntarget = { level = \"low\" }",
            "notify.inhibit[0]",
        ),
    ] {
        let (route, inhibit) = config(toml_text);
        let err = Dispatcher::open(&dir.path().join("n.sqlite"), &route, &inhibit)
            .err()
            .unwrap_or_else(|| panic!("{toml_text} was taken"))
            .to_string();
        assert!(err.contains(says), "{err:?} should say {says:?}");
    }
}

#[test]
fn triage_is_asked_once_a_round_and_about_quiet_groups_only_every_few_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = open(dir.path(), SIMPLE);
    let triage = Triage::default();
    let asked = || triage.1.load(Ordering::SeqCst);
    for rule in ["r1", "r2", "r3"] {
        dispatcher
            .accept(&alert(1, rule, Level::High), t(0))
            .unwrap();
    }
    assert!(flush(&dispatcher, t(10), &triage).is_empty());
    assert_eq!(asked(), 0, "nothing due, nothing told: nobody to ask about");
    assert_eq!(flush(&dispatcher, t(30), &triage).len(), 3);
    assert_eq!(asked(), 1, "one question for the three groups");
    // Told and quiet: asked again only once STATE_SWEEP_MS has passed.
    flush(&dispatcher, t(31), &triage);
    flush(&dispatcher, t(33), &triage);
    assert_eq!(asked(), 1);
    flush(&dispatcher, t(35), &triage);
    assert_eq!(asked(), 2);
}
