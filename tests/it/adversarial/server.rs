//! The listener and Vigil's defaults, through the real binary: clients that stall mid-head
//! or mid-body are cut off at their deadlines and hold nothing others need, the connection
//! cap queues the surplus without stalling the connections being served, the data directory
//! is private, and Vigil never runs blind without saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{wait_for, Vigil, TOKEN};

/// The rule in `rules/aws/` that fires on StopLogging.
const LOGGING_DISABLED_RULE: &str = "8839b791-6198-4751-84ca-948372583b72";

/// A client that gives up long before any deadline under test would free a stalled turn, so
/// a request that waits behind stalled ones fails instead of passing late.
fn impatient_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Sends a request head and `sent` of the `declared` body bytes, then stalls.
fn stalled_post(base: &str, path: &str, declared: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address(base)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(&vec![b' '; sent]).unwrap();
    stream
}

/// What the server sends on `stream` until it closes it, and whether it did within `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&received).into_owned(), false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            // A reset is the server closing too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&received).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

fn stop_logging(id: &str) -> String {
    json!({
        "eventVersion": "1.10",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory", "userName": "mallory"},
        "eventTime": "2026-11-28T12:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9",
        "requestParameters": {"name": "management-trail"},
        "eventID": id,
    })
    .to_string()
        + "\n"
}

fn audit_event_list(audit_id: &str) -> Value {
    json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": [{
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": audit_id, "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods", "verb": "list",
            "user": {"username": "alice@example.com"},
            "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2026-11-28T12:00:00.000000Z",
            "stageTimestamp": "2026-11-28T12:00:00.100000Z"
        }]
    })
}

/// More senders stall mid-body than ingest has turns, on both the NDJSON and the Kubernetes
/// routes; a normal POST to each is still answered at once, and every stalled request gets
/// 408 and its connection closed once the body deadline passes.
#[test]
fn stalled_bodies_block_no_other_ingest_and_end_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[
            ("VIGIL_INGEST__MAX_CONCURRENT_REQUESTS", "2"),
            ("VIGIL_SERVER__BODY_READ_TIMEOUT_MS", "4000"),
            ("VIGIL_SERVER__MAX_CONNECTIONS", "32"),
        ],
    );
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| stalled_post(&vigil.base, "/api/v1/ingest/cloudtrail", 2000, 1000))
        .chain((0..2).map(|_| {
            stalled_post(
                &vigil.base,
                "/api/v1/webhooks/kubernetes-audit/prod",
                2000,
                1000,
            )
        }))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let client = impatient_client();
    let asked = Instant::now();
    let response = client
        .post(vigil.url("/api/v1/ingest/cloudtrail"))
        .bearer_auth(TOKEN)
        .body(stop_logging("slow-clients-1"))
        .send()
        .expect("a normal ingest POST is answered while others stall");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = client
        .post(vigil.url("/api/v1/webhooks/kubernetes-audit/prod"))
        .bearer_auth(TOKEN)
        .json(&audit_event_list("slow-clients-audit-1"))
        .send()
        .expect("a webhook POST is answered while others stall");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    // A body declared past the limit is refused at once, before it is sent.
    let mut huge = stalled_post(&vigil.base, "/api/v1/ingest/cloudtrail", 1 << 40, 0);
    let (reply, closed) = read_until_closed(&mut huge, Duration::from_secs(2));
    assert!(closed && reply.starts_with("HTTP/1.1 413"), "{reply:?}");

    for stream in &mut stalled {
        let (reply, closed) = read_until_closed(stream, Duration::from_secs(15));
        assert!(closed, "a stalled request was not closed: {reply:?}");
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(3500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// A GET /healthz on `stream`, answered promptly.
fn healthz_on(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&received).ends_with("ok\n") {
        let n = stream.read(&mut buffer).expect("a prompt answer");
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buffer[..n]);
    }
}

/// Opens a connection that sends part of a request head, then stalls.
fn half_sent_head(base: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address(base)).unwrap();
    stream
        .write_all(b"POST /api/v1/ingest/cloudtrail HTTP/1.1\r\nHost: vig")
        .unwrap();
    stream
}

/// Connections that never finish their request head, and idle keep-alive connections, are
/// closed at the head deadline; a connection that keeps sending requests is served.
#[test]
fn half_sent_heads_and_idle_connections_are_closed_at_the_head_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[("VIGIL_SERVER__HEADER_READ_TIMEOUT_MS", "2000")],
    );
    let mut idle = TcpStream::connect(address(&vigil.base)).unwrap();
    healthz_on(&mut idle);
    let mut stalled: Vec<TcpStream> = (0..3).map(|_| half_sent_head(&vigil.base)).collect();
    let mut busy = TcpStream::connect(address(&vigil.base)).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        healthz_on(&mut busy);
        std::thread::sleep(Duration::from_millis(500));
    }
    stalled.push(idle);
    for stream in &mut stalled {
        let (reply, closed) = read_until_closed(stream, Duration::from_secs(5));
        assert!(closed, "a connection was not closed: {reply:?}");
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
            "{reply:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// At the connection cap, a new connection is served at once: the oldest connection without
/// authenticated work in flight (a half-sent head, an idle one) is closed to make room, while
/// one carrying an authenticated upload is kept until its own deadline.
#[test]
fn at_the_cap_strangers_make_room_and_authenticated_work_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[
            ("VIGIL_SERVER__HEADER_READ_TIMEOUT_MS", "20000"),
            ("VIGIL_SERVER__BODY_READ_TIMEOUT_MS", "5000"),
            ("VIGIL_SERVER__MAX_CONNECTIONS", "4"),
        ],
    );
    // The oldest: an authenticated upload, stalled mid-body. Then three half-sent heads.
    let mut upload = stalled_post(&vigil.base, "/api/v1/ingest/cloudtrail", 2000, 1000);
    std::thread::sleep(Duration::from_millis(200));
    let mut heads: Vec<TcpStream> = (0..3).map(|_| half_sent_head(&vigil.base)).collect();
    std::thread::sleep(Duration::from_millis(200));

    // Each newcomer is served at once and stays open, idle, so the cap stays full.
    let started = Instant::now();
    let mut newcomers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(address(&vigil.base)).unwrap();
            healthz_on(&mut stream);
            stream
        })
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Three heads made room for the first three; the first newcomer, idle, for the fourth.
    for stream in heads.iter_mut().chain(newcomers.iter_mut().take(1)) {
        let (reply, closed) = read_until_closed(stream, Duration::from_secs(1));
        assert!(closed, "not closed to make room: {reply:?}");
    }
    let (reply, closed) = read_until_closed(&mut upload, Duration::from_millis(500));
    assert!(!closed && reply.is_empty(), "the upload was cut: {reply:?}");
    healthz_on(&mut newcomers[3]);
    // Counted: the four newcomers' evictions, and the one this scrape's connection made.
    assert!(vigil.metric("vigil_http_connections_evicted_total") >= 4.0);
    // Its own deadline still ends it.
    let (reply, closed) = read_until_closed(&mut upload, Duration::from_secs(10));
    assert!(closed && reply.starts_with("HTTP/1.1 408"), "{reply:?}");
}

/// When every connection at the cap carries authenticated work, a new one waits for room
/// rather than being served past the cap.
#[test]
fn at_the_cap_with_only_authenticated_work_new_connections_wait() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start_with_env(
        &dir.path().join("data"),
        &[
            ("VIGIL_SERVER__BODY_READ_TIMEOUT_MS", "2000"),
            ("VIGIL_SERVER__MAX_CONNECTIONS", "1"),
        ],
    );
    let mut upload = stalled_post(&vigil.base, "/api/v1/ingest/cloudtrail", 2000, 1000);
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let response = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(vigil.url("/healthz"))
        .send()
        .expect("served once there is room");
    assert_eq!(response.status(), StatusCode::OK);
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");
    let (reply, closed) = read_until_closed(&mut upload, Duration::from_secs(5));
    assert!(closed && reply.starts_with("HTTP/1.1 408"), "{reply:?}");
}

/// `bearer` in lower case is the bearer scheme, and what the API answers is not to be kept
/// by the browser or a proxy.
#[test]
fn lower_case_bearer_works_and_api_answers_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&dir.path().join("data"));
    let response = vigil
        .client
        .get(vigil.url("/api/v1/alerts"))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let response = vigil
        .client
        .get(vigil.url("/api/v1/alerts"))
        .header("authorization", "bearer wrong-token")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Every file under the data directory is 0600 and every directory 0700, after Vigil has
/// written events, an alert and its token there.
#[test]
fn the_data_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let vigil = Vigil::start(&data_dir);
        let response = vigil.post_ndjson("cloudtrail", stop_logging("private-1"));
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        wait_for("the alert", Duration::from_secs(60), || {
            (vigil.get_json("/api/v1/alerts")["alerts"]
                .as_array()
                .is_some_and(|alerts| !alerts.is_empty()))
            .then_some(())
        });
    }
    let mut checked = 0;
    let mut pending = vec![data_dir];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} paths");
}

/// `vigil run` as started from a directory of its own, with stdout piped.
fn spawn_run(cwd: &Path, args: &[&str], stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .args(args)
        .current_dir(cwd)
        .env("VIGIL_API_TOKEN", TOKEN)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("vigil starts")
}

/// The address a started `vigil run` prints first; it keeps stdout drained afterwards.
fn listening_on(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next()
        .expect("vigil prints its address")
        .expect("stdout is readable");
    std::thread::spawn(move || for _ in lines {});
    first
        .strip_prefix("Vigil is listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Started where there is no `rules/` and with no rule path, Vigil detects with the rules
/// built into it.
#[test]
fn without_a_rule_path_the_built_in_rules_detect() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(spawn_run(dir.path(), &[], Stdio::inherit()));
    let base = listening_on(&mut child.0);
    let client = impatient_client();
    let response = client
        .post(format!("{base}/api/v1/ingest/cloudtrail"))
        .bearer_auth(TOKEN)
        .body(stop_logging("built-in-rules-1"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    wait_for("the StopLogging alert", Duration::from_secs(60), || {
        let alerts: Value = client
            .get(format!("{base}/api/v1/alerts"))
            .bearer_auth(TOKEN)
            .send()
            .ok()?
            .json()
            .ok()?;
        alerts["alerts"]
            .as_array()?
            .iter()
            .any(|alert| alert["rule_id"] == LOGGING_DISABLED_RULE)
            .then_some(())
    });
}

/// A rule directory without rules stops start-up with a reason, unless `--allow-no-rules`.
#[test]
fn no_rules_loaded_refuses_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-rules");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_str().unwrap();

    let mut child = KillOnDrop(spawn_run(dir.path(), &["--rules", empty], Stdio::piped()));
    let status = wait_for("vigil to refuse", Duration::from_secs(30), || {
        child.0.try_wait().unwrap()
    });
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("no detection rule loaded") && stderr.contains("--allow-no-rules"),
        "{stderr}"
    );

    let mut child = KillOnDrop(spawn_run(
        dir.path(),
        &["--rules", empty, "--allow-no-rules"],
        Stdio::inherit(),
    ));
    let base = listening_on(&mut child.0);
    let response = impatient_client()
        .get(format!("{base}/healthz"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
