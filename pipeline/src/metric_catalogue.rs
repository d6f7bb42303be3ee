//! Every metric Vigil exports, described in one place, and the Prometheus recorder that
//! serves them at `/metrics`.
//!
//! A metric emitted anywhere in the workspace (`counter!`, `gauge!` or `histogram!` with a
//! `"vigil_..."` name) must be listed in [`CATALOGUE`] with its help text; a test reads the
//! workspace's sources and fails on a name missing here, or listed here and emitted nowhere.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use vigil_event::Level;

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its kind, its name and what it counts.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub kind: Kind,
    pub name: &'static str,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        kind: Kind::Counter,
        name,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        kind: Kind::Gauge,
        name,
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        kind: Kind::Histogram,
        name,
        help,
    }
}

/// Every metric, grouped by the stage that emits it.
pub const CATALOGUE: &[Metric] = &[
    // Ingest and its sources.
    counter("vigil_events_in_total", "Events accepted onto the bus, per source"),
    counter("vigil_ingest_bytes_total", "Bytes delivered to ingest, per source"),
    counter(
        "vigil_audit_forwarded_total",
        "Audit log entries forwarded into the pipeline as vigil-audit events",
    ),
    counter(
        "vigil_quarantined_total",
        "Records quarantined instead of becoming events, per source and reason (a fixed set of kinds: too_large, utf8, json, access_log, vpc_flow, undecodable, unreadable)",
    ),
    counter(
        "vigil_ingest_depth_limited_total",
        "Records nested past the parser's depth limit, whose deeper containers are kept as raw JSON text",
    ),
    counter(
        "vigil_ingest_held_back_total",
        "Push requests answered 503 because the stages reading the events lag too far behind",
    ),
    counter(
        "vigil_metric_labels_folded_total",
        "Source names folded into the label `other`, past the limit of distinct source labels",
    ),
    counter(
        "vigil_firehose_refused_total",
        "Firehose deliveries refused, per reason",
    ),
    counter(
        "vigil_source_errors_total",
        "Failed reads or deliveries of a pulled source, per source",
    ),
    gauge(
        "vigil_source_checkpoint_lag_seconds",
        "How far behind now a CloudWatch log group's checkpoint is, per log group",
    ),
    gauge(
        "vigil_source_checkpoint_lag_bytes",
        "Bytes of a followed file not read yet, per source and path",
    ),
    counter(
        "vigil_cloudwatch_retries_total",
        "CloudWatch calls retried after throttling or a transient error",
    ),
    // The HTTP listener.
    histogram(
        "vigil_http_request_duration_seconds",
        "Seconds to answer a request (to its response head), by route template, method and status class",
    ),
    counter(
        "vigil_http_connections_evicted_total",
        "Connections without authenticated work closed to make room at server.max_connections",
    ),
    counter(
        "vigil_auth_failures_total",
        "Failed authentications, by kind (bearer, sign_in) and reason; each is also in the audit log",
    ),
    counter(
        "vigil_tls_reloads_total",
        "TLS certificate and key reloads (on SIGHUP) now served to new connections",
    ),
    counter(
        "vigil_tls_reload_failures_total",
        "TLS reloads refused for an unreadable or unusable file; the previous certificate stays",
    ),
    // The bus.
    gauge(
        "vigil_bus_lag",
        "Messages on a topic that a consumer group has not committed",
    ),
    // Detection.
    gauge("vigil_rules_loaded", "Detection rules loaded"),
    gauge("vigil_correlations_loaded", "Correlation rules loaded"),
    gauge("vigil_rules_failed", "Rule files or rules that failed to load"),
    gauge("vigil_rules_disabled", "Rules and correlations disabled at runtime"),
    gauge(
        "vigil_rules_generation",
        "The generation of the rules detection runs; it counts up with each reload or enable/disable",
    ),
    counter(
        "vigil_rules_reloads_total",
        "Rule reloads and enable/disable changes, by outcome: swapped, or refused (the rules running stay)",
    ),
    counter("vigil_events_detected_total", "Events evaluated by detection"),
    counter("vigil_alerts_raised_total", "Alerts raised, per level"),
    counter(
        "vigil_detect_late_events_total",
        "Events too late for the live correlation windows, correlated in late windows instead, per source",
    ),
    counter(
        "vigil_detect_correlation_evictions_total",
        "Correlation groups evicted at detect.max_groups or max_late_groups, per correlation rule",
    ),
    // Indexing.
    counter("vigil_events_indexed_total", "Events written to the index"),
    counter("vigil_alerts_indexed_total", "Alerts written to the index"),
    counter(
        "vigil_quarantine_indexed_total",
        "Quarantined records offered to the quarantine store",
    ),
    counter(
        "vigil_index_unreadable_total",
        "Bus messages a stage after detection could not read and skipped, per consumer group",
    ),
    counter(
        "vigil_index_duplicate_ids_total",
        "Events not indexed because another partition holds their id",
    ),
    counter(
        "vigil_index_records_as_text_total",
        "Events whose JSON record was no JSON object (a forged or damaged bus message), indexed and kept as text",
    ),
    counter(
        "vigil_index_suspect_times_total",
        "Events whose own time was implausible, flagged time_suspect and indexed at their arrival",
    ),
    histogram(
        "vigil_index_commit_seconds",
        "Seconds each store commit took, per indexer (consumer group)",
    ),
    histogram(
        "vigil_index_alert_wait_seconds",
        "Seconds a batch of alerts waited for the events index to make their events searchable",
    ),
    counter(
        "vigil_index_alerts_unconfirmed_total",
        "Alerts listed after the longest wait without their events confirmed searchable",
    ),
    counter(
        "vigil_partitions_removed_total",
        "Event partitions removed by retention",
    ),
    counter(
        "vigil_quarantine_evicted_total",
        "Quarantined records evicted, oldest first, to keep the quarantine within its limits",
    ),
    gauge(
        "vigil_store_bytes",
        "Bytes the store takes on disk, per part (events, alerts, lifecycle, quarantine), measured at each retention pass",
    ),
    gauge(
        "vigil_store_retention_max_bytes",
        "index.retention_max_bytes: the bytes the event partitions are kept within (absent when unset)",
    ),
    gauge(
        "vigil_store_retention_max_age_seconds",
        "index.retention_days in seconds: how long event partitions are kept (absent when unset)",
    ),
    gauge(
        "vigil_store_quarantine_max_bytes",
        "index.quarantine_max_bytes: what the kept quarantined records may take (vigil_quarantine_bytes)",
    ),
    gauge(
        "vigil_quarantine_bytes",
        "What the kept quarantined records take, as counted against index.quarantine_max_bytes",
    ),
    // Notification.
    counter(
        "vigil_notifications_grouped_total",
        "Alerts taken into a notification group, per route",
    ),
    counter(
        "vigil_notifications_silenced_total",
        "Alerts a silence kept from a route, per route",
    ),
    counter(
        "vigil_notifications_inhibited_total",
        "Alerts an inhibition rule kept from a route, per route",
    ),
    counter(
        "vigil_notifications_enqueued_total",
        "Notifications written to the outbox, per receiver",
    ),
    counter(
        "vigil_notify_dispatch_errors_total",
        "Rounds of the dispatch timer that failed (retried on the next round)",
    ),
    counter(
        "vigil_notifications_sent_total",
        "Notifications a receiver took, per receiver",
    ),
    counter(
        "vigil_notifications_failed_total",
        "Delivery attempts that failed, per receiver",
    ),
    counter(
        "vigil_notifications_refused_total",
        "Notifications a receiver refused for good (dead letters at once), per receiver",
    ),
    counter(
        "vigil_notification_retries_total",
        "Failed deliveries that will be retried after a backoff, per receiver",
    ),
    counter(
        "vigil_notifications_dead_lettered_total",
        "Notifications that became dead letters (refused, or out of attempts), per receiver",
    ),
    histogram(
        "vigil_notification_latency_seconds",
        "Seconds from a notification's entry in the outbox to its delivery, per receiver",
    ),
    gauge(
        "vigil_notification_outbox",
        "Notifications in the outbox by state (pending, dead), refreshed every 15 s",
    ),
    counter(
        "vigil_playbook_runs_total",
        "Playbook runs recorded, per action and first state (running, awaiting_approval, dry_run, failed)",
    ),
    counter(
        "vigil_playbook_actions_sent_total",
        "Playbook actions that succeeded, per action",
    ),
    counter(
        "vigil_playbook_actions_failed_total",
        "Playbook actions that failed for good (refused, or out of attempts), per action",
    ),
    counter(
        "vigil_playbook_action_retries_total",
        "Playbook action attempts that failed and will be retried after a backoff, per action",
    ),
    histogram(
        "vigil_playbook_action_seconds",
        "Seconds one attempt of a playbook action took, per action",
    ),
];

/// The bucket bounds, in seconds, of each histogram. The exporter renders a histogram
/// without buckets as a summary, whose quantiles are per process and cannot be added up
/// across instances; with buckets, `histogram_quantile` over the summed `_bucket` rates can.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        "vigil_http_request_duration_seconds",
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ],
    ),
    (
        "vigil_notification_latency_seconds",
        &[
            0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
        ],
    ),
    (
        "vigil_index_commit_seconds",
        &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
    ),
    (
        "vigil_index_alert_wait_seconds",
        &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
    ),
    (
        "vigil_playbook_action_seconds",
        &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
    ),
];

/// The recorder's settings: every histogram of [`BUCKETS`] with its buckets.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    BUCKETS
        .iter()
        .try_fold(PrometheusBuilder::new(), |builder, (name, bounds)| {
            builder.set_buckets_for_metric(Matcher::Full((*name).to_owned()), bounds)
        })
}

/// Installs the Prometheus recorder and describes every metric of [`CATALOGUE`]; the handle
/// renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    // Present from the start, so dashboards and alerts on them see zeros, not gaps.
    metrics::counter!("vigil_events_detected_total").absolute(0);
    for level in Level::ALL {
        metrics::counter!("vigil_alerts_raised_total", "level" => level.as_str()).absolute(0);
    }
    Ok(handle)
}

/// Gives the installed recorder the help text of every metric.
fn describe() {
    for metric in CATALOGUE {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::*;

    /// The workspace's Rust sources outside tests: every `.rs` file but those under `target/`,
    /// `tests/` and `benches/` directories and those named `tests.rs`, each without its
    /// inline test module (which by this workspace's custom ends the file).
    fn non_test_sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "tests" | "benches")
                    && !name.starts_with('.')
                {
                    non_test_sources(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).unwrap();
                let end = inline_tests(&text).unwrap_or(text.len());
                out.push((path, text[..end].to_owned()));
            }
        }
    }

    /// Where the `#[cfg(test)] mod tests { ... }` of a file starts; a `mod tests;` declared
    /// elsewhere is a file of its own, left out by its name.
    fn inline_tests(text: &str) -> Option<usize> {
        text.match_indices("#[cfg(test)]")
            .map(|(at, _)| at)
            .find(|&at| {
                let item = text[at..]
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .find(|line| !line.starts_with("#[") && !line.starts_with("//"));
                item.is_some_and(|line| line.starts_with("mod ") && line.ends_with('{'))
            })
    }

    /// The metric names `text` passes to `counter!`, `gauge!` and `histogram!`; a first
    /// argument that is not a string literal is reported as such, since no scan could check it.
    fn emitted(text: &str) -> Vec<Result<(Kind, String), String>> {
        let mut found = Vec::new();
        for (kind, mac) in [
            (Kind::Counter, "counter!("),
            (Kind::Gauge, "gauge!("),
            (Kind::Histogram, "histogram!("),
        ] {
            for (at, _) in text.match_indices(mac) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // describe_counter! and the like
                }
                let argument = text[at + mac.len()..].trim_start();
                let literal = argument
                    .strip_prefix('"')
                    .and_then(|rest| rest.split_once('"'))
                    .map(|(name, _)| name.to_owned());
                match literal {
                    Some(name) => found.push(Ok((kind, name))),
                    None => found.push(Err(argument.chars().take(40).collect())),
                }
            }
        }
        found
    }

    #[test]
    fn every_metric_emitted_is_in_the_catalogue_and_every_entry_is_emitted() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut sources = Vec::new();
        non_test_sources(root, &mut sources);
        assert!(sources.len() > 50, "found only {} sources", sources.len());

        let catalogue: BTreeMap<&str, Kind> = CATALOGUE.iter().map(|m| (m.name, m.kind)).collect();
        assert_eq!(catalogue.len(), CATALOGUE.len(), "a name is listed twice");
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for (path, text) in &sources {
            for found in emitted(text) {
                match found {
                    Ok((kind, name)) => match catalogue.get(name.as_str()) {
                        Some(&listed) if listed == kind => {
                            seen.insert(name);
                        }
                        Some(listed) => problems.push(format!(
                            "{}: {name} is emitted as a {kind:?} but listed as a {listed:?}",
                            path.display()
                        )),
                        None => problems.push(format!(
                            "{}: {name} is not in the catalogue (pipeline/src/metric_catalogue.rs)",
                            path.display()
                        )),
                    },
                    Err(argument) => problems.push(format!(
                        "{}: a metric named by `{argument}`; name metrics with a literal",
                        path.display()
                    )),
                }
            }
        }
        for metric in CATALOGUE {
            if !seen.contains(metric.name) {
                problems.push(format!(
                    "{} is in the catalogue but nothing emits it",
                    metric.name
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_histogram_has_buckets() {
        let histograms: BTreeSet<&str> = CATALOGUE
            .iter()
            .filter(|m| m.kind == Kind::Histogram)
            .map(|m| m.name)
            .collect();
        let bucketed: BTreeSet<&str> = BUCKETS.iter().map(|(name, _)| *name).collect();
        assert_eq!(histograms, bucketed);
        for (name, bounds) in BUCKETS {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{name}: {bounds:?}");
        }
        builder().unwrap();
    }

    #[test]
    fn the_scan_finds_literals_and_refuses_other_names() {
        let text = r#"metrics::counter!("vigil_a_total", "k" => v).increment(1);
            metrics::describe_gauge!("vigil_b", "help");
            gauge!(
                "vigil_c"
            ).set(1.0);
            metrics::counter!(T::METRIC).increment(1);"#;
        assert_eq!(
            emitted(text),
            vec![
                Ok((Kind::Counter, "vigil_a_total".to_owned())),
                Err("T::METRIC).increment(1);".to_owned()),
                Ok((Kind::Gauge, "vigil_c".to_owned())),
            ]
        );
    }
}
