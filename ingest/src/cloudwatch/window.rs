//! The time windows a log group is read in, and which events of a window are new.
//!
//! Each poll reads a window per log group that ends `lag` before now and starts `overlap`
//! before the previous one ended; the ids seen at or after the next window's start are kept,
//! so the overlap's events are skipped when they come again.

use std::collections::HashMap;

use super::CloudWatchConfig;

/// Window timings in milliseconds, as the CloudWatch API counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WindowPolicy {
    pub(super) lag_ms: i64,
    pub(super) overlap_ms: i64,
    pub(super) start_lookback_ms: i64,
    pub(super) max_window_ms: i64,
}

impl WindowPolicy {
    pub(super) fn from_config(config: &CloudWatchConfig) -> Self {
        let ms = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX / 4);
        WindowPolicy {
            lag_ms: ms(config.lag_ms),
            overlap_ms: ms(config.overlap_ms),
            start_lookback_ms: ms(config.start_lookback_ms),
            max_window_ms: ms(config.max_window_ms).max(1),
        }
    }
}

/// A time range to search, both ends inclusive as `FilterLogEvents` treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
}

/// How far a log group has been read: what a checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct GroupProgress {
    /// The end of the last window whose events the bus acknowledged.
    pub(super) end_ms: Option<i64>,
    /// Ids of events at or after the next window's start, with their timestamps.
    pub(super) seen: HashMap<String, i64>,
}

impl GroupProgress {
    /// The next window to read at `now_ms`, or none while there is no new time to cover.
    pub(super) fn next_window(&self, now_ms: i64, policy: WindowPolicy) -> Option<Window> {
        let target_end = now_ms.saturating_sub(policy.lag_ms);
        match self.end_ms {
            Some(previous_end) => {
                let end = target_end.min(previous_end.saturating_add(policy.max_window_ms));
                // A clock that stepped back leaves nothing new to read yet.
                (end > previous_end).then(|| Window {
                    start_ms: previous_end.saturating_sub(policy.overlap_ms),
                    end_ms: end,
                })
            }
            None => {
                let start = target_end.saturating_sub(policy.start_lookback_ms);
                // Even an empty first window records where reading began.
                Some(Window {
                    start_ms: start,
                    end_ms: target_end.min(start.saturating_add(policy.max_window_ms)),
                })
            }
        }
    }
}

/// One window being read: which events are new, and the progress once it is done.
pub(super) struct WindowWalk {
    window: Window,
    overlap_ms: i64,
    /// Ids from the previous window's overlap and those read in this one.
    known: HashMap<String, i64>,
}

impl WindowWalk {
    pub(super) fn new(window: Window, progress: &GroupProgress, overlap_ms: i64) -> Self {
        WindowWalk {
            window,
            overlap_ms,
            known: progress.seen.clone(),
        }
    }

    /// True the first time an event id comes up.
    pub(super) fn admit(&mut self, id: &str, timestamp_ms: i64) -> bool {
        if self.known.contains_key(id) {
            return false;
        }
        self.known.insert(id.to_owned(), timestamp_ms);
        true
    }

    /// The progress after every admitted event was acknowledged.
    pub(super) fn finish(self) -> GroupProgress {
        let next_start = self.window.end_ms.saturating_sub(self.overlap_ms);
        let mut seen = self.known;
        seen.retain(|_, timestamp| *timestamp >= next_start);
        GroupProgress {
            end_ms: Some(self.window.end_ms),
            seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: WindowPolicy = WindowPolicy {
        lag_ms: 1_000,
        overlap_ms: 5_000,
        start_lookback_ms: 60_000,
        max_window_ms: 30_000,
    };

    #[test]
    fn first_window_starts_at_the_lookback_and_is_capped() {
        let window = GroupProgress::default()
            .next_window(1_000_000, POLICY)
            .unwrap();
        assert_eq!(
            window,
            Window {
                start_ms: 1_000_000 - 1_000 - 60_000,
                end_ms: 1_000_000 - 1_000 - 30_000,
            }
        );
        // With no lookback the first window is empty, but it fixes where reading starts.
        let none_back = WindowPolicy {
            start_lookback_ms: 0,
            ..POLICY
        };
        let window = GroupProgress::default()
            .next_window(1_000_000, none_back)
            .unwrap();
        assert_eq!(window.start_ms, window.end_ms);
    }

    #[test]
    fn windows_overlap_and_end_lag_before_now() {
        let progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let window = progress.next_window(110_000, POLICY).unwrap();
        assert_eq!(
            window,
            Window {
                start_ms: 95_000,
                end_ms: 109_000
            }
        );
        // Far behind: the new time covered is capped, the overlap is not.
        let window = progress.next_window(1_000_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (95_000, 130_000));
        // Nothing new, or a clock that went back: no window.
        assert_eq!(progress.next_window(101_000, POLICY), None);
        assert_eq!(progress.next_window(50_000, POLICY), None);
    }

    #[test]
    fn overlap_reads_are_deduplicated_and_only_the_overlap_is_kept() {
        let progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let window = progress.next_window(120_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (95_000, 119_000));
        let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
        assert!(walk.admit("a", 96_000));
        assert!(walk.admit("b", 114_000));
        assert!(walk.admit("c", 119_000));
        assert!(!walk.admit("a", 96_000), "an id repeated within a window");
        let progress = walk.finish();
        assert_eq!(progress.end_ms, Some(119_000));
        let mut kept: Vec<&str> = progress.seen.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"], "only ids the next window reads again");

        // The next window reads b and c again, plus a late event d, and a new event e.
        let window = progress.next_window(130_000, POLICY).unwrap();
        assert_eq!((window.start_ms, window.end_ms), (114_000, 129_000));
        let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
        assert!(!walk.admit("b", 114_000));
        assert!(!walk.admit("c", 119_000));
        assert!(walk.admit("d", 115_000));
        assert!(walk.admit("e", 126_000));
        let progress = walk.finish();
        let mut kept: Vec<&str> = progress.seen.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["e"]);
    }

    #[test]
    fn short_windows_keep_ids_from_earlier_windows_still_inside_the_overlap() {
        // Polls more often than the overlap: ids from two windows back are still read again.
        let mut progress = GroupProgress {
            end_ms: Some(100_000),
            seen: HashMap::new(),
        };
        let mut admitted = Vec::new();
        for (now, events) in [
            (102_000, vec![("x", 100_500)]),
            (103_000, vec![("x", 100_500), ("y", 101_500)]),
            (
                104_000,
                vec![("x", 100_500), ("y", 101_500), ("z", 102_900)],
            ),
        ] {
            let window = progress.next_window(now, POLICY).unwrap();
            let mut walk = WindowWalk::new(window, &progress, POLICY.overlap_ms);
            for (id, ts) in events {
                if walk.admit(id, ts) {
                    admitted.push(id);
                }
            }
            progress = walk.finish();
        }
        assert_eq!(admitted, ["x", "y", "z"]);
    }
}
