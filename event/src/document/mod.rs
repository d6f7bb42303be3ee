//! An event's fields, read without building a map: what detection looks fields up in.
//!
//! A JSON record is parsed into a [`Tape`]: its values laid out flat, in record order, with
//! strings and keys borrowed from the record's text wherever they hold no escape. Each object
//! keeps a list of its members and a 64-bit filter of its keys: looking a key up checks the
//! filter, then scans a small object's list from its end and binary-searches a large one's,
//! which is sorted (comparing a fingerprint of each key before its bytes), so no tree or hash
//! table is built per event. Parsing a CloudTrail record this way costs less than half of
//! building a `serde_json` map of it.
//!
//! The views ([`Object`], [`JsonRef`], [`Array`]) read a tape and a `serde_json` value alike,
//! so rules match the derived fields of a text record, and values built in code, through the
//! same code as parsed records.
//!
//! A tape reads exactly what [`crate::json::parse_object`] reads: `serde_json`'s verdict and
//! values where it accepts the text, and the tolerant parser's map where it does not (numbers
//! beyond `f64`, lone surrogates, nesting beyond [`crate::json::MAX_DEPTH`]). A repeated key
//! keeps its last value, in lookups and when members are listed, as the map does.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::tape::{self, SlotValue, Tape, TapeBuffers};

/// An event's fields: a parsed record's tape, or a map (a text record's derived fields, a
/// record only the tolerant parser reads, or a document built in code).
#[derive(Debug, Clone, PartialEq)]
pub enum Document<'a> {
    Tape(Tape<'a>),
    Map(Cow<'a, Map<String, Value>>),
}

impl Default for Document<'_> {
    fn default() -> Self {
        Document::Map(Cow::Owned(Map::new()))
    }
}

impl<'a> Document<'a> {
    /// Parses `text`, which must hold one JSON object, with [`crate::json::parse_object`]'s
    /// verdict and values.
    pub fn parse(text: &'a str) -> Result<Self, crate::json::JsonError> {
        Self::parse_reusing(text, &mut TapeBuffers::default())
    }

    /// [`Document::parse`] into the vectors of a document done with ([`Document::recycle`]),
    /// which saves a record of a stream the allocations of its tape.
    pub fn parse_reusing(
        text: &'a str,
        buffers: &mut TapeBuffers,
    ) -> Result<Self, crate::json::JsonError> {
        match Tape::parse_into(text, std::mem::take(buffers)) {
            Some(tape) => Ok(Document::Tape(tape)),
            // Only what the tape's reader refuses gets here: what serde_json refuses (the reader
            // is held to its verdict); the tolerant parser's verdict is final.
            None => crate::json::parse_object_tolerant(text)
                .map(|parsed| Document::Map(Cow::Owned(parsed.object))),
        }
    }

    /// Keeps a parsed document's vectors in `buffers` for [`Document::parse_reusing`].
    pub fn recycle(self, buffers: &mut TapeBuffers) {
        if let Document::Tape(tape) = self {
            *buffers = tape.into_buffers();
        }
    }

    /// The document's top-level object.
    pub fn root(&self) -> Object<'_> {
        match self {
            Document::Tape(tape) => Object::Tape(tape, 0),
            Document::Map(map) => Object::Map(map),
        }
    }

    /// The document as a `serde_json` map, built anew for a tape.
    pub fn to_map(&self) -> Map<String, Value> {
        self.root().to_map()
    }
}

impl<'d> From<&'d Document<'_>> for Object<'d> {
    fn from(document: &'d Document<'_>) -> Self {
        document.root()
    }
}

impl<'d> From<&'d Map<String, Value>> for Object<'d> {
    fn from(map: &'d Map<String, Value>) -> Self {
        Object::Map(map)
    }
}

/// A JSON object of a document.
#[derive(Debug, Clone, Copy)]
pub enum Object<'d> {
    /// The object whose opening slot is at this index of the tape.
    Tape(&'d Tape<'d>, u32),
    Map(&'d Map<String, Value>),
}

/// A JSON array of a document.
#[derive(Debug, Clone, Copy)]
pub enum Array<'d> {
    /// The array whose opening slot is at this index of the tape.
    Tape(&'d Tape<'d>, u32),
    Slice(&'d [Value]),
}

/// A JSON value of a document, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum JsonRef<'d> {
    Null,
    Bool(bool),
    Number(&'d Number),
    String(&'d str),
    Array(Array<'d>),
    Object(Object<'d>),
}

impl<'d> From<&'d Value> for JsonRef<'d> {
    fn from(value: &'d Value) -> Self {
        match value {
            Value::Null => JsonRef::Null,
            Value::Bool(b) => JsonRef::Bool(*b),
            Value::Number(n) => JsonRef::Number(n),
            Value::String(s) => JsonRef::String(s),
            Value::Array(items) => JsonRef::Array(Array::Slice(items)),
            Value::Object(map) => JsonRef::Object(Object::Map(map)),
        }
    }
}

impl<'d> Object<'d> {
    /// The value of `key`; the last one where the key repeats.
    pub fn get(self, key: &str) -> Option<JsonRef<'d>> {
        match self {
            Object::Tape(tape, at) => tape.get(at, key).map(|slot| JsonRef::of_slot(tape, slot)),
            Object::Map(map) => map.get(key).map(JsonRef::from),
        }
    }

    /// Whether some key of the object may hold a dot: not for a parsed object none of whose keys
    /// does, where a dotted field name can only be a path through nested objects.
    pub fn keys_may_hold_dots(self) -> bool {
        match self {
            Object::Tape(tape, at) => tape.keys_hold_dots(at),
            Object::Map(_) => true,
        }
    }

    /// Each key with its value, a repeated key once with its last value: in record order for
    /// a tape, in key order for a map.
    pub fn members(self) -> Members<'d> {
        match self {
            Object::Tape(tape, at) => Members::Tape(tape, tape.members(at)),
            Object::Map(map) => Members::Map(map.iter()),
        }
    }

    /// Calls `each` with every value of a tape's object that is not an array or object
    /// (strings, numbers, booleans and nulls), at any depth, in record order, with the earlier
    /// values of a repeated key that [`Object::members`] leaves out: for a scan that may see
    /// more than lookups do (a prefilter's), read slot by slot rather than member by member.
    /// `false` for a map, whose values the caller walks.
    #[inline]
    pub fn for_each_tape_scalar(self, mut each: impl FnMut(JsonRef<'d>)) -> bool {
        match self {
            Object::Tape(tape, at) => {
                for slot in tape.descendants(at) {
                    match JsonRef::of_slot(tape, slot) {
                        JsonRef::Array(_) | JsonRef::Object(_) => {}
                        value => each(value),
                    }
                }
                true
            }
            Object::Map(_) => false,
        }
    }

    /// A `serde_json` copy of the object.
    pub fn to_map(self) -> Map<String, Value> {
        match self {
            Object::Tape(tape, at) => tape.object_map(at),
            Object::Map(map) => map.clone(),
        }
    }
}

impl<'d> Array<'d> {
    /// The array's items, in order.
    pub fn items(self) -> Items<'d> {
        match self {
            Array::Tape(tape, at) => Items::Tape(tape, tape.children(at)),
            Array::Slice(items) => Items::Slice(items.iter()),
        }
    }
}

impl<'d> JsonRef<'d> {
    /// The value of the tape's slot at `at`.
    #[inline]
    fn of_slot(tape: &'d Tape<'d>, at: u32) -> Self {
        match tape.value(at) {
            SlotValue::Null => JsonRef::Null,
            SlotValue::Bool(b) => JsonRef::Bool(b),
            SlotValue::Number(n) => JsonRef::Number(n),
            SlotValue::String(s) => JsonRef::String(s),
            SlotValue::Array => JsonRef::Array(Array::Tape(tape, at)),
            SlotValue::Object => JsonRef::Object(Object::Tape(tape, at)),
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self, JsonRef::Null)
    }

    /// A `serde_json` copy of the value.
    pub fn to_value(self) -> Value {
        match self {
            JsonRef::Null => Value::Null,
            JsonRef::Bool(b) => Value::Bool(b),
            JsonRef::Number(n) => Value::Number(n.clone()),
            JsonRef::String(s) => Value::String(s.to_owned()),
            JsonRef::Array(Array::Tape(tape, at)) => tape.to_value(at),
            JsonRef::Array(Array::Slice(items)) => Value::Array(items.to_vec()),
            JsonRef::Object(object) => Value::Object(object.to_map()),
        }
    }
}

/// The members of an [`Object`]: see [`Object::members`].
pub enum Members<'d> {
    Tape(&'d Tape<'d>, tape::Members<'d>),
    Map(serde_json::map::Iter<'d>),
}

impl<'d> Iterator for Members<'d> {
    type Item = (&'d str, JsonRef<'d>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Members::Tape(tape, members) => members
                .next()
                .map(|slot| (tape.key(slot), JsonRef::of_slot(tape, slot))),
            Members::Map(members) => members
                .next()
                .map(|(key, value)| (key.as_str(), JsonRef::from(value))),
        }
    }
}

/// The items of an [`Array`].
pub enum Items<'d> {
    Tape(&'d Tape<'d>, tape::Children<'d>),
    Slice(std::slice::Iter<'d, Value>),
}

impl<'d> Iterator for Items<'d> {
    type Item = JsonRef<'d>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Items::Tape(tape, children) => children.next().map(|slot| JsonRef::of_slot(tape, slot)),
            Items::Slice(items) => items.next().map(JsonRef::from),
        }
    }
}

#[cfg(test)]
mod tests;
