//! A record read for indexing.
//!
//! A JSON record is parsed into a [`vigil_event::Document`], as detection parses it to match
//! it: one parser, so the index holds exactly the values rules saw (a repeated key's last
//! value; the tolerant reading of what `serde_json` refuses), by construction rather than by
//! two parsers agreeing. Its tape is handed to tantivy as it is, with no tree built in between.
//! It replaced a `serde_json` tree of borrowed strings and member vectors: building a
//! CloudTrail record's tantivy document took 4.52 to 4.62 us with the tree and 3.91 to 3.98 us
//! with the tape (`benches/RESULTS.md`, session 45).
//!
//! It also fixes how record values are typed: strings stay strings even when they look like
//! RFC 3339 dates (tantivy's own JSON conversion would make them dates), so record
//! timestamps remain searchable by their words (`eventTime:"2024-05-01"`); ordering by time
//! uses the `time` field anyway. Integers are `i64` when they fit and `u64` otherwise.

use serde_json::{Map, Number, Value as Json};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf, Value};
use vigil_event::{Document, EventRef, JsonRef, RecordRef, TEXT_FIELD};

/// What the store makes of an event's record.
pub(crate) enum RecordRead<'a> {
    /// A JSON object, parsed.
    Parsed(Document<'a>),
    /// A text record: its extracted fields, with the line itself under [`TEXT_FIELD`] unless
    /// a field has that name, as [`vigil_event::Event::document`] presents it to rules.
    Fields {
        fields: &'a Map<String, Json>,
        line: &'a str,
    },
    /// A JSON record that is no JSON object: broken JSON, or JSON of another kind. Ingest
    /// refuses both, so only a forged or damaged bus message holds one. It is indexed by its
    /// words and kept as a text record, which is what it is.
    NotAnObject,
}

impl<'a> RecordRead<'a> {
    /// Reads the event's record for the JSON field. This is the one read of the record in the
    /// index stage: a record read off the bus arrives unchecked, and this read is its check.
    pub(crate) fn of_event(event: &EventRef<'a>) -> RecordRead<'a> {
        match event.record {
            RecordRef::Json(text) | RecordRef::UncheckedJson(text) => match Document::parse(text) {
                Ok(document) => RecordRead::Parsed(document),
                Err(_) => RecordRead::NotAnObject,
            },
            RecordRef::Text(line) => RecordRead::Fields {
                fields: event.fields,
                line,
            },
        }
    }

    /// The record as tantivy walks it into the JSON field; none for [`RecordRead::NotAnObject`].
    pub(crate) fn value(&self) -> Option<RecordValue<'_>> {
        match self {
            RecordRead::Parsed(document) => {
                Some(RecordValue::Json(JsonRef::Object(document.root())))
            }
            RecordRead::Fields { fields, line } => Some(RecordValue::Fields { fields, line }),
            RecordRead::NotAnObject => None,
        }
    }
}

/// A value of a record, as tantivy's JSON field takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RecordValue<'a> {
    Json(JsonRef<'a>),
    /// A text record's root (see [`RecordRead::Fields`]).
    Fields {
        fields: &'a Map<String, Json>,
        line: &'a str,
    },
}

/// An object's members as tantivy walks them: a parsed object's (each key once, with its last
/// value; in record order, but for a record only the tolerant parser reads, whose map is in
/// key order), or a text record's fields and then its line.
pub(crate) struct Members<'a> {
    members: vigil_event::Members<'a>,
    line: Option<&'a str>,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, RecordValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self.members.next() {
            Some((key, value)) => Some((key, RecordValue::Json(value))),
            None => self
                .line
                .take()
                .map(|line| (TEXT_FIELD, RecordValue::Json(JsonRef::String(line)))),
        }
    }
}

/// An array's items as tantivy walks them.
pub(crate) struct Items<'a>(vigil_event::Items<'a>);

impl<'a> Iterator for Items<'a> {
    type Item = RecordValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(RecordValue::Json)
    }
}

impl<'a> Value<'a> for RecordValue<'a> {
    type ArrayIter = Items<'a>;
    type ObjectIter = Members<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        let json = match *self {
            RecordValue::Json(json) => json,
            RecordValue::Fields { fields, line } => {
                return ReferenceValue::Object(Members {
                    members: vigil_event::Object::Map(fields).members(),
                    line: (!fields.contains_key(TEXT_FIELD)).then_some(line),
                })
            }
        };
        match json {
            JsonRef::Null => ReferenceValueLeaf::Null.into(),
            JsonRef::Bool(b) => ReferenceValueLeaf::Bool(b).into(),
            JsonRef::Number(n) => number(n).into(),
            JsonRef::String(s) => ReferenceValueLeaf::Str(s).into(),
            JsonRef::Array(items) => ReferenceValue::Array(Items(items.items())),
            JsonRef::Object(object) => ReferenceValue::Object(Members {
                members: object.members(),
                line: None,
            }),
        }
    }
}

/// Integers as `i64` where they fit, else `u64`; other numbers as `f64`, which every number
/// `serde_json` holds converts to (it is built without arbitrary precision).
fn number(n: &Number) -> ReferenceValueLeaf<'static> {
    if let Some(i) = n.as_i64() {
        ReferenceValueLeaf::I64(i)
    } else if let Some(u) = n.as_u64() {
        ReferenceValueLeaf::U64(u)
    } else {
        ReferenceValueLeaf::F64(n.as_f64().unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_event::{AsEventRef, Event, Record};

    /// A value as tantivy receives it, typed as its leaves are.
    #[derive(Debug, Clone, PartialEq)]
    enum Walked {
        Null,
        Bool(bool),
        I64(i64),
        U64(u64),
        /// By its bits, so that -0.0 and 0.0 differ.
        F64(u64),
        Str(String),
        Array(Vec<Walked>),
        Object(Vec<(String, Walked)>),
    }

    /// Walks `value` as tantivy's document builder does, through [`Value::as_value`].
    fn walked<'a, V: Value<'a>>(value: &V) -> Walked {
        match value.as_value() {
            ReferenceValue::Leaf(leaf) => match leaf {
                ReferenceValueLeaf::Null => Walked::Null,
                ReferenceValueLeaf::Bool(b) => Walked::Bool(b),
                ReferenceValueLeaf::I64(i) => Walked::I64(i),
                ReferenceValueLeaf::U64(u) => Walked::U64(u),
                ReferenceValueLeaf::F64(f) => Walked::F64(f.to_bits()),
                ReferenceValueLeaf::Str(s) => Walked::Str(s.to_owned()),
                other => panic!("a record gives no {other:?}"),
            },
            ReferenceValue::Array(items) => Walked::Array(items.map(|v| walked(&v)).collect()),
            ReferenceValue::Object(members) => Walked::Object(
                members
                    .map(|(key, v)| (key.to_owned(), walked(&v)))
                    .collect(),
            ),
        }
    }

    fn float(value: f64) -> Walked {
        Walked::F64(value.to_bits())
    }

    fn str(text: &str) -> Walked {
        Walked::Str(text.to_owned())
    }

    fn event(record: Record, fields: Map<String, Json>) -> Event {
        let now = chrono::Utc::now();
        Event {
            id: vigil_event::EventId::derive("test", &[record.as_str().as_bytes()]),
            time: now,
            received: now,
            source: vigil_event::Source {
                kind: "http".into(),
                name: "test".into(),
            },
            logsource: Default::default(),
            record,
            fields,
        }
    }

    fn json_event(text: &str) -> Event {
        event(Record::json(text).unwrap(), Map::new())
    }

    /// The record of `event` as the index gets it, or `None` when it is no object.
    fn indexed(event: &Event) -> Option<Walked> {
        let read = RecordRead::of_event(&event.as_event_ref());
        read.value().map(|value| walked(&value))
    }

    /// The members of a JSON record as the index gets them, in the order it gets them.
    fn members(text: &str) -> Vec<(String, Walked)> {
        match indexed(&json_event(text)) {
            Some(Walked::Object(members)) => members,
            other => panic!("{text} is indexed as {other:?}"),
        }
    }

    #[test]
    fn escapes_are_decoded_and_strings_that_look_like_dates_stay_strings() {
        let members =
            members(r#"{"plain":"abc","esc\"aped":"a\nb","when":"2024-05-01T10:00:00Z"}"#);
        assert_eq!(
            members,
            [
                ("plain".into(), str("abc")),
                ("esc\"aped".into(), str("a\nb")),
                ("when".into(), str("2024-05-01T10:00:00Z")),
            ]
        );
    }

    #[test]
    fn numbers_are_i64_where_they_fit_then_u64_then_f64() {
        let members = members(
            r#"{"n":[1, -2, 9223372036854775807, 9223372036854775808, 18446744073709551615, 1.5, -0, 1e3, true, null]}"#,
        );
        assert_eq!(
            members[0].1,
            Walked::Array(vec![
                Walked::I64(1),
                Walked::I64(-2),
                Walked::I64(i64::MAX),
                Walked::U64(1 << 63),
                Walked::U64(u64::MAX),
                float(1.5),
                float(-0.0),
                float(1000.0),
                Walked::Bool(true),
                Walked::Null,
            ])
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_detection_sees_it() {
        assert_eq!(
            members(r#"{"a":1,"b":{"c":true,"c":false},"a":2}"#),
            [
                (
                    "b".into(),
                    Walked::Object(vec![("c".into(), Walked::Bool(false))])
                ),
                ("a".into(), Walked::I64(2)),
            ]
        );
        let seen_by_rules = Document::parse(r#"{"a":1,"b":true,"a":2}"#).unwrap();
        assert!(
            matches!(seen_by_rules.root().get("a"), Some(JsonRef::Number(n)) if n.as_i64() == Some(2))
        );
        // Objects of more than 32 members are looked up in key order; they are indexed in
        // record order all the same, each key once.
        let many: String = (0..100)
            .map(|i| format!("\"k{}\":{i}", 59 - i % 60))
            .collect::<Vec<_>>()
            .join(",");
        let members = members(&format!("{{{many}}}"));
        assert_eq!(members.len(), 60);
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        let expected: Vec<String> = (40..100).map(|i| format!("k{}", 59 - i % 60)).collect();
        assert_eq!(keys, expected);
        let k54 = members.iter().find(|(key, _)| key == "k54").unwrap();
        assert_eq!(k54.1, Walked::I64(65));
    }

    #[test]
    fn records_serde_json_refuses_are_indexed_as_detection_reads_them() {
        let deep = format!("{}\"needle\"{}", "[".repeat(300), "]".repeat(300));
        let text = format!(
            r#"{{"eventName":"StopLogging","pad":1e400,"ua":"x\ud800","n":-3,"big":18446744073709551615,"f":1.5,"deep":{deep},"eventName":"StopLogging2"}}"#
        );
        assert!(serde_json::from_str::<Json>(&text).is_err());
        let event = json_event(&text);
        let Some(Walked::Object(mut members)) = indexed(&event) else {
            panic!("not indexed as an object")
        };
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["big", "deep", "eventName", "f", "n", "pad", "ua"]);
        assert_eq!(members[0].1, Walked::U64(u64::MAX));
        // The last value of a repeated key, as rules see it.
        assert_eq!(members[2].1, str("StopLogging2"));
        assert_eq!(members[3].1, float(1.5));
        assert_eq!(members[4].1, Walked::I64(-3));
        assert_eq!(members[5].1, str("1e400"));
        assert_eq!(members[6].1, str("x\u{fffd}"));
        // What the document gives detection is what is indexed.
        let document = event.document().unwrap();
        assert_eq!(document["eventName"], "StopLogging2");
        let mut value = &members[1].1;
        let mut levels = 0;
        while let Walked::Array(items) = value {
            value = &items[0];
            levels += 1;
        }
        assert_eq!(levels, vigil_event::json::MAX_DEPTH - 1);
        let Walked::Str(raw) = value else {
            panic!("{value:?}")
        };
        assert!(raw.contains("needle"));
    }

    /// Records serde_json reads are indexed as its values, converted as tantivy's own
    /// conversion types numbers: the same walk over records of every kind of value.
    #[test]
    fn records_serde_json_reads_are_indexed_as_its_values() {
        fn from_json(value: &Json) -> Walked {
            match value {
                Json::Null => Walked::Null,
                Json::Bool(b) => Walked::Bool(*b),
                Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Walked::I64(i),
                    (None, Some(u), _) => Walked::U64(u),
                    (None, None, Some(f)) => float(f),
                    _ => unreachable!("serde_json without arbitrary precision"),
                },
                Json::String(s) => str(s),
                Json::Array(items) => Walked::Array(items.iter().map(from_json).collect()),
                Json::Object(map) => Walked::Object(
                    map.iter()
                        .map(|(key, value)| (key.clone(), from_json(value)))
                        .collect(),
                ),
            }
        }
        let records = [
            r#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T10:00:00Z","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]},"maxResults":5},"responseElements":null,"readOnly":true,"tls":{"v":1.2}}"#,
            r#"{"kind":"Event","annotations":{"authorization.k8s.io/decision":"allow"},"sourceIPs":["10.0.0.1"],"code":403,"nested":[[],{},[{}],"\u00e9\u002e"]}"#,
        ];
        for text in records {
            let Some(Walked::Object(mut ours)) = indexed(&json_event(text)) else {
                panic!("{text} is not indexed as an object")
            };
            // serde_json's map lists keys in order; the tape in record order.
            fn sorted(walked: &mut Walked) {
                match walked {
                    Walked::Object(members) => {
                        members.sort_by(|a, b| a.0.cmp(&b.0));
                        members.iter_mut().for_each(|(_, v)| sorted(v));
                    }
                    Walked::Array(items) => items.iter_mut().for_each(sorted),
                    _ => {}
                }
            }
            ours.sort_by(|a, b| a.0.cmp(&b.0));
            let mut ours = Walked::Object(ours);
            sorted(&mut ours);
            let theirs = from_json(&serde_json::from_str(text).unwrap());
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn a_text_record_is_its_fields_and_its_line() {
        let line = "10.0.0.1 - - [01/May/2024:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5";
        let fields: Map<String, Json> =
            serde_json::from_str(r#"{"status":200,"path":"/"}"#).unwrap();
        let indexed_text = indexed(&event(Record::Text(line.into()), fields.clone()));
        assert_eq!(
            indexed_text,
            Some(Walked::Object(vec![
                ("path".into(), str("/")),
                ("status".into(), Walked::I64(200)),
                (TEXT_FIELD.into(), str(line)),
            ]))
        );
        // A field of that name is what rules see under it, so it is what is indexed.
        let mut named = fields;
        named.insert(TEXT_FIELD.into(), Json::String("derived".into()));
        let Some(Walked::Object(members)) = indexed(&event(Record::Text(line.into()), named))
        else {
            panic!("not indexed as an object")
        };
        let texts: Vec<_> = members
            .iter()
            .filter(|(key, _)| key == TEXT_FIELD)
            .collect();
        assert_eq!(texts, [&(TEXT_FIELD.to_owned(), str("derived"))]);
    }

    #[test]
    fn only_a_json_object_is_indexed_as_one() {
        let base = json_event("{}");
        // Text after the object, or before it other than JSON's whitespace, is no object.
        for text in [
            r#"[1,2]"#,
            r#""text""#,
            "12",
            r#"{"open":"#,
            "",
            "{} x",
            "{}{}",
            "\u{feff}{}",
            "\u{a0}{}",
        ] {
            let read = RecordRead::of_event(&EventRef {
                record: RecordRef::UncheckedJson(text),
                ..base.as_event_ref()
            });
            assert!(read.value().is_none(), "{text}");
        }
        // JSON's whitespace around an object is allowed, as serde_json allows it.
        for text in ["{}", " \n\t\r{ } \n"] {
            let read = RecordRead::of_event(&EventRef {
                record: RecordRef::UncheckedJson(text),
                ..base.as_event_ref()
            });
            let walked = read.value().map(|value| walked(&value));
            assert_eq!(walked, Some(Walked::Object(Vec::new())), "{text:?}");
        }
    }
}
