//! VPC flow log records in the default (version 2) text format:
//!
//! ```text
//! 2 123456789012 eni-0a1b2c3d 10.0.1.5 203.0.113.12 49152 443 6 10 840 1795860000 1795860060 ACCEPT OK
//! ```

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// The default format's fields, named as AWS names them in custom formats.
const FIELDS: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a default-format VPC flow log record: {0}")]
pub struct VpcFlowError(String);

pub struct VpcFlowRecord {
    pub fields: Map<String, Value>,
    pub time: Option<DateTime<Utc>>,
}

/// [`parse_vpc_flow`]'s verdict on `line`, without collecting its words or building its
/// fields: what recognising a line's shape needs, for every line that is not JSON.
pub fn check_vpc_flow(line: &str) -> Result<(), VpcFlowError> {
    let mut words = line.split_ascii_whitespace();
    let version = words.next();
    check_layout(usize::from(version.is_some()) + words.count(), version)
}

/// Whether a line of `count` words, the first of them `version`, is laid out as the default
/// format's records are.
fn check_layout(count: usize, version: Option<&str>) -> Result<(), VpcFlowError> {
    if count != FIELDS.len() {
        return Err(VpcFlowError(format!(
            "expected {} fields, found {count}",
            FIELDS.len()
        )));
    }
    match version {
        Some("2") => Ok(()),
        other => Err(VpcFlowError(format!(
            "expected version 2, found {:?}",
            other.unwrap_or_default()
        ))),
    }
}

pub fn parse_vpc_flow(line: &str) -> Result<VpcFlowRecord, VpcFlowError> {
    let values: Vec<&str> = line.split_ascii_whitespace().collect();
    check_layout(values.len(), values.first().copied())?;
    let mut fields = Map::new();
    for (name, value) in FIELDS.iter().zip(&values) {
        if *value == "-" {
            continue;
        }
        let value = match value.parse::<u64>() {
            // Account ids are numbers with meaningful leading zeros; keep them text.
            Ok(number) if *name != "account-id" => Value::from(number),
            _ => Value::String((*value).to_owned()),
        };
        fields.insert((*name).to_owned(), value);
    }
    let time = fields
        .get("start")
        .and_then(Value::as_i64)
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
    Ok(VpcFlowRecord { fields, time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_record() {
        let record = parse_vpc_flow(
            "2 012345678901 eni-0a1b2c3d 10.0.1.5 203.0.113.12 49152 22 6 10 840 1795860000 1795860060 REJECT OK",
        )
        .unwrap();
        assert_eq!(record.fields["account-id"], "012345678901");
        assert_eq!(record.fields["dstport"], 22);
        assert_eq!(record.fields["action"], "REJECT");
        assert_eq!(record.time.unwrap().timestamp(), 1_795_860_000);
    }

    #[test]
    fn nodata_records_and_wrong_shapes() {
        let record = parse_vpc_flow(
            "2 123456789012 eni-0a1b2c3d - - - - - - - 1795860000 1795860060 - NODATA",
        )
        .unwrap();
        assert!(!record.fields.contains_key("srcaddr"));
        assert_eq!(record.fields["log-status"], "NODATA");
        assert!(parse_vpc_flow("2 1 2 3").is_err());
        assert!(parse_vpc_flow("3 a b c d e f g h i j k l m").is_err());
    }

    #[test]
    fn checking_a_line_gives_the_verdict_parsing_it_gives() {
        for line in [
            "2 123456789012 eni-0a1b2c3d 10.0.1.5 203.0.113.12 49152 443 6 10 840 1795860000 1795860060 ACCEPT OK",
            "2 123456789012 eni-0a1b2c3d - - - - - - - 1795860000 1795860060 - NODATA",
            "3 123456789012 eni-0a1b2c3d 10.0.1.5 203.0.113.12 49152 443 6 10 840 1795860000 1795860060 ACCEPT OK",
            "  2\t1 2 3 4 5 6 7 8 9 10 11 12 13  ",
            "2 1 2 3 4 5 6 7 8 9 10 11 12 13 14",
            "2 1 2 3",
            "2",
            "",
            "   ",
            r#"203.0.113.7 - alice [28/Nov/2026:10:15:32 +0100] "GET / HTTP/1.1" 200 5 "-" "curl""#,
        ] {
            let parsed = parse_vpc_flow(line).map(drop);
            assert_eq!(check_vpc_flow(line), parsed, "{line:?}");
        }
    }
}
