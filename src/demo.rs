//! The bundled demo: sample events from every source, fed through the normal ingest path.

use anyhow::Result;
use vigil_ingest::Ingestor;

/// (source name, records): the Flask app's logs, CloudTrail and Kubernetes audit, in the order
/// the story starts. Correlation windows slide on event time, and the detector drops an input
/// for a new group that is older than the newest event seen minus the window; fed in story
/// order, the brute force at 10:12 is not judged late against the 11:05 audit events.
const DEMO_SOURCES: [(&str, &str); 4] = [
    ("flask-app", include_str!("../demo/flask-app.ndjson")),
    ("flask-access", include_str!("../demo/flask-access.log")),
    ("cloudtrail", include_str!("../demo/cloudtrail.ndjson")),
    (
        "kubernetes-audit",
        include_str!("../demo/kubernetes-audit.ndjson"),
    ),
];

/// Ingests the demo events. Each file is one batch with a fixed batch id, so feeding them again
/// on the next start yields the same event ids and the index keeps a single copy.
pub async fn feed(ingestor: &Ingestor) -> Result<()> {
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
