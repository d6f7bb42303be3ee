//! The Kubernetes audit webhook and the Firehose endpoint, against a real embedded bus.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vigil_bus::{Bus, EmbeddedBus, EmbeddedBusOptions, Topics};
use vigil_event::{Event, Quarantined};
use vigil_ingest::cloudwatch::firehose::{self, FirehoseState};
use vigil_ingest::cloudwatch::LogGroupRecogniser;
use vigil_ingest::{IngestLimits, Ingestor, SourceCatalog};

use crate::bus_message::BusMessage;

struct Harness {
    _dir: tempfile::TempDir,
    bus: Arc<EmbeddedBus>,
    router: axum::Router,
}

fn harness() -> Harness {
    harness_with(
        IngestLimits::default(),
        firehose::DEFAULT_MAX_INFLATED_BYTES,
    )
}

fn harness_with(limits: IngestLimits, max_inflated_bytes: usize) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap());
    let ingestor = Arc::new(Ingestor::new(
        bus.clone(),
        Topics::default(),
        SourceCatalog::builtin(),
        limits,
    ));
    let router =
        vigil_ingest::kubernetes::router(ingestor.clone()).merge(firehose::router(FirehoseState {
            ingestor,
            access_key: "firehose-secret".into(),
            recogniser: Arc::new(LogGroupRecogniser::default()),
            max_inflated_bytes,
        }));
    Harness {
        _dir: dir,
        bus,
        router,
    }
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn read_all<T: BusMessage>(bus: &EmbeddedBus, topic: &str, group: &str) -> Vec<T> {
    let mut sub = bus.subscribe(topic, group).await.unwrap();
    sub.next_batch(10_000, Duration::from_millis(100))
        .await
        .unwrap()
        .iter()
        .map(|d| T::decode(&d.payload))
        .collect()
}

fn exec_event(audit_id: &str, stage: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": stage,
        "requestURI": "/api/v1/namespaces/payments/pods/api-7d9/exec?command=sh&stdin=true",
        "verb": "create",
        "user": {"username": "m.chen@example.com", "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.66"],
        "objectRef": {"resource": "pods", "namespace": "payments", "name": "api-7d9", "subresource": "exec", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2026-11-28T11:05:00.123456Z",
        "stageTimestamp": "2026-11-28T11:05:00.200000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
}

#[tokio::test]
async fn kubernetes_event_lists_are_stored_with_stable_ids() {
    let h = harness();
    let list = json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": [
            exec_event("0b1c", "ResponseStarted"),
            exec_event("0b1c", "ResponseComplete"),
            {"kind": "Event", "apiVersion": "audit.k8s.io/v1beta1", "auditID": "77", "stage": "ResponseComplete",
             "verb": "list", "timestamp": "2026-11-28T11:06:00Z", "objectRef": {"resource": "secrets"}},
            [1, 2]
        ]
    });
    let post = |body: String| {
        Request::post("/api/v1/webhooks/kubernetes-audit/prod-cluster")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    // A name that stands for another kind of log is not a cluster, so a token bound to
    // `cloudtrail` cannot slip Kubernetes events in under it.
    let as_trail = Request::post("/api/v1/webhooks/kubernetes-audit/cloudtrail")
        .header("content-type", "application/json")
        .body(Body::from(list.to_string()))
        .unwrap();
    let (status, refusal) = send(&h.router, as_trail).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refusal}");
    assert!(refusal.to_string().contains("not a Kubernetes cluster"));

    let (status, report) = send(&h.router, post(list.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["errors"][0]["line"], 4);

    // The API server retries a batch it did not see acknowledged: same ids.
    let (status, _) = send(&h.router, post(list.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<Event> = read_all(&h.bus, "vigil.events", "t").await;
    assert_eq!(events.len(), 6);
    assert_ne!(events[0].id, events[1].id, "each stage is its own event");
    assert_eq!(events[0].id, events[3].id);
    assert_eq!(events[0].logsource.product.as_deref(), Some("kubernetes"));
    assert_eq!(events[0].source.name, "prod-cluster");
    assert_eq!(
        events[0].time.to_rfc3339(),
        "2026-11-28T11:05:00.123456+00:00"
    );
    assert_eq!(events[2].time.to_rfc3339(), "2026-11-28T11:06:00+00:00");
    let document = events[0].document().unwrap();
    assert_eq!(document["objectRef"]["subresource"], "exec");

    let (status, body) = send(&h.router, post("{not json".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("EventList"));
    let (status, _) = send(
        &h.router,
        post(json!({"kind": "PodList", "items": []}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nothing to store is not success: an empty array, or a list without items.
    for (body, expected) in [
        ("[]".to_owned(), "JSON object"),
        (" [[\"EventList\"]]".to_owned(), "JSON object"),
        (
            json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []}).to_string(),
            "no items",
        ),
        (json!({"kind": "EventList"}).to_string(), "no items"),
    ] {
        let (status, reply) = send(&h.router, post(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let reason = reply["error"].as_str().unwrap();
        assert!(reason.contains(expected), "{body}: {reason}");
    }
}

fn firehose_record(message: &Value) -> Value {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(message.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    json!({ "data": data })
}

#[tokio::test]
async fn firehose_deliveries_of_cloudwatch_subscriptions() {
    let h = harness();
    let trail = |id: &str, name: &str| {
        json!({"eventVersion": "1.10", "eventSource": "iam.amazonaws.com", "eventName": name,
               "eventTime": "2026-11-28T10:41:00Z", "eventID": id})
        .to_string()
    };
    let control = json!({"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
        "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]});
    let cloudtrail = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
    "logGroup": "aws-cloudtrail-logs-123456789012", "logStream": "123456789012_CloudTrail_eu-west-1",
    "subscriptionFilters": ["to-vigil"],
    "logEvents": [
        {"id": "38000000000000000000000000000000000000000000000000000001", "timestamp": 1795862460000_i64, "message": trail("e1", "CreateAccessKey")},
        {"id": "38000000000000000000000000000000000000000000000000000002", "timestamp": 1795862460000_i64, "message": trail("e2", "AttachUserPolicy")}
    ]});
    let eks = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster", "logStream": "kube-apiserver-audit-5c1e",
        "subscriptionFilters": ["to-vigil"],
        "logEvents": [{"id": "39000000000000000000000000000000000000000000000000000001", "timestamp": 1795863900000_i64,
                       "message": exec_event("9f", "ResponseComplete").to_string()}]});
    let delivery = json!({
        "requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
        "timestamp": 1795863900500_i64,
        "records": [firehose_record(&control), firehose_record(&cloudtrail), firehose_record(&eks), {"data": "%%%not base64"}]
    });
    let request = |key: &str| {
        Request::post("/ingest/firehose")
            .header(
                "x-amz-firehose-request-id",
                "ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
            )
            .header("x-amz-firehose-access-key", key)
            .header("content-type", "application/json")
            .body(Body::from(delivery.to_string()))
            .unwrap()
    };

    let (status, body) = send(&h.router, request("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["errorMessage"].is_string());

    let (status, body) = send(&h.router, request("firehose-secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["requestId"], "ed4acda5-034f-9f42-bba1-f29aea6d7d8f");
    assert!(body["timestamp"].is_i64());

    let events: Vec<Event> = read_all(&h.bus, "vigil.events", "t").await;
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.source.kind.as_str(), e.source.name.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("cloudtrail", "aws-cloudtrail-logs-123456789012"),
            ("cloudtrail", "aws-cloudtrail-logs-123456789012"),
            ("kubernetes-audit", "/aws/eks/prod/cluster"),
        ]
    );
    assert_eq!(events[0].logsource.service.as_deref(), Some("cloudtrail"));
    assert_eq!(
        events[1].document().unwrap()["eventName"],
        "AttachUserPolicy"
    );
    assert_eq!(events[2].logsource.service.as_deref(), Some("audit"));

    let quarantined: Vec<Quarantined> = read_all(&h.bus, "vigil.quarantine", "t").await;
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].reason.contains("not base64"),
        "{}",
        quarantined[0].reason
    );
    assert_eq!(quarantined[0].line, Some(4));

    // A retried delivery adds no new ids.
    send(&h.router, request("firehose-secret")).await;
    let again: Vec<Event> = read_all(&h.bus, "vigil.events", "t2").await;
    assert_eq!(again.len(), 6);
    assert_eq!(again[0].id, again[3].id);
}

#[tokio::test]
async fn flask_app_records_from_cloudwatch_are_recognised_by_their_shape() {
    let h = harness();
    // Neither the log group nor an override says what these are: their keys do.
    let python_json_logger = json!({"asctime": "2026-11-28 10:12:01,114", "levelname": "WARNING",
        "name": "usermgmt.auth", "message": "Login failed", "remote_addr": "203.0.113.66"});
    let structlog = json!({"event": "login_failed", "level": "warning", "logger": "usermgmt.auth",
        "timestamp": "2026-11-28T10:12:02Z"});
    let data = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
    "logGroup": "/ecs/usermgmt", "logStream": "web/abc", "subscriptionFilters": ["f"],
    "logEvents": [
        {"id": "1", "timestamp": 1795862460000_i64, "message": python_json_logger.to_string()},
        {"id": "2", "timestamp": 1795862460000_i64, "message": structlog.to_string()},
        {"id": "3", "timestamp": 1795862460000_i64, "message": "worker started"}
    ]});
    let (status, body) = send(&h.router, firehose_post(&[firehose_record(&data)])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events: Vec<Event> = read_all(&h.bus, "vigil.events", "f").await;
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.source.kind.as_str(), e.logsource.service.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("flask-app", Some("flask")),
            ("flask-app", Some("flask")),
            ("cloudwatch", None)
        ]
    );
    assert_eq!(events[0].time.to_rfc3339(), "2026-11-28T10:12:01.114+00:00");
}

#[tokio::test]
async fn a_keyed_resend_with_other_content_never_replaces_the_first() {
    let h = harness();
    // Kubernetes: the same audit id and stage, once as an exec and once as a harmless get.
    let mut harmless = exec_event("0b1c", "ResponseComplete");
    harmless["verb"] = json!("get");
    harmless["objectRef"]["subresource"] = Value::Null;
    for item in [
        exec_event("0b1c", "ResponseComplete"),
        harmless,
        exec_event("0b1c", "ResponseComplete"),
    ] {
        let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [item]});
        let request = Request::post("/api/v1/webhooks/kubernetes-audit/prod-cluster")
            .body(Body::from(list.to_string()))
            .unwrap();
        assert_eq!(send(&h.router, request).await.0, StatusCode::OK);
    }
    let events: Vec<Event> = read_all(&h.bus, "vigil.events", "k").await;
    assert_eq!(events.len(), 3);
    assert_ne!(events[0].id, events[1].id, "the get is another event");
    assert_eq!(
        events[0].id, events[2].id,
        "an identical resend is the same one"
    );

    // Firehose: one CloudWatch event id, two messages, and then a time on another day.
    let delivery = |message: &str, timestamp: i64| {
        let data = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/app/flask", "logStream": "web-1", "subscriptionFilters": ["f"],
            "logEvents": [{"id": "3800000000000000000000000000000000000000000000000000000a",
                           "timestamp": timestamp, "message": message}]});
        Request::post("/ingest/firehose")
            .header("x-amz-firehose-access-key", "firehose-secret")
            .body(Body::from(
                json!({"requestId": "r", "records": [firehose_record(&data)]}).to_string(),
            ))
            .unwrap()
    };
    for (message, timestamp) in [
        ("login failed for admin", 1795862460000_i64),
        ("healthcheck ok", 1795862460000),
        ("login failed for admin", 1795862460000 + 86_400_000),
        ("login failed for admin", 1795862460000),
    ] {
        let (status, body) = send(&h.router, delivery(message, timestamp)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let events: Vec<Event> = read_all(&h.bus, "vigil.events", "f").await;
    let ids: Vec<_> = events[3..].iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 4);
    assert_ne!(ids[0], ids[1], "other content under one CloudWatch id");
    assert_ne!(ids[0], ids[2], "another time under one CloudWatch id");
    assert_eq!(ids[0], ids[3], "a retry");
}

/// A subscription message of one log event whose message is `size` bytes of one letter:
/// a few kilobytes of gzip.
fn inflating_record(log_group: &str, size: usize) -> Value {
    firehose_record(
        &json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": log_group, "logStream": "s", "subscriptionFilters": ["f"],
        "logEvents": [{"id": "1", "timestamp": 1795862460000_i64, "message": "a".repeat(size)}]}),
    )
}

fn firehose_post(records: &[Value]) -> Request<Body> {
    Request::post("/ingest/firehose")
        .header("x-amz-firehose-access-key", "firehose-secret")
        .body(Body::from(
            json!({"requestId": "r", "records": records}).to_string(),
        ))
        .unwrap()
}

#[tokio::test]
async fn gzip_bombs_are_bounded_by_the_request_budget() {
    const MIB: usize = 1024 * 1024;
    let limits = IngestLimits {
        max_line_bytes: 256 * 1024,
        max_body_bytes: 4 * MIB,
    };
    let h = harness_with(limits, 8 * MIB);

    // Within the budget: each event is over the line limit, and only its start is kept.
    let records: Vec<Value> = (0..3)
        .map(|_| inflating_record("/app/bombs", 2 * MIB))
        .collect();
    let request = firehose_post(&records);
    let (status, body) = send(&h.router, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let quarantined: Vec<Quarantined> = read_all(&h.bus, "vigil.quarantine", "q1").await;
    assert_eq!(quarantined.len(), 3);
    for record in &quarantined {
        assert_eq!(record.raw.len(), 64 * 1024, "a bounded prefix");
        assert!(
            record
                .reason
                .contains(&format!("record is {} bytes", 2 * MIB)),
            "{}",
            record.reason
        );
    }

    // One record past the per-record limit, within the budget: quarantined by its start.
    let (status, _) = send(
        &h.router,
        firehose_post(&[inflating_record("/app/bombs", 5 * MIB)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let quarantined: Vec<Quarantined> = read_all(&h.bus, "vigil.quarantine", "q2").await;
    assert_eq!(quarantined.len(), 4);
    assert!(
        quarantined[3].reason.contains("inflates past"),
        "{}",
        quarantined[3].reason
    );

    // Ten such records in one small request: refused whole, nothing more stored.
    let records: Vec<Value> = (0..10)
        .map(|_| inflating_record("/app/bombs", 3 * MIB))
        .collect();
    let request = firehose_post(&records);
    let (status, body) = send(&h.router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let reason = body["errorMessage"].as_str().unwrap();
    assert!(reason.contains("8388608-byte budget"), "{reason}");
    assert_eq!(
        read_all::<Quarantined>(&h.bus, "vigil.quarantine", "q3")
            .await
            .len(),
        4
    );
    assert!(read_all::<Event>(&h.bus, "vigil.events", "e")
        .await
        .is_empty());
}

#[tokio::test]
async fn a_data_message_without_a_valid_log_group_is_a_client_error() {
    let h = harness();
    for log_group in ["", "bad group", "x\u{0}y"] {
        let records = [
            inflating_record("/app/ok", 10),
            inflating_record(log_group, 10),
        ];
        let (status, body) = send(&h.router, firehose_post(&records)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{log_group:?}: {body}");
        let reason = body["errorMessage"].as_str().unwrap();
        assert!(
            reason.contains("record 2") && reason.contains("logGroup"),
            "{reason}"
        );
    }
    // Refused before anything was stored, so the retries duplicate nothing.
    assert!(read_all::<Event>(&h.bus, "vigil.events", "e")
        .await
        .is_empty());
    assert!(read_all::<Quarantined>(&h.bus, "vigil.quarantine", "q")
        .await
        .is_empty());
}
