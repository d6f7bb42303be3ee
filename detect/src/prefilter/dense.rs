//! The prefilter's literals as a table of transitions of our own, stepped a byte at a time.
//!
//! `aho_corasick`'s NFA builds the automaton; this steps it through every state and column
//! once and keeps the result as a DFA, a table made for the one way the prefilter steps it,
//! which is most of what detection costs on sources found by literal:
//!
//! - **Columns per class of bytes that every state treats alike.** Upper- and lowercase letters
//!   share one (the automaton ignores ASCII case), and rows are not padded to a power of two:
//!   the SigmaHQ webserver rules' 155 literals (with the repository's pipelines) take 1,571
//!   states of 57 columns here, 0.36 MB, against 0.81 MB.
//! - **Match states numbered last,** so whether a step reached one is a single comparison, and
//!   the literals that end there are listed apart from the loop.
//! - **A state is the offset of its row,** so a step is one add and one load.
//!
//! Several texts are stepped as one, each followed by [`SEPARATOR`], which no literal holds:
//! the automaton is back at its start after it, so no literal is found across two texts, and
//! the many short values of a record make one text long enough to step in several places at
//! once.

use std::collections::HashMap;
use std::collections::VecDeque;

use aho_corasick::automaton::{Automaton as _, StateID};
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::Anchored;

/// Ends each text of a pass: literals are UTF-8, which never holds this byte.
pub(crate) const SEPARATOR: u8 = 0xff;

/// Texts at least this much longer than twice the overlap are stepped as two halves.
const SPLIT_TEXTS_FROM: usize = 64;

/// An automaton finding every occurrence of its literals, ignoring ASCII case.
#[derive(Debug)]
pub(crate) struct Literals {
    /// Each byte's column.
    classes: [u8; 256],
    /// Row after row, a column each; each entry is the next state's row offset.
    transitions: Box<[u32]>,
    start: u32,
    /// Row offsets from here on are match states.
    first_match: u32,
    /// Columns in a row.
    stride: u32,
    /// Per match state, in row order, the literals that end there.
    matches: Box<[Box<[u32]>]>,
    /// The length in bytes of the longest literal.
    longest: usize,
}

impl Literals {
    /// The automaton of `literals`, or `None` when `aho_corasick` cannot build an NFA of them
    /// (too many) or the table would not fit its offsets.
    pub(crate) fn new(literals: &[&str]) -> Option<Literals> {
        let nfa = NFA::builder()
            .ascii_case_insensitive(true)
            .build(literals)
            .ok()?;
        let start = nfa.start_state(Anchored::No).ok()?;
        // A byte no literal holds (in either case) takes every state where it takes the start
        // state, so all such bytes share a column; each other byte (both cases of a letter
        // together) gets its own. That may be finer than the fewest columns, never coarser.
        let mut classes = [0u8; 256];
        let mut representative = vec![SEPARATOR];
        for byte in literals.iter().flat_map(|literal| literal.bytes()) {
            let byte = byte.to_ascii_lowercase();
            if classes[usize::from(byte)] == 0 {
                classes[usize::from(byte)] = u8::try_from(representative.len()).ok()?;
                classes[usize::from(byte.to_ascii_uppercase())] = classes[usize::from(byte)];
                representative.push(byte);
            }
        }
        let stride = representative.len();
        // Every state a search can reach, in the order first reached, with its transitions by
        // column and the literals that end there. The SigmaHQ rules' largest plan (Windows
        // process creation, 7,510 literals) reaches 61,842 states.
        let mut index: HashMap<StateID, u32, foldhash::fast::RandomState> = HashMap::default();
        index.insert(start, 0);
        let mut states = vec![start];
        let mut next: Vec<u32> = Vec::new();
        let mut queue = VecDeque::from([start]);
        while let Some(state) = queue.pop_front() {
            for &byte in &representative {
                let target = nfa.next_state(Anchored::No, state, byte);
                let fresh = u32::try_from(states.len()).ok()?;
                next.push(*index.entry(target).or_insert_with(|| {
                    states.push(target);
                    queue.push_back(target);
                    fresh
                }));
            }
        }
        let ends: Vec<Box<[u32]>> = states
            .iter()
            .map(|&state| {
                if !nfa.is_match(state) {
                    return Box::default();
                }
                (0..nfa.match_len(state))
                    .map(|i| nfa.match_pattern(state, i).as_u32())
                    .collect()
            })
            .collect();
        // The NFA is no longer needed while the table is built.
        drop((nfa, index));
        // Match states last: a state's new number, then its row's offset.
        let is_match = |state: usize| !ends[state].is_empty();
        let order: Vec<usize> = (0..states.len())
            .filter(|&s| !is_match(s))
            .chain((0..states.len()).filter(|&s| is_match(s)))
            .collect();
        let mut number = vec![0; states.len()];
        for (new, &old) in order.iter().enumerate() {
            number[old] = new;
        }
        // The rows are moved into that order where they are, a cycle of the permutation at a
        // time, rather than copied into a second table: for the largest plans the table is
        // tens of megabytes.
        u32::try_from(states.len() * stride).ok()?;
        let mut transitions = next;
        let mut placed = vec![false; states.len()];
        let mut row = vec![0; stride];
        for first in 0..states.len() {
            if placed[first] {
                continue;
            }
            row.copy_from_slice(&transitions[first * stride..(first + 1) * stride]);
            let mut at = first;
            loop {
                placed[at] = true;
                let from = order[at];
                if from == first {
                    transitions[at * stride..(at + 1) * stride].copy_from_slice(&row);
                    break;
                }
                transitions.copy_within(from * stride..(from + 1) * stride, at * stride);
                at = from;
            }
        }
        for target in &mut transitions {
            // Fits: checked above.
            *target = (number[*target as usize] * stride) as u32;
        }
        let matching = order.iter().filter(|&&s| is_match(s)).count();
        let first_match = u32::try_from((states.len() - matching) * stride).ok()?;
        let mut ends = ends;
        let matches = order[states.len() - matching..]
            .iter()
            .map(|&old| std::mem::take(&mut ends[old]))
            .collect();
        Some(Literals {
            classes,
            transitions: transitions.into(),
            start: (number[0] * stride) as u32,
            first_match,
            stride: u32::try_from(stride).ok()?,
            matches,
            longest: literals.iter().map(|l| l.len()).max().unwrap_or(0),
        })
    }

    /// Calls `hit` with the id of every literal in `text`, overlapping ones included (some
    /// perhaps twice).
    ///
    /// Each step waits on the last one's load, so a long text is stepped in several parts side
    /// by side, one byte of each at a time, and the waits overlap. Each part but the first
    /// starts early by the longest literal's length but one, so a literal that ends in it is
    /// found whole there.
    #[inline]
    pub(crate) fn each_in(&self, text: &[u8], mut hit: impl FnMut(usize)) {
        let overlap = self.longest.saturating_sub(1);
        // Four parts, where the text is long enough, as the prefilter cuts its literals to 16
        // bytes (`scanned_part`): each part then steps 15 bytes twice, not 54 (the webserver
        // rules' longest literal is 55 bytes). Cut or not, four were slower than two while the
        // stepping loop held the call that reports matches (`step_to_match`).
        if text.len() >= 4 * overlap + 2 * SPLIT_TEXTS_FROM {
            self.in_parts::<4>(text, overlap, &mut hit);
        } else if text.len() >= 2 * overlap + SPLIT_TEXTS_FROM {
            self.in_parts::<2>(text, overlap, &mut hit);
        } else {
            self.in_parts::<1>(text, overlap, &mut hit);
        }
    }

    /// Steps `PARTS` parts of `text` side by side.
    #[inline(always)]
    fn in_parts<const PARTS: usize>(
        &self,
        text: &[u8],
        overlap: usize,
        hit: &mut impl FnMut(usize),
    ) {
        // Each part steps the same number of bytes, overlap included, and starts `overlap`
        // bytes before the one before it ends.
        let part = (text.len() + (PARTS - 1) * overlap).div_ceil(PARTS);
        let parts: [&[u8]; PARTS] = std::array::from_fn(|k| {
            let from = (k * part.saturating_sub(overlap)).min(text.len());
            &text[from..(from + part).min(text.len())]
        });
        let common = parts.iter().map(|part| part.len()).min().unwrap_or(0);
        let mut states = [self.start; PARTS];
        let mut at = 0;
        while at < common {
            at = self.step_to_match(&parts, &mut states, at);
            for state in &states {
                if *state >= self.first_match {
                    self.report(*state, hit);
                }
            }
        }
        for (state, part) in states.iter_mut().zip(&parts) {
            for &byte in &part[common..] {
                *state = self.step(*state, byte);
                if *state >= self.first_match {
                    self.report(*state, hit);
                }
            }
        }
    }

    /// Steps each of `heads` from `at`, side by side, until some part reaches a match state or
    /// the shortest ends, and returns where it stopped. Apart from its caller, which reports
    /// matches through a call: with no call in the loop, its states and pointers stay in
    /// registers rather than being saved around one and reloaded every step.
    #[inline(never)]
    fn step_to_match<const PARTS: usize>(
        &self,
        heads: &[&[u8]; PARTS],
        states: &mut [u32; PARTS],
        mut at: usize,
    ) -> usize {
        let common = heads.iter().map(|head| head.len()).min().unwrap_or(0);
        // Cut to one length, so that indexing them below `common` needs no check.
        let heads: [&[u8]; PARTS] = heads.map(|head| &head[..common]);
        let mut current = *states;
        while at < common {
            for (state, head) in current.iter_mut().zip(&heads) {
                *state = self.step(*state, head[at]);
            }
            at += 1;
            if current.iter().fold(0, |most, &state| most.max(state)) >= self.first_match {
                break;
            }
        }
        *states = current;
        at
    }

    #[inline(always)]
    fn step(&self, state: u32, byte: u8) -> u32 {
        self.transitions[(state + u32::from(self.classes[usize::from(byte)])) as usize]
    }

    /// Out of the stepping loop, so that the loop keeps its states in registers.
    #[inline(never)]
    fn report(&self, state: u32, hit: &mut dyn FnMut(usize)) {
        let at = ((state - self.first_match) / self.stride) as usize;
        for &literal in &self.matches[at] {
            hit(literal as usize);
        }
    }

    /// The size of the tables in bytes.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> usize {
        self.transitions.len() * 4 + self.matches.iter().map(|m| m.len() * 4 + 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every literal is found wherever it ends (near the ends, the middle and where the
    /// second half starts), ignoring ASCII case, and nothing else, as a naive search finds
    /// them; across a separator, nothing.
    #[test]
    fn finds_what_a_naive_search_finds() {
        let long = "ab".repeat(30);
        let literals = ["ab", "abcab", "bca", "aXc", "é!", &long];
        let automaton = Literals::new(&literals).unwrap();
        let found_in = |text: &[u8]| {
            let mut found = vec![false; literals.len()];
            automaton.each_in(text, |id| found[id] = true);
            found
        };
        let overlap = long.len() - 1;
        let two = 2 * overlap + SPLIT_TEXTS_FROM;
        let four = 4 * overlap + 2 * SPLIT_TEXTS_FROM;
        let lengths = (two - 2..two + 3)
            .chain(four - 2..four + 3)
            .chain([0, 1, 59, 60, 61, 300, 301, 1001]);
        for len in lengths {
            // Where the parts start and end, and where the overlaps start.
            let parts = [(four, 4), (two, 2)]
                .into_iter()
                .find(|&(from, _)| len >= from)
                .map_or(1, |(_, parts)| parts);
            let part = (len + (parts - 1) * overlap).div_ceil(parts);
            let mut edges = vec![0, len.saturating_sub(1)];
            for k in 0..parts {
                let from = k * part.saturating_sub(overlap);
                edges.extend([from, from + part, (from + part).saturating_sub(overlap)]);
            }
            let ends = (0..len)
                .filter(|&end| edges.iter().any(|&near| end.abs_diff(near) <= 3) || len < 64);
            for end in ends {
                for literal in literals {
                    let Some(at) = (end + 1).checked_sub(literal.len()) else {
                        continue;
                    };
                    let mut text = vec![b'z'; len];
                    text[at..=end].copy_from_slice(literal.to_ascii_uppercase().as_bytes());
                    let lower = text.to_ascii_lowercase();
                    let want: Vec<bool> = literals
                        .iter()
                        .map(|literal| {
                            let literal = literal.to_ascii_lowercase();
                            lower
                                .windows(literal.len())
                                .any(|w| w == literal.as_bytes())
                        })
                        .collect();
                    assert!(want.iter().any(|&w| w));
                    assert_eq!(
                        found_in(&text),
                        want,
                        "{len} bytes, {literal} ending at {end}"
                    );
                }
            }
        }
        let mut split = b"xxab".to_vec();
        split.push(SEPARATOR);
        split.extend_from_slice(b"cabx");
        assert_eq!(found_in(&split), [true, false, false, false, false, false]);
    }

    /// Texts dense with literals, overlapping and in several parts at once, give what a naive
    /// search finds: stepping resumes after each match where it stopped.
    #[test]
    fn texts_full_of_literals_find_each_one() {
        let literals = ["ab", "bab", "ca", "abcab", "cc", "aaaa"];
        let automaton = Literals::new(&literals).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in [10, 200, 450, 1001, 4000] {
            for _ in 0..20 {
                // Letters from a small alphabet, so that literals end almost everywhere; one
                // literal is placed at a random spot near the end, where parts finish alone.
                let mut text: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        b"abcdABz"[(seed % 7) as usize]
                    })
                    .collect();
                let which = (seed % literals.len() as u64) as usize;
                let at = len - literals[which].len() - (seed % 3) as usize;
                text[at..at + literals[which].len()].copy_from_slice(literals[which].as_bytes());
                let lower = text.to_ascii_lowercase();
                let mut want = vec![0usize; literals.len()];
                let mut found = vec![0usize; literals.len()];
                for (id, literal) in literals.iter().enumerate() {
                    want[id] = lower
                        .windows(literal.len())
                        .filter(|w| *w == literal.as_bytes())
                        .count();
                }
                automaton.each_in(&text, |id| found[id] += 1);
                for id in 0..literals.len() {
                    // Each occurrence is reported, some twice where parts overlap.
                    assert!(found[id] >= want[id], "{len}: {}", literals[id]);
                    assert_eq!(found[id] == 0, want[id] == 0, "{len}: {}", literals[id]);
                }
            }
        }
    }

    /// The table is smaller than the DFA it is copied from: letters of either case share a
    /// column, and rows are not padded.
    #[test]
    fn cases_share_columns() {
        let literals = ["select ", "union all", "/etc/passwd", "<script>", "${jndi:"];
        let automaton = Literals::new(&literals).unwrap();
        let distinct: std::collections::BTreeSet<u8> = literals
            .iter()
            .flat_map(|l| l.bytes().map(|b| b.to_ascii_lowercase()))
            .collect();
        // One column per distinct byte, and one for every other byte.
        assert_eq!(automaton.stride as usize, distinct.len() + 1);
        assert_eq!(
            automaton.classes[usize::from(b'S')],
            automaton.classes[usize::from(b's')]
        );
        let dfa = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(true)
            .build(literals)
            .unwrap();
        assert!(automaton.memory() < dfa.memory_usage());
    }
}
