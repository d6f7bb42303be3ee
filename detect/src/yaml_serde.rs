//! Reading a typed YAML file through serde, over the line-keeping tree of [`crate::yaml`].
//!
//! Files that are not rules (rule test files) are read into `#[derive(Deserialize)]` types
//! with `#[serde(deny_unknown_fields)]`, so a misspelt key is an error and not a silently
//! ignored case. The tree they are read from is the rules' own: the same nesting limit,
//! anchors and aliases refused, duplicate keys refused, YAML 1.2 scalars. An error says where:
//! the line of the node and the path of keys and list positions to it.
//!
//! A plain scalar read where a string is wanted gives the text it was written as (`rule: 1234`
//! is the string `1234`), as rule attributes are read; read as `serde_json::Value`, scalars keep
//! their type. A number too large for a double stays the text it was written as.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::yaml::{self, Key, Node, Value};

/// Reads `text`, which must hold exactly one YAML document, as a `T`.
pub fn from_yaml_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlDeError> {
    let mut documents = Vec::new();
    for document in yaml::load_documents(text) {
        match document {
            Ok(document) => documents.push(document),
            Err(err) => {
                return Err(YamlDeError {
                    line: Some(err.line),
                    path: Vec::new(),
                    kind: YamlDeErrorKind::Syntax(err.message),
                })
            }
        }
    }
    let [document] = documents.as_slice() else {
        return Err(YamlDeError {
            line: documents.get(1).map(|d| d.line),
            path: Vec::new(),
            kind: YamlDeErrorKind::Documents(documents.len()),
        });
    };
    T::deserialize(NodeDeserializer(&document.root))
}

/// Why a YAML file could not be read as the type wanted, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlDeError {
    /// The 1-based line of the node (or key) at fault, when known.
    pub line: Option<usize>,
    /// The keys and list positions from the document's root to the node at fault.
    pub path: Vec<PathPart>,
    pub kind: YamlDeErrorKind,
}

/// One step of a [`YamlDeError`]'s path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Key(String),
    /// 0-based.
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlDeErrorKind {
    /// Not YAML, or YAML the rule loader refuses (anchors, duplicate keys, too deep).
    Syntax(String),
    /// The text holds this many documents instead of one.
    Documents(usize),
    /// A mapping holds a key its type does not have.
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    /// Anything else serde reports: a wrong type, a missing key.
    Invalid(String),
}

impl YamlDeError {
    fn new(kind: YamlDeErrorKind) -> Self {
        YamlDeError {
            line: None,
            path: Vec::new(),
            kind,
        }
    }

    /// Marks the error as found at `line` unless a deeper node already did.
    fn at_line(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }

    /// Puts `part` in front of the path: errors gain their path on the way up.
    fn under(mut self, part: PathPart) -> Self {
        self.path.insert(0, part);
        self
    }
}

impl fmt::Display for YamlDeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YamlDeErrorKind::Syntax(message) | YamlDeErrorKind::Invalid(message) => {
                f.write_str(message)
            }
            YamlDeErrorKind::Documents(n) => write!(f, "holds {n} YAML documents, not one"),
            YamlDeErrorKind::UnknownKey { key, expected } => {
                write!(f, "unknown key `{key}`; expected {}", one_of(expected))
            }
        }
    }
}

impl fmt::Display for YamlDeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        for part in &self.path {
            match part {
                PathPart::Key(key) => write!(f, "{key}: ")?,
                PathPart::Index(index) => write!(f, "item {}: ", index + 1)?,
            }
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for YamlDeError {}

/// `` `a`, `b` or `c` ``: the names a key could have been.
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.as_slice() {
        [] => "no key".to_owned(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl de::Error for YamlDeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        YamlDeError::new(YamlDeErrorKind::Invalid(message.to_string()))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        YamlDeError::new(YamlDeErrorKind::UnknownKey {
            key: field.to_owned(),
            expected,
        })
    }
}

struct NodeDeserializer<'de>(&'de Node);

impl<'de> NodeDeserializer<'de> {
    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlDeError> {
        let node = self.0;
        match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i, _) => visitor.visit_i64(*i),
            Value::Float(f, _) if f.is_finite() => visitor.visit_f64(*f),
            Value::Float(_, text) | Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Seq(items) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
            }),
            Value::Map(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = YamlDeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlDeError> {
        let line = self.0.line;
        self.any(visitor).map_err(|e| e.at_line(line))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlDeError> {
        let line = self.0.line;
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at_line(line))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlDeError> {
        let line = self.0.line;
        match self.0.scalar_text() {
            Some(text) => visitor.visit_borrowed_str(text),
            None => self.any(visitor),
        }
        .map_err(|e| e.at_line(line))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlDeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlDeError> {
        let line = self.0.line;
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at_line(line))
    }

    /// Unit variants only, written as their name.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlDeError> {
        let line = self.0.line;
        match self.0.scalar_text() {
            Some(text) => visitor.visit_enum(text.into_deserializer()),
            None => self.any(visitor),
        }
        .map_err(|e: YamlDeError| e.at_line(line))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Items<'de> {
    items: std::slice::Iter<'de, Node>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = YamlDeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, YamlDeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(NodeDeserializer(item))
            .map(Some)
            .map_err(|e| e.under(PathPart::Index(index)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'de> {
    entries: std::slice::Iter<'de, (Key, Node)>,
    /// The key just read and its value, for `next_value_seed`.
    value: Option<(&'de Key, &'de Node)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = YamlDeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, YamlDeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::<YamlDeError>::new(&key.name))
            .map(Some)
            .map_err(|e| e.at_line(key.line))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, YamlDeError> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        seed.deserialize(NodeDeserializer(value))
            .map_err(|e| e.under(PathPart::Key(key.name.clone())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        name: Option<String>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        value: serde_json::Value,
    }

    #[test]
    fn reads_typed_values_and_json() {
        let file: File = from_yaml_str(
            "name: 1234\nitems:\n  - value: {a: [1, 2.5, 'no', no, null, true, 1e999, .inf]}\n",
        )
        .unwrap();
        assert_eq!(file.name.as_deref(), Some("1234"));
        assert_eq!(
            file.items[0].value,
            json!({"a": [1, 2.5, "no", "no", null, true, "1e999", ".inf"]})
        );
    }

    #[test]
    fn errors_say_where() {
        let error =
            from_yaml_str::<File>("name: x\nitems:\n  - value: 1\n  - valu: 2\n").unwrap_err();
        assert_eq!(error.line, Some(4));
        assert_eq!(
            error.path,
            vec![PathPart::Key("items".into()), PathPart::Index(1)]
        );
        assert_eq!(
            error.kind,
            YamlDeErrorKind::UnknownKey {
                key: "valu".into(),
                expected: &["value"]
            }
        );
        assert_eq!(
            error.to_string(),
            "line 4: items: item 2: unknown key `valu`; expected `value`"
        );

        let error = from_yaml_str::<File>("name: [x]\n").unwrap_err();
        assert_eq!(error.line, Some(1));
        assert_eq!(error.path, vec![PathPart::Key("name".into())]);

        let error = from_yaml_str::<File>("items: {value: 1}\n").unwrap_err();
        assert!(error.to_string().contains("expected a sequence"), "{error}");
    }

    #[test]
    fn refuses_what_rules_refuse() {
        for (text, found) in [
            ("name: x\nname: y\n", "duplicate key"),
            ("a: &x 1\nb: *x\n", "anchors"),
            ("name: [\n", "invalid YAML"),
        ] {
            let error = from_yaml_str::<serde_json::Value>(text).unwrap_err();
            assert!(matches!(error.kind, YamlDeErrorKind::Syntax(_)), "{text:?}");
            assert!(error.to_string().contains(found), "{text:?}: {error}");
        }
        let error = from_yaml_str::<serde_json::Value>("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(error.kind, YamlDeErrorKind::Documents(2));
        let error = from_yaml_str::<serde_json::Value>("").unwrap_err();
        assert_eq!(error.kind, YamlDeErrorKind::Documents(0));
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let error = from_yaml_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(error.to_string().contains("nest deeper"), "{error}");
    }
}
