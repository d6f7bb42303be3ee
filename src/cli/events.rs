//! Turning one input line into an event the way `vigil detect`, `rules test` and
//! `rules explain` all need it: recognise the source from the line's shape (unless the user
//! named the logsource), then normalise it with the ingest code, so the fields, the logsource
//! and the time are exactly what the pipeline would produce.

use chrono::{DateTime, Utc};
use vigil_event::{Event, EventId, LogSource, Source};
use vigil_ingest::{normalise_line, recognise_record, RecordFormat, RecordShape, SourceSpec};

/// The spec a line's shape says it is ([`recognise_record`]: a CloudTrail record, a
/// Kubernetes audit `Event`, a WAF record, a log record of the Flask app, a VPC flow record,
/// an access log line, or other JSON). With `logsource`, that logsource replaces the
/// recognised one and a line of no known text format is taken as plain text.
pub fn recognise(line: &str, logsource: Option<&LogSource>) -> Result<SourceSpec, String> {
    let shape = recognise_record(line);
    let mut spec = match shape.known_spec() {
        Some(spec) => spec,
        None => match shape {
            RecordShape::BrokenJson(e) => return Err(format!("not a JSON object: {e}")),
            RecordShape::Text(_) if logsource.is_some() => SourceSpec {
                format: RecordFormat::Text,
                ..SourceSpec::generic()
            },
            RecordShape::Text(e) => {
                return Err(format!(
                    "neither a JSON object nor an access log line ({e})"
                ))
            }
            // Other JSON, the one shape left.
            _ => {
                let mut spec = SourceSpec::generic();
                // Unrecognised JSON may still be an audit event without `kind`, so its time
                // fields are worth a look too.
                spec.time_fields.extend([
                    "requestReceivedTimestamp".to_owned(),
                    "stageTimestamp".to_owned(),
                ]);
                spec
            }
        },
    };
    if let Some(logsource) = logsource {
        spec.logsource = logsource.clone();
    }
    Ok(spec)
}

/// How the lines of one run become events: recognised one by one ([`recognise`]), or, under a
/// logsource naming a JSON source Vigil has a preset for, read as that source's records
/// without looking at their shape (which costs a parse of its own).
pub struct LineReader {
    logsource: Option<LogSource>,
    /// The source named by `logsource`, and its `Source`, made once for every line.
    preset: Option<(SourceSpec, Source)>,
}

impl LineReader {
    pub fn new(logsource: Option<&LogSource>) -> Self {
        let preset = logsource.and_then(SourceSpec::json_preset).map(|spec| {
            let source = cli_source(&spec);
            (spec, source)
        });
        LineReader {
            logsource: logsource.cloned(),
            preset,
        }
    }

    /// The preset's spec and source, when there is one and `line` is JSON: such a line is read
    /// as that source's record without looking at its shape, and `vigil detect` can match its
    /// text without building an event ([`vigil_ingest::parse_json_record`]).
    pub fn preset_json(&self, line: &str) -> Option<(&SourceSpec, &Source)> {
        self.preset
            .as_ref()
            .filter(|_| line.trim_start().starts_with('{'))
            .map(|(spec, source)| (spec, source))
    }

    /// One line as an event. `number` (1-based) makes the id, so correlation matches can be
    /// traced back to their lines; `received` is the time of records that state none.
    pub fn event(
        &self,
        line: &str,
        number: usize,
        received: DateTime<Utc>,
    ) -> Result<Event, String> {
        let id = line_id(number);
        match self.preset_json(line) {
            Some((spec, source)) => {
                normalise_line(spec, source, line.as_bytes(), id, received, None)
            }
            None => {
                let spec = recognise(line, self.logsource.as_ref())?;
                let source = cli_source(&spec);
                normalise_line(&spec, &source, line.as_bytes(), id, received, None)
            }
        }
    }
}

fn cli_source(spec: &SourceSpec) -> Source {
    Source {
        kind: spec.kind.clone(),
        name: "cli".into(),
    }
}

/// One line as an event: [`LineReader::event`] for a single line.
pub fn line_event(
    line: &str,
    number: usize,
    logsource: Option<&LogSource>,
    received: DateTime<Utc>,
) -> Result<Event, String> {
    LineReader::new(logsource).event(line, number, received)
}

/// The id of the event on line `number` of the input. The CLI's ids name lines, which no
/// sender chooses, so the number is written into the id as it is (after a tag that says so)
/// rather than hashed: [`line_of`] reads it back, and a correlation's events need no table
/// from id to line that grows with the input.
pub fn line_id(number: usize) -> EventId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(LINE_ID_TAG);
    bytes[8..].copy_from_slice(&(number as u64).to_be_bytes());
    EventId::from_bytes(bytes)
}

/// The line whose event has `id`, if [`line_id`] made it.
pub fn line_of(id: &EventId) -> Option<usize> {
    let (tag, number) = id.as_bytes().split_at(8);
    (tag == LINE_ID_TAG)
        .then(|| u64::from_be_bytes(number.try_into().expect("eight bytes")) as usize)
}

const LINE_ID_TAG: &[u8; 8] = b"cli-line";

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
    fn waf_records_and_vpc_flow_lines_are_recognised() {
        let waf = r#"{"timestamp":1795860000123,"formatVersion":1,"webaclId":"arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/prod/1","action":"BLOCK","httpRequest":{"clientIp":"203.0.113.66","uri":"/login"}}"#;
        let event = line_event(waf, 1, None, Utc::now()).unwrap();
        assert_eq!(event.source.kind, "waf");
        assert_eq!(
            event.logsource,
            LogSource::new(Some("aws"), Some("waf"), None)
        );
        assert_eq!(event.time.timestamp_millis(), 1795860000123);
        let flow =
            "2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1795860000 1795860060 ACCEPT OK";
        let spec = recognise(flow, None).unwrap();
        assert_eq!(
            (spec.kind.as_str(), spec.format),
            ("vpc-flow", RecordFormat::VpcFlow)
        );
    }

    /// Reading lines under a preset's logsource skips recognising them, and gives the events
    /// recognising them would.
    #[test]
    fn a_preset_logsource_reads_its_records_as_recognising_them_would() {
        let received = Utc::now();
        for (file, logsource) in [
            (
                "cloudtrail.ndjson",
                LogSource::new(Some("aws"), Some("cloudtrail"), None),
            ),
            (
                "kubernetes-audit.ndjson",
                LogSource::new(Some("kubernetes"), Some("audit"), Some("application")),
            ),
            (
                "flask-app.ndjson",
                LogSource::new(Some("python"), Some("flask"), Some("application")),
            ),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("demo")
                .join(file);
            let reader = LineReader::new(Some(&logsource));
            assert!(reader.preset.is_some(), "{file}");
            for (index, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
                let spec = recognise(line, Some(&logsource)).unwrap();
                let source = cli_source(&spec);
                let recognised = normalise_line(
                    &spec,
                    &source,
                    line.as_bytes(),
                    line_id(index + 1),
                    received,
                    None,
                )
                .unwrap();
                assert_eq!(
                    reader.event(line, index + 1, received),
                    Ok(recognised),
                    "{line}"
                );
            }
        }
        // Other logsources, and lines that are not JSON, are still recognised.
        let reader = LineReader::new(Some(&LogSource::new(Some("aws"), None, None)));
        assert!(reader.preset.is_none());
        let access = r#"1.2.3.4 - - [28/Nov/2026:09:03:11 +0000] "GET / HTTP/1.1" 200 1 "-" "x""#;
        let reader = LineReader::new(Some(&LogSource::new(Some("aws"), Some("cloudtrail"), None)));
        assert_eq!(
            reader.event(access, 1, received).unwrap().source.kind,
            "access-log"
        );
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
        assert_eq!(line_of(&event.id), Some(3));
    }
}
