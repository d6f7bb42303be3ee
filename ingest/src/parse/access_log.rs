//! Common and combined access log lines, as gunicorn and nginx write them:
//!
//! ```text
//! 203.0.113.7 - alice [28/Nov/2026:10:15:32 +0000] "GET /users?id=1 HTTP/1.1" 200 512 "-" "curl/8.5.0"
//! ```
//!
//! The line stays the record; the parser derives named fields beside it, so webserver rules
//! (through the field-mapping pipeline) match on method, target, status and user agent.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::time_format::TimeFormat;

/// The `[time]` field's format.
static TIME_FORMAT: TimeFormat = TimeFormat::new("%d/%b/%Y:%H:%M:%S %z");

/// A `[time]` field's text as `DateTime::parse_from_str` reads it with [`TIME_FORMAT`]'s format.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let time = TIME_FORMAT.parse(text)?.to_datetime().ok()?;
    Some(time.with_timezone(&Utc))
}

/// Why a line is not a common or combined access log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a common or combined access log line: expected {expected} at byte {position}")]
pub struct AccessLogError {
    pub expected: &'static str,
    pub position: usize,
}

/// The fields of one access log line, and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogLine {
    pub fields: Map<String, Value>,
    pub time: Option<DateTime<Utc>>,
}

struct Cursor<'a> {
    line: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.line[self.position..]
    }

    fn error(&self, expected: &'static str) -> AccessLogError {
        AccessLogError {
            expected,
            position: self.position,
        }
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start_matches(' ').len();
    }

    /// A run of non-space characters.
    fn token(&mut self, expected: &'static str) -> Result<&'a str, AccessLogError> {
        self.skip_spaces();
        let rest = self.rest();
        let end = rest.find(' ').unwrap_or(rest.len());
        if end == 0 {
            return Err(self.error(expected));
        }
        self.position += end;
        Ok(&rest[..end])
    }

    /// Text between `open` and `close` (both ASCII), which must come next.
    fn delimited(
        &mut self,
        open: u8,
        close: u8,
        expected: &'static str,
    ) -> Result<&'a str, AccessLogError> {
        self.skip_spaces();
        let rest = self.rest();
        if rest.as_bytes().first() != Some(&open) {
            return Err(self.error(expected));
        }
        let body = &rest[1..];
        let bytes = body.as_bytes();
        // Found a run at a time, not a character at a time: a user agent is long. Neither byte
        // sought occurs inside a multi-byte character, so skipping one byte past a backslash
        // skips what it escapes as far as the search can tell.
        let mut at = 0;
        while let Some(found) = bytes
            .get(at..)
            .and_then(|tail| memchr::memchr2(close, b'\\', tail))
        {
            let index = at + found;
            if bytes[index] == close {
                self.position += 1 + index + 1;
                return Ok(&body[..index]);
            }
            // nginx and gunicorn escape quotes inside quoted fields as \" or \x22.
            at = index + 2;
        }
        Err(AccessLogError {
            expected: "a closing delimiter",
            position: self.line.len(),
        })
    }

    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.rest().is_empty()
    }
}

fn put_text(fields: &mut Map<String, Value>, name: &str, value: &str) {
    if value != "-" {
        fields.insert(name.to_owned(), Value::String(value.to_owned()));
    }
}

fn put_number(fields: &mut Map<String, Value>, name: &str, value: &str) {
    if let Ok(number) = value.parse::<u64>() {
        fields.insert(name.to_owned(), Value::from(number));
    } else {
        put_text(fields, name, value);
    }
}

/// One line's parts, borrowed from it, as the format lays them out.
struct Parts<'a> {
    client_address: &'a str,
    ident: &'a str,
    remote_user: &'a str,
    time: &'a str,
    request: &'a str,
    status: &'a str,
    bytes: &'a str,
    /// The referrer and the user agent, which the combined format adds.
    combined: Option<(&'a str, &'a str)>,
    /// What follows the combined format's fields.
    extra: Option<&'a str>,
}

fn parts(line: &str) -> Result<Parts<'_>, AccessLogError> {
    let mut cursor = Cursor { line, position: 0 };
    let client_address = cursor.token("the client address")?;
    let ident = cursor.token("the ident field")?;
    let remote_user = cursor.token("the user field")?;
    let time = cursor.delimited(b'[', b']', "a [time]")?;
    let request = cursor.delimited(b'"', b'"', "a quoted request line")?;
    let status = cursor.token("the status code")?;
    let bytes = cursor.token("the response size")?;
    let (mut combined, mut extra) = (None, None);
    if !cursor.at_end() {
        let referrer = cursor.delimited(b'"', b'"', "a quoted referrer")?;
        let user_agent = cursor.delimited(b'"', b'"', "a quoted user agent")?;
        combined = Some((referrer, user_agent));
        if !cursor.at_end() {
            extra = Some(cursor.rest());
        }
    }
    Ok(Parts {
        client_address,
        ident,
        remote_user,
        time,
        request,
        status,
        bytes,
        combined,
        extra,
    })
}

/// [`parse_access_log`]'s verdict on `line`, without building its fields or reading its time:
/// what recognising a line's shape needs.
pub fn check_access_log(line: &str) -> Result<(), AccessLogError> {
    parts(line).map(drop)
}

/// Parses one line. Trailing fields beyond the combined format (nginx's request time, say) are
/// kept under `extra` rather than refused.
pub fn parse_access_log(line: &str) -> Result<AccessLogLine, AccessLogError> {
    let parts = parts(line)?;
    let mut fields = Map::new();
    put_text(&mut fields, "client_address", parts.client_address);
    put_text(&mut fields, "ident", parts.ident);
    put_text(&mut fields, "remote_user", parts.remote_user);
    put_text(&mut fields, "time", parts.time);
    let request = parts.request;
    fields.insert("request".into(), Value::String(request.to_owned()));
    let mut words = request.splitn(3, ' ');
    if let (Some(method), Some(target)) = (words.next(), words.next()) {
        if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) {
            put_text(&mut fields, "method", method);
            put_text(&mut fields, "target", target);
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            put_text(&mut fields, "path", path);
            if let Some(query) = query {
                fields.insert("query".into(), Value::String(query.to_owned()));
            }
            if let Some(protocol) = words.next() {
                put_text(&mut fields, "protocol", protocol);
            }
        }
    }
    put_number(&mut fields, "status", parts.status);
    put_number(&mut fields, "bytes", parts.bytes);
    if let Some((referrer, user_agent)) = parts.combined {
        put_text(&mut fields, "referrer", referrer);
        put_text(&mut fields, "user_agent", user_agent);
    }
    if let Some(extra) = parts.extra {
        fields.insert("extra".into(), Value::String(extra.to_owned()));
    }
    Ok(AccessLogLine {
        fields,
        time: parse_time(parts.time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line() {
        let line = r#"203.0.113.7 - alice [28/Nov/2026:10:15:32 +0100] "GET /users?id=1%27 HTTP/1.1" 200 512 "https://app.example.com/" "sqlmap/1.8""#;
        let parsed = parse_access_log(line).unwrap();
        let f = &parsed.fields;
        assert_eq!(f["client_address"], "203.0.113.7");
        assert!(!f.contains_key("ident"));
        assert_eq!(f["remote_user"], "alice");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["target"], "/users?id=1%27");
        assert_eq!(f["path"], "/users");
        assert_eq!(f["query"], "id=1%27");
        assert_eq!(f["protocol"], "HTTP/1.1");
        assert_eq!(f["status"], 200);
        assert_eq!(f["bytes"], 512);
        assert_eq!(f["referrer"], "https://app.example.com/");
        assert_eq!(f["user_agent"], "sqlmap/1.8");
        assert_eq!(
            parsed.time.unwrap().to_rfc3339(),
            "2026-11-28T09:15:32+00:00"
        );
    }

    #[test]
    fn common_line_with_dash_size_and_extra_fields() {
        let parsed = parse_access_log(
            r#"10.0.0.5 - - [28/Nov/2026:10:00:00 +0000] "HEAD / HTTP/1.0" 304 -"#,
        )
        .unwrap();
        assert_eq!(parsed.fields["status"], 304);
        assert!(!parsed.fields.contains_key("bytes"));
        assert!(!parsed.fields.contains_key("user_agent"));

        let parsed = parse_access_log(
            r#"10.0.0.5 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" 0.004"#,
        )
        .unwrap();
        assert_eq!(parsed.fields["extra"], "0.004");
        assert!(!parsed.fields.contains_key("referrer"));
    }

    #[test]
    fn escaped_quotes_and_garbage_requests_stay_whole() {
        let line = r#"198.51.100.23 - - [28/Nov/2026:10:02:11 +0000] "GET /search?q=\"x\" HTTP/1.1" 400 0 "-" "Mozilla/5.0 (\"quoted\")""#;
        let parsed = parse_access_log(line).unwrap();
        assert_eq!(parsed.fields["target"], r#"/search?q=\"x\""#);
        assert_eq!(parsed.fields["user_agent"], r#"Mozilla/5.0 (\"quoted\")"#);

        let tls =
            r#"198.51.100.23 - - [28/Nov/2026:10:02:11 +0000] "\x16\x03\x01\x02" 400 150 "-" "-""#;
        let parsed = parse_access_log(tls).unwrap();
        assert_eq!(parsed.fields["request"], r#"\x16\x03\x01\x02"#);
        assert!(!parsed.fields.contains_key("method"));
    }

    #[test]
    fn checking_a_line_gives_the_verdict_parsing_it_gives() {
        let lines = [
            r#"203.0.113.7 - alice [28/Nov/2026:10:15:32 +0100] "GET /users?id=1 HTTP/1.1" 200 512 "https://app.example.com/" "sqlmap/1.8" 0.004"#,
            r#"198.51.100.23 - - [28/Nov/2026:10:02:11 +0000] "GET /search?q=\"x\" HTTP/1.1" 400 0 "-" "Mozilla/5.0 (\"quoted\")""#,
            r#"10.0.0.5 - - [28/Nov/2026:10:00:00 +0000] "HEAD / HTTP/1.0" 304 -"#,
        ];
        // Every prefix of a line breaks off inside some part of it, so each error is met.
        let mut errors = 0;
        for line in lines {
            for end in (0..=line.len()).filter(|end| line.is_char_boundary(*end)) {
                let prefix = &line[..end];
                let parsed = parse_access_log(prefix);
                assert_eq!(
                    check_access_log(prefix),
                    parsed.as_ref().map(drop).map_err(Clone::clone),
                    "{prefix:?}"
                );
                errors += usize::from(parsed.is_err());
            }
        }
        assert!(errors > 100);
    }

    /// How `delimited` read a field before it searched a run at a time: a character at a time.
    fn reference_end(body: &str, close: char) -> Option<usize> {
        let mut escaped = false;
        for (index, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                c if c == close && !escaped => return Some(index),
                _ => escaped = false,
            }
        }
        None
    }

    #[test]
    fn quoted_fields_end_where_reading_a_character_at_a_time_ends_them() {
        let pieces = ["a", "\\", "\"", "é", "\\\\", "😀", " ", "\\é"];
        let mut bodies = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            let mut longer = Vec::new();
            for body in &bodies {
                for piece in pieces {
                    let body = format!("{body}{piece}");
                    let line = format!("  \"{body}");
                    let mut cursor = Cursor {
                        line: &line,
                        position: 0,
                    };
                    let found = cursor.delimited(b'"', b'"', "a quoted field").ok();
                    let expected = reference_end(&body, '"');
                    assert_eq!(found, expected.map(|end| &body[..end]), "{body:?}");
                    if let Some(end) = expected {
                        assert_eq!(cursor.position, 2 + 1 + end + 1, "{body:?}");
                    }
                    checked += 1;
                    longer.push(body);
                }
            }
            bodies = longer;
        }
        assert!(checked > 30_000);
    }

    #[test]
    fn times_read_as_chrono_reads_the_format() {
        let format = "%d/%b/%Y:%H:%M:%S %z";
        for text in [
            "28/Nov/2026:10:15:32 +0100",
            "28/nov/2026:10:15:32 -0530",
            "01/Jan/1970:00:00:00 +0000",
            "29/Feb/2024:23:59:60 +0000",
            "29/Feb/2026:12:00:00 +0000",
            "31/Apr/2026:12:00:00 +0000",
            "28/Nov/2026:24:00:00 +0000",
            "28/Nov/2026:10:15:32",
            "28/Nov/2026:10:15:32 +0000 trailing",
            "28/November/2026:10:15:32 +0000",
            "28/Nov/2026:10:15:32 Z",
            "28/Nov/2026:10:15:32 +9999",
            "",
            "-",
        ] {
            let expected = DateTime::parse_from_str(text, format)
                .ok()
                .map(|time| time.with_timezone(&Utc));
            assert_eq!(parse_time(text), expected, "{text:?}");
        }
        assert!(parse_time("28/Nov/2026:10:15:32 +0100").is_some());
    }

    #[test]
    fn malformed_lines_say_what_was_expected_where() {
        let err = parse_access_log("just some text").unwrap_err();
        assert_eq!(err.expected, "a [time]");
        let err = parse_access_log(r#"1.2.3.4 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1"#)
            .unwrap_err();
        assert_eq!(err.expected, "a closing delimiter");
        let err = parse_access_log(r#"1.2.3.4 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1""#)
            .unwrap_err();
        assert_eq!(err.expected, "the status code");
        assert!(parse_access_log("").is_err());
    }
}
