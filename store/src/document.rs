//! The event as tantivy indexes it.
//!
//! tantivy's own document type copies every value into a compact buffer on the calling
//! thread, and its indexing threads decode that buffer again; in an instruction profile of
//! the store benchmark the two took about a tenth of indexing. [`EventDoc`] implements
//! tantivy's `Document` over the parsed record itself, so the indexing threads walk the tree
//! that parsing built. It owns the record's text, which the tree borrows from.

use tantivy::schema::document::{Document, ReferenceValue, ReferenceValueLeaf, Value};
use tantivy::schema::Field;

use vigil_event::{Event, Record};

use crate::record::RecordValue;

self_cell::self_cell!(
    /// A record's text and the tree parsed from it, whose strings borrow the text.
    pub(crate) struct ParsedRecord {
        owner: Box<str>,
        #[covariant]
        dependent: RecordValue,
    }
);

impl ParsedRecord {
    /// The record's tree when the text is a JSON object.
    pub(crate) fn object(text: &str) -> Option<ParsedRecord> {
        ParsedRecord::try_new(Box::from(text), |text| {
            match serde_json::from_str::<RecordValue>(text) {
                Ok(object @ RecordValue::Object(_)) => Ok(object),
                _ => Err(()),
            }
        })
        .ok()
    }

    /// The event's record as an object, as [`RecordValue::of_event`] presents it.
    pub(crate) fn of_event(event: &Event) -> Option<ParsedRecord> {
        match &event.record {
            Record::Json(raw) => ParsedRecord::object(raw.get()),
            // Text records are their extracted fields and the line, built from the event
            // rather than parsed from one text, so the tree owns its strings.
            Record::Text(_) => RecordValue::of_event(event)
                .map(|tree| ParsedRecord::new(Box::from(""), |_| tree.into_owned())),
        }
    }
}

/// A value of a single-valued field.
pub(crate) enum Leaf {
    Str(String),
    U64(u64),
    Date(tantivy::DateTime),
}

/// One event's fields, as tantivy indexes and stores them.
pub(crate) struct EventDoc {
    leaves: Vec<(Field, Leaf)>,
    record: Option<(Field, ParsedRecord)>,
}

impl EventDoc {
    pub(crate) fn with_capacity(leaves: usize) -> EventDoc {
        EventDoc {
            leaves: Vec::with_capacity(leaves),
            record: None,
        }
    }

    pub(crate) fn add(&mut self, field: Field, value: Leaf) {
        self.leaves.push((field, value));
    }

    pub(crate) fn set_record(&mut self, field: Field, record: ParsedRecord) {
        self.record = Some((field, record));
    }
}

impl Document for EventDoc {
    type Value<'a> = EventValue<'a>;
    type FieldsValuesIter<'a> = EventDocValues<'a>;

    fn iter_fields_and_values(&self) -> EventDocValues<'_> {
        EventDocValues {
            leaves: self.leaves.iter(),
            record: self
                .record
                .as_ref()
                .map(|(field, record)| (*field, record.borrow_dependent())),
        }
    }
}

pub(crate) struct EventDocValues<'a> {
    leaves: std::slice::Iter<'a, (Field, Leaf)>,
    record: Option<(Field, &'a RecordValue<'a>)>,
}

impl<'a> Iterator for EventDocValues<'a> {
    type Item = (Field, EventValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((field, leaf)) = self.leaves.next() {
            let value = match leaf {
                Leaf::Str(text) => EventValue::Str(text),
                Leaf::U64(n) => EventValue::U64(*n),
                Leaf::Date(time) => EventValue::Date(*time),
            };
            return Some((*field, value));
        }
        self.record
            .take()
            .map(|(field, record)| (field, EventValue::Record(record)))
    }
}

/// A value of an [`EventDoc`], borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EventValue<'a> {
    Str(&'a str),
    U64(u64),
    Date(tantivy::DateTime),
    Record(&'a RecordValue<'a>),
}

impl<'a> Value<'a> for EventValue<'a> {
    type ArrayIter = Items<'a>;
    type ObjectIter = Members<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match *self {
            EventValue::Str(text) => ReferenceValueLeaf::Str(text).into(),
            EventValue::U64(n) => ReferenceValueLeaf::U64(n).into(),
            EventValue::Date(time) => ReferenceValueLeaf::Date(time).into(),
            EventValue::Record(value) => match value {
                RecordValue::Null => ReferenceValueLeaf::Null.into(),
                RecordValue::Bool(b) => ReferenceValueLeaf::Bool(*b).into(),
                RecordValue::I64(i) => ReferenceValueLeaf::I64(*i).into(),
                RecordValue::U64(u) => ReferenceValueLeaf::U64(*u).into(),
                RecordValue::F64(f) => ReferenceValueLeaf::F64(*f).into(),
                RecordValue::Str(text) => ReferenceValueLeaf::Str(text.as_ref()).into(),
                RecordValue::Array(items) => ReferenceValue::Array(Items(items.iter())),
                RecordValue::Object(members) => ReferenceValue::Object(Members(members.iter())),
            },
        }
    }
}

/// Array items as tantivy walks them.
#[derive(Clone)]
pub(crate) struct Items<'a>(std::slice::Iter<'a, RecordValue<'a>>);

impl<'a> Iterator for Items<'a> {
    type Item = EventValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(EventValue::Record)
    }
}

/// Object members as tantivy walks them.
#[derive(Clone)]
pub(crate) struct Members<'a>(std::slice::Iter<'a, (std::borrow::Cow<'a, str>, RecordValue<'a>)>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, EventValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|(key, value)| (key.as_ref(), EventValue::Record(value)))
    }
}
