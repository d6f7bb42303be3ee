//! Indexing: events and alerts from the bus into the store, committed in batches.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use vigil_bus::{Bus, BusError, Delivery};
use vigil_event::{Alert, Event, Quarantined};
use vigil_store::{Store, StoreError};

use super::consume::{run_stage, Processed, Stage, StageSettings};
use super::{decode_message, retry, stopping, Shutdown};

const BATCH: usize = 2000;

/// One kind of document the store indexes from one topic.
pub trait IndexTarget: DeserializeOwned + Send + Sync + 'static {
    const GROUP: &'static str;
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError>;
    /// Counts `n` documents indexed, in the kind's own metric.
    fn count_indexed(n: u64);
}

impl IndexTarget for Event {
    const GROUP: &'static str = "index";
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_events_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.index_events(items)?;
        // The store counts what it did not take as sent: resends whose id another partition
        // holds, and events whose own time is absurd (flagged `time_suspect`).
        let stats = store.partition_stats()?;
        metrics::counter!("vigil_index_duplicate_ids_total").absolute(stats.duplicates_skipped);
        metrics::counter!("vigil_index_suspect_times_total").absolute(stats.suspect_times);
        Ok(())
    }
}

impl IndexTarget for Quarantined {
    const GROUP: &'static str = "index-quarantine";
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_quarantine_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.add_quarantined(items).map(|_| ())
    }
}

impl IndexTarget for Alert {
    const GROUP: &'static str = "index-alerts";
    fn count_indexed(n: u64) {
        metrics::counter!("vigil_alerts_indexed_total").increment(n);
    }
    fn index(store: &Store, items: &[Self]) -> Result<(), StoreError> {
        store.index_alerts(items)
    }
}

/// Indexes `topic` into `store`. Offsets are committed only after the store commit that made
/// the documents durable, so the offsets on the bus always trail what the index holds.
pub async fn run_indexer<T: IndexTarget>(
    bus: Arc<dyn Bus>,
    topic: String,
    store: Arc<Store>,
    config: vigil_store::Config,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let stage = IndexStage::<T> {
        store,
        commit_interval: config.commit_interval(),
        commit_events: config.commit_events,
        target: PhantomData,
    };
    let settings = StageSettings {
        topic,
        group: T::GROUP,
        batch: BATCH,
    };
    run_stage(bus, settings, stage, shutdown).await
}

/// Indexing as a [`Stage`]: documents are added as they come and made durable by a store
/// commit every `commit_events` documents or `commit_interval`, whichever comes first.
struct IndexStage<T> {
    store: Arc<Store>,
    commit_interval: Duration,
    commit_events: usize,
    target: PhantomData<fn() -> T>,
}

impl<T: IndexTarget> Stage for IndexStage<T> {
    async fn process(&mut self, batch: &[Delivery], shutdown: &Shutdown) -> Processed {
        let items = Arc::new(decode::<T>(batch));
        let indexed = retry!("indexing", shutdown, {
            let (store, items) = (self.store.clone(), items.clone());
            blocking(move || T::index(&store, &items)).await
        });
        if indexed.is_none() {
            return Processed::Stopped;
        }
        T::count_indexed(items.len() as u64);
        Processed::All
    }

    async fn make_durable(&mut self, shutdown: &Shutdown) -> bool {
        retry!("committing the index", shutdown, {
            let store = self.store.clone();
            blocking(move || store.commit()).await
        })
        .is_some()
    }

    fn commit_due(&self, pending: usize, since: Duration) -> bool {
        pending >= self.commit_events || since >= self.commit_interval
    }
}

/// Decodes what it can; detection quarantines unreadable messages, so here they are only counted.
fn decode<T: IndexTarget>(batch: &[Delivery]) -> Vec<T> {
    batch
        .iter()
        .filter_map(|delivery| decode_message(delivery, T::GROUP))
        .collect()
}

/// Runs a store call on a blocking thread; Tantivy writes and commits block on disk.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(join) => Err(format!("store task failed: {join}")),
    }
}

/// Removes event partitions past the configured retention, every
/// `index.retention_interval_ms` (a minute by default) until shutdown. Partitions are at least
/// an hour long, so a minute's delay keeps at most a minute's worth of extra data.
///
/// Each pass also measures the store on disk (`vigil_store_bytes`, per part); the limits it
/// is kept within are exported once, at the start, beside it. Without a retention limit the
/// pass removes nothing and only measures.
pub async fn run_retention(store: Arc<Store>, mut shutdown: Shutdown) {
    export_limits(store.options());
    let interval = store.options().retention_interval;
    loop {
        let applied = {
            let store = store.clone();
            blocking(move || store.apply_retention(chrono::Utc::now())).await
        };
        match applied {
            Ok(report) => {
                if !report.removed.is_empty() {
                    tracing::info!(
                        removed = ?report.removed.iter().map(|k| k.dir_name()).collect::<Vec<_>>(),
                        freed_bytes = report.freed_bytes,
                        remaining_bytes = report.remaining_bytes,
                        "retention removed event partitions"
                    );
                    metrics::counter!("vigil_partitions_removed_total")
                        .increment(report.removed.len() as u64);
                }
                export_usage(&report.usage);
            }
            // A failed pass is retried at the next tick; nothing is lost by waiting.
            Err(error) => tracing::error!(%error, "retention failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if stopping(&shutdown) {
            return;
        }
    }
}

/// The limits the store is kept within, as gauges; a limit not configured is not exported,
/// so a ratio to it is no series rather than a division by zero.
fn export_limits(options: &vigil_store::StoreOptions) {
    if let Some(max_bytes) = options.retention.max_bytes {
        metrics::gauge!("vigil_store_retention_max_bytes").set(max_bytes as f64);
    }
    if let Some(max_age) = options.retention.max_age {
        metrics::gauge!("vigil_store_retention_max_age_seconds").set(max_age.num_seconds() as f64);
    }
    metrics::gauge!("vigil_store_quarantine_max_bytes")
        .set(options.quarantine.max_total_bytes as f64);
}

fn export_usage(usage: &vigil_store::DiskUsage) {
    for (part, bytes) in usage.parts() {
        metrics::gauge!("vigil_store_bytes", "part" => part).set(bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use tokio::sync::watch;
    use vigil_bus::{EmbeddedBus, EmbeddedBusOptions, Message, Topics};
    use vigil_event::{EventId, LogSource, Record, Source};

    use super::*;

    fn event(seq: u32) -> Event {
        let time = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
            + chrono::Duration::seconds(i64::from(seq % 3600));
        Event {
            id: EventId::derive("replay test", &[&seq.to_le_bytes()]),
            time,
            received: time,
            source: Source {
                kind: "cloudtrail".into(),
                name: "trail".into(),
            },
            logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
            record: Record::json(&format!(
                r#"{{"eventName":"GetObject","eventID":"replay-{seq}"}}"#
            ))
            .unwrap(),
            fields: Default::default(),
        }
    }

    /// Indexes the topic until the group has committed everything on it, then stops.
    async fn index_everything(bus: Arc<EmbeddedBus>, store: Arc<Store>, topic: &str) {
        let config = vigil_store::Config {
            commit_interval_ms: 50,
            ..vigil_store::Config::default()
        };
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run_indexer::<Event>(
            bus.clone(),
            topic.to_owned(),
            store,
            config,
            shutdown,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // Done when the offset the indexer commits (after its store commit) covers all.
            let committed = std::fs::read_to_string(bus_offsets(&bus, topic))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if committed == 1000 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "indexing stalled at {committed}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    fn bus_offsets(bus: &EmbeddedBus, topic: &str) -> std::path::PathBuf {
        bus.root()
            .join(topic)
            .join("offsets")
            .join(<Event as IndexTarget>::GROUP)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn indexing_the_same_bus_segment_twice_adds_no_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(
            EmbeddedBus::open(dir.path().join("bus"), EmbeddedBusOptions::default()).unwrap(),
        );
        let topic = Topics::default().events;
        let messages = (0..1000)
            .map(|seq| Message::new("trail", serde_json::to_vec(&event(seq)).unwrap()))
            .collect();
        bus.publish(&topic, messages).await.unwrap();
        let store = Arc::new(Store::open(&dir.path().join("index")).unwrap());

        index_everything(bus.clone(), store.clone(), &topic).await;
        assert_eq!(store.event_count().unwrap(), 1000);

        // Rewind the group to the start of the segment, as a crash before the offset commit
        // or an operator's replay would, and index it all again.
        std::fs::write(bus_offsets(&bus, &topic), "0\n").unwrap();
        index_everything(bus.clone(), store.clone(), &topic).await;
        assert_eq!(store.event_count().unwrap(), 1000);
        let hits = store
            .search(&vigil_store::SearchRequest::new("eventID:replay-7", 10))
            .unwrap();
        assert_eq!(hits.total, 1);
    }
}
