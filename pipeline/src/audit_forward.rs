//! The audit forwarder: every audit entry also becomes an event of source `vigil-audit` in
//! Vigil's own pipeline, so Sigma rules can watch Vigil (a brute force against its sign-in,
//! a token created at night).
//!
//! Each tick it reads the entries after the database's forwarding cursor, ingests them as
//! JSON lines, and only then moves the cursor: an entry is never skipped, whatever crashes
//! when. A crash between the two sends the same entries again on the next start; their
//! event ids come from their content and their position after the cursor, both the same on
//! the retry, so the index keeps one copy.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Timelike};
use tokio::sync::watch;
use vigil_access::{AccessDb, AccessError, AuditEntry};
use vigil_ingest::{IngestError, Ingestor};

// The source name and kind audit events carry; ingest refuses it on every other path.
use vigil_event::AUDIT_SOURCE;

/// The most entries one delivery carries.
const BATCH: usize = 500;

/// How often the forwarder looks for new entries.
const INTERVAL: Duration = Duration::from_secs(1);

/// How soon after start-up it first looks: soon, but after the stages have subscribed.
const FIRST_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("reading the audit log: {0}")]
    Access(#[from] AccessError),
    #[error("ingesting audit events: {0}")]
    Ingest(#[from] IngestError),
    #[error("writing an audit event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the audit database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Forwards until `shutdown` turns true. Errors are logged and retried on the next tick:
/// an unreachable bus must not stop Vigil, and the cursor keeps the place.
pub async fn run(db: Arc<AccessDb>, ingestor: Arc<Ingestor>, mut shutdown: watch::Receiver<bool>) {
    let mut wait = FIRST_DELAY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        wait = INTERVAL;
        // A full batch means more may be waiting: send on at once rather than a tick later.
        loop {
            match forward_once(&db, &ingestor).await {
                Ok(sent) if sent == BATCH && !*shutdown.borrow() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "forwarding audit entries failed; retrying");
                    break;
                }
            }
        }
    }
}

/// Sends the entries after the cursor (at most one batch) and moves the cursor past them.
/// Returns how many were sent.
pub async fn forward_once(db: &Arc<AccessDb>, ingestor: &Ingestor) -> Result<usize, ForwardError> {
    let reader = db.clone();
    let (after, entries) = tokio::task::spawn_blocking(move || {
        let after = reader.forwarded_up_to()?;
        Ok::<_, AccessError>((after, reader.audit_after(after, BATCH)?))
    })
    .await??;
    let Some(last) = entries.last().map(|entry| entry.seq) else {
        return Ok(0);
    };
    deliver(ingestor, after, &entries).await?;
    let writer = db.clone();
    tokio::task::spawn_blocking(move || writer.set_forwarded_up_to(last)).await??;
    metrics::counter!("vigil_audit_forwarded_total").increment(entries.len() as u64);
    Ok(entries.len())
}

/// Ingests `entries`, the ones after sequence number `after`, returning once the bus has
/// them (as events, or the odd unreadable one in quarantine).
async fn deliver(
    ingestor: &Ingestor,
    after: i64,
    entries: &[AuditEntry],
) -> Result<(), ForwardError> {
    let mut body = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut body, &event_json(entry)?)?;
        body.push(b'\n');
    }
    // Keyed by where the batch starts, not where it ends: a retry after a crash starts at the
    // same cursor but may reach further, and must give the entries it repeats the same ids.
    let batch_id = format!("{AUDIT_SOURCE}-after-{after}");
    let report = ingestor.ingest_audit_log(&body, &batch_id).await?;
    if report.rejected > 0 {
        // Quarantined records are durable too, so the cursor still moves past them.
        tracing::warn!(
            rejected = report.rejected,
            errors = ?report.errors,
            "audit entries were quarantined instead of becoming events"
        );
    }
    Ok(())
}

/// One entry as its event's JSON: the entry as serialized, plus its hour (0-23) and weekday
/// (`Mon`..`Sun`) in UTC, so rules can ask for "outside working hours" with plain values.
pub fn event_json(entry: &AuditEntry) -> Result<serde_json::Value, serde_json::Error> {
    let mut value = serde_json::to_value(entry)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("hour_utc".into(), entry.time.hour().into());
        object.insert(
            "weekday_utc".into(),
            entry.time.weekday().to_string().into(),
        );
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use bytes::Bytes;
    use vigil_access::{AuditRecord, Outcome};
    use vigil_bus::{
        Bus, BusError, EmbeddedBus, EmbeddedBusOptions, Message, Subscription, Topics,
    };
    use vigil_event::Event;
    use vigil_ingest::{IngestLimits, SourceCatalog};

    use super::*;

    fn record(actor: &str, action: &str) -> AuditRecord {
        AuditRecord {
            actor: actor.into(),
            action: action.into(),
            outcome: Outcome::Failure,
            target: None,
            client_address: Some("203.0.113.9".into()),
            reason: Some("wrong_password".into()),
            detail: serde_json::Value::Null,
        }
    }

    fn ingestor(bus: Arc<dyn Bus>) -> Ingestor {
        Ingestor::new(
            bus,
            Topics::default(),
            SourceCatalog::builtin(),
            IngestLimits::default(),
        )
    }

    async fn events(bus: &EmbeddedBus) -> Vec<Event> {
        crate::stages::tests::read_all(bus, &Topics::default().events).await
    }

    /// A bus that refuses every publish, as an unreachable Kafka would.
    struct Refusing;

    #[async_trait]
    impl Bus for Refusing {
        async fn publish(&self, _: &str, _: Vec<Message>) -> Result<(), BusError> {
            Err(BusError::Unavailable("the test refuses".into()))
        }
        async fn subscribe(&self, _: &str, _: &str) -> Result<Box<dyn Subscription>, BusError> {
            Err(BusError::Unavailable("the test refuses".into()))
        }
        async fn save_state(&self, _: &str, _: Bytes) -> Result<(), BusError> {
            Ok(())
        }
        async fn load_state(&self, _: &str) -> Result<Option<Bytes>, BusError> {
            Ok(None)
        }
    }

    #[test]
    fn an_event_is_the_entry_with_its_utc_hour_and_weekday() {
        let entry = AuditEntry {
            seq: 7,
            // A Saturday.
            time: "2026-11-28T22:15:00Z".parse().unwrap(),
            record: AuditRecord {
                outcome: Outcome::Success,
                target: Some("ci".into()),
                ..record("alice", "token.create")
            },
        };
        let json = event_json(&entry).unwrap();
        assert_eq!(json["seq"], 7);
        assert_eq!(json["actor"], "alice");
        assert_eq!(json["action"], "token.create");
        assert_eq!(json["outcome"], "success");
        assert_eq!(json["target"], "ci");
        assert_eq!(json["time"], "2026-11-28T22:15:00Z");
        assert_eq!(json["hour_utc"], 22);
        assert_eq!(json["weekday_utc"], "Sat");
    }

    #[tokio::test]
    async fn entries_become_vigil_audit_events_and_the_cursor_follows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(AccessDb::open_in(dir.path()).unwrap());
        let bus = Arc::new(
            EmbeddedBus::open(dir.path().join("bus"), EmbeddedBusOptions::default()).unwrap(),
        );
        let ingestor = ingestor(bus.clone());
        assert_eq!(forward_once(&db, &ingestor).await.unwrap(), 0);
        for actor in ["mallory", "mallory", "eve"] {
            db.audit(record(actor, "sign_in")).unwrap();
        }
        assert_eq!(forward_once(&db, &ingestor).await.unwrap(), 3);
        assert_eq!(db.forwarded_up_to().unwrap(), 3);
        assert_eq!(forward_once(&db, &ingestor).await.unwrap(), 0);
        db.audit(record("bob", "token.create")).unwrap();
        assert_eq!(forward_once(&db, &ingestor).await.unwrap(), 1);
        assert_eq!(db.forwarded_up_to().unwrap(), 4);

        let events = events(&bus).await;
        assert_eq!(events.len(), 4);
        for event in &events {
            assert_eq!(event.source.kind, AUDIT_SOURCE);
            assert_eq!(event.source.name, AUDIT_SOURCE);
            assert_eq!(event.logsource.product.as_deref(), Some("vigil"));
            assert_eq!(event.logsource.service.as_deref(), Some("audit"));
        }
        let seqs: Vec<i64> = events
            .iter()
            .map(|event| event.document().unwrap()["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        // The event time is the entry's, not the time it was forwarded.
        let entry = &db.audit_after(0, 1).unwrap()[0];
        assert_eq!(events[0].time, entry.time);
    }

    #[tokio::test]
    async fn a_refused_delivery_leaves_the_cursor_and_a_retry_repeats_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(AccessDb::open_in(dir.path()).unwrap());
        for actor in ["a", "b"] {
            db.audit(record(actor, "sign_in")).unwrap();
        }
        let refused = forward_once(&db, &ingestor(Arc::new(Refusing))).await;
        assert!(
            matches!(refused, Err(ForwardError::Ingest(_))),
            "{refused:?}"
        );
        assert_eq!(db.forwarded_up_to().unwrap(), 0, "nothing reached the bus");

        let bus = Arc::new(
            EmbeddedBus::open(dir.path().join("bus"), EmbeddedBusOptions::default()).unwrap(),
        );
        let working = ingestor(bus.clone());
        // A crash after the bus took the two but before the cursor moved past them...
        deliver(&working, 0, &db.audit_after(0, BATCH).unwrap())
            .await
            .unwrap();
        assert_eq!(db.forwarded_up_to().unwrap(), 0);
        // ...and the next start sends them again, now with one more entry behind them.
        db.audit(record("c", "sign_in")).unwrap();
        assert_eq!(forward_once(&db, &working).await.unwrap(), 3);
        assert_eq!(db.forwarded_up_to().unwrap(), 3);
        let events = events(&bus).await;
        assert_eq!(events.len(), 5);
        let mut ids: Vec<String> = events.iter().map(|event| event.id.to_string()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "the repeated entries keep their ids");
    }
}
