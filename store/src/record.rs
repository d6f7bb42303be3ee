//! A record parsed for indexing.
//!
//! Indexing is the store's hot path, and a record used to be parsed into `serde_json`'s map
//! (a string allocated per key and value, a B-tree insert per key) and then converted into
//! tantivy's own value type before tantivy copied it once more into its document. This tree
//! borrows every string that needed no unescaping from the record's text, keeps object
//! members in a flat vector, and is handed to tantivy as it is.
//!
//! It also fixes how record values are typed: strings stay strings even when they look like
//! RFC 3339 dates (tantivy's own JSON conversion would make them dates), so record
//! timestamps remain searchable by their words (`eventTime:"2024-05-01"`); ordering by time
//! uses the `time` field anyway. Integers are `i64` when they fit and `u64` otherwise.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf, Value};
use vigil_event::{EventRef, RecordRef, TEXT_FIELD};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecordValue<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<RecordValue<'a>>),
    /// Members in record order, each key once.
    Object(Vec<(Cow<'a, str>, RecordValue<'a>)>),
}

/// What the store makes of an event's record.
pub(crate) enum RecordRead<'a> {
    /// An object, indexed by field.
    Object(RecordValue<'a>),
    /// A JSON record that is no JSON object: broken JSON, or JSON of another kind. Ingest
    /// refuses both, so only a forged or damaged bus message holds one. It is indexed by its
    /// words and kept as a text record, which is what it is.
    NotAnObject,
}

impl<'a> RecordValue<'a> {
    /// Reads the event's record for the JSON field. This is the one read of the record in the
    /// index stage: a record read off the bus arrives unchecked, and this read is its check.
    /// A text record is its extracted fields with the line itself under [`TEXT_FIELD`], as
    /// [`vigil_event::Event::document`] presents it to rules.
    pub(crate) fn of_event(event: &EventRef<'a>) -> RecordRead<'a> {
        match event.record {
            RecordRef::Json(text) | RecordRef::UncheckedJson(text) => match serde_json::from_str::<
                RecordValue<'a>,
            >(text)
            {
                Ok(object @ RecordValue::Object(_)) => RecordRead::Object(object),
                Ok(_) => RecordRead::NotAnObject,
                // serde_json refuses what ingest accepts from an attacker's padding (a number
                // beyond f64, a lone surrogate, nesting past its limit); the record parser
                // reads it as detection does, so such a record is still searchable by field.
                // Rare, so the owned strings of this path do not matter; the common path above
                // is unchanged. (On what serde_json reads, both give the same values.)
                Err(_) => match vigil_event::json::parse_object(text) {
                    Ok(object) => RecordRead::Object(RecordValue::Object(owned_members(object))),
                    Err(_) => RecordRead::NotAnObject,
                },
            },
            RecordRef::Text(text) => {
                let mut members = object_members(event.fields);
                if !event.fields.contains_key(TEXT_FIELD) {
                    members.push((Cow::Borrowed(TEXT_FIELD), RecordValue::Str(text.into())));
                }
                RecordRead::Object(RecordValue::Object(members))
            }
        }
    }

    fn from_json(value: &'a Json) -> RecordValue<'a> {
        match value {
            Json::Null => RecordValue::Null,
            Json::Bool(b) => RecordValue::Bool(*b),
            Json::Number(n) => number(n),
            Json::String(s) => RecordValue::Str(Cow::Borrowed(s)),
            Json::Array(items) => RecordValue::Array(items.iter().map(Self::from_json).collect()),
            Json::Object(map) => RecordValue::Object(object_members(map)),
        }
    }
}

fn object_members(map: &Map<String, Json>) -> Vec<(Cow<'_, str>, RecordValue<'_>)> {
    map.iter()
        .map(|(key, value)| (Cow::Borrowed(key.as_str()), RecordValue::from_json(value)))
        .collect()
}

/// An object's members, owning their strings (objects are at most the record parser's depth
/// limit deep, so the recursion is bounded).
fn owned_members(object: Map<String, Json>) -> Vec<(Cow<'static, str>, RecordValue<'static>)> {
    object
        .into_iter()
        .map(|(key, value)| (Cow::Owned(key), RecordValue::owned(value)))
        .collect()
}

impl RecordValue<'static> {
    fn owned(value: Json) -> RecordValue<'static> {
        match value {
            Json::String(s) => RecordValue::Str(Cow::Owned(s)),
            Json::Array(items) => {
                RecordValue::Array(items.into_iter().map(RecordValue::owned).collect())
            }
            Json::Object(object) => RecordValue::Object(owned_members(object)),
            Json::Number(n) => number(&n),
            Json::Bool(b) => RecordValue::Bool(b),
            Json::Null => RecordValue::Null,
        }
    }
}

fn number(n: &serde_json::Number) -> RecordValue<'static> {
    if let Some(i) = n.as_i64() {
        RecordValue::I64(i)
    } else if let Some(u) = n.as_u64() {
        RecordValue::U64(u)
    } else if let Some(f) = n.as_f64() {
        RecordValue::F64(f)
    } else {
        RecordValue::Str(Cow::Owned(n.to_string()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RecordValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RecordValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RecordValue::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(RecordValue::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(RecordValue::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Self::Value, E> {
        Ok(RecordValue::I64(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(u).map_or(RecordValue::U64(u), RecordValue::I64))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        Ok(RecordValue::F64(f))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(RecordValue::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(RecordValue::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(RecordValue::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RecordValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(RecordValue::Object(last_value_wins(members)))
    }
}

/// Objects up to this size are checked for repeated keys pair by pair, cheaper than hashing.
const PAIRWISE_CHECK: usize = 32;

/// Drops all but the last value of a repeated key. Detection reads records through
/// `serde_json`'s map, where the last value wins, and the index must show what rules saw: an
/// attacker repeating a key must not be found by the value detection never looked at.
fn last_value_wins<'a>(
    members: Vec<(Cow<'a, str>, RecordValue<'a>)>,
) -> Vec<(Cow<'a, str>, RecordValue<'a>)> {
    let repeated = if members.len() <= PAIRWISE_CHECK {
        members
            .iter()
            .enumerate()
            .any(|(i, (key, _))| members[..i].iter().any(|(other, _)| other == key))
    } else {
        let mut seen = HashSet::with_capacity(members.len());
        !members.iter().all(|(key, _)| seen.insert(key.as_ref()))
    };
    if !repeated {
        return members;
    }
    let mut seen = HashSet::new();
    let mut kept: Vec<_> = members
        .into_iter()
        .rev()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect();
    kept.reverse();
    kept
}

/// An object key, borrowed from the record unless it held escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Object members as tantivy walks them.
#[derive(Clone)]
pub(crate) struct Members<'a>(std::slice::Iter<'a, (Cow<'a, str>, RecordValue<'a>)>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a RecordValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, value)| (key.as_ref(), value))
    }
}

impl<'a> Value<'a> for &'a RecordValue<'a> {
    type ArrayIter = std::slice::Iter<'a, RecordValue<'a>>;
    type ObjectIter = Members<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self {
            RecordValue::Null => ReferenceValueLeaf::Null.into(),
            RecordValue::Bool(b) => ReferenceValueLeaf::Bool(*b).into(),
            RecordValue::I64(i) => ReferenceValueLeaf::I64(*i).into(),
            RecordValue::U64(u) => ReferenceValueLeaf::U64(*u).into(),
            RecordValue::F64(f) => ReferenceValueLeaf::F64(*f).into(),
            RecordValue::Str(s) => ReferenceValueLeaf::Str(s.as_ref()).into(),
            RecordValue::Array(items) => ReferenceValue::Array(items.iter()),
            RecordValue::Object(members) => ReferenceValue::Object(Members(members.iter())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_event::{AsEventRef, Event, Record};

    fn parse(text: &str) -> RecordValue<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_escaped_ones_decoded() {
        let value = parse(r#"{"plain":"abc","esc\"aped":"a\nb","when":"2024-05-01T10:00:00Z"}"#);
        let RecordValue::Object(members) = value else {
            panic!("not an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(
            &members[0].1,
            RecordValue::Str(Cow::Borrowed("abc"))
        ));
        assert_eq!(members[1].0, "esc\"aped");
        assert_eq!(members[1].1, RecordValue::Str("a\nb".into()));
        // A date-like string stays a string.
        assert_eq!(
            members[2].1,
            RecordValue::Str("2024-05-01T10:00:00Z".into())
        );
    }

    #[test]
    fn numbers_are_typed_as_the_json_conversion_types_them() {
        let value = parse(r#"[1, -2, 18446744073709551615, 1.5, true, null]"#);
        assert_eq!(
            value,
            RecordValue::Array(vec![
                RecordValue::I64(1),
                RecordValue::I64(-2),
                RecordValue::U64(u64::MAX),
                RecordValue::F64(1.5),
                RecordValue::Bool(true),
                RecordValue::Null,
            ])
        );
        let json: Json = serde_json::from_str("[1, -2, 18446744073709551615, 1.5]").unwrap();
        let RecordValue::Array(converted) = RecordValue::from_json(&json) else {
            panic!("not an array")
        };
        let RecordValue::Array(parsed) = value else {
            panic!("not an array")
        };
        assert_eq!(converted[..], parsed[..4]);
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_detection_sees_it() {
        let value = parse(r#"{"a":1,"b":true,"a":2}"#);
        assert_eq!(
            value,
            RecordValue::Object(vec![
                ("b".into(), RecordValue::Bool(true)),
                ("a".into(), RecordValue::I64(2)),
            ])
        );
        let seen_by_rules: Json = serde_json::from_str(r#"{"a":1,"b":true,"a":2}"#).unwrap();
        assert_eq!(seen_by_rules["a"], 2);
        // Large objects take the hashing path.
        let many: String = (0..100)
            .map(|i| format!("\"k{}\":{i}", i % 60))
            .collect::<Vec<_>>()
            .join(",");
        let text = format!("{{{many}}}");
        let RecordValue::Object(members) = parse(&text) else {
            panic!("not an object")
        };
        assert_eq!(members.len(), 60);
        let k5 = members.iter().find(|(key, _)| key == "k5").unwrap();
        assert_eq!(k5.1, RecordValue::I64(65));
    }

    fn json_event(text: &str) -> Event {
        let now = chrono::Utc::now();
        Event {
            id: vigil_event::EventId::derive("test", &[text.as_bytes()]),
            time: now,
            received: now,
            source: vigil_event::Source {
                kind: "http".into(),
                name: "test".into(),
            },
            logsource: Default::default(),
            record: Record::json(text).unwrap(),
            fields: Map::new(),
        }
    }

    /// The members of the event's record as the index gets them, sorted by key.
    fn indexed(event: &Event) -> Vec<(String, RecordValue<'_>)> {
        let RecordRead::Object(RecordValue::Object(members)) =
            RecordValue::of_event(&event.as_event_ref())
        else {
            panic!("{} is not indexed as an object", event.record.as_str())
        };
        let mut members: Vec<_> = members
            .into_iter()
            .map(|(key, value)| (key.into_owned(), value))
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members
    }

    #[test]
    fn records_serde_json_refuses_are_indexed_as_detection_reads_them() {
        let deep = format!("{}\"needle\"{}", "[".repeat(300), "]".repeat(300));
        let text = format!(
            r#"{{"eventName":"StopLogging","pad":1e400,"ua":"x\ud800","n":-3,"big":18446744073709551615,"f":1.5,"deep":{deep},"eventName":"StopLogging2"}}"#
        );
        assert!(serde_json::from_str::<RecordValue>(&text).is_err());
        let event = json_event(&text);
        let members = indexed(&event);
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["big", "deep", "eventName", "f", "n", "pad", "ua"]);
        assert_eq!(members[0].1, RecordValue::U64(u64::MAX));
        // The last value of a repeated key, as rules see it.
        assert_eq!(members[2].1, RecordValue::Str("StopLogging2".into()));
        assert_eq!(members[3].1, RecordValue::F64(1.5));
        assert_eq!(members[4].1, RecordValue::I64(-3));
        assert_eq!(members[5].1, RecordValue::Str("1e400".into()));
        assert_eq!(members[6].1, RecordValue::Str("x\u{fffd}".into()));
        // What the document gives detection is what is indexed.
        let document = event.document().unwrap();
        assert_eq!(document["eventName"], "StopLogging2");
        let mut value = &members[1].1;
        let mut levels = 0;
        while let RecordValue::Array(items) = value {
            value = &items[0];
            levels += 1;
        }
        assert_eq!(levels, vigil_event::json::MAX_DEPTH - 1);
        let RecordValue::Str(raw) = value else {
            panic!("{value:?}")
        };
        assert!(raw.contains("needle"));
    }

    #[test]
    fn the_common_path_still_borrows() {
        let event = json_event(r#"{"a":"b"}"#);
        let RecordRead::Object(RecordValue::Object(members)) =
            RecordValue::of_event(&event.as_event_ref())
        else {
            panic!("not an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        assert!(matches!(members[0].1, RecordValue::Str(Cow::Borrowed("b"))));
    }
}
