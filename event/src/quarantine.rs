use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Source;

/// A record that could not become an event, kept with the reason so nothing is lost silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub source: Source,
    pub reason: String,
    /// Where the record was in its delivery, such as the 1-based line of an NDJSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub received: DateTime<Utc>,
    /// The record's bytes exactly as received; they need not be UTF-8.
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub raw: Vec<u8>,
}

fn to_base64<S: Serializer>(raw: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(raw))
}

fn from_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_survive_serde_even_when_not_utf8() {
        let q = Quarantined {
            source: Source {
                kind: "http".into(),
                name: "app".into(),
            },
            reason: "invalid UTF-8".into(),
            line: Some(3),
            received: Utc::now(),
            raw: vec![0xff, 0xfe, b'{'],
        };
        let text = serde_json::to_string(&q).unwrap();
        assert!(text.contains("\"raw\":\"//57\""));
        assert_eq!(serde_json::from_str::<Quarantined>(&text).unwrap(), q);
    }
}
