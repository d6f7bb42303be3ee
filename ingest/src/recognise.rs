//! Recognising what kind of record a line is from its shape alone, for records that arrive
//! without a source that names their kind: CloudWatch log groups (which add what the log
//! group and stream names say, in `cloudwatch::recognise`) and the lines `vigil detect` and
//! `rules test` read.

use crate::parse::{check_access_log, check_vpc_flow};
use crate::SourceSpec;

/// What a record's shape says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordShape {
    /// An AWS CloudTrail record: `eventVersion` and `eventSource`.
    CloudTrail,
    /// A Kubernetes audit `Event`: `kind` is `Event`, with an `auditID`.
    KubernetesAudit,
    /// An AWS WAF log record: `webaclId`.
    Waf,
    /// A log record of the Flask app: python-json-logger's string `levelname` with the logger
    /// `name` (or the `message`), or structlog's string `level` with `event` and `logger`.
    FlaskApp,
    /// A JSON object of no kind Vigil knows.
    Json,
    /// Starts as a JSON object but is not one the record parser accepts, with the reason.
    BrokenJson(String),
    /// A VPC flow log record in the default format.
    VpcFlow,
    /// A common or combined access log line.
    AccessLog,
    /// Any other line, with the reason it is not an access log line.
    Text(String),
}

impl RecordShape {
    /// Whether the record starts as a JSON object, whether or not it is a valid one.
    pub fn is_json(&self) -> bool {
        match self {
            RecordShape::CloudTrail
            | RecordShape::KubernetesAudit
            | RecordShape::Waf
            | RecordShape::FlaskApp
            | RecordShape::Json
            | RecordShape::BrokenJson(_) => true,
            RecordShape::VpcFlow | RecordShape::AccessLog | RecordShape::Text(_) => false,
        }
    }

    /// The spec of a known kind of record; none for JSON or text of no known kind, whose
    /// spec (its source kind, which time fields to try) each caller chooses.
    pub fn known_spec(&self) -> Option<SourceSpec> {
        match self {
            RecordShape::CloudTrail => Some(SourceSpec::cloudtrail()),
            RecordShape::KubernetesAudit => Some(SourceSpec::kubernetes_audit()),
            RecordShape::Waf => Some(SourceSpec::waf()),
            RecordShape::FlaskApp => Some(SourceSpec::flask_app()),
            RecordShape::VpcFlow => Some(SourceSpec::vpc_flow()),
            RecordShape::AccessLog => Some(SourceSpec::access_log()),
            RecordShape::Json | RecordShape::BrokenJson(_) | RecordShape::Text(_) => None,
        }
    }
}

/// What `line` is, by its shape: a JSON object by the keys only each kind carries, a text line
/// by the parsers of the text formats Vigil reads.
pub fn recognise_record(line: &str) -> RecordShape {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        return recognise_json(trimmed);
    }
    // Verdicts only: the fields are built once, when the line is normalised.
    if check_vpc_flow(line).is_ok() {
        return RecordShape::VpcFlow;
    }
    match check_access_log(line) {
        Ok(()) => RecordShape::AccessLog,
        Err(error) => RecordShape::Text(error.to_string()),
    }
}

/// The keys are read with the record parser's top level, whose verdict ingest applies (a
/// record is accepted exactly when this reads it), where a shape derived with serde would
/// refuse a repeated key or a lone surrogate anywhere in its keys, and the record would lose
/// its logsource, and every rule for it, to one padded key.
fn recognise_json(text: &str) -> RecordShape {
    let top = match vigil_event::json::check_object(text) {
        Ok(top) => top,
        Err(error) => return RecordShape::BrokenJson(error.to_string()),
    };
    // A key whose value is null counts as absent, as an `Option` field reads it.
    let has = |key: &str| top.get(key).is_some_and(|raw| raw != "null");
    let is_string = |key: &str| top.get(key).is_some_and(|raw| raw.starts_with('"'));
    let kind = top
        .get("kind")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok());
    if has("eventVersion") && has("eventSource") {
        RecordShape::CloudTrail
    } else if kind.as_deref() == Some("Event") && has("auditID") {
        RecordShape::KubernetesAudit
    } else if has("webaclId") {
        RecordShape::Waf
    } else if (is_string("levelname") && (has("name") || has("message")))
        || (is_string("level") && has("event") && has("logger"))
    {
        RecordShape::FlaskApp
    } else {
        RecordShape::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_by_its_shape() {
        for (line, shape) in [
            (
                r#"{"eventVersion":"1.09","eventSource":"s3.amazonaws.com"}"#,
                RecordShape::CloudTrail,
            ),
            (
                r#"{"kind":"Event","auditID":"x","verb":"get"}"#,
                RecordShape::KubernetesAudit,
            ),
            (
                r#"{"timestamp":1795860000000,"webaclId":"arn:aws:wafv2:x","action":"BLOCK"}"#,
                RecordShape::Waf,
            ),
            (
                r#"{"levelname":"WARNING","name":"usermgmt.auth","message":"Login failed"}"#,
                RecordShape::FlaskApp,
            ),
            (
                r#"{"event":"login_failed","level":"warning","logger":"usermgmt.auth"}"#,
                RecordShape::FlaskApp,
            ),
            (
                "2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1795860000 1795860060 ACCEPT OK",
                RecordShape::VpcFlow,
            ),
            (
                r#"1.2.3.4 - - [28/Nov/2026:09:03:11 +0000] "GET / HTTP/1.1" 200 1 "-" "x""#,
                RecordShape::AccessLog,
            ),
            (r#"  {"kind":"Pod"}"#, RecordShape::Json),
            // A level alone, or an `event` without a logger, is not the Flask app's.
            (r#"{"level":"info","msg":"x"}"#, RecordShape::Json),
            (r#"{"event":"x","level":"info"}"#, RecordShape::Json),
            (r#"{"levelname":1,"name":"x"}"#, RecordShape::Json),
            (r#"{"webaclId":null}"#, RecordShape::Json),
        ] {
            assert_eq!(recognise_record(line), shape, "{line}");
        }
        assert!(matches!(
            recognise_record(r#"{"eventVersion":"1.09",}"#),
            RecordShape::BrokenJson(_)
        ));
        assert!(matches!(
            recognise_record("hello"),
            RecordShape::Text(reason) if !reason.is_empty()
        ));
    }

    #[test]
    fn known_kinds_have_their_spec_and_the_rest_none() {
        assert_eq!(
            RecordShape::Waf.known_spec().map(|s| s.kind),
            Some("waf".to_owned())
        );
        assert_eq!(
            RecordShape::FlaskApp.known_spec(),
            Some(SourceSpec::flask_app())
        );
        assert_eq!(RecordShape::Json.known_spec(), None);
        assert_eq!(RecordShape::Text(String::new()).known_spec(), None);
    }
}
