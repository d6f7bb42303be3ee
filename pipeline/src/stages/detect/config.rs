//! The `[detect]` section: how late events may arrive for the live correlation windows, how
//! many groups each correlation keeps, and whether the rule files are watched for changes.

use serde::{Deserialize, Serialize};
use vigil_detect::Limits;

/// The `[detect]` settings: how late events may arrive for the live correlation windows, and
/// how many groups each correlation keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// How far, in milliseconds, one source's events may lag behind the newest event of any
    /// source and still be correlated in the live windows. An event further behind (or older
    /// than its own source's newest event by more than a correlation's timespan) is late: it
    /// is counted in `vigil_detect_late_events_total{source}`, rules still match it, and it
    /// is correlated only with other late events.
    pub max_stream_lag_ms: u64,
    /// Groups (distinct group-by values) kept per correlation rule. One-off groups are
    /// evicted before groups that are counting up; evictions are counted in
    /// `vigil_detect_correlation_evictions_total{rule}`.
    pub max_groups: usize,
    /// Groups kept per correlation rule for late events; 0 drops late events from
    /// correlations (they still match rules).
    pub max_late_groups: usize,
    /// Reload the rules when their files change (looked at every 2 s). Off by default: the
    /// rules reload on SIGHUP and on `POST /api/v1/rules/reload` either way.
    pub watch_rules: bool,
}

/// The largest `max_stream_lag_ms`: a lagging source keeps windows open this long at most.
const MAX_STREAM_LAG_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// The largest `max_groups` and `max_late_groups`, so a typo cannot let state grow unbounded.
const MAX_GROUPS: usize = 1_000_000;

impl Default for DetectConfig {
    fn default() -> Self {
        let limits = Limits::default();
        DetectConfig {
            max_stream_lag_ms: u64::try_from(limits.max_stream_lag).unwrap_or(0),
            max_groups: limits.max_groups,
            max_late_groups: limits.max_late_groups,
            watch_rules: false,
        }
    }
}

impl DetectConfig {
    /// Checks the settings, naming the one that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        self.limits().map(|_| ())
    }

    /// The detector's limits, or a message naming the setting that is out of range.
    pub fn limits(&self) -> Result<Limits, String> {
        if self.max_stream_lag_ms > MAX_STREAM_LAG_MS {
            return Err(format!(
                "detect.max_stream_lag_ms is {}; at most {MAX_STREAM_LAG_MS} (30 days)",
                self.max_stream_lag_ms
            ));
        }
        if !(1..=MAX_GROUPS).contains(&self.max_groups) {
            return Err(format!(
                "detect.max_groups is {}; use 1 to {MAX_GROUPS}",
                self.max_groups
            ));
        }
        if self.max_late_groups > MAX_GROUPS {
            return Err(format!(
                "detect.max_late_groups is {}; use 0 to {MAX_GROUPS}",
                self.max_late_groups
            ));
        }
        Ok(Limits {
            max_stream_lag: i64::try_from(self.max_stream_lag_ms).unwrap_or(i64::MAX),
            max_groups: self.max_groups,
            max_late_groups: self.max_late_groups,
            ..Limits::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_settings_become_limits_within_their_bounds() {
        let limits = DetectConfig::default().limits().unwrap();
        assert_eq!(limits, Limits::default());
        let custom = DetectConfig {
            max_stream_lag_ms: 3_600_000,
            max_groups: 50,
            max_late_groups: 0,
            ..DetectConfig::default()
        };
        let limits = custom.limits().unwrap();
        assert_eq!(
            (
                limits.max_stream_lag,
                limits.max_groups,
                limits.max_late_groups
            ),
            (3_600_000, 50, 0)
        );
        for (bad, setting) in [
            (
                DetectConfig {
                    max_stream_lag_ms: u64::MAX,
                    ..DetectConfig::default()
                },
                "detect.max_stream_lag_ms",
            ),
            (
                DetectConfig {
                    max_groups: 0,
                    ..DetectConfig::default()
                },
                "detect.max_groups",
            ),
            (
                DetectConfig {
                    max_late_groups: usize::MAX,
                    ..DetectConfig::default()
                },
                "detect.max_late_groups",
            ),
        ] {
            let message = bad.limits().unwrap_err();
            assert!(message.starts_with(setting), "{message}");
        }
    }
}
