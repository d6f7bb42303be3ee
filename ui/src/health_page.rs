//! `GET /health`: what an operator checks first. Per source, how many events arrived lately
//! and when the last one did, with sources gone quiet flagged; what was quarantined in the
//! last day and why; and where the bus and detection figures are (Prometheus, at `/metrics`).
//!
//! Rates, counts and silences are read from arrivals (when Vigil received each event), never
//! from event times: those are the sender's to write, and a source dating its records last
//! year would otherwise look silent, or a silent one busy. The last event's own time is
//! shown beside its arrival, so a clock that is off shows as the gap between them.
//!
//! Source names, quarantine reasons and quarantined bytes are written by senders, so all of
//! it is text that maud escapes; nothing here is `PreEscaped`. Counts honour the caller's
//! visibility: Vigil's own audit source is shown only to those who may read the audit log.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use maud::{html, Markup};
use vigil_store::{
    PartitionInfo, QuarantineFilter, QuarantineRecord, Retention, Store, Visibility,
};

use crate::auth::Caller;
use crate::frame::layout;
use crate::search_terms::{encode, quote_term};
use crate::{call_store, UiState};

/// Sources listed at most, by kind and by name within a kind.
const MAX_SOURCES: usize = 200;
/// Quarantined records read at most for the last day's counts; past it the counts say so.
const MAX_QUARANTINE_READ: usize = 2000;
/// Samples shown per quarantine reason.
const SAMPLES_PER_REASON: usize = 3;
/// Bytes of a quarantined record shown in a sample.
const SAMPLE_BYTES: usize = 120;
/// A source with nothing for longer than this is flagged silent.
const SILENCE: Duration = Duration::hours(1);
/// An event that arrived more than this after its own time is counted as late: a shipper
/// that lags, or a backlog delivered at once. Detection has its own, finer measure of
/// lateness (`vigil_detect_late_events_total`), against the other sources' streams.
const LATE: Duration = Duration::minutes(15);
/// A last event whose own time is further than this from its arrival has the gap shown.
const SKEW_SHOWN: Duration = Duration::minutes(5);

pub(crate) fn router() -> Router<UiState> {
    Router::new().route("/health", get(health_page))
}

/// One source's recent traffic, by arrival.
struct SourceHealth {
    kind: String,
    name: String,
    /// Events arrived per minute over the last hour, oldest first.
    per_minute: Vec<u64>,
    last_hour: u64,
    last_day: u64,
    /// Of the last day's, those that arrived more than [`LATE`] after their own time.
    late_day: u64,
    /// The last event to arrive: its own time (the sender's) and its arrival.
    last: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// What was quarantined in the last day.
#[derive(Default)]
struct QuarantineSummary {
    by_source: BTreeMap<(String, String), u64>,
    by_reason: BTreeMap<String, (u64, Vec<QuarantineRecord>)>,
    /// True when more records than were read fall in the day.
    capped: bool,
}

struct Health {
    now: DateTime<Utc>,
    sources: Vec<SourceHealth>,
    quarantine: QuarantineSummary,
    index: IndexHealth,
}

/// The event partitions and what keeps them, with the rules this process loaded.
struct IndexHealth {
    partitions: Vec<PartitionInfo>,
    period: Duration,
    retention: Retention,
    /// Rules and correlations loaded; `None` when this process does not detect.
    /// Rules loaded, failed to load and disabled.
    rules_loaded: Option<(usize, usize, usize)>,
}

async fn health_page(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let visibility = caller.visibility();
    let store = state.store.clone();
    let now = Utc::now();
    let rules = state.rules.catalog();
    let rules_loaded = rules
        .is_loaded()
        .then(|| (rules.len(), rules.failures().len(), rules.disabled()));
    let gathered = call_store(move || {
        let options = store.options();
        Ok(Health {
            now,
            sources: sources(&store, &visibility, now)?,
            quarantine: quarantine(&store, &visibility, now)?,
            index: IndexHealth {
                partitions: store.partition_infos()?,
                period: options.partition.period(),
                retention: options.retention,
                rules_loaded,
            },
        })
    })
    .await;
    let body = match gathered {
        Ok(health) => render(&health),
        Err(error) => crate::pages::error_box(&error),
    };
    layout("Health", Some(&caller), body).into_response()
}

fn source_query(kind: &str, name: &str) -> String {
    format!(
        "source_kind:{} source_name:{}",
        quote_term(kind),
        quote_term(name)
    )
}

fn sources(
    store: &Store,
    visibility: &Visibility,
    now: DateTime<Utc>,
) -> Result<Vec<SourceHealth>, vigil_store::StoreError> {
    let hour_end = now.duration_trunc(Duration::minutes(1)).unwrap_or(now) + Duration::minutes(1);
    let hour_start = hour_end - Duration::hours(1);
    let kinds = store.facets("", visibility, "source_kind", MAX_SOURCES, None, None)?;
    let mut found = Vec::new();
    for kind in kinds.values {
        let Some(kind) = kind.value.as_str().map(str::to_owned) else {
            continue;
        };
        let names = store.facets(
            &format!("source_kind:{}", quote_term(&kind)),
            visibility,
            "source_name",
            MAX_SOURCES,
            None,
            None,
        )?;
        for name in names.values {
            let Some(name) = name.value.as_str().map(str::to_owned) else {
                continue;
            };
            let query = source_query(&kind, &name);
            let histogram = store.arrival_histogram(&query, visibility, hour_start, hour_end)?;
            let mut per_minute = vec![0u64; 60];
            for bucket in &histogram.buckets {
                let minute = (bucket.start - hour_start).num_minutes();
                if let Some(slot) = usize::try_from(minute)
                    .ok()
                    .and_then(|m| per_minute.get_mut(m))
                {
                    *slot += bucket.count;
                }
            }
            let day = store.arrival_histogram(
                &query,
                visibility,
                hour_end - Duration::hours(24),
                hour_end,
            )?;
            let late_day = store.late_arrivals(
                &query,
                visibility,
                hour_end - Duration::hours(24),
                hour_end,
                LATE,
            )?;
            let newest = store.last_arrived(&query, visibility)?;
            found.push(SourceHealth {
                last_hour: per_minute.iter().sum(),
                per_minute,
                last_day: day.buckets.iter().map(|b| b.count).sum(),
                late_day,
                last: newest.map(|e| (e.time, e.received)),
                kind: kind.clone(),
                name,
            });
        }
    }
    Ok(found)
}

fn quarantine(
    store: &Store,
    visibility: &Visibility,
    now: DateTime<Utc>,
) -> Result<QuarantineSummary, vigil_store::StoreError> {
    let since = now - Duration::hours(24);
    let mut summary = QuarantineSummary::default();
    let mut cursor = None;
    let mut read = 0;
    loop {
        let page = store.quarantined(&QuarantineFilter {
            cursor: cursor.take(),
            ..QuarantineFilter::default()
        })?;
        let mut past_day = false;
        for kept in page.records {
            if kept.record.received < since {
                past_day = true;
                break;
            }
            read += 1;
            let source = &kept.record.source;
            if visibility.hidden_source_kinds.contains(&source.kind) {
                continue;
            }
            *summary
                .by_source
                .entry((source.kind.clone(), source.name.clone()))
                .or_default() += 1;
            let (count, samples) = summary
                .by_reason
                .entry(kept.record.reason.clone())
                .or_default();
            *count += 1;
            if samples.len() < SAMPLES_PER_REASON {
                samples.push(kept);
            }
        }
        match page.next_cursor {
            Some(next) if !past_day && read < MAX_QUARANTINE_READ => cursor = Some(next),
            Some(_) if !past_day => {
                summary.capped = true;
                break;
            }
            _ => break,
        }
    }
    Ok(summary)
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How long ago, roughly, in the largest whole unit.
fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds();
    match seconds {
        s if s < 0 => "in the future".to_owned(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// The gap between an event's own time and its arrival, when it is more than clocks and
/// shipping delays explain: a sender's clock that is wrong, or a backlog delivered late.
fn skew(time: DateTime<Utc>, received: DateTime<Utc>) -> Option<String> {
    let gap = received - time;
    let size = |d: Duration| ago(received, received - d).replace(" ago", "");
    if gap > SKEW_SHOWN {
        Some(format!("{} before its arrival", size(gap)))
    } else if -gap > SKEW_SHOWN {
        Some(format!("{} after its arrival", size(-gap)))
    } else {
        None
    }
}

/// Events per minute as a line, scaled to the busiest minute.
fn sparkline(source: &SourceHealth) -> Markup {
    const WIDTH: usize = 120;
    const HEIGHT: u64 = 20;
    let most = source.per_minute.iter().copied().max().unwrap_or(0).max(1);
    let step = WIDTH / source.per_minute.len().max(1);
    let points: Vec<String> = source
        .per_minute
        .iter()
        .enumerate()
        .map(|(i, count)| format!("{},{}", i * step, HEIGHT - count * HEIGHT / most))
        .collect();
    html! {
        svg.sparkline xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            width=(WIDTH) height=(HEIGHT) role="img" preserveAspectRatio="none" {
            title { (source.last_hour) " events arrived in the last hour; at most " (most) " in a minute" }
            polyline fill="none" stroke="currentColor" stroke-width="1" points=(points.join(" ")) {}
        }
    }
}

fn render(health: &Health) -> Markup {
    let now = health.now;
    html! {
        h1 { "Health" }
        section.health-sources {
            h2 { "Sources" }
            @if health.sources.is_empty() {
                p.muted { "No events indexed yet." }
            } @else {
                table.health {
                    thead { tr {
                        th { "Kind" } th { "Name" } th { "Arrivals per minute, last hour" }
                        th { "Last hour" } th { "Last 24 h" }
                        th { "Of those, late (over " (LATE.num_minutes()) " min after their own time)" }
                        th { "Last arrival" }
                        th { "Its event time (the sender's)" } th { "Status" }
                    } }
                    tbody {
                        @for source in &health.sources {
                            @let silent = source.last.is_none_or(|(_, received)| now - received > SILENCE);
                            tr class=[silent.then_some("silent")] {
                                td { (source.kind) }
                                td { (source.name) }
                                td { (sparkline(source)) }
                                td.count { (source.last_hour) }
                                td.count { (source.last_day) }
                                td.count.late { (source.late_day) }
                                td.arrival {
                                    @if let Some((_, received)) = source.last {
                                        time datetime=(stamp(received)) { (stamp(received)) } " (" (ago(now, received)) ")"
                                    }
                                }
                                td.event-time {
                                    @if let Some((time, received)) = source.last {
                                        time datetime=(stamp(time)) { (stamp(time)) }
                                        @if let Some(skew) = skew(time, received) { " " span.flag { (skew) } }
                                    }
                                }
                                td { @if silent { span.flag { "silent for over an hour" } } @else { "receiving" } }
                            }
                        }
                    }
                }
            }
        }
        (render_quarantine(&health.quarantine))
        (render_index(&health.index))
        section.health-metrics {
            h2 { "Bus, detection and late events" }
            p {
                "These are Prometheus metrics at " a href="/metrics" { "/metrics" } ". Watch:"
            }
            ul {
                @for (metric, meaning) in WATCHED_METRICS {
                    li { code { (metric) } ": " (meaning) }
                }
            }
        }
    }
}

/// The metrics an operator watches, with what each tells.
/// Kept by name rather than read back: the Prometheus registry is write-only in-process.
const WATCHED_METRICS: &[(&str, &str)] = &[
    (
        "vigil_bus_lag",
        "messages a consumer group has not committed, per topic and group",
    ),
    (
        "vigil_detect_late_events_total",
        "events too late for the live correlation windows, per source",
    ),
    (
        "vigil_index_unreadable_total",
        "bus messages a stage could not read and skipped, per consumer group",
    ),
    (
        "vigil_index_records_as_text_total",
        "events whose JSON record was no JSON object, indexed and kept as text",
    ),
    (
        "vigil_index_suspect_times_total",
        "events with an implausible time, indexed at their arrival",
    ),
    (
        "vigil_index_duplicate_ids_total",
        "events not indexed because another partition holds their id",
    ),
    (
        "vigil_ingest_held_back_total",
        "pushes answered 503 because the readers lag too far behind",
    ),
    (
        "vigil_source_checkpoint_lag_seconds",
        "how far behind now a pulled source's checkpoint is",
    ),
    (
        "vigil_source_checkpoint_lag_bytes",
        "bytes of a followed file not read yet",
    ),
    (
        "vigil_quarantine_evicted_total",
        "quarantined records dropped to keep within the limits",
    ),
    ("vigil_rules_failed", "rules that failed to load"),
];

fn render_quarantine(summary: &QuarantineSummary) -> Markup {
    html! {
        section.health-quarantine {
            h2 { "Quarantine, last 24 h" }
            @if summary.capped {
                p.muted { "Only the newest " (MAX_QUARANTINE_READ) " records were counted." }
            }
            @if summary.by_source.is_empty() {
                p.muted { "Nothing quarantined in the last 24 hours." }
            } @else {
                h3 { "By source" }
                table.health {
                    thead { tr { th { "Kind" } th { "Name" } th { "Records" } th { "List" } } }
                    tbody {
                        @for ((kind, name), count) in &summary.by_source {
                            tr {
                                td { (kind) } td { (name) } td.count { (count) }
                                td { a href={ "/api/v1/quarantine?source=" (encode(name)) } { "JSON" } }
                            }
                        }
                    }
                }
                h3 { "By reason" }
                @for (reason, (count, samples)) in &summary.by_reason {
                    details.quarantine-reason {
                        summary { span.count { (count) } " " (reason) }
                        table.health {
                            thead { tr { th { "Source" } th { "Position" } th { "Length" } th { "First bytes" } } }
                            tbody {
                                @for sample in samples {
                                    tr {
                                        td { (sample.record.source.kind) " / " (sample.record.source.name) }
                                        td { @if let Some(line) = sample.record.line { "line " (line) } }
                                        td.count { (sample.raw_len) " bytes" }
                                        td { code.sample { (first_bytes(&sample.record.raw)) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn render_index(index: &IndexHealth) -> Markup {
    let total: u64 = index.partitions.iter().map(|p| p.bytes).sum();
    html! {
        section.health-index {
            h2 { "Index" }
            p {
                "Retention: "
                @match index.retention.max_age {
                    Some(age) => { "partitions older than " (age.num_hours()) " h are removed" }
                    None => { "no age limit" }
                }
                "; "
                @match index.retention.max_bytes {
                    Some(bytes) => { "at most " (bytes) " bytes kept" }
                    None => { "no size limit" }
                }
                ". Partitions of " (index.period.num_hours()) " h by arrival, "
                (total) " bytes in all."
                @if let Some(oldest) = index.partitions.first() {
                    " The oldest kept starts " time datetime=(stamp(oldest.key.start)) { (stamp(oldest.key.start)) } "."
                }
            }
            @if index.partitions.is_empty() {
                p.muted { "No partitions yet." }
            } @else {
                table.health.partitions {
                    thead { tr { th { "Partition (arrival)" } th { "Event times" } th { "Events" } th { "Bytes on disk" } } }
                    tbody {
                        @for partition in &index.partitions {
                            tr {
                                td { time datetime=(stamp(partition.key.start)) { (stamp(partition.key.start)) } }
                                td { @if let Some(span) = partition.span { (stamp(span.min)) " – " (stamp(span.max)) } @else { "empty" } }
                                td.count { (partition.events) }
                                td.count { (partition.bytes) }
                            }
                        }
                    }
                }
            }
            h2 { "Rules" }
            p.rules {
                @match index.rules_loaded {
                    Some((loaded, failed, disabled)) => { "Rules: " (loaded) " loaded, " (failed) " failed to load, " (disabled) " disabled; see " a href="/rules" { "the rules page" } " for which, and " code { "vigil_rules_failed" } " at " a href="/metrics" { "/metrics" } "." }
                    None => { "This process does not run detection, so it loaded no rules; the detecting process reports them." }
                }
            }
        }
    }
}

/// The first bytes of a record as escaped ASCII: control bytes and anything not ASCII as
/// `\xNN`, so nothing in them can look like something else on the page.
fn first_bytes(raw: &[u8]) -> String {
    let shown = &raw[..raw.len().min(SAMPLE_BYTES)];
    let mut text = shown.escape_ascii().to_string();
    if raw.len() > SAMPLE_BYTES {
        text.push('…');
    }
    text
}
