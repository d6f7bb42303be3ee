//! Which event ids a partition may already hold, so that indexing deletes by id only when a
//! copy may exist.
//!
//! Upsert by id is a `delete_term` before each `add_document`. Tantivy applies every delete
//! to every segment it may touch (each new segment as it is flushed, each committed segment
//! at the next commit, each merge), so a delete per event makes indexing cost grow with the
//! number of segments. Almost every event is new; the filter answers "certainly new" for
//! those and the delete is skipped. A false positive only costs a needless delete, so the
//! filter may err that way but never the other: every id the partition holds, committed or
//! not, is in it.
//!
//! Every partition has one, and each event is checked against all of them: an id another
//! partition holds is a resend, which keeps the stored copy (see `EventIndex::first_copies`).
//! So the filter is blocked: the probes of one id all fall in one 64-byte block, one cache
//! line, and checking an id costs one memory read per partition rather than several.
//!
//! The filter is a chain of Bloom filters: when the newest is full, a twice larger one is
//! added, so it grows with the partition without ever rebuilding. It holds each id's tiebreak
//! (its first eight bytes), since that is all the term dictionary of the newest partition
//! layout keeps of an id; a tiebreak shared by two ids costs one needless delete. Ids are
//! BLAKE3 output already, so a tiebreak serves as the first hash.

use vigil_event::EventId;

use super::fields::tiebreak;

/// Bits per id in each layer; with [`HASHES`] probes in one block this gives about 1% false
/// positives (a little over the 0.8% of probes spread over the whole layer).
const BITS_PER_ID: usize = 10;
const HASHES: u64 = 7;
/// Ids the first layer holds before the next one is added.
const FIRST_CAPACITY: usize = 1 << 16;
/// Bits in a block: one 64-byte cache line.
const BLOCK_BITS: u64 = 512;

struct Layer {
    bits: Vec<u64>,
    /// The number of blocks less one; the number is a power of two.
    block_mask: u64,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn new(capacity: usize) -> Layer {
        let bits = (capacity * BITS_PER_ID)
            .next_power_of_two()
            .max(BLOCK_BITS as usize);
        Layer {
            bits: vec![0; bits / 64],
            block_mask: (bits as u64 / BLOCK_BITS) - 1,
            capacity,
            len: 0,
        }
    }

    /// The probe positions: a block chosen by the first hash, and nine bits of the second
    /// for each probe within it.
    fn positions(block_mask: u64, (h1, h2): (u64, u64)) -> impl Iterator<Item = u64> {
        let base = (h1 & block_mask) * BLOCK_BITS;
        (0..HASHES).map(move |i| base + ((h2 >> (9 * i)) & (BLOCK_BITS - 1)))
    }

    fn insert(&mut self, hashes: (u64, u64)) {
        for bit in Layer::positions(self.block_mask, hashes) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.len += 1;
    }

    fn contains(&self, hashes: (u64, u64)) -> bool {
        Layer::positions(self.block_mask, hashes)
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// The ids a partition may hold.
pub(crate) struct IdFilter {
    layers: Vec<Layer>,
}

fn hashes(tiebreak: u64) -> (u64, u64) {
    // The second hash is the first remixed (splitmix64's finalizer), so the bits that choose
    // positions within a block are independent of those that choose the block.
    let mut z = tiebreak;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (tiebreak, (z ^ (z >> 31)) | 1)
}

impl IdFilter {
    /// An empty filter sized for about `expected` ids in its first layer.
    pub(crate) fn with_capacity(expected: usize) -> IdFilter {
        IdFilter {
            layers: vec![Layer::new(expected.max(FIRST_CAPACITY))],
        }
    }

    pub(crate) fn insert(&mut self, id: &EventId) {
        self.insert_tiebreak(tiebreak(id));
    }

    pub(crate) fn insert_tiebreak(&mut self, tiebreak: u64) {
        let last = self.layers.last().expect("at least one layer");
        if last.len >= last.capacity {
            let capacity = last.capacity * 2;
            self.layers.push(Layer::new(capacity));
        }
        self.layers
            .last_mut()
            .expect("at least one layer")
            .insert(hashes(tiebreak));
    }

    /// False only when `id` was certainly never inserted.
    pub(crate) fn may_contain(&self, id: &EventId) -> bool {
        let hashes = hashes(tiebreak(id));
        self.layers.iter().any(|layer| layer.contains(hashes))
    }

    /// Memory the filter takes, in bytes.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EventId {
        EventId::derive("idfilter test", &[&n.to_le_bytes()])
    }

    #[test]
    fn every_inserted_id_is_found_across_growth() {
        let mut filter = IdFilter::with_capacity(0);
        let n = 3 * FIRST_CAPACITY as u64 + 17;
        for i in 0..n {
            filter.insert(&id(i));
        }
        assert!(filter.layers.len() >= 2, "the filter grew a layer");
        for i in 0..n {
            assert!(filter.may_contain(&id(i)), "id {i} was inserted");
        }
    }

    #[test]
    fn new_ids_are_mostly_recognised_as_new() {
        let mut filter = IdFilter::with_capacity(0);
        let n = 200_000u64;
        for i in 0..n {
            filter.insert(&id(i));
        }
        let false_positives = (n..2 * n).filter(|i| filter.may_contain(&id(*i))).count();
        let rate = false_positives as f64 / n as f64;
        // Each layer is under 1%; the chain of a few layers stays well under 3%.
        assert!(rate < 0.03, "false positive rate {rate}");
        assert!(
            filter.bytes() < 1 << 20,
            "{} bytes for {n} ids",
            filter.bytes()
        );
    }

    /// Blocked probes err a little more often than probes spread over the whole layer; a
    /// full layer still errs for about one id in a hundred.
    #[test]
    fn a_full_layer_errs_for_about_one_id_in_a_hundred() {
        let mut filter = IdFilter::with_capacity(FIRST_CAPACITY);
        let n = FIRST_CAPACITY as u64;
        for i in 0..n {
            filter.insert(&id(i));
        }
        assert_eq!(filter.layers.len(), 1);
        let tries = 20 * n;
        let false_positives = (n..n + tries)
            .filter(|i| filter.may_contain(&id(*i)))
            .count();
        let rate = false_positives as f64 / tries as f64;
        assert!(rate < 0.015, "false positive rate {rate}");
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let filter = IdFilter::with_capacity(10);
        assert!((0..1000).all(|i| !filter.may_contain(&id(i))));
    }
}
