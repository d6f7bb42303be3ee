//! The keys of one field and their ids, looked up by a value in any ASCII case without
//! copying it.
//!
//! Key tables hold values folded (see [`super::keys::fold`]), and event values are mostly
//! written with capitals (`DescribeInstances`), so a lookup through a `HashMap` first copied
//! each value lowercased: about a quarter of detecting a CloudTrail event. Here the hash folds
//! ASCII letters as it reads, eight bytes at a time, and the key found is compared with
//! [`str::eq_ignore_ascii_case`]. A value outside ASCII is folded as before (a few characters
//! lowercase to ASCII ones), and then looked up the same way.
//!
//! The table is open addressing with linear probing, at most half full. Only rules add keys;
//! events only look them up, and the hash's seed is random per process, so a sender can
//! neither grow the table nor aim values at one long run of it.
//!
//! A value of a length no key has is turned away before it is hashed. CloudTrail's
//! `userAgent` is keyed by one rule's ten-byte value, and every record's agent (100 to 260
//! bytes) was hashed whole to find it missing.

use std::hash::BuildHasher as _;

/// The keys of one field, each with the id it was given.
#[derive(Debug)]
pub(crate) struct KeyTable {
    /// Per slot, the position in `entries` of the key there plus one; zero where empty. Its
    /// length is a power of two.
    slots: Box<[u32]>,
    /// The keys (folded) and their ids.
    entries: Vec<(Box<str>, u32)>,
    /// Bit `n` is set when some key is `n` bytes long; bit 127 stands for every length from
    /// 127 on.
    lengths: u128,
    seed: u64,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            slots: vec![0; 8].into_boxed_slice(),
            entries: Vec::new(),
            lengths: 0,
            seed: foldhash::fast::RandomState::default().hash_one(0x5eed_u64),
        }
    }
}

impl KeyTable {
    /// The id of `key`, which comes folded; if the table lacks it, it is added with the id
    /// `new_id` gives.
    pub fn entry(&mut self, key: &str, new_id: impl FnOnce() -> u32) -> u32 {
        if let Some(id) = self.find(key) {
            return id;
        }
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            let entries = std::mem::take(&mut self.entries);
            self.slots = vec![0; self.slots.len() * 2].into_boxed_slice();
            for (key, id) in entries {
                self.insert(key, id);
            }
        }
        let id = new_id();
        self.insert(key.into(), id);
        id
    }

    fn insert(&mut self, key: Box<str>, id: u32) {
        let mask = self.slots.len() - 1;
        let mut slot = hash(key.as_bytes(), self.seed) as usize & mask;
        while self.slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        self.lengths |= length_bit(key.len());
        self.entries.push((key, id));
        self.slots[slot] = self.entries.len() as u32;
    }

    /// The id of the key `text` folds to, if the table holds it. `buffer` takes the folded
    /// text of a value outside ASCII.
    #[inline]
    pub fn get(&self, text: &str, buffer: &mut String) -> Option<u32> {
        if text.is_ascii() {
            self.find(text)
        } else {
            self.find(super::keys::fold_into(text, buffer))
        }
    }

    /// The id of the key equal to `text` but for ASCII case.
    fn find(&self, text: &str) -> Option<u32> {
        // Folding ASCII keeps a text's length, and `get` hands other texts over folded.
        if self.lengths & length_bit(text.len()) == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = hash(text.as_bytes(), self.seed) as usize & mask;
        loop {
            let position = self.slots[slot];
            if position == 0 {
                return None;
            }
            let (key, id) = &self.entries[position as usize - 1];
            if key.eq_ignore_ascii_case(text) {
                return Some(*id);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// The bit of [`KeyTable::lengths`] for a text `len` bytes long.
fn length_bit(len: usize) -> u128 {
    1 << len.min(127)
}

/// A hash of `bytes` with ASCII letters folded to lowercase, so that texts equal but for ASCII
/// case hash alike.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |state: u64, word: u64| (state ^ lowercase(word)).wrapping_mul(MULTIPLIER);
    let mut state = seed ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        state = mix(
            state,
            u64::from_le_bytes(word.try_into().expect("eight bytes")),
        );
    }
    // Byte by byte, so the tail is no call to `memcpy`.
    let tail = words
        .remainder()
        .iter()
        .rev()
        .fold(0u64, |tail, &byte| tail << 8 | u64::from(byte));
    state = mix(state, tail);
    state ^ (state >> 29)
}

/// `word` with the bytes that are ASCII capitals lowered; other bytes, non-ASCII ones
/// included, as they are.
#[inline]
fn lowercase(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Each byte's low seven bits, offset so its high bit says `>= 'A'`, and again `> 'Z'`;
    // neither sum carries into the next byte.
    let low = word & !HIGHS;
    let from_a = low.wrapping_add(ONES * u64::from(0x80 - b'A'));
    let past_z = low.wrapping_add(ONES * u64::from(0x80 - b'Z' - 1));
    let capitals = from_a & !past_z & !word & HIGHS;
    word | (capitals >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_lowers_exactly_the_ascii_capitals_of_a_word() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut bytes = *b"aZ@[`{\xc3\x80";
                bytes[at] = byte;
                let expected = u64::from_le_bytes(bytes.map(|b| b.to_ascii_lowercase()));
                assert_eq!(lowercase(u64::from_le_bytes(bytes)), expected, "{bytes:?}");
            }
        }
    }

    #[test]
    fn values_are_found_in_any_ascii_case_and_others_are_not() {
        let mut table = KeyTable::default();
        let keys: Vec<String> = (0..100).map(|i| format!("describeinstances{i}")).collect();
        let mut next = 0;
        for key in keys
            .iter()
            .chain(["kill", "école", "deletetrail"].map(String::from).iter())
        {
            table.entry(key, || {
                next += 1;
                next
            });
        }
        // Added again, a key keeps its id.
        assert_eq!(table.entry("kill", || unreachable!()), 101);
        let mut buffer = String::new();
        let mut get = |text: &str| table.get(text, &mut buffer);
        assert_eq!(get("DescribeInstances7"), Some(8));
        assert_eq!(get("DESCRIBEINSTANCES99"), Some(100));
        assert_eq!(get("DeleteTrail"), Some(103));
        assert_eq!(get("\u{212a}ILL"), Some(101));
        assert_eq!(get("ÉCOLE"), Some(102));
        assert_eq!(get("describeinstances"), None);
        assert_eq!(get("describeinstances100"), None);
        assert_eq!(get("DeleteTrai"), None);
        assert_eq!(get(""), None);
    }

    /// Keys past 127 bytes share one length bit, so each is still found; a value of a length
    /// no key has is not, and a value is measured as it folds.
    #[test]
    fn keys_of_any_length_are_found_and_values_of_other_lengths_are_not() {
        let mut table = KeyTable::default();
        let lengths = [1, 10, 126, 127, 128, 260];
        for (id, len) in lengths.iter().enumerate() {
            table.entry(&"k".repeat(*len), || id as u32);
        }
        let mut buffer = String::new();
        for (id, len) in lengths.iter().enumerate() {
            assert_eq!(
                table.get(&"K".repeat(*len), &mut buffer),
                Some(id as u32),
                "{len}"
            );
        }
        for len in [0, 2, 9, 11, 125, 129, 259, 261] {
            assert_eq!(table.get(&"k".repeat(len), &mut buffer), None, "{len}");
        }
        // The Kelvin sign is three bytes, and lowercases to the one-byte key.
        assert_eq!(table.get("\u{212a}", &mut buffer), Some(0));
    }
}
