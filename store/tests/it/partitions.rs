//! Time partitions of the events index: which partitions a search reads, how results merge
//! across them, retention, and replays.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map};
use tempfile::TempDir;
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::{
    PartitionKey, PartitionScheme, Retention, SearchRequest, Store, StoreError, StoreOptions,
};

fn day(d: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, hour, 0, 0).unwrap()
}

fn event(n: u32, time: DateTime<Utc>) -> Event {
    let record = json!({"eventName": "GetObject", "n": n, "user": format!("user{}", n % 3)});
    Event {
        id: EventId::derive("partition test", &[&n.to_le_bytes()]),
        time,
        received: time + Duration::seconds(1),
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Map::new(),
    }
}

/// Two events on each of the 25th to the 28th.
fn four_days() -> Vec<Event> {
    (0..8)
        .map(|n| event(n, day(25 + n / 2, 3 + n % 2)))
        .collect()
}

fn loaded(options: StoreOptions) -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    store.index_events(&four_days()).unwrap();
    store.commit().unwrap();
    (dir, store)
}

fn ns(hits: &[Event]) -> Vec<i64> {
    hits.iter()
        .map(|e| {
            let doc = e.document().unwrap();
            doc["n"].as_i64().unwrap()
        })
        .collect()
}

fn searched(store: &Store) -> u64 {
    store.partition_stats().unwrap().partitions_searched
}

#[test]
fn each_day_gets_its_own_partition() {
    let (dir, store) = loaded(StoreOptions::default());
    let keys = store.partitions().unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[0].start, day(25, 0));
    for key in &keys {
        assert!(dir.path().join("events").join(key.dir_name()).is_dir());
    }
    assert_eq!(store.event_count().unwrap(), 8);
}

#[test]
fn a_range_reads_only_the_partitions_it_touches() {
    let (_dir, store) = loaded(StoreOptions::default());
    let before = searched(&store);
    let request = SearchRequest {
        from: Some(day(26, 0)),
        to: Some(day(27, 0)),
        ..SearchRequest::new("", 10)
    };
    let results = store.search(&request).unwrap();
    assert_eq!(ns(&results.hits), [3, 2]);
    assert_eq!(results.total, 2);
    assert_eq!(searched(&store) - before, 1, "only the 26th is read");
    // Partitions are chosen by the event times they hold, not by their period: the 26th's
    // events end at 05:00 and the 28th's start at 03:00, so only the 27th is read. (When
    // partitions were cut by event time, each period's whole day was taken to be full.)
    assert_eq!(
        store
            .partitions_for(Some(day(26, 12)), Some(day(28, 1)))
            .unwrap(),
        [PartitionKey { start: day(27, 0) }]
    );
    assert_eq!(
        store
            .partitions_for(Some(day(26, 4)), Some(day(28, 4)))
            .unwrap(),
        [
            PartitionKey { start: day(28, 0) },
            PartitionKey { start: day(27, 0) },
            PartitionKey { start: day(26, 0) },
        ]
    );
    let before = searched(&store);
    store
        .histogram(
            "",
            &vigil_store::Visibility::everything(),
            Some(day(27, 0)),
            Some(day(29, 0)),
        )
        .unwrap();
    assert_eq!(searched(&store) - before, 2);
    let before = searched(&store);
    let empty = store
        .search(&SearchRequest {
            from: Some(day(29, 0)),
            ..SearchRequest::new("", 10)
        })
        .unwrap();
    assert!(empty.hits.is_empty());
    assert_eq!(searched(&store), before, "no partition holds the 29th");
}

#[test]
fn hits_totals_histograms_and_facets_merge_across_partitions() {
    let (_dir, store) = loaded(StoreOptions::default());
    let all = store.search(&SearchRequest::new("GetObject", 100)).unwrap();
    assert_eq!(all.total, 8);
    assert_eq!(ns(&all.hits), [7, 6, 5, 4, 3, 2, 1, 0], "newest first");

    let mut pages = Vec::new();
    let mut request = SearchRequest::new("", 3);
    loop {
        let page = store.search(&request).unwrap();
        assert_eq!(page.total, 8);
        pages.extend(ns(&page.hits));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [7, 6, 5, 4, 3, 2, 1, 0],
        "pages continue across partitions"
    );

    let histogram = store
        .histogram(
            "",
            &vigil_store::Visibility::everything(),
            Some(day(25, 0)),
            Some(day(29, 0)),
        )
        .unwrap();
    let counted: u64 = histogram.buckets.iter().map(|b| b.count).sum();
    assert_eq!(counted, 8);

    let facets = store
        .facets(
            "",
            &vigil_store::Visibility::everything(),
            "user",
            10,
            None,
            None,
        )
        .unwrap();
    let user0 = facets
        .values
        .iter()
        .find(|v| v.value == json!("user0"))
        .expect("user0 counted");
    assert_eq!(user0.count, 3, "n = 0, 3, 6 across three partitions");
}

#[test]
fn hourly_partitions_split_a_day() {
    let options = StoreOptions {
        partition: PartitionScheme::hourly(),
        ..StoreOptions::default()
    };
    let (_dir, store) = loaded(options);
    assert_eq!(store.partitions().unwrap().len(), 8);
    let before = searched(&store);
    let results = store
        .search(&SearchRequest {
            from: Some(day(25, 4)),
            to: Some(day(25, 5)),
            ..SearchRequest::new("", 10)
        })
        .unwrap();
    assert_eq!(ns(&results.hits), [1]);
    assert_eq!(searched(&store) - before, 1);

    // A read-only opener that does not know the period reads the recorded one.
    let reader = Store::open_with(
        _dir.path(),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let plan = reader
        .partitions_for(Some(day(25, 4)), Some(day(25, 5)))
        .unwrap();
    assert_eq!(plan, [PartitionKey { start: day(25, 4) }]);
}

#[test]
fn reopening_with_another_period_is_refused() {
    let (dir, store) = loaded(StoreOptions::default());
    drop(store);
    let hourly = StoreOptions {
        partition: PartitionScheme::hourly(),
        ..StoreOptions::default()
    };
    match Store::open_with(dir.path(), hourly) {
        Err(StoreError::Open { source, .. }) => {
            assert!(source.to_string().contains("86400 s"), "{source}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened daily partitions as hourly ones"),
    }
    assert!(Store::open(dir.path()).is_ok());
}

#[test]
fn retention_removes_partitions_by_age() {
    let options = StoreOptions {
        retention: Retention {
            max_age: Some(Duration::days(2)),
            max_bytes: None,
        },
        ..StoreOptions::default()
    };
    let (dir, store) = loaded(options);
    let report = store.apply_retention(day(28, 12)).unwrap();
    assert_eq!(report.removed, [PartitionKey { start: day(25, 0) }]);
    assert!(report.freed_bytes > 0);
    assert!(!dir.path().join("events").join("20261125T000000Z").exists());
    assert_eq!(store.event_count().unwrap(), 6);
    let results = store.search(&SearchRequest::new("", 10)).unwrap();
    assert_eq!(ns(&results.hits), [7, 6, 5, 4, 3, 2]);
    assert!(!results.total_is_lower_bound);

    let later = store.apply_retention(day(28, 12)).unwrap();
    assert!(later.removed.is_empty(), "nothing more is due");
    // Even with everything expired, the partition being written for now stays.
    let all = store
        .apply_retention(day(28, 12) + Duration::days(30))
        .unwrap();
    assert_eq!(all.removed.len(), 2);
    assert_eq!(
        store.partitions().unwrap(),
        [PartitionKey { start: day(28, 0) }]
    );
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.event_count().unwrap(), 2, "removals are on disk");
}

#[test]
fn retention_removes_the_oldest_partitions_until_the_size_fits() {
    let (dir, store) = loaded(StoreOptions::default());
    let report = store.apply_retention(day(28, 12)).unwrap();
    assert!(report.removed.is_empty(), "no retention configured");
    let total = report.remaining_bytes;
    drop(store);

    // Room for a little over half of what is there: the two oldest days go.
    let options = StoreOptions {
        retention: Retention {
            max_age: None,
            max_bytes: Some(total / 2 + total / 8),
        },
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let report = store.apply_retention(day(28, 12)).unwrap();
    assert_eq!(
        report.removed,
        [
            PartitionKey { start: day(25, 0) },
            PartitionKey { start: day(26, 0) }
        ]
    );
    assert!(report.remaining_bytes <= total / 2 + total / 8);
    assert_eq!(store.event_count().unwrap(), 4);

    // A budget of one byte still keeps the partition holding now.
    let store = {
        drop(store);
        Store::open_with(
            dir.path(),
            StoreOptions {
                retention: Retention {
                    max_age: None,
                    max_bytes: Some(1),
                },
                ..StoreOptions::default()
            },
        )
        .unwrap()
    };
    let report = store.apply_retention(day(27, 12)).unwrap();
    assert_eq!(
        report.removed,
        [] as [PartitionKey; 0],
        "27th is now, 28th newest"
    );
}

#[test]
fn retention_reports_what_each_part_of_the_store_takes_on_disk() {
    let (dir, store) = loaded(StoreOptions::default());
    let before = store.disk_usage().unwrap();
    let events_on_disk: u64 = store
        .partition_infos()
        .unwrap()
        .iter()
        .map(|p| p.bytes)
        .sum();
    assert_eq!(before.events, events_on_disk);
    assert!(before.events > 0 && before.alerts > 0, "{before:?}");
    assert!(before.lifecycle > 0 && before.quarantine > 0, "{before:?}");
    let parts: Vec<&str> = before.parts().iter().map(|(name, _)| *name).collect();
    assert_eq!(parts, ["events", "alerts", "lifecycle", "quarantine"]);
    drop(store);

    // After a pass that removes the oldest day, the report's usage is what is left.
    let options = StoreOptions {
        retention: Retention {
            max_age: Some(Duration::days(2)),
            max_bytes: None,
        },
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let report = store.apply_retention(day(28, 12)).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.usage.events, report.remaining_bytes);
    assert!(report.usage.events < before.events, "{report:?}");
    assert_eq!(report.usage, store.disk_usage().unwrap());
}

#[test]
fn replays_across_commits_and_reopens_leave_one_copy() {
    let (dir, store) = loaded(StoreOptions::default());
    store.index_events(&four_days()).unwrap();
    store.commit().unwrap();
    store.index_events(&four_days()[2..5]).unwrap();
    store.index_events(&four_days()[2..5]).unwrap();
    store.commit().unwrap();
    assert_eq!(store.event_count().unwrap(), 8);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    store.index_events(&four_days()).unwrap();
    store.commit().unwrap();
    assert_eq!(store.event_count().unwrap(), 8);
    assert_eq!(store.search(&SearchRequest::new("", 100)).unwrap().total, 8);
}

/// A resend that arrives in another period finds its id stored in the first one and adds
/// nothing: the first copy stays. (When partitions were cut by event time, the resend
/// replaced the first copy; across partitions the first now stays, so that a resend cannot
/// rewrite or move what is stored.)
#[test]
fn a_timeless_event_redelivered_in_another_period_keeps_one_copy() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // No time in the record: its time is its receive time, which differs on re-delivery.
    let mut first = event(1, day(25, 23));
    first.received = first.time;
    let mut again = first.clone();
    again.time = day(26, 1);
    again.received = again.time;
    store.index_events(&[first]).unwrap();
    store.commit().unwrap();
    store.index_events(&[again]).unwrap();
    store.commit().unwrap();
    let results = store.search(&SearchRequest::new("", 10)).unwrap();
    assert_eq!(results.total, 1);
    assert_eq!(results.hits[0].time, day(25, 23));
    assert_eq!(store.partitions().unwrap().len(), 1);
    assert_eq!(store.partition_stats().unwrap().duplicates_skipped, 1);
}

#[test]
fn a_read_only_store_searches_beside_a_writer() {
    let (dir, writer) = loaded(StoreOptions::default());
    let reader = Store::open_with(
        dir.path(),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        reader.search(&SearchRequest::new("", 100)).unwrap().total,
        8
    );
    assert!(matches!(
        reader.index_events(&four_days()),
        Err(StoreError::ReadOnly)
    ));
    // A partition the writer creates later is found by the reader's next search.
    writer.index_events(&[event(20, day(29, 1))]).unwrap();
    writer.commit().unwrap();
    let newer = reader
        .search(&SearchRequest {
            from: Some(day(29, 0)),
            ..SearchRequest::new("", 10)
        })
        .unwrap();
    assert_eq!(ns(&newer.hits), [20]);
}

#[test]
fn events_are_found_by_id_looking_back_from_a_time() {
    let (_dir, store) = loaded(StoreOptions::default());
    let events = four_days();
    let ids = [events[1].id, events[4].id, EventId::derive("missing", &[])];
    let found = store.events_by_id(&ids, day(27, 4)).unwrap();
    assert_eq!(ns(&found), [1, 4]);
    let before = searched(&store);
    let found = store.events_by_id(&[events[4].id], day(27, 4)).unwrap();
    assert_eq!(ns(&found), [4]);
    assert_eq!(searched(&store) - before, 1, "stops once all are found");
}
