//! The bundled demo: sample events from every source, fed through the normal ingest path.

use vigil_ingest::{IngestError, Ingestor};

/// (source name, records): CloudTrail, Kubernetes audit and the Flask app's logs. The order
/// does not matter: the detector keeps a watermark per source, so the Flask app's brute force
/// (at 10:12) still correlates after the CloudTrail and audit events (up to 11:10) went first.
const DEMO_SOURCES: [(&str, &str); 4] = [
    ("cloudtrail", include_str!("../../demo/cloudtrail.ndjson")),
    (
        "kubernetes-audit",
        include_str!("../../demo/kubernetes-audit.ndjson"),
    ),
    ("flask-app", include_str!("../../demo/flask-app.ndjson")),
    ("flask-access", include_str!("../../demo/flask-access.log")),
];

/// Ingests the demo events. Each file is one batch with a fixed batch id, so feeding them again
/// on the next start yields the same event ids and the index keeps a single copy.
pub async fn feed(ingestor: &Ingestor) -> Result<(), IngestError> {
    for (source, records) in DEMO_SOURCES {
        let batch_id = format!("vigil-demo-{source}");
        let report = ingestor
            .ingest_lines(source, records.as_bytes(), Some(&batch_id))
            .await?;
        tracing::info!(
            source,
            accepted = report.accepted,
            rejected = report.rejected,
            "fed demo events"
        );
    }
    Ok(())
}
