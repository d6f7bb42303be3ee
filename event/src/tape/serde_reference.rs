//! The tape as `serde_json`'s deserializer builds it, through a visitor: what the tape's own
//! reader is held to. The tape was built this way until the reader replaced it for speed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::{Node, Span, Tape, UNESCAPED};

/// `text` as a tape, if `serde_json` accepts it as one object.
pub(super) fn parse(text: &str) -> Option<Tape<'_>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let mut tape = Tape {
        text,
        unescaped: String::new(),
        slots: Vec::new(),
        members: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let built = Build {
        tape: &mut tape,
        key: Span::EMPTY,
    }
    .deserialize(&mut deserializer);
    built.and_then(|()| deserializer.end()).ok()?;
    Some(tape)
}

/// Adds one value, under `key`, to the tape, as `serde_json` hands it over.
struct Build<'t, 'a> {
    tape: &'t mut Tape<'a>,
    key: Span,
}

/// Keeps `unescaped`, a key or string that held an escape, as the reader does: its span.
fn keep_unescaped(tape: &mut Tape, unescaped: &str) -> Span {
    let start = tape.unescaped.len();
    tape.unescaped.push_str(unescaped);
    Span {
        start: start as u32,
        len: unescaped.len() as u32 | UNESCAPED,
    }
}

/// Where `text`, which `serde_json` handed over, is: borrowed from the record's text, or kept
/// among the tape's unescaped strings.
fn span<'a>(tape: &mut Tape<'a>, text: Cow<'a, str>) -> Span {
    match text {
        Cow::Borrowed(borrowed) => {
            let start = borrowed.as_ptr() as usize - tape.text.as_ptr() as usize;
            Span::in_text(start, borrowed.len())
        }
        Cow::Owned(owned) => keep_unescaped(tape, &owned),
    }
}

impl<'de> DeserializeSeed<'de> for Build<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.tape.push(self.key, Node::Null);
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.tape.push(self.key, Node::Bool(b));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.tape.push(self.key, Node::Number(n.into()));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.tape.push(self.key, Node::Number(n.into()));
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        // As serde_json's own `Value` reads it; its parser never hands over a non-finite one.
        let node = Number::from_f64(n).map_or(Node::Null, Node::Number);
        self.tape.push(self.key, node);
        Ok(())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<(), E> {
        let s = span(self.tape, Cow::Borrowed(s));
        self.tape.push(self.key, Node::String(s));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        let s = keep_unescaped(self.tape, s);
        self.tape.push(self.key, Node::String(s));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let at = self.tape.slots.len();
        self.tape.push(self.key, Node::Array { end: 0 });
        while items
            .next_element_seed(Build {
                tape: &mut *self.tape,
                key: Span::EMPTY,
            })?
            .is_some()
        {}
        let end = self.tape.slots.len() as u32;
        self.tape.slots[at].node = Node::Array { end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let at = self.tape.slots.len();
        self.tape.push(self.key, Node::open_object());
        let (mut len, mut dotted) = (0, false);
        while let Some(key) = members.next_key_seed(Key)? {
            let key = span(self.tape, key);
            dotted |= self.tape.bytes(key).contains(&b'.');
            members.next_value_seed(Build {
                tape: &mut *self.tape,
                key,
            })?;
            len += 1;
        }
        self.tape.close_object(at as u32, len, dotted);
        Ok(())
    }
}

/// An object's key, borrowed from the text unless it holds an escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}
