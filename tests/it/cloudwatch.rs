//! The CloudWatch Logs pull source through the real binary, against moto's server: log groups
//! of CloudTrail records, EKS audit lines and app lines, more events added while Vigil runs
//! and while it is down after a SIGKILL, and every event indexed once with its logsource.

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{wait_for, Vigil};
use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::{json, Value};

const CLOUDTRAIL: &str = "/aws/cloudtrail/org";
const EKS: &str = "/aws/eks/prod/cluster";
const FLASK: &str = "/app/flask";
const WORKER: &str = "/app/worker";

/// moto's server on a free port, stopped when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) endpoint: String,
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "moto is not installed; ./scripts/test installs it (python3 -m pip install 'moto[server]')"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs moto.server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_for("moto to listen", Duration::from_secs(60), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Logs {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_cloudwatchlogs::Client,
}

impl Logs {
    fn new(endpoint: &str) -> Logs {
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Logs {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: aws_sdk_cloudwatchlogs::Client::from_conf(config),
        }
    }

    fn create(&self, group: &str, streams: &[&str]) {
        self.runtime.block_on(async {
            self.client
                .create_log_group()
                .log_group_name(group)
                .send()
                .await
                .unwrap();
            for stream in streams {
                self.client
                    .create_log_stream()
                    .log_group_name(group)
                    .log_stream_name(*stream)
                    .send()
                    .await
                    .unwrap();
            }
        });
    }

    fn put(&self, group: &str, stream: &str, messages: &[String]) {
        let now = chrono::Utc::now().timestamp_millis();
        let events = messages.iter().map(|message| {
            InputLogEvent::builder()
                .timestamp(now)
                .message(message)
                .build()
                .unwrap()
        });
        self.runtime
            .block_on(
                self.client
                    .put_log_events()
                    .log_group_name(group)
                    .log_stream_name(stream)
                    .set_log_events(Some(events.collect()))
                    .send(),
            )
            .unwrap();
    }
}

fn cloudtrail(n: u32) -> String {
    json!({
        "eventVersion": "1.10", "eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
        "eventTime": "2026-11-28T10:00:00Z", "awsRegion": "us-east-1",
        "eventID": format!("mk-ct-{n}"),
        "userIdentity": {"type": "IAMUser", "userName": "alice"},
        "sourceIPAddress": "198.51.100.7"
    })
    .to_string()
}

fn audit(n: u32) -> String {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": format!("mk-audit-{n}"), "stage": "ResponseComplete", "verb": "get",
        "requestURI": "/api/v1/namespaces/payments/pods/api-1",
        "user": {"username": "alice@example.com"}, "sourceIPs": ["10.0.4.7"],
        "objectRef": {"resource": "pods", "namespace": "payments", "name": "api-1"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-11-28T11:00:00.000000Z"
    })
    .to_string()
}

fn flask(n: u32) -> String {
    json!({"levelname": "INFO", "name": "users", "message": format!("user created mk-flask-{n}")})
        .to_string()
}

/// Adds a round of events to every log group, and what each must be indexed as: its marker
/// to its source kind and logsource product.
fn batch(
    round: u32,
    logs: &Logs,
    expected: &mut BTreeMap<String, (&'static str, Option<&'static str>)>,
) {
    let mut put = |group: &str,
                   stream: &str,
                   kind: &'static str,
                   product: Option<&'static str>,
                   make: &dyn Fn(u32) -> String,
                   count: u32| {
        let messages: Vec<String> = (0..count).map(|i| make(round * 100 + i)).collect();
        for message in &messages {
            expected.insert(marker(message).unwrap(), (kind, product));
        }
        logs.put(group, stream, &messages);
    };
    put(
        CLOUDTRAIL,
        "123456789012_CloudTrail_us-east-1",
        "cloudtrail",
        Some("aws"),
        &cloudtrail,
        4,
    );
    put(
        EKS,
        "kube-apiserver-audit-xyz",
        "kubernetes-audit",
        Some("kubernetes"),
        &audit,
        4,
    );
    put(
        EKS,
        "authenticator-xyz",
        "cloudwatch",
        None,
        &|n| format!("time=\"2026-11-28\" msg=\"access granted mk-auth-{n}\""),
        2,
    );
    put(FLASK, "web-1", "flask-app", Some("python"), &flask, 3);
    put(
        WORKER,
        "worker-1",
        "cloudwatch",
        None,
        &|n| format!("job finished mk-text-{n} in 12ms"),
        3,
    );
}

/// The `mk-...` token that names each test event.
fn marker(text: &str) -> Option<String> {
    let start = text.find("mk-")?;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}

/// Every indexed event of the test's log groups: marker to (source kind, product).
fn indexed(vigil: &Vigil) -> Vec<(String, String, Option<String>)> {
    let mut all = Vec::new();
    for group in [CLOUDTRAIL, EKS, FLASK, WORKER] {
        let response = vigil
            .client
            .get(vigil.url("/api/v1/search"))
            .query(&[
                ("q", format!("source_name:\"{group}\"")),
                ("limit", "1000".into()),
            ])
            .bearer_auth(crate::common::TOKEN)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let results: Value = response.json().unwrap();
        for hit in results["hits"].as_array().unwrap() {
            assert_eq!(hit["source"]["name"], group);
            let record = hit["record"].to_string();
            all.push((
                marker(&record).unwrap_or_else(|| panic!("no marker in {record}")),
                hit["source"]["kind"].as_str().unwrap().to_owned(),
                hit["logsource"]["product"].as_str().map(str::to_owned),
            ));
        }
    }
    all.sort();
    all
}

fn events_in(vigil: &Vigil, group: &str) -> u64 {
    let text = vigil.metrics_text();
    let prefix = format!("vigil_events_in_total{{source=\"{group}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn pulls_log_groups_once_each_across_a_sigkill() {
    let moto = Moto::start();
    let logs = Logs::new(&moto.endpoint);
    logs.create(CLOUDTRAIL, &["123456789012_CloudTrail_us-east-1"]);
    logs.create(EKS, &["kube-apiserver-audit-xyz", "authenticator-xyz"]);
    logs.create(FLASK, &["web-1"]);
    logs.create(WORKER, &["worker-1"]);
    // Not configured: must stay unread.
    logs.create("/other/ignored", &["s"]);
    logs.put("/other/ignored", "s", &["not for us".to_owned()]);

    let mut expected = BTreeMap::new();
    batch(1, &logs, &mut expected);

    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("vigil.toml"),
        format!(
            r#"
[[sources.cloudwatch]]
name = "test"
log_groups = ["{CLOUDTRAIL}", "{EKS}"]
log_group_prefixes = ["/app/"]
region = "us-east-1"
endpoint_url = "{}"
poll_interval_ms = 200
lag_ms = 300
overlap_ms = 3000
start_lookback_ms = 600000
page_size = 3
overrides = {{ "{FLASK}" = "flask-app" }}
"#,
            moto.endpoint
        ),
    )
    .unwrap();
    // The developer's own AWS profile must not leak into the test.
    let empty = dir.path().join("aws-empty");
    fs::write(&empty, "").unwrap();
    let empty_file = empty.to_str().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", empty_file),
        ("AWS_SHARED_CREDENTIALS_FILE", empty_file),
    ];
    let data = dir.path().join("data");
    let expect_all = |vigil: &Vigil, expected: &BTreeMap<String, (&str, Option<&str>)>| {
        let want: Vec<(String, String, Option<String>)> = expected
            .iter()
            .map(|(m, (kind, product))| (m.clone(), (*kind).to_owned(), product.map(str::to_owned)))
            .collect();
        let started = Instant::now();
        wait_for("every event indexed", Duration::from_secs(60), || {
            let got = indexed(vigil);
            (got.len() >= want.len() || started.elapsed() > Duration::from_secs(59)).then_some(got)
        });
        // Several polls re-read the overlap meanwhile; none may add a copy.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(indexed(vigil), want);
    };

    let vigil = Vigil::start_with_env(&data, &env);
    expect_all(&vigil, &expected);
    // The overlap was read many times over; de-duplication kept it off the bus.
    assert_eq!(events_in(&vigil, CLOUDTRAIL), 4);
    assert_eq!(events_in(&vigil, EKS), 6);

    // More events, and a SIGKILL while they are being read.
    batch(2, &logs, &mut expected);
    std::thread::sleep(Duration::from_millis(400));
    vigil.kill();
    // ...and more while Vigil is down.
    batch(3, &logs, &mut expected);
    let checkpoints = fs::read_dir(data.join("checkpoints/cloudwatch-test"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "json")
        .count();
    assert_eq!(checkpoints, 4, "one checkpoint per log group read");

    let vigil = Vigil::start_with_env(&data, &env);
    expect_all(&vigil, &expected);
    // The checkpoints held: the first round was not read again, at most the unfinished
    // window of the second (and all of the third) was.
    let again = events_in(&vigil, CLOUDTRAIL);
    assert!(
        (4..=8).contains(&again),
        "{again} CloudTrail events re-read"
    );
    assert_eq!(vigil.search_total("\"not for us\""), 0);
    assert_eq!(vigil.search_total("source_name:\"/other/ignored\""), 0);
}
