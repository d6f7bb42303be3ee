//! Vigil's stages as separate processes joined by a real Kafka-protocol broker (tansu).
//!
//! Each test starts its own broker on a free port and its own `vigil run --role ...`
//! processes. The tests take the machine's cores, so they run one at a time.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::common::tansu::{free_port, Tansu};
use crate::common::{wait_for, Vigil, TOKEN};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

/// One Kafka test at a time: each runs a broker and several Vigil processes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The rule our CloudTrail events below trip: a trail stopped.
const TRAIL_STOPPED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

/// Writes the `vigil.toml` every Vigil process of a test reads (they run in `dir`).
fn write_config(dir: &Path, toml: &str) {
    std::fs::write(dir.join("vigil.toml"), toml).unwrap();
}

/// The push source names the 100k-event tests spread CloudTrail over. Events are keyed by
/// source, so several names put trails (and the alerts they raise) on every partition, and
/// whichever detect process owns a partition has alerts to raise.
const TRAILS: usize = 8;

/// Settings that read every `trail-N` push source as CloudTrail.
fn trail_presets() -> String {
    let mut toml = "[ingest.presets]\n".to_owned();
    for trail in 0..TRAILS {
        toml.push_str(&format!("trail-{trail} = \"cloudtrail\"\n"));
    }
    toml
}

/// The alerts our trail-stopped rule raises, as `/metrics` names them.
const TRAIL_STOPPED_METRIC: &str = "vigil_alerts_raised_total{level=\"high\"}";

/// The broker storage for tests where consumer groups rebalance or resume.
///
/// tansu 0.6.0's memory engine keeps each produced record batch as one object and answers a
/// fetch with the batches that *start* at or after the requested offset, so a group resuming
/// inside a batch (after any rebalance or restart) silently skips the rest of it. Kafka
/// answers with the batch that contains the offset. tansu's SQL engine stores records one by
/// one and resumes exactly, so these tests run on it.
const RESUMABLE_STORAGE: &str = "sqlite://tansu.db";

/// The consumer groups' session timeout: a member silent for longer is dead.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Waits, after a group member was killed at `killed`, until its session has expired.
///
/// tansu 0.6.0 notices a dead member only when a request for its group arrives more than a
/// session timeout after the member's last heartbeat. A member that joins before then can be
/// left with nothing to read, for good: we saw a restarted process assigned no partition
/// while the dead one, its group's leader, kept them all. Kafka expires sessions on its own
/// and removes members that do not rejoin a rebalance, so there a restart may come at once;
/// here it waits, as a supervisor's restart delay would.
fn wait_for_session_expiry(killed: std::time::Instant) {
    let expired = SESSION_TIMEOUT + Duration::from_secs(2);
    if let Some(left) = expired.checked_sub(killed.elapsed()) {
        std::thread::sleep(left);
    }
}

/// The settings that put a Vigil process on `tansu`'s topics.
fn kafka_env(tansu: &Tansu) -> Vec<(&'static str, String)> {
    vec![
        ("VIGIL_BUS__BACKEND", "kafka".into()),
        ("VIGIL_BUS__KAFKA__BROKERS", tansu.brokers()),
        ("VIGIL_BUS__KAFKA__PARTITIONS", "4".into()),
        // A group notices a dead member within seconds, so a rebalance does not stall a test.
        (
            "VIGIL_BUS__KAFKA__SESSION_TIMEOUT_MS",
            SESSION_TIMEOUT.as_millis().to_string(),
        ),
        ("VIGIL_BUS__KAFKA__DELIVERY_TIMEOUT_MS", "60000".into()),
        ("VIGIL_BUS__KAFKA__MAX_MESSAGE_BYTES", "1048576".into()),
        ("VIGIL_INDEX__COMMIT_INTERVAL_MS", "500".into()),
    ]
}

fn start_role(dir: &Path, name: &str, roles: &str, env: &[(&'static str, String)]) -> Vigil {
    let data_dir = dir.join(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Group membership changes are logged, under the process's name, so that a failure's
    // output shows which process held which partitions.
    env.extend([
        ("VIGIL_BUS__KAFKA__CLIENT_ID", name),
        ("VIGIL_LOG", "warn,vigil_bus_kafka=info"),
    ]);
    Vigil::start_with(&data_dir, &["--role", roles], &env)
}

/// A batch of generic JSON events for source `source`, numbered from `first`.
fn app_batch(source: usize, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|seq| {
            format!(
                "{{\"marker\":\"kafkarun\",\"app\":\"app-{source}\",\"seq\":{seq},\"message\":\"user session refreshed for account {}\"}}\n",
                seq % 977
            )
        })
        .collect()
}

/// CloudTrail records numbered from `first`; one in a hundred stops a trail, which our rule
/// flags.
fn cloudtrail_batch(first: usize, count: usize) -> (String, usize) {
    let mut stopped = 0;
    let body = (first..first + count)
        .map(|seq| {
            let name = if seq % 100 == 0 {
                stopped += 1;
                "StopLogging"
            } else {
                "DescribeTrails"
            };
            format!(
                concat!(
                    "{{\"eventVersion\":\"1.09\",\"marker\":\"kafkarun\",\"seq\":{seq},",
                    "\"userIdentity\":{{\"type\":\"IAMUser\",\"arn\":\"arn:aws:iam::123456789012:user/ops\",\"userName\":\"ops\"}},",
                    "\"eventTime\":\"2026-11-28T10:00:00Z\",\"eventSource\":\"cloudtrail.amazonaws.com\",",
                    "\"eventName\":\"{name}\",\"awsRegion\":\"us-east-1\",\"sourceIPAddress\":\"198.51.100.7\",",
                    "\"eventID\":\"kafka-{seq:08}\",\"eventType\":\"AwsApiCall\"}}\n"
                ),
                seq = seq,
                name = name
            )
        })
        .collect();
    (body, stopped)
}

fn post(ingest: &Vigil, source: &str, body: String) {
    let response = ingest.post_ndjson(source, body);
    let status = response.status();
    assert_eq!(status, 202, "{source}: {}", response.text().unwrap());
}

/// Alerts of `rule`, with their ids checked to be distinct.
fn alert_ids(vigil: &Vigil, rule: &str) -> Vec<String> {
    let alerts: Value = vigil.get_json(&format!("/api/v1/alerts?rule={rule}&limit=1000"));
    let mut ids: Vec<String> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["id"].as_str().unwrap().to_owned())
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "an alert is listed twice");
    ids
}

/// Posts 100k events, alternating CloudTrail over the `trail-N` sources with generic JSON
/// over eight app sources; returns the expected alerts. `midway` runs after half of them.
fn post_hundred_thousand(ingest: &Vigil, mut midway: impl FnMut()) -> usize {
    let mut expected_alerts = 0;
    let mut seq = 0;
    for round in 0..20 {
        if round == 10 {
            midway();
        }
        if round % 2 == 0 {
            let (body, stopped) = cloudtrail_batch(seq, 5000);
            expected_alerts += stopped;
            post(ingest, &format!("trail-{}", (round / 2) % TRAILS), body);
        } else {
            post(
                ingest,
                &format!("app-{}", round % 8),
                app_batch(round % 8, seq, 5000),
            );
        }
        seq += 5000;
    }
    expected_alerts
}

fn wait_for_events(index: &Vigil, expected: u64, within: Duration) {
    wait_for("every event to be indexed", within, || {
        (index.search_total("marker:kafkarun") >= expected).then_some(())
    });
}

/// Waits for `expected` alerts of our rule, and says how many came when they do not, with
/// what `detect` tells about the detect processes.
fn wait_for_alerts(index: &Vigil, expected: usize, detect: &[&Vigil], brokers: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let raised = alert_ids(index, TRAIL_STOPPED_RULE).len();
        if raised >= expected {
            return;
        }
        if std::time::Instant::now() >= deadline {
            // Lag left on the events topic means a stalled partition; none means skipped events.
            let processes: Vec<String> = detect
                .iter()
                .map(|vigil| {
                    format!(
                        "detected {}, lag {}",
                        vigil.metric("vigil_events_detected_total"),
                        vigil.metric("vigil_bus_lag{topic=\"vigil.events\",group=\"detect\"}")
                    )
                })
                .collect();
            // What the broker itself holds tells a stall (offsets short of the end) from a
            // skip (offsets at the end, alerts absent) and detection from indexing.
            panic!(
                "{raised} of {expected} alerts after 300 s; {} trail-stop events indexed; detect processes: {processes:?}; \
                 detect group on vigil.events (partition, committed, end): {}; \
                 index-alerts group on vigil.alerts: {}; distinct alerts of the rule on vigil.alerts: {}",
                index.search_total("eventName:StopLogging"),
                group_position(brokers, "detect", "vigil.events"),
                group_position(brokers, "index-alerts", "vigil.alerts"),
                alerts_on_topic(brokers, TRAIL_STOPPED_RULE),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A consumer outside every Vigil group, for reading what the broker holds.
fn inspector(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("an inspecting consumer")
}

/// For each partition of `topic`: the offset `group` committed and the partition's end (-1
/// where unknown), or why they could not be read. It describes a failure, so it never panics.
fn group_position(brokers: &str, group: &str, topic: &str) -> String {
    let consumer = inspector(brokers, group);
    let timeout = Duration::from_secs(10);
    let mut partitions = TopicPartitionList::new();
    for partition in 0..4 {
        partitions.add_partition(topic, partition);
    }
    let committed = match consumer.committed_offsets(partitions, timeout) {
        Ok(committed) => committed,
        Err(error) => return format!("cannot read {group}'s offsets: {error}"),
    };
    let positions: Vec<(i32, i64, i64)> = committed
        .elements()
        .iter()
        .map(|element| {
            let end = consumer
                .fetch_watermarks(topic, element.partition(), timeout)
                .map_or(-1, |(_, high)| high);
            let next = match element.offset() {
                Offset::Offset(next) => next,
                _ => -1,
            };
            (element.partition(), next, end)
        })
        .collect();
    format!("{positions:?}")
}

/// How many distinct alerts of `rule` the alerts topic holds, read from its start, or why
/// they could not be counted. It describes a failure, so it never panics.
fn alerts_on_topic(brokers: &str, rule: &str) -> String {
    let consumer = inspector(brokers, "vigil-test-inspector");
    let timeout = Duration::from_secs(10);
    let mut partitions = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in 0..4 {
        match consumer.fetch_watermarks("vigil.alerts", partition, timeout) {
            Ok((_, high)) => ends.push(high),
            Err(error) => return format!("unknown: {error}"),
        }
        if let Err(error) =
            partitions.add_partition_offset("vigil.alerts", partition, Offset::Beginning)
        {
            return format!("unknown: {error}");
        }
    }
    if let Err(error) = consumer.assign(&partitions) {
        return format!("unknown: {error}");
    }
    let mut ids = BTreeSet::new();
    let mut reached: Vec<bool> = ends.iter().map(|end| *end == 0).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !reached.iter().all(|r| *r) {
        if std::time::Instant::now() >= deadline {
            return format!("at least {} (the topic was not read to its end)", ids.len());
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let partition = usize::try_from(message.partition()).unwrap_or_default();
        if message.offset() + 1 >= ends[partition] {
            reached[partition] = true;
        }
        let alert: Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null);
        if alert["rule_id"] == rule {
            ids.insert(alert["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    ids.len().to_string()
}

/// The processes of the 100k-event tests, on a broker of their own: one ingest, two detect,
/// and one index serving search. Fields drop in order: the processes stop before the broker,
/// and the broker before its directory goes.
struct Cluster {
    ingest: Vigil,
    detect_a: Option<Vigil>,
    detect_b: Vigil,
    index: Vigil,
    env: Vec<(&'static str, String)>,
    tansu: Tansu,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &trail_presets());
        let tansu = Tansu::start(dir.path(), RESUMABLE_STORAGE);
        let env = kafka_env(&tansu);
        // Ingest comes first: it creates the topics the others subscribe to.
        let ingest = start_role(dir.path(), "ingest", "ingest", &env);
        let detect_a = start_role(dir.path(), "detect-a", "detect", &env);
        let detect_b = start_role(dir.path(), "detect-b", "detect", &env);
        let index = start_role(dir.path(), "index", "index,ui", &env);
        Cluster {
            ingest,
            detect_a: Some(detect_a),
            detect_b,
            index,
            env,
            tansu,
            dir,
        }
    }

    /// Waits for every event and `expected` alerts, from the detect processes running now,
    /// then lets late duplicates show and checks there are none.
    fn check_every_event_and_alert_once(&self, expected_alerts: usize, detect: &[&Vigil]) {
        wait_for_events(&self.index, 100_000, Duration::from_secs(600));
        wait_for_alerts(&self.index, expected_alerts, detect, &self.tansu.brokers());
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(self.index.search_total("marker:kafkarun"), 100_000);
        assert_eq!(
            alert_ids(&self.index, TRAIL_STOPPED_RULE).len(),
            expected_alerts
        );
    }
}

#[test]
fn stages_as_separate_processes_index_every_event_once() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let (detect_a, detect_b) = (cluster.detect_a.as_ref().unwrap(), &cluster.detect_b);

    let expected_alerts = post_hundred_thousand(&cluster.ingest, || {});
    cluster.check_every_event_and_alert_once(expected_alerts, &[detect_a, detect_b]);
    assert_eq!(cluster.index.search_total("seq:54321"), 1);

    // Both detect processes took a share of the partitions, and between them saw every
    // event (detection may trail indexing, which does not wait for it).
    let (detected_a, detected_b) =
        wait_for("detection of every event", Duration::from_secs(300), || {
            let a = detect_a.metric("vigil_events_detected_total");
            let b = detect_b.metric("vigil_events_detected_total");
            (a + b >= 100_000.0).then_some((a, b))
        });
    assert!(
        detected_a > 0.0 && detected_b > 0.0,
        "detect-a {detected_a}, detect-b {detected_b}"
    );
    let (raised_a, raised_b) = (
        detect_a.metric(TRAIL_STOPPED_METRIC),
        detect_b.metric(TRAIL_STOPPED_METRIC),
    );
    assert!(
        raised_a > 0.0 && raised_b > 0.0,
        "alerts raised: detect-a {raised_a}, detect-b {raised_b}"
    );
    // The ingest process serves ingest, not search.
    let ingest = &cluster.ingest;
    let search = ingest
        .client
        .get(ingest.url("/api/v1/search?q=x"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(search.status(), 404);
}

// It failed once in fourteen runs (380 of 500 alerts after 300 s, every event indexed) when
// the killed process was restarted at once. The likely cause is tansu's, seen in the lag
// test below: a member joining while a dead member's session has not expired can be left
// with no partition, and the dead member's partitions unread. The restart now waits for the
// session to expire. Should it fail again, its message says what the broker holds.
#[test]
fn a_detect_process_killed_midstream_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start();
    let mut restarted = None;
    let expected_alerts = post_hundred_thousand(&cluster.ingest, || {
        // Kill it while it holds uncommitted work, then bring it back.
        wait_for("detect-a to be busy", Duration::from_secs(120), || {
            let detect = cluster.detect_a.as_ref().unwrap();
            (detect.metric("vigil_events_detected_total") > 0.0).then_some(())
        });
        cluster.detect_a.take().unwrap().kill();
        wait_for_session_expiry(std::time::Instant::now());
        restarted = Some(start_role(
            cluster.dir.path(),
            "detect-a",
            "detect",
            &cluster.env,
        ));
    });
    let restarted = restarted.expect("detect-a was restarted");
    cluster.check_every_event_and_alert_once(expected_alerts, &[&restarted, &cluster.detect_b]);
    // The restarted process took partitions back and raised alerts on them, so the check
    // above covers what it resumed.
    assert!(restarted.metric(TRAIL_STOPPED_METRIC) > 0.0);
}

#[test]
fn ingest_answers_503_while_the_broker_is_down_and_resumes_after() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(dir.path(), "sqlite://tansu.db");
    let env = kafka_env(&tansu);
    // tansu 0.6.0 panics (storage/lite.rs, "more or less than one row") when, after a
    // restart, an idempotent producer it knew before sends again, and serves nothing after.
    // Brokers that keep producer state (Kafka, MSK) do not; here the producer runs without
    // idempotence, through the librdkafka pass-through a deployment would use.
    write_config(
        dir.path(),
        "[bus.kafka.producer]\n\"enable.idempotence\" = \"false\"\n",
    );
    // Short, so a request the stopped broker cannot take is answered 503 quickly.
    let mut env = env;
    env.push(("VIGIL_BUS__KAFKA__DELIVERY_TIMEOUT_MS", "5000".into()));
    let mut vigil = start_role(dir.path(), "vigil", "all", &env);

    post(&vigil, "app-1", app_batch(1, 0, 100));
    wait_for_events(&vigil, 100, Duration::from_secs(120));

    // A line over the line limit is quarantined even though, in base64, it is larger than
    // the largest Kafka message: its first bytes are kept, and the request is not a 503.
    let long_line = format!(
        "{{\"marker\":\"toolong\",\"pad\":\"{}\"}}\n",
        "y".repeat(2 << 20)
    );
    let response = vigil.post_ndjson("app-2", long_line);
    assert_eq!(response.status(), 400, "{}", response.text().unwrap());
    let kept = wait_for(
        "the long line's quarantine",
        Duration::from_secs(60),
        || {
            let found = vigil.get_json("/api/v1/quarantine?source=app-2");
            found["records"].as_array().unwrap().first().cloned()
        },
    );
    assert!(
        kept["reason"]
            .as_str()
            .unwrap()
            .contains("first 65536 bytes are kept"),
        "{kept}"
    );

    tansu.stop();
    let refused = vigil.post_ndjson("app-1", app_batch(1, 100, 100));
    assert_eq!(refused.status(), 503, "{}", refused.text().unwrap());
    assert!(vigil.is_running(), "vigil must outlive its broker");

    tansu.resume();
    // The sender retries, as Vigil's 503 and Retry-After ask it to.
    wait_for("ingest to accept again", Duration::from_secs(120), || {
        let response = vigil.post_ndjson("app-1", app_batch(1, 100, 100));
        (response.status() == 202).then_some(())
    });
    wait_for_events(&vigil, 200, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vigil.search_total("marker:kafkarun"), 200);
}

#[test]
fn ingest_refuses_events_while_detection_lags_and_accepts_them_once_it_catches_up() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path(), RESUMABLE_STORAGE);
    let mut env = kafka_env(&tansu);
    env.push(("VIGIL_BUS__KAFKA__MAX_CONSUMER_LAG", "3000".into()));
    let ingest = start_role(dir.path(), "ingest", "ingest", &env);
    let detect = start_role(dir.path(), "detect", "detect", &env);
    // The index role is not run here: a group that never committed holds nothing back.
    post(&ingest, "app-1", app_batch(1, 0, 500));
    wait_for("detection to commit", Duration::from_secs(120), || {
        (detect.metric("vigil_events_detected_total") >= 500.0).then_some(())
    });
    detect.kill();
    let killed = std::time::Instant::now();

    // With detection stopped, accepted events pile up until the guard sees the limit passed.
    let mut accepted = 500;
    let refusal = wait_for("ingest to refuse", Duration::from_secs(120), || {
        let response = ingest.post_ndjson("app-1", app_batch(1, accepted, 1000));
        match response.status().as_u16() {
            202 => {
                accepted += 1000;
                None
            }
            503 => Some((
                response.headers().contains_key("retry-after"),
                response.text().unwrap(),
            )),
            other => panic!("unexpected {other}: {}", response.text().unwrap()),
        }
    });
    assert!(refusal.0, "a refusal says when to retry");
    assert!(
        refusal.1.contains("detect") && refusal.1.contains("events behind"),
        "{}",
        refusal.1
    );
    // Detection had committed the first 500, so the lag is what came after.
    assert!(
        accepted - 500 > 3000,
        "refused at a lag of only {}",
        accepted - 500
    );
    assert!(ingest.metric("vigil_ingest_held_back_total") >= 1.0);

    // Detection resumes, catches up, and ingest takes events again.
    wait_for_session_expiry(killed);
    let detect = start_role(dir.path(), "detect", "detect", &env);
    wait_for("ingest to accept again", Duration::from_secs(120), || {
        let response = ingest.post_ndjson("app-1", app_batch(1, accepted, 100));
        (response.status() == 202).then_some(())
    });
    accepted += 100;
    wait_for(
        "detection of every accepted event",
        Duration::from_secs(120),
        || (detect.metric("vigil_events_detected_total") >= (accepted - 500) as f64).then_some(()),
    );
}

#[test]
fn an_unreachable_broker_stops_start_up_with_one_clear_error() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("vigil");
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("VIGIL_API_TOKEN", TOKEN)
        .env("VIGIL_BUS__BACKEND", "kafka")
        .env(
            "VIGIL_BUS__KAFKA__BROKERS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("VIGIL_BUS__KAFKA__CONNECT_TIMEOUT_MS", "2000")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach Kafka at 127.0.0.1:"),
        "stderr: {stderr}"
    );
}

#[test]
fn missing_topics_are_an_error_when_vigil_may_not_create_them() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path(), "memory://tansu/");
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("vigil"))
        .env("VIGIL_API_TOKEN", TOKEN)
        .env("VIGIL_BUS__BACKEND", "kafka")
        .env("VIGIL_BUS__KAFKA__BROKERS", tansu.brokers())
        .env("VIGIL_BUS__KAFKA__CREATE_TOPICS", "false")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Kafka topics missing") && stderr.contains("vigil.events"),
        "stderr: {stderr}"
    );
}
