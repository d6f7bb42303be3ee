//! Source names as Prometheus labels, with their number bounded.
//!
//! Source names are chosen by whoever sends (the path segment of the ingest endpoint, a log
//! group), and every distinct label value is a time series kept forever on the unauthenticated
//! `/metrics`. So only the first [`MAX_SOURCE_LABELS`] names seen get a series of their own;
//! later ones are folded into [`OTHER`], and the folding is itself counted.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// How many distinct source names become label values.
pub const MAX_SOURCE_LABELS: usize = 64;

/// The label value for every source name past the bound.
pub const OTHER: &str = "other";

/// The label value to report `name` under: `name` itself while the bound allows, else
/// [`OTHER`].
pub fn source_label(name: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    // A poisoned lock only means another thread panicked while inserting; the set is intact.
    let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_SOURCE_LABELS && name != OTHER {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    metrics::counter!("vigil_metric_labels_folded_total").increment(1);
    OTHER.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_bound_fold_into_other_and_known_ones_stay() {
        let first = source_label("cardinality-test-first");
        assert_eq!(first, "cardinality-test-first");
        let labels: HashSet<String> = (0..10 * MAX_SOURCE_LABELS)
            .map(|i| source_label(&format!("cardinality-test-{i}")))
            .collect();
        assert!(labels.len() <= MAX_SOURCE_LABELS + 1, "{}", labels.len());
        assert!(labels.contains(OTHER));
        assert_eq!(
            source_label("cardinality-test-first"),
            "cardinality-test-first"
        );
    }
}
