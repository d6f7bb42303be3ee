//! Turning one input line into an event the way `vigil detect`, `rules test` and
//! `rules explain` all need it: recognise the source from the line's shape (unless the user
//! named the logsource), then normalise it with the ingest code, so the fields, the logsource
//! and the time are exactly what the pipeline would produce.

use chrono::{DateTime, Utc};
use vigil_event::{Event, EventId, LogSource, Source};
use vigil_ingest::parse::parse_access_log;
use vigil_ingest::{normalise_line, RecordFormat, SourceSpec};

/// The spec a line's shape says it is: a CloudTrail record, a Kubernetes audit `Event`, a log
/// record of the Flask app, other JSON, or an access log line. With `logsource`, that logsource replaces the recognised one
/// and a line that is neither JSON nor an access log line is taken as plain text.
pub fn recognise(line: &str, logsource: Option<&LogSource>) -> Result<SourceSpec, String> {
    let trimmed = line.trim_start();
    let mut spec = if trimmed.starts_with('{') {
        recognise_json(trimmed)?
    } else {
        match parse_access_log(line) {
            Ok(_) => SourceSpec::access_log(),
            Err(_) if logsource.is_some() => SourceSpec {
                format: RecordFormat::Text,
                ..SourceSpec::generic()
            },
            Err(e) => {
                return Err(format!(
                    "neither a JSON object nor an access log line ({e})"
                ))
            }
        }
    };
    if let Some(logsource) = logsource {
        spec.logsource = logsource.clone();
    }
    Ok(spec)
}

/// Tells CloudTrail and audit records apart by the keys only they carry, as the CloudWatch
/// recogniser in ingest does, and the Flask app's records by the keys its JSON loggers write:
/// python-json-logger's `levelname` with the logger `name` (or the `message`), or structlog's
/// `event` with `level` and `logger`.
fn recognise_json(text: &str) -> Result<SourceSpec, String> {
    // The keys are read with the record parser's top level, whose verdict ingest applies
    // (`vigil run` accepts a line exactly when this does), where a shape derived with serde
    // would refuse a repeated key or a lone surrogate in a key. A null value counts as absent.
    let top =
        vigil_event::json::check_object(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let has = |key: &str| top.get(key).is_some_and(|raw| raw != "null");
    let is_string = |key: &str| top.get(key).is_some_and(|raw| raw.starts_with('"'));
    let kind = top
        .get("kind")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok());
    Ok(if has("eventVersion") && has("eventSource") {
        SourceSpec::cloudtrail()
    } else if kind.as_deref() == Some("Event") && has("auditID") {
        SourceSpec::kubernetes_audit()
    } else if (is_string("levelname") && (has("name") || has("message")))
        || (is_string("level") && has("event") && has("logger"))
    {
        SourceSpec::flask_app()
    } else {
        let mut spec = SourceSpec::generic();
        // Unrecognised JSON may still be an audit event without `kind`, so its time fields
        // are worth a look too.
        spec.time_fields.extend([
            "requestReceivedTimestamp".to_owned(),
            "stageTimestamp".to_owned(),
        ]);
        spec
    })
}

/// One line as an event. `number` (1-based) makes the id, so correlation matches can be
/// traced back to their lines; `received` is the time of records that state none.
pub fn line_event(
    line: &str,
    number: usize,
    logsource: Option<&LogSource>,
    received: DateTime<Utc>,
) -> Result<Event, String> {
    let spec = recognise(line, logsource)?;
    let source = Source {
        kind: spec.kind.clone(),
        name: "cli".into(),
    };
    normalise_line(
        &spec,
        &source,
        line.as_bytes(),
        line_id(number),
        received,
        None,
    )
}

pub fn line_id(number: usize) -> EventId {
    EventId::derive("vigil-cli line", &[&(number as u64).to_le_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_lines_are_recognised_as_vigil_run_reads_them() {
        let kind = |line: &str| recognise(line, None).map(|spec| spec.kind);
        for trail in [
            r#"{"eventVersion":"1.09","eventSource":"cloudtrail.amazonaws.com","eventVersion":"1"}"#,
            r#"{"eventVersion":"1.09","k\ud800":1,"eventSource":"cloudtrail.amazonaws.com"}"#,
            r#"{"eventVersion":"1.09","eventSource":"cloudtrail.amazonaws.com","pad":1e400}"#,
        ] {
            assert_eq!(kind(trail).unwrap(), "cloudtrail", "{trail}");
        }
        let flask = r#"{"levelname":"WARNING","message":"Login failed","\udc00":0,"message":"x"}"#;
        assert_eq!(kind(flask).unwrap(), "flask-app");
        assert_eq!(
            kind(r#"{"eventVersion":null,"eventSource":"s"}"#).unwrap(),
            "http"
        );
        let broken = kind(r#"{"eventVersion":"1.09",}"#).unwrap_err();
        assert!(broken.starts_with("not a JSON object"), "{broken}");
    }

    #[test]
    fn recognises_by_shape() {
        let kind = |line: &str| recognise(line, None).map(|spec| spec.kind);
        assert_eq!(
            kind(r#"{"eventVersion":"1.09","eventSource":"s3.amazonaws.com"}"#).unwrap(),
            "cloudtrail"
        );
        assert_eq!(
            kind(r#"{"kind":"Event","auditID":"x","verb":"get"}"#).unwrap(),
            "kubernetes-audit"
        );
        assert_eq!(kind(r#"{"kind":"Pod"}"#).unwrap(), "http");
        let flask = r#"{"asctime":"2026-11-28 10:12:01,114","levelname":"WARNING","name":"usermgmt.auth","message":"Login failed"}"#;
        assert_eq!(kind(flask).unwrap(), "flask-app");
        let structlog = r#"{"event":"login_failed","level":"warning","logger":"usermgmt.auth","timestamp":"2026-11-28T10:12:01Z"}"#;
        assert_eq!(kind(structlog).unwrap(), "flask-app");
        assert_eq!(
            recognise(flask, None).unwrap().logsource,
            LogSource::new(Some("python"), Some("flask"), Some("application"))
        );
        // A level alone, or an `event` without a logger, is not enough.
        assert_eq!(kind(r#"{"level":"info","msg":"x"}"#).unwrap(), "http");
        assert_eq!(kind(r#"{"event":"x","level":"info"}"#).unwrap(), "http");
        assert_eq!(
            kind(r#"1.2.3.4 - - [28/Nov/2026:09:03:11 +0000] "GET / HTTP/1.1" 200 1 "-" "x""#)
                .unwrap(),
            "access-log"
        );
        assert!(kind("hello").is_err());
        assert!(kind("{not json").is_err());
        let named = LogSource::new(Some("x"), None, None);
        let spec = recognise("hello", Some(&named)).unwrap();
        assert_eq!((spec.format, spec.logsource), (RecordFormat::Text, named));
    }

    #[test]
    fn event_time_comes_from_the_record() {
        let received = Utc::now();
        let event = line_event(
            r#"{"asctime":"2026-11-28 10:12:01,114","event":"login_failed"}"#,
            3,
            None,
            received,
        )
        .unwrap();
        assert_eq!(event.time.to_rfc3339(), "2026-11-28T10:12:01.114+00:00");
        assert_eq!(event.id, line_id(3));
    }
}
