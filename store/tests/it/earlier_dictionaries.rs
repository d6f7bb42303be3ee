//! A store written before Vigil's term dictionaries became sorted string tables.
//!
//! `fixtures/fst-store` is the index directory of `vigil run --demo` as the build before the
//! switch wrote it (FST term dictionaries), after one alert was acknowledged through the API:
//! 159 events in one daily partition, 48 alerts, and a deleted copy of the acknowledged
//! alert. This build cannot read those dictionaries, so a writing store rewrites both indices
//! from their stored documents when it opens them.

use std::path::Path;

use tempfile::TempDir;
use vigil_store::{AlertFilter, AlertStatus, SearchRequest, Store, StoreError, StoreOptions};

const ACKNOWLEDGED: &str = "e989a8316e82154594c2c1651d511353";

/// A copy of the fixture, which opening rewrites in place.
fn fixture() -> TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fst-store"),
        dir.path(),
    );
    dir
}

fn read_only() -> StoreOptions {
    StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    }
}

fn total(store: &Store, query: &str) -> u64 {
    store
        .search(&SearchRequest::new(query, 1))
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .total
}

#[test]
fn a_store_with_fst_dictionaries_is_rewritten_when_opened_for_writing() {
    let dir = fixture();

    // A read-only store cannot rewrite anything, so it says what to do instead.
    let refused = Store::open_with(dir.path(), read_only())
        .err()
        .expect("a read-only open of FST dictionaries fails");
    assert!(
        matches!(refused, StoreError::NeedsRewrite { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("vigil run"), "{refused}");

    let store = Store::open(dir.path()).unwrap();
    // The counts the build before the switch gave for the same queries on this directory.
    for (query, expected) in [
        ("", 159),
        ("eventName:ConsoleLogin", 4),
        ("objectRef.resource:secrets", 4),
        ("user.username:*anonymous*", 4),
        ("userIdentity.arn:*", 41),
        ("/.*[Ff]ailed.*/", 11),
        ("\"login failed\"", 8),
        ("status:>=400", 16),
    ] {
        assert_eq!(total(&store, query), expected, "{query}");
    }

    let all = AlertFilter {
        limit: 100,
        ..AlertFilter::default()
    };
    assert_eq!(store.list_alerts(&all).unwrap().len(), 48);
    // The acknowledged alert keeps its state, found through the rewritten index.
    let acknowledged = store
        .list_alerts(&AlertFilter {
            status: Some(AlertStatus::Acknowledged),
            ..all.clone()
        })
        .unwrap();
    assert_eq!(acknowledged.len(), 1);
    assert_eq!(acknowledged[0].alert.id.to_string(), ACKNOWLEDGED);
    assert_eq!(acknowledged[0].state.assignee.as_deref(), Some("dana"));
    let by_query = store
        .list_alerts(&AlertFilter {
            query: "status:acknowledged AND assignee:dana".into(),
            ..all.clone()
        })
        .unwrap();
    assert_eq!(by_query.len(), 1);
    let detail = store.alert(ACKNOWLEDGED).unwrap();
    assert_eq!(detail.notes[0].text, "looking into the anonymous request");
    assert_eq!(store.alert_events(ACKNOWLEDGED).unwrap().len(), 1);

    // The rewritten partition still knows its ids: a replayed event adds no second copy.
    let replayed = store
        .search(&SearchRequest::new("eventName:ConsoleLogin", 1))
        .unwrap()
        .hits;
    store.index_events(&replayed).unwrap();
    store.commit().unwrap();
    assert_eq!(total(&store, ""), 159);
    drop(store);

    // Rewritten, the directory now opens read-only too, and holds no more than before.
    let reader = Store::open_with(dir.path(), read_only()).unwrap();
    assert_eq!(total(&reader, ""), 159);
    assert_eq!(total(&reader, "eventName:ConsoleLogin"), 4);
    assert_eq!(reader.list_alerts(&all).unwrap().len(), 48);

    // A snapshot keeps the mark of the rewrite: it opens read-only as well.
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("snapshot");
    vigil_store::backup::snapshot(dir.path(), &snapshot).unwrap();
    let restored = Store::open_with(&snapshot, read_only()).unwrap();
    assert_eq!(total(&restored, "objectRef.resource:secrets"), 4);
}

/// The fixture's partition was cut by event time (the 28th of November) before partitions
/// followed arrival. After the upgrade it is searched by the span of the event times it
/// holds, read from its time column, while new events go to a partition of their arrival.
#[test]
fn a_partition_cut_by_event_time_is_searched_by_its_span_after_the_upgrade() {
    use chrono::{Duration, TimeZone, Utc};

    let dir = fixture();
    let events = dir.path().join("events");
    let partition = events.join("20261128T000000Z");
    assert!(!partition.join("vigil-span").exists());
    let store = Store::open(dir.path()).unwrap();
    assert!(partition.join("vigil-span").exists(), "recorded on open");
    let scheme: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(events.join("partitioning.json")).unwrap())
            .unwrap();
    assert_eq!(scheme["by"], "arrival", "{scheme}");
    assert_eq!(scheme["period_seconds"], 86_400, "the period is kept");

    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
    let within = |from, to| {
        let request = SearchRequest {
            from: Some(from),
            to: Some(to),
            ..SearchRequest::new("", 1)
        };
        store.search(&request).unwrap().total
    };
    assert_eq!(within(day(28), day(29)), 159);
    let searched = || store.partition_stats().unwrap().partitions_searched;
    let before = searched();
    assert_eq!(within(day(20), day(27)), 0);
    assert_eq!(searched(), before, "no partition holds those days");

    // A new event arrives now, dated the 28th: it is found beside the old ones, from the
    // partition of its arrival.
    let mut late = store
        .search(&SearchRequest::new("eventName:ConsoleLogin", 1))
        .unwrap()
        .hits
        .remove(0);
    late.id = vigil_event::EventId::derive("late arrival", &[b"1"]);
    late.received = Utc::now();
    let (from, to) = (
        late.time - Duration::seconds(1),
        late.time + Duration::seconds(1),
    );
    let before = within(from, to);
    assert!(before >= 1, "the event it was copied from");
    store.index_events(std::slice::from_ref(&late)).unwrap();
    store.commit().unwrap();
    assert_eq!(store.partitions().unwrap().len(), 2);
    assert_eq!(within(from, to), before + 1);
}
