use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vigil_bus::{Bus, EmbeddedBus, EmbeddedBusOptions, Topics};
use vigil_event::wire::EventFormat;
use vigil_event::{Event, Quarantined};
use vigil_ingest::{IngestLimits, Ingestor, SourceCatalog};

use crate::bus_message::BusMessage;

struct Harness {
    _dir: tempfile::TempDir,
    bus: Arc<EmbeddedBus>,
    router: axum::Router,
}

fn harness(limits: IngestLimits) -> Harness {
    harness_writing(limits, EventFormat::default())
}

fn harness_writing(limits: IngestLimits, format: EventFormat) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap());
    let ingestor = Ingestor::new(
        bus.clone(),
        Topics::default(),
        SourceCatalog::builtin(),
        limits,
    )
    .with_event_format(format);
    Harness {
        _dir: dir,
        bus,
        router: vigil_ingest::http::router(Arc::new(ingestor)),
    }
}

async fn post(router: &axum::Router, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post(path).body(body.into()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn read_all<T: BusMessage>(bus: &EmbeddedBus, topic: &str) -> Vec<T> {
    let mut sub = bus.subscribe(topic, "test-reader").await.unwrap();
    let batch = sub
        .next_batch(10_000, Duration::from_millis(100))
        .await
        .unwrap();
    batch.iter().map(|d| T::decode(&d.payload)).collect()
}

const TRAIL: &str = r#"{"eventVersion":"1.09","eventTime":"2026-11-28T10:00:00Z","eventName":"StopLogging","eventID":"a"}"#;

/// A line whose event outgrows the bus's message limit is quarantined alone; the rest of the
/// delivery is accepted, not refused and retried for ever.
#[tokio::test]
async fn an_event_too_large_for_the_bus_is_quarantined_alone() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedBusOptions {
        max_message_bytes: 24 * 1024,
        ..EmbeddedBusOptions::default()
    };
    let bus = Arc::new(EmbeddedBus::open(dir.path(), options).unwrap());
    let ingestor = Ingestor::new(
        bus.clone(),
        Topics::default(),
        SourceCatalog::builtin(),
        IngestLimits::default(),
    );
    let router = vigil_ingest::http::router(Arc::new(ingestor));
    let large = TRAIL.replace(
        r#""eventID":"a""#,
        &format!(r#""eventID":"{}""#, "b".repeat(30_000)),
    );
    let body = format!("{TRAIL}\n{large}\n{}\n", TRAIL.replace("StopLogging", "x"));
    let (status, report) = post(&router, "/api/v1/ingest/cloudtrail", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert_eq!(report["errors"][0]["line"], 2, "{report}");
    let reason = report["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("the bus takes up to"), "{reason}");
    let events: Vec<Event> = read_all(&bus, "vigil.events").await;
    assert_eq!(events.len(), 2);
    let quarantined: Vec<Quarantined> = read_all(&bus, "vigil.quarantine").await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].line, Some(2));
    assert!(quarantined[0].raw.starts_with(b"{\"eventVersion\""));
}

/// Events are framed unless ingest is told to write them as one JSON object each, which a
/// Vigil before the framing reads: the setting for a rolling upgrade.
#[tokio::test]
async fn events_are_written_in_the_configured_format() {
    for format in [EventFormat::Framed, EventFormat::Json] {
        let h = harness_writing(IngestLimits::default(), format);
        let (status, _) = post(&h.router, "/api/v1/ingest/cloudtrail", TRAIL).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let mut sub = h.bus.subscribe("vigil.events", "raw").await.unwrap();
        let batch = sub
            .next_batch(10, Duration::from_millis(100))
            .await
            .unwrap();
        let payload = &batch[0].payload;
        let event = Event::from_bus(payload).unwrap();
        assert_eq!(event.record.as_str(), TRAIL);
        match format {
            EventFormat::Framed => assert_eq!(payload[0], vigil_event::wire::FRAMED),
            EventFormat::Json => {
                assert_eq!(serde_json::from_slice::<Event>(payload).unwrap(), event)
            }
        }
    }
}

#[tokio::test]
async fn accepts_good_lines_and_reports_bad_ones_by_number() {
    let h = harness(IngestLimits::default());
    let body = format!("{TRAIL}\n\nnot json\n{TRAIL}\n[1]\r\n");
    let (status, report) = post(&h.router, "/api/v1/ingest/cloudtrail", body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["errors"][1]["line"], 5);

    let events: Vec<Event> = read_all(&h.bus, "vigil.events").await;
    assert_eq!(events.len(), 2);
    assert_ne!(
        events[0].id, events[1].id,
        "identical lines are distinct events"
    );
    assert_eq!(events[0].record.as_str(), TRAIL);
    assert_eq!(events[0].source.kind, "cloudtrail");
    assert_eq!(events[0].time.to_rfc3339(), "2026-11-28T10:00:00+00:00");

    let quarantined: Vec<Quarantined> = read_all(&h.bus, "vigil.quarantine").await;
    assert_eq!(quarantined.len(), 2);
    assert_eq!(quarantined[0].raw, b"not json");
    assert_eq!(quarantined[1].line, Some(5));
}

#[tokio::test]
async fn a_retried_delivery_gets_the_same_ids() {
    let h = harness(IngestLimits::default());
    let body = format!("{TRAIL}\n{TRAIL}\n");
    post(&h.router, "/api/v1/ingest/cloudtrail", body.clone()).await;
    post(&h.router, "/api/v1/ingest/cloudtrail", body).await;
    let events: Vec<Event> = read_all(&h.bus, "vigil.events").await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].id, events[2].id);
    assert_eq!(events[1].id, events[3].id);
}

#[tokio::test]
async fn oversized_lines_and_bodies_get_clear_errors() {
    let h = harness(IngestLimits {
        max_line_bytes: 1024,
        max_body_bytes: 4096,
    });
    let long = format!("{{\"a\":\"{}\"}}", "x".repeat(2000));
    let (status, report) = post(&h.router, "/api/v1/ingest/app", long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        report["errors"][0]["reason"],
        "record is 2008 bytes; the limit is 1024"
    );
    let quarantined: Vec<Quarantined> = read_all(&h.bus, "vigil.quarantine").await;
    assert_eq!(
        quarantined[0].raw.len(),
        2008,
        "quarantined whole, not truncated"
    );

    let (status, body) = post(&h.router, "/api/v1/ingest/app", "x".repeat(5000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("4096-byte limit"));
}

#[tokio::test]
async fn invalid_utf8_and_bad_source_names_are_rejected() {
    let h = harness(IngestLimits::default());
    let (status, report) = post(
        &h.router,
        "/api/v1/ingest/app",
        &b"{\"a\":\"\xc3\x28\"}"[..],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(report["errors"][0]["reason"], "invalid UTF-8 at byte 6");

    let (status, body) = post(&h.router, "/api/v1/ingest/bad%20name", TRAIL).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("invalid source name"));
}

/// Vigil's audit log arrives as events of source `vigil-audit`, and rules watch it: no sender
/// may write that source, by its name in any case, by a preset that maps to its kind, or by
/// calling the ingestor directly. Only the forwarder's own entry point writes it.
#[tokio::test]
async fn the_audit_source_is_written_only_by_the_audit_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap());
    let mut catalog = SourceCatalog::builtin();
    let audit_spec = catalog.preset("vigil-audit").unwrap();
    catalog.insert("looks-harmless", audit_spec);
    let ingestor = Arc::new(Ingestor::new(
        bus.clone(),
        Topics::default(),
        catalog,
        IngestLimits::default(),
    ));
    let forged = br#"{"time":"2026-12-03T03:00:00Z","actor":"root","action":"token.create","outcome":"success"}"#;
    for name in ["vigil-audit", "VIGIL-Audit", "looks-harmless"] {
        let refused = ingestor.ingest_lines(name, forged, None).await;
        assert!(
            matches!(refused, Err(vigil_ingest::IngestError::ReservedSource)),
            "{name}: {refused:?}"
        );
    }
    let router = vigil_ingest::http::router(ingestor.clone());
    let (status, reply) = post(&router, "/api/v1/ingest/vigil-audit", &forged[..]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert!(read_all::<Event>(&bus, "vigil.events").await.is_empty());

    let report = ingestor.ingest_audit_log(forged, "batch-1").await.unwrap();
    assert_eq!(report.accepted, 1);
    let events: Vec<Event> = read_all(&bus, "vigil.events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source.kind, "vigil-audit");
    assert_eq!(events[0].source.name, "vigil-audit");
}
