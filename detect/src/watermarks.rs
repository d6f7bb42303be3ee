//! Per-stream watermarks: how far each input stream has got in event time.
//!
//! Sources deliver in roughly time order each, but not in step with each other: a CloudTrail
//! export may run hours ahead of a Flask log being replayed, or one Kafka partition may lag the
//! others. Judging every correlation window against the newest time seen anywhere would drop
//! the lagging source's inputs as late. So each stream has its own watermark, and a correlation
//! is judged against the streams that fed it (see [`crate::Detector`]).

use std::collections::HashMap;

use crate::correlation::state::Limits;

/// The watermark of each stream, and the newest time seen on any (the global watermark).
#[derive(Debug, Clone, Default)]
pub(crate) struct Streams {
    /// Looked up for every event: hashed with foldhash (seeded per map), as the rules' key
    /// tables are, where std's SipHash was about 1% of `vigil detect`. The names are the
    /// configured sources', at most [`Limits::max_streams`] of them.
    watermarks: HashMap<String, i64, foldhash::fast::RandomState>,
    global: Option<i64>,
    /// A lower bound of the smallest watermark in `watermarks` (or `i64::MAX` when empty), so
    /// that stale streams are looked for only when one may exist.
    lowest: i64,
}

/// What [`Streams::observe`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Whether any watermark moved (so windows may have expired).
    pub moved: bool,
    /// Streams forgotten: stale, or evicted to stay within [`Limits::max_streams`].
    pub dropped: Vec<String>,
}

impl Streams {
    pub fn new() -> Self {
        Streams {
            watermarks: HashMap::default(),
            global: None,
            lowest: i64::MAX,
        }
    }

    /// Restores streams from saved watermarks; those too stale to keep are left out.
    pub fn restore(
        global: Option<i64>,
        saved: impl IntoIterator<Item = (String, i64)>,
        limits: &Limits,
    ) -> Self {
        let mut streams = Streams::new();
        streams.global = global;
        for (name, watermark) in saved {
            streams.global = Some(streams.global.map_or(watermark, |g| g.max(watermark)));
            streams.lowest = streams.lowest.min(watermark);
            streams.watermarks.insert(name, watermark);
        }
        streams.forget_stale(limits, &mut Vec::new());
        streams
    }

    pub fn global(&self) -> Option<i64> {
        self.global
    }

    pub fn get(&self, stream: &str) -> Option<i64> {
        self.watermarks.get(stream).copied()
    }

    pub fn contains(&self, stream: &str) -> bool {
        self.watermarks.contains_key(stream)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.watermarks.iter().map(|(name, &w)| (name.as_str(), w))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.watermarks.len()
    }

    /// The watermark below which a stream counts as stale: the global one less the allowed lag.
    pub fn stale_before(&self, limits: &Limits) -> Option<i64> {
        self.global
            .map(|g| g.saturating_sub(limits.max_stream_lag.max(0)))
    }

    /// Moves `stream`'s watermark (and the global one) to `time` if later, creating the stream
    /// if new, then forgets streams that fell too far behind or exceed the limit.
    pub fn observe(&mut self, stream: &str, time: i64, limits: &Limits) -> Observed {
        let mut observed = Observed::default();
        match self.watermarks.get_mut(stream) {
            Some(watermark) => {
                if time > *watermark {
                    *watermark = time;
                    observed.moved = true;
                }
            }
            None => {
                self.watermarks.insert(stream.to_owned(), time);
                self.lowest = self.lowest.min(time);
                observed.moved = true;
            }
        }
        if self.global.is_none_or(|g| time > g) {
            self.global = Some(time);
            observed.moved = true;
        }
        if observed.moved {
            self.forget_stale(limits, &mut observed.dropped);
        }
        observed
    }

    /// Moves every stream's watermark, and the global one, to `now` if later.
    pub fn advance_all(&mut self, now: i64, limits: &Limits) -> Observed {
        let mut observed = Observed::default();
        for watermark in self.watermarks.values_mut() {
            if now > *watermark {
                *watermark = now;
                observed.moved = true;
            }
        }
        if self.global.is_none_or(|g| now > g) {
            self.global = Some(now);
            observed.moved = true;
        }
        if observed.moved {
            self.lowest = self.watermarks.values().copied().min().unwrap_or(i64::MAX);
            self.forget_stale(limits, &mut observed.dropped);
        }
        observed
    }

    fn forget_stale(&mut self, limits: &Limits, dropped: &mut Vec<String>) {
        let stale_before = self.stale_before(limits).unwrap_or(i64::MIN);
        if self.lowest < stale_before {
            self.watermarks.retain(|name, &mut watermark| {
                let keep = watermark >= stale_before;
                if !keep {
                    dropped.push(name.clone());
                }
                keep
            });
            self.lowest = self.watermarks.values().copied().min().unwrap_or(i64::MAX);
        }
        if self.watermarks.len() > limits.max_streams {
            // The streams furthest behind go first (ties by name, to be deterministic). Usually
            // one; many only when restoring under a smaller limit.
            let mut order: Vec<(i64, String)> = self
                .watermarks
                .iter()
                .map(|(name, &watermark)| (watermark, name.clone()))
                .collect();
            order.sort_unstable();
            let excess = self.watermarks.len() - limits.max_streams;
            for (_, name) in order.into_iter().take(excess) {
                self.watermarks.remove(&name);
                dropped.push(name);
            }
            self.lowest = self.watermarks.values().copied().min().unwrap_or(i64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_streams: usize, max_stream_lag: i64) -> Limits {
        Limits {
            max_streams,
            max_stream_lag,
            ..Limits::default()
        }
    }

    #[test]
    fn each_stream_keeps_its_own_watermark() {
        let limits = limits(10, 1_000_000);
        let mut streams = Streams::new();
        assert!(streams.observe("a", 100, &limits).moved);
        assert!(streams.observe("b", 50, &limits).moved);
        assert!(!streams.observe("a", 90, &limits).moved);
        assert_eq!(streams.get("a"), Some(100));
        assert_eq!(streams.get("b"), Some(50));
        assert_eq!(streams.global(), Some(100));
    }

    #[test]
    fn stale_streams_are_forgotten() {
        let limits = limits(10, 100);
        let mut streams = Streams::new();
        streams.observe("slow", 0, &limits);
        streams.observe("fast", 100, &limits);
        assert!(streams.contains("slow"), "exactly the allowed lag behind");
        let observed = streams.observe("fast", 101, &limits);
        assert_eq!(observed.dropped, vec!["slow".to_owned()]);
        assert!(!streams.contains("slow"));
        assert_eq!(streams.len(), 1);
    }

    #[test]
    fn the_stream_furthest_behind_is_evicted_beyond_the_limit() {
        let limits = limits(2, i64::MAX);
        let mut streams = Streams::new();
        streams.observe("a", 10, &limits);
        streams.observe("b", 5, &limits);
        let observed = streams.observe("c", 7, &limits);
        assert_eq!(observed.dropped, vec!["b".to_owned()]);
        assert_eq!(streams.len(), 2);
        assert!(streams.contains("a") && streams.contains("c"));
    }

    #[test]
    fn advancing_all_moves_every_stream() {
        let limits = limits(10, 1_000);
        let mut streams = Streams::new();
        streams.observe("a", 10, &limits);
        streams.observe("b", 20, &limits);
        assert!(streams.advance_all(500, &limits).moved);
        assert_eq!(streams.get("a"), Some(500));
        assert_eq!(streams.get("b"), Some(500));
        assert!(!streams.advance_all(400, &limits).moved);
    }
}
