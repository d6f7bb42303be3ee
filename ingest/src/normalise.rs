//! Turning one delivered line into an event: format checks, the record, and its time.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::value::RawValue;
use serde_json::Map;
use vigil_event::{Event, EventId, Record, Source};

use crate::parse::{parse_access_log, parse_vpc_flow};
use crate::{RecordFormat, SourceSpec};

/// Reads `line` as a record of `spec`'s format, or says why it cannot (the reason is what the
/// quarantine records and the sender is told).
///
/// The event's time is what the record says, else `fallback` (such as the time CloudWatch
/// stamped on it), else `received`.
pub fn normalise_line(
    spec: &SourceSpec,
    source: &Source,
    line: &[u8],
    id: EventId,
    received: DateTime<Utc>,
    fallback: Option<DateTime<Utc>>,
) -> Result<Event, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let mut fields = Map::new();
    let (record, time) = match spec.format {
        RecordFormat::Json => {
            let fields: HashMap<Cow<'_, str>, &RawValue> =
                serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
            let time = spec
                .time_fields
                .iter()
                .filter_map(|name| fields.get(name.as_str()))
                .find_map(|value| parse_json_time(value));
            let raw = RawValue::from_string(text.to_owned())
                .map_err(|e| format!("not a JSON object: {e}"))?;
            (Record::Json(raw), time)
        }
        RecordFormat::Text => (Record::Text(text.to_owned()), None),
        RecordFormat::AccessLog => {
            let parsed = parse_access_log(text).map_err(|e| e.to_string())?;
            fields = parsed.fields;
            (Record::Text(text.to_owned()), parsed.time)
        }
        RecordFormat::VpcFlow => {
            let parsed = parse_vpc_flow(text).map_err(|e| e.to_string())?;
            fields = parsed.fields;
            (Record::Text(text.to_owned()), parsed.time)
        }
    };
    Ok(Event {
        id,
        time: time.or(fallback).unwrap_or(received),
        received,
        source: source.clone(),
        logsource: spec.logsource.clone(),
        record,
        fields,
    })
}

fn parse_json_time(value: &RawValue) -> Option<DateTime<Utc>> {
    match serde_json::from_str::<serde_json::Value>(value.get()).ok()? {
        serde_json::Value::String(text) => parse_time_text(&text),
        serde_json::Value::Number(n) => {
            let n = n.as_f64()?;
            // Epoch milliseconds are the common numeric form; anything this large is not seconds.
            let millis = if n.abs() >= 1e11 { n } else { n * 1000.0 };
            Utc.timestamp_millis_opt(millis as i64).single()
        }
        _ => None,
    }
}

/// Parses the time spellings our sources use: RFC 3339, and python logging's `asctime`.
pub(crate) fn parse_time_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    // Python's logging writes `2026-11-28 10:15:32,123` in local time; servers run in UTC.
    [
        "%Y-%m-%d %H:%M:%S,%3f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceCatalog;

    fn source() -> Source {
        Source {
            kind: "test".into(),
            name: "test".into(),
        }
    }

    fn normalise(spec: &SourceSpec, line: &str) -> Result<Event, String> {
        let id = EventId::derive("test", &[line.as_bytes()]);
        let received = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        normalise_line(spec, &source(), line.as_bytes(), id, received, None)
    }

    #[test]
    fn cloudtrail_time_and_logsource() {
        let spec = SourceCatalog::builtin().resolve("cloudtrail");
        let line = r#"{"eventTime":"2026-11-28T10:15:32Z","eventName":"StopLogging"}"#;
        let event = normalise(&spec, line).unwrap();
        assert_eq!(event.time.to_rfc3339(), "2026-11-28T10:15:32+00:00");
        assert_eq!(event.logsource.service.as_deref(), Some("cloudtrail"));
        assert_eq!(event.record.as_str(), line);
    }

    #[test]
    fn python_asctime_and_epoch_millis() {
        let spec = SourceCatalog::builtin().resolve("flask-app");
        let event = normalise(&spec, r#"{"asctime":"2026-11-28 10:15:32,250"}"#).unwrap();
        assert_eq!(event.time.timestamp_millis() % 1000, 250);
        let event = normalise(&spec, r#"{"timestamp":1795860932000}"#).unwrap();
        assert_eq!(event.time.timestamp(), 1_795_860_932);
    }

    #[test]
    fn missing_or_unreadable_time_falls_back_to_received() {
        let spec = SourceCatalog::builtin().resolve("cloudtrail");
        let event = normalise(&spec, r#"{"eventTime":"yesterday"}"#).unwrap();
        assert_eq!(event.time, event.received);
    }

    #[test]
    fn access_log_line_is_text_with_its_time() {
        let spec = SourceCatalog::builtin().resolve("flask-access");
        let line =
            r#"203.0.113.7 - - [28/Nov/2026:10:15:32 +0100] "GET / HTTP/1.1" 200 5 "-" "curl""#;
        let event = normalise(&spec, line).unwrap();
        assert!(!event.record.is_json());
        assert_eq!(event.time.to_rfc3339(), "2026-11-28T09:15:32+00:00");
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        let spec = SourceSpec::generic();
        for bad in ["[1,2]", "42", "{\"a\":", "not json"] {
            let reason = normalise(&spec, bad).unwrap_err();
            assert!(reason.starts_with("not a JSON object"), "{bad}: {reason}");
        }
    }

    #[test]
    fn rejects_invalid_utf8_with_its_position() {
        let spec = SourceSpec::generic();
        let line = b"{\"a\":\"\xff\"}";
        let reason = normalise_line(
            &spec,
            &source(),
            line,
            EventId::derive("t", &[]),
            Utc::now(),
            None,
        )
        .unwrap_err();
        assert_eq!(reason, "invalid UTF-8 at byte 6");
    }
}
