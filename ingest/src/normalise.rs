//! Turning one delivered line into an event: format checks, the record, and its time.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Map;
use vigil_event::{json, Document, Event, EventId, JsonRef, Record, Source, TapeBuffers};

use crate::parse::{parse_access_log, parse_vpc_flow};
use crate::time_format::TimeFormat;
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
    let text = vigil_event::text(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let mut fields = Map::new();
    let (record, time) = match spec.format {
        RecordFormat::Json => {
            let (object, time) = read_json_record(spec, text)?;
            (Record::checked_json(&object), time)
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

/// Checks a JSON record as [`normalise_line`] does, without building the event: the reason it
/// is refused, or the time it states in one of `spec`'s time fields.
///
/// The verdict is that of the parser every later stage reads records with: what it accepts
/// here, detection matches and the index searches by field; what it refuses is refused now (a
/// 400 line error and quarantine), never after a 202. Only the top level is built, for the
/// time fields.
pub fn check_json_record(spec: &SourceSpec, text: &str) -> Result<Option<DateTime<Utc>>, String> {
    read_json_record(spec, text).map(|(_, time)| time)
}

/// [`check_json_record`], with the checked top level that makes the record.
fn read_json_record<'t>(
    spec: &SourceSpec,
    text: &'t str,
) -> Result<(json::TopLevel<'t>, Option<DateTime<Utc>>), String> {
    let top = json::check_object(text).map_err(|e| format!("not a JSON object: {e}"))?;
    if top.depth_limited {
        // Reported, not silent: below the parser's depth limit the record's nesting is
        // matched and indexed as raw JSON text, not as fields.
        metrics::counter!("vigil_ingest_depth_limited_total").increment(1);
    }
    let time = spec
        .time_fields
        .iter()
        .filter_map(|name| top.get(name))
        .find_map(parse_json_time);
    Ok((top, time))
}

/// [`check_json_record`], and the record parsed for detection: one parse where serde_json reads
/// the record (the tape, whose top level gives the time); where it does not, the tolerant parse
/// and then the check, whose verdict is final. The verdict, the reason and the time are
/// [`check_json_record`]'s: what serde_json reads, the tolerant parser reads alike (see
/// `vigil_event::json`), which the test below holds it to. The tape is built in `buffers`, a
/// document's vectors that [`Document::recycle`] kept.
///
/// The time is read only if `timed` (it is `None` otherwise); the verdict, the reason and the
/// document are the same either way. A caller whose rules read no times (`vigil detect`
/// without correlations) is spared looking the time field up and parsing it, a few percent of
/// a Kubernetes audit event.
pub fn parse_json_record<'t>(
    spec: &SourceSpec,
    text: &'t str,
    buffers: &mut TapeBuffers,
    timed: bool,
) -> Result<(Document<'t>, Option<DateTime<Utc>>), String> {
    let document = Document::parse_reusing(text, buffers);
    let Ok(document @ Document::Tape(_)) = document else {
        // What serde_json refuses (or a record that is no object at all): the tolerant
        // parser's verdict, reason and depth report, as ingest gives them.
        let time = check_json_record(spec, text)?.filter(|_| timed);
        let document = document.map_err(|e| format!("not a JSON object: {e}"))?;
        return Ok((document, time));
    };
    if !timed {
        return Ok((document, None));
    }
    let top = document.root();
    let time = spec
        .time_fields
        .iter()
        .filter_map(|name| top.get(name))
        .find_map(|value| match value {
            JsonRef::String(text) => parse_time_text(text),
            JsonRef::Number(number) => time_from_number(number.as_f64()?),
            _ => None,
        });
    Ok((document, time))
}

/// A time from a top-level value's raw JSON: a string in one of our spellings, or epoch seconds
/// or milliseconds.
fn parse_json_time(raw: &str) -> Option<DateTime<Utc>> {
    // Read as the type the value is written as, never as serde_json's `Value`: that takes an
    // object keyed by its private raw-value token for the JSON the token's string holds, so an
    // object every other stage sees would set the event's time.
    match raw.as_bytes().first()? {
        b'"' => parse_time_text(&serde_json::from_str::<String>(raw).ok()?),
        _ => time_from_number(serde_json::from_str::<f64>(raw).ok()?),
    }
}

/// A time from a number: epoch milliseconds, the common numeric form, or seconds.
fn time_from_number(n: f64) -> Option<DateTime<Utc>> {
    // Anything this large is not seconds.
    let millis = if n.abs() >= 1e11 { n } else { n * 1000.0 };
    Utc.timestamp_millis_opt(millis as i64).single()
}

/// The spellings of a time without an offset that records use besides RFC 3339. Python's
/// logging writes `2026-11-28 10:15:32,123` in local time; servers run in UTC.
static NAIVE_TIME_FORMATS: [TimeFormat; 3] = [
    TimeFormat::new("%Y-%m-%d %H:%M:%S,%3f"),
    TimeFormat::new("%Y-%m-%d %H:%M:%S%.f"),
    TimeFormat::new("%Y-%m-%dT%H:%M:%S%.f"),
];

/// Parses the time spellings our sources use: RFC 3339, and python logging's `asctime`.
pub(crate) fn parse_time_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NAIVE_TIME_FORMATS.iter().find_map(|format| {
        // What `NaiveDateTime::parse_from_str` makes of what the format read.
        let naive = format.parse(text)?.to_naive_datetime_with_offset(0).ok()?;
        Some(naive.and_utc())
    })
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
        // An object is no time, even one keyed like serde_json's raw-value token.
        for line in [
            r#"{"eventTime":{"$serde_json::private::RawValue":"\"2026-11-28T10:15:32Z\""}}"#,
            r#"{"eventTime":["2026-11-28T10:15:32Z"]}"#,
            r#"{"eventTime":true}"#,
        ] {
            let event = normalise(&spec, line).unwrap();
            assert_eq!(event.time, event.received, "{line}");
        }
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
    fn accepts_what_every_later_stage_reads() {
        let spec = SourceCatalog::builtin().resolve("cloudtrail");
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let lines = [
            r#"{"eventTime":"2026-11-28T10:15:32Z","eventName":"StopLogging","pad":1e400}"#
                .to_owned(),
            r#"{"eventTime":"2026-11-28T10:15:32Z","eventName":"StopLogging","ua":"x\ud800"}"#
                .to_owned(),
            r#"{"k\udc00":1,"eventTime":"2026-11-28T10:15:32Z","eventName":"StopLogging"}"#
                .to_owned(),
            format!(
                r#"{{"eventName":"StopLogging","deep":{deep},"eventTime":"2026-11-28T10:15:32Z"}}"#
            ),
            // A repeated time field: the last one counts, as in the document rules read.
            r#"{"eventTime":"2020-01-01T00:00:00Z","eventName":"StopLogging","eventTime":"2026-11-28T10:15:32Z"}"#
                .to_owned(),
        ];
        for line in lines {
            let event = normalise(&spec, &line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(
                event.time.to_rfc3339(),
                "2026-11-28T10:15:32+00:00",
                "{line}"
            );
            let document = event.document().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(document["eventName"], "StopLogging", "{line}");
            assert_eq!(event.record.as_str(), line);
        }
    }

    #[test]
    fn refuses_what_the_parser_refuses_with_its_position() {
        let spec = SourceSpec::generic();
        let deep = format!(r#"{{"a":{}01{}}}"#, "[".repeat(500), "]".repeat(500));
        for (bad, position) in [
            (r#"{"a":"\x"}"#.to_owned(), 7),
            ("{\"a\":1,}".to_owned(), 7),
            ("\u{feff}{}".to_owned(), 0),
            (deep, 506),
        ] {
            let reason = normalise(&spec, &bad).unwrap_err();
            assert!(reason.starts_with("not a JSON object"), "{bad}: {reason}");
            assert!(reason.ends_with(&format!("at byte {position}")), "{reason}");
        }
    }

    /// The parse `vigil detect` reads a preset's records with gives the check's verdict,
    /// reason and time, and the document every other reader sees: by the tape where serde_json
    /// reads the record, by the tolerant parser where it does not.
    #[test]
    fn the_parse_for_detection_agrees_with_the_check() {
        let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(500), "]".repeat(500));
        let nest = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let lines = [
            r#"{"eventTime":"2026-11-28T10:15:32Z","eventName":"StopLogging"}"#.to_owned(),
            r#"{"asctime":"2026-11-28 10:15:32,250","timestamp":1}"#.to_owned(),
            r#"{"timestamp":1795860932000}"#.to_owned(),
            r#"{"timestamp":1795860932}"#.to_owned(),
            r#"{"timestamp":1795860932.5}"#.to_owned(),
            r#"{"timestamp":-12.25e3}"#.to_owned(),
            r#"{"timestamp":"1795860932"}"#.to_owned(),
            r#"{"eventTime":"yesterday"}"#.to_owned(),
            r#"{"eventTime":{"$serde_json::private::RawValue":"\"2026-11-28T10:15:32Z\""}}"#
                .to_owned(),
            r#"{"eventTime":["2026-11-28T10:15:32Z"]}"#.to_owned(),
            r#"{"eventTime":true,"timestamp":null}"#.to_owned(),
            r#"{"eventTime":"2020-01-01T00:00:00Z","eventTime":"2026-11-28T10:15:32Z"}"#.to_owned(),
            r#"{"eventTime":"2026-11-28T10:15:32Z","x":"y","eventTime":7}"#.to_owned(),
            r#"{"eventT\u0069me":"2026-11-28T10:15:32\u005a"}"#.to_owned(),
            r#"{"eventTime":"2026-11-28T10:15:32Z","pad":1e400}"#.to_owned(),
            r#"{"eventTime":"2026-11-28T10:15:32Z","ua":"x\ud800"}"#.to_owned(),
            r#"{"timestamp":1e400}"#.to_owned(),
            r#"{"timestamp":-0}"#.to_owned(),
            r#"{"timestamp":1e-400}"#.to_owned(),
            r#"{"timestamp":18446744073709551616000}"#.to_owned(),
            r#"{"timestamp":-9223372036854775808}"#.to_owned(),
            "\u{feff}{}".to_owned(),
            "\u{a0}{}".to_owned(),
            // Past 32 members an object is indexed: the last time still counts.
            format!(
                r#"{{"eventTime":"2020-01-01T00:00:00Z",{}"eventTime":"2026-11-28T10:15:32Z"}}"#,
                (0..40)
                    .map(|i| format!(r#""k{i}":{i},"#))
                    .collect::<String>()
            ),
            // The deepest nesting serde_json reads, and one level more.
            format!(
                r#"{{"eventTime":"2026-11-28T10:15:32Z","d":{}}}"#,
                nest(126)
            ),
            format!(
                r#"{{"eventTime":"2026-11-28T10:15:32Z","d":{}}}"#,
                nest(127)
            ),
            format!(
                r#"{{"deep":{},"eventTime":"2026-11-28T10:15:32Z"}}"#,
                deep("1")
            ),
            format!(r#"{{"a":{}}}"#, deep("01")),
            r#"{"a":"\x"}"#.to_owned(),
            "{\"a\":1,}".to_owned(),
            "[1,2]".to_owned(),
            "{}".to_owned(),
        ];
        let catalog = SourceCatalog::builtin();
        for spec in [catalog.resolve("cloudtrail"), catalog.resolve("flask-app")] {
            for line in &lines {
                let checked = check_json_record(&spec, line);
                let parsed = parse_json_record(&spec, line, &mut TapeBuffers::default(), true);
                let time = parsed
                    .as_ref()
                    .map(|(_, time)| *time)
                    .map_err(String::clone);
                assert_eq!(time, checked, "{line}");
                // Untimed: the same verdict and document, and no time.
                let untimed = parse_json_record(&spec, line, &mut TapeBuffers::default(), false);
                let untimed_time = untimed
                    .as_ref()
                    .map(|(_, time)| *time)
                    .map_err(String::clone);
                assert_eq!(untimed_time, checked.map(|_| None), "{line}");
                if let (Ok((document, _)), Ok((untimed, _))) = (parsed, untimed) {
                    assert_eq!(Ok(document.to_map()), json::parse_object(line), "{line}");
                    assert_eq!(untimed.to_map(), document.to_map(), "{line}");
                }
            }
        }
    }

    /// Times read with the formats' items as `NaiveDateTime::parse_from_str` reads them with
    /// the formats, valid ones and near misses alike.
    #[test]
    fn naive_times_read_as_chrono_reads_their_formats() {
        use chrono::NaiveDateTime;
        let texts = [
            "2026-11-28 10:15:32,123",
            "2026-11-28 10:15:32,12",
            "2026-11-28 10:15:32,1234",
            "2026-11-28 10:15:32.5",
            "2026-11-28 10:15:32",
            "2026-11-28T10:15:32.123456789",
            "2026-11-28T10:15:32",
            "2026-02-30 10:15:32,123",
            "2026-11-28 24:00:00,000",
            "2026-11-28 10:15:60,123",
            "2026-11-28  10:15:32,123",
            " 2026-11-28 10:15:32,123",
            "2026-11-28 10:15:32,123 ",
            "28/Nov/2026:10:15:32 +0000",
            "",
        ];
        for text in texts {
            let expected = NAIVE_TIME_FORMATS
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(text, format.format()).ok())
                .map(|naive| naive.and_utc());
            assert_eq!(parse_time_text(text), expected, "{text:?}");
        }
        assert!(parse_time_text("2026-11-28 10:15:32,123").is_some());
        assert!(parse_time_text("2026-02-30 10:15:32,123").is_none());
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
