//! The tape: a parsed record's values in one vector, containers followed by their contents.
//! [`crate::Document`] reads it through its views; this module knows nothing of them, so that
//! the record parser's fast path (`parse_object`, in the `json` module) can build one too.
//! [`read`] builds it from a record's text.

use serde_json::{Map, Number, Value};

mod read;
#[cfg(test)]
mod serde_reference;
#[cfg(test)]
mod tests;

/// Objects with more members than this have their member list sorted by key, for binary search;
/// smaller ones are scanned, which is faster at their size. Sorting keeps a record with
/// thousands of keys from costing a scan of them all for each field a rule names. At 32, a
/// CloudTrail record's top level (18 to 20 members) is scanned: sorting it cost more than the
/// dozen lookups a record gets.
const SCANNED_MEMBERS: usize = 32;

/// A parsed JSON object, laid out flat: see [`crate::Document`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tape<'a> {
    /// The record's text, which keys and strings without escapes are read from.
    text: &'a str,
    /// The keys and strings that held escapes, unescaped, one after another.
    unescaped: String,
    slots: Vec<Slot>,
    /// For each object, the slot indices of its members: in record order for a scanned object,
    /// and for a larger one ordered by key, and by position among equal keys. A list rather
    /// than following each member to the next lets a lookup read the members' keys without
    /// waiting on the slots between them.
    members: Vec<u32>,
}

/// The most slots a tape's vectors may hold to be reused: about 3 MB, where a CloudTrail
/// record takes about 60 slots and a record of the longest line ingest takes (1 MiB) up to
/// half a million.
const MAX_KEPT_SLOTS: usize = 1 << 16;

/// The vectors of a tape done with, kept to parse the next record into
/// ([`crate::Document::parse_reusing`]); what they held is cleared before they are reused.
#[derive(Debug, Default)]
pub struct TapeBuffers {
    slots: Vec<Slot>,
    members: Vec<u32>,
    unescaped: String,
}

/// A slot is plain numbers, with its key and string as spans of text rather than `Cow`s: the
/// reader hands a span over in a register, where a `Cow` went through the stack and stalled
/// the push that read it back.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    /// The member's key; empty for an array item and the root.
    key: Span,
    /// The key's [`fingerprint`]: lookups compare it before the key's bytes.
    print: u64,
    node: Node,
}

/// Where a key's or a string's text is: `len` bytes from `start` in the record's text, or in
/// [`Tape::unescaped`] if the high bit of `len` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

const UNESCAPED: u32 = 1 << 31;

impl Span {
    const EMPTY: Span = Span { start: 0, len: 0 };

    /// `len` bytes from `start` of the record's text.
    fn in_text(start: usize, len: usize) -> Span {
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    /// Whether the span is in the record's text, not in [`Tape::unescaped`].
    fn is_in_text(self) -> bool {
        self.len & UNESCAPED == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(Span),
    /// `end` is the index just past the array's last descendant.
    Array {
        end: u32,
    },
    /// `end` as for arrays; the list of its `len` members starts at `index` in
    /// [`Tape::members`]. `keys` has the [`key_bit`] of each member's key set, so most lookups
    /// of a key the object lacks end there. `dotted` is whether some member's key holds a dot.
    Object {
        end: u32,
        len: u32,
        index: u32,
        keys: u64,
        dotted: bool,
    },
}

impl Node {
    /// An object whose members are still to come: [`Tape::close_object`] fills it in.
    fn open_object() -> Self {
        Node::Object {
            end: 0,
            len: 0,
            index: 0,
            keys: 0,
            dotted: false,
        }
    }
}

impl<'a> Tape<'a> {
    /// `text` as a tape, if it is one JSON object that the tape's reader takes (all but
    /// the rarest that `serde_json` accepts; see [`read`]). `None` otherwise, for the caller to
    /// ask the tolerant parser, whose verdict on such a text is the final one.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        Self::parse_into(text, TapeBuffers::default())
    }

    /// [`Tape::parse`] into the vectors of a tape done with, which keep their capacity: a
    /// stream of records then allocates only while its records grow.
    pub(crate) fn parse_into(text: &'a str, buffers: TapeBuffers) -> Option<Self> {
        // Slot indices and spans are u32, with a span's high bit telling where it is: each slot
        // takes at least a byte of text, and unescaping never lengthens a string.
        if !text.trim_start().starts_with('{') || text.len() >= UNESCAPED as usize {
            return None;
        }
        let TapeBuffers {
            mut slots,
            mut members,
            mut unescaped,
        } = buffers;
        slots.clear();
        members.clear();
        unescaped.clear();
        // About one slot per 30 bytes of a CloudTrail or Kubernetes audit record.
        slots.reserve(text.len() / 24 + 4);
        members.reserve(text.len() / 24 + 4);
        let mut tape = Tape {
            text,
            unescaped,
            slots,
            members,
        };
        read::read_object(&mut tape, text)?;
        Some(tape)
    }

    /// The tape's vectors, for [`Tape::parse_into`] to reuse; none for a tape of more than
    /// [`MAX_KEPT_SLOTS`], so that one outsized record does not hold its memory for the rest
    /// of a stream.
    pub(crate) fn into_buffers(self) -> TapeBuffers {
        if self.slots.capacity() > MAX_KEPT_SLOTS {
            return TapeBuffers::default();
        }
        TapeBuffers {
            slots: self.slots,
            members: self.members,
            unescaped: self.unescaped,
        }
    }

    /// The value of the slot at `at`. Inlined across crates, as the prefilter reads every slot
    /// of a record through it (`Object::for_each_tape_scalar`).
    #[inline]
    pub(crate) fn value(&self, at: u32) -> SlotValue<'_> {
        match &self.slots[at as usize].node {
            Node::Null => SlotValue::Null,
            Node::Bool(b) => SlotValue::Bool(*b),
            Node::Number(n) => SlotValue::Number(n),
            Node::String(s) => SlotValue::String(self.text(*s)),
            Node::Array { .. } => SlotValue::Array,
            Node::Object { .. } => SlotValue::Object,
        }
    }

    /// The whole object as a `serde_json` map: a repeated key keeps its last value.
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.object_map(0)
    }

    /// The object at `at` as a `serde_json` map: a repeated key keeps its last value.
    pub(crate) fn object_map(&self, at: u32) -> Map<String, Value> {
        self.children(at)
            .map(|slot| (self.key(slot).to_owned(), self.to_value(slot)))
            .collect()
    }

    /// The value at `at` as a `serde_json` value.
    pub(crate) fn to_value(&self, at: u32) -> Value {
        match self.value(at) {
            SlotValue::Null => Value::Null,
            SlotValue::Bool(b) => Value::Bool(b),
            SlotValue::Number(n) => Value::Number(n.clone()),
            SlotValue::String(s) => Value::String(s.to_owned()),
            SlotValue::Array => {
                Value::Array(self.children(at).map(|slot| self.to_value(slot)).collect())
            }
            SlotValue::Object => Value::Object(self.object_map(at)),
        }
    }

    /// The text a span is in, and where in it.
    #[inline]
    fn source(&self, span: Span) -> (&str, std::ops::Range<usize>) {
        let (start, len) = (span.start as usize, (span.len & !UNESCAPED) as usize);
        let source = if span.is_in_text() {
            self.text
        } else {
            &self.unescaped
        };
        (source, start..start + len)
    }

    /// The text a span covers.
    #[inline]
    fn text(&self, span: Span) -> &str {
        let (source, range) = self.source(span);
        &source[range]
    }

    /// The bytes a span covers: what a key's fingerprint is taken of, without the checks of
    /// character boundaries that cutting a `str` makes (the span is the reader's own).
    fn bytes(&self, span: Span) -> &[u8] {
        let (source, range) = self.source(span);
        &source.as_bytes()[range]
    }

    /// The key at `at` with its fingerprint, which orders a sorted member list before the key.
    fn ordered_key(&self, at: u32) -> (u64, &str) {
        let slot = &self.slots[at as usize];
        (slot.print, self.text(slot.key))
    }

    /// Whether the slot at `at` holds `key`, whose fingerprint is `print`. Always inlined: a
    /// lookup's scan calls it for each member, and as a call it cost more than comparing the
    /// key inline saved.
    #[inline(always)]
    fn holds(&self, at: u32, print: u64, key: &str) -> bool {
        let slot = &self.slots[at as usize];
        slot.print == print && same_bytes(self.bytes(slot.key), key.as_bytes())
    }

    pub(crate) fn key(&self, at: u32) -> &str {
        self.text(self.slots[at as usize].key)
    }

    /// The slot just past the value at `at` and its contents: its next sibling, if any.
    fn after(&self, at: u32) -> u32 {
        match self.slots[at as usize].node {
            Node::Array { end } | Node::Object { end, .. } => end,
            _ => at + 1,
        }
    }

    /// The slots of everything the container at `at` holds, at any depth, in record order.
    pub(crate) fn descendants(&self, at: u32) -> std::ops::Range<u32> {
        at + 1..self.after(at)
    }

    /// The slots of the container at `at`'s direct contents.
    pub(crate) fn children(&self, at: u32) -> Children<'_> {
        let end = self.after(at);
        Children {
            tape: self,
            next: at + 1,
            end,
        }
    }

    /// The slot of `key`'s value in the object at `at`: the last where the key repeats.
    pub(crate) fn get(&self, at: u32, key: &str) -> Option<u32> {
        let Node::Object {
            len, index, keys, ..
        } = self.slots[at as usize].node
        else {
            return None;
        };
        let members = &self.members[index as usize..(index + len) as usize];
        let print = fingerprint(key.as_bytes());
        if len as usize > SCANNED_MEMBERS {
            // Past every member whose key sorts at or before `key`; the one before that is the
            // key's last occurrence, if the key is there.
            let past = members.partition_point(|&slot| self.ordered_key(slot) <= (print, key));
            return past
                .checked_sub(1)
                .map(|found| members[found])
                .filter(|&slot| self.holds(slot, print, key));
        }
        if keys & key_bit(print) == 0 {
            return None;
        }
        members
            .iter()
            .rev()
            .copied()
            .find(|&slot| self.holds(slot, print, key))
    }

    /// Whether some member of the object at `at` has a key with a dot in it: if none has, a
    /// dotted name can only be a path through nested objects, and a lookup of the whole name
    /// (or of any part with a dot) would find nothing.
    pub(crate) fn keys_hold_dots(&self, at: u32) -> bool {
        match self.slots[at as usize].node {
            Node::Object { dotted, .. } => dotted,
            // Not an object: the answer that never skips a lookup.
            _ => true,
        }
    }

    /// Whether a later member of the object at `at` has the same key as the member at `slot`.
    fn shadowed(&self, at: u32, slot: u32) -> bool {
        self.get(at, self.key(slot)) != Some(slot)
    }

    pub(crate) fn members(&self, at: u32) -> Members<'_> {
        Members {
            object: at,
            children: self.children(at),
            shared_bits: self.shared_key_bits(at),
        }
    }

    /// The [`key_bit`]s that more than one member of the object at `at` sets. A member whose
    /// bit is not among them has a key no other member has, so no later member shadows it:
    /// iterating members then asks no lookup for most of them, where asking one for each cost
    /// a scan of the members per member.
    fn shared_key_bits(&self, at: u32) -> u64 {
        let Node::Object { len, index, .. } = self.slots[at as usize].node else {
            return 0;
        };
        let (mut once, mut twice) = (0u64, 0u64);
        for &member in &self.members[index as usize..(index + len) as usize] {
            let bit = key_bit(self.slots[member as usize].print);
            twice |= once & bit;
            once |= bit;
        }
        twice
    }

    /// Closes the object at `at`, of `len` members, once they are on the tape: lists them, in
    /// key order if there are many. `dotted` says whether some member's key holds a dot.
    fn close_object(&mut self, at: u32, len: u32, dotted: bool) {
        let end = self.slots.len() as u32;
        let index = self.members.len() as u32;
        let mut keys = 0;
        let mut member = at + 1;
        while member < end {
            self.members.push(member);
            keys |= key_bit(self.slots[member as usize].print);
            member = self.after(member);
        }
        if len as usize > SCANNED_MEMBERS {
            let mut members = std::mem::take(&mut self.members);
            // Stable, so equal keys stay in record order and the last of them is the value.
            members[index as usize..]
                .sort_by(|&a, &b| self.ordered_key(a).cmp(&self.ordered_key(b)));
            self.members = members;
        }
        self.slots[at as usize].node = Node::Object {
            end,
            len,
            index,
            keys,
            dotted,
        };
    }

    #[inline]
    fn push(&mut self, key: Span, node: Node) {
        let print = fingerprint(self.bytes(key));
        self.slots.push(Slot { key, print, node });
    }
}

/// A few bytes' summary of a key: equal keys have equal prints, and most different keys of a
/// record (which differ in length, or in their first or last eight bytes) different ones, so a
/// lookup compares words and only rarely bytes. Keys alike at both ends merely cost a compare
/// of their bytes, as every key did before.
///
/// Every read is of a fixed size, so none becomes a call to `memcpy` (a copy of a key's
/// variable length into a word was about 1.5% of `vigil detect`).
fn fingerprint(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let (head, tail) = if len >= 8 {
        (word::<8>(bytes, 0), word::<8>(bytes, len - 8))
    } else if len >= 4 {
        // Two reads of four that overlap hold every byte of a key of four to seven.
        (word::<4>(bytes, 0) | word::<4>(bytes, len - 4) << 32, 0)
    } else {
        let byte = |at: usize| bytes.get(at).copied().map_or(0, u64::from);
        (byte(0) | byte(1) << 8 | byte(2) << 16, 0)
    };
    (head ^ tail.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64
}

/// Whether two keys are the same bytes, compared a word or two at a time where they are short
/// (most keys are): `bcmp`, called for each key a lookup found, was 4% of parsing and matching a
/// CloudTrail record, of which matching is about two fifths.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => {
            word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, len - 4) == word::<4>(b, len - 4)
        }
        8..=16 => {
            word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, len - 8) == word::<8>(b, len - 8)
        }
        _ => a == b,
    }
}

/// The `N` bytes of `bytes` from `at` (which holds that many), little-endian.
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer[..N].copy_from_slice(&bytes[at..at + N]);
    u64::from_le_bytes(buffer)
}

/// The bit a key whose fingerprint is `print` sets in its object's `keys`: the print's top
/// six bits, which its multiplication mixes best.
fn key_bit(print: u64) -> u64 {
    1 << (print >> 58)
}

/// A slot's value, without its contents: [`Tape::children`] has those.
pub(crate) enum SlotValue<'d> {
    Null,
    Bool(bool),
    Number(&'d Number),
    String(&'d str),
    Array,
    Object,
}

/// The slots of a tape's container's direct contents.
pub struct Children<'d> {
    tape: &'d Tape<'d>,
    next: u32,
    end: u32,
}

impl Iterator for Children<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let at = self.next;
        self.next = self.tape.after(at);
        Some(at)
    }
}

/// The slots of a tape's object's members, each key once, with its last value.
pub struct Members<'d> {
    object: u32,
    children: Children<'d>,
    /// See [`Tape::shared_key_bits`].
    shared_bits: u64,
}

impl Iterator for Members<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<Self::Item> {
        let tape = self.children.tape;
        let (object, shared_bits) = (self.object, self.shared_bits);
        self.children.by_ref().find(|&slot| {
            key_bit(tape.slots[slot as usize].print) & shared_bits == 0
                || !tape.shadowed(object, slot)
        })
    }
}
