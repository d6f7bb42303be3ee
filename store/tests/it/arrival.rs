//! Partitions cut by arrival: an event's own time, which its sender writes, chooses neither
//! where it is stored nor how long it is kept, while searches still select by event time.

use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map};
use tempfile::TempDir;
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::{PartitionKey, Retention, SearchRequest, Store, StoreOptions};

fn event(n: u32, time: DateTime<Utc>, received: DateTime<Utc>) -> Event {
    let record = json!({"eventName": "GetObject", "n": n});
    Event {
        id: EventId::derive("arrival test", &[&n.to_le_bytes()]),
        time,
        received,
        source: Source {
            kind: "cloudtrail".into(),
            name: "trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).unwrap(),
        fields: Map::new(),
    }
}

fn ns(hits: &[Event]) -> Vec<i64> {
    hits.iter()
        .map(|e| e.document().unwrap()["n"].as_i64().unwrap())
        .collect()
}

fn between(query: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> SearchRequest {
    SearchRequest {
        from: Some(from),
        to: Some(to),
        ..SearchRequest::new(query, 100)
    }
}

fn searched(store: &Store) -> u64 {
    store.partition_stats().unwrap().partitions_searched
}

fn read_only(dir: &Path) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// 1000 events a day apart, received now: one partition, and each day found by its time,
/// reading that one partition, before and after a reopen, and from a read-only store.
#[test]
fn a_backfill_spanning_years_is_one_partition_searched_by_event_time() {
    let dir = TempDir::new().unwrap();
    let now = Utc::now();
    let events: Vec<Event> = (0..1000)
        .map(|n| event(n, now - Duration::days(i64::from(n)), now))
        .collect();
    {
        let store = Store::open(dir.path()).unwrap();
        store.index_events(&events).unwrap();
        store.commit().unwrap();
        assert_eq!(store.partitions().unwrap().len(), 1);
        assert!(store.partition_stats().unwrap().open_writers <= 1);
    }
    let day = |n: i64| now - Duration::days(n);
    for store in [Store::open(dir.path()).unwrap(), read_only(dir.path())] {
        let before = searched(&store);
        let found = store
            .search(&between(
                "",
                day(500) - Duration::hours(1),
                day(500) + Duration::hours(1),
            ))
            .unwrap();
        assert_eq!(ns(&found.hits), [500]);
        assert_eq!(searched(&store) - before, 1);
        // Before the oldest event, nothing is read.
        let before = searched(&store);
        let none = store.search(&between("", day(2000), day(1001))).unwrap();
        assert_eq!(none.total, 0);
        assert_eq!(searched(&store), before);
        assert_eq!(
            store.search(&SearchRequest::new("", 1)).unwrap().total,
            1000
        );
    }
}

/// A partition's span is recorded before the commit that needs it. Without the file (as an
/// earlier Vigil wrote partitions, or a backup restores them) it is read from the index.
#[test]
fn spans_survive_reopens_and_are_rebuilt_when_their_file_is_missing() {
    let dir = TempDir::new().unwrap();
    let now = Utc::now();
    let old = now - Duration::days(77);
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .index_events(&[event(1, old, now), event(2, now, now)])
            .unwrap();
        store.commit().unwrap();
    }
    let events = dir.path().join("events");
    let partition = store_partition(&events);
    assert!(partition.join("vigil-span").exists());
    let scheme: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(events.join("partitioning.json")).unwrap())
            .unwrap();
    assert_eq!(scheme["by"], "arrival", "{scheme}");
    std::fs::remove_file(partition.join("vigil-span")).unwrap();
    // A read-only store reads the index's time column instead.
    let window = between("", old - Duration::hours(1), old + Duration::hours(1));
    assert_eq!(
        ns(&read_only(dir.path()).search(&window).unwrap().hits),
        [1]
    );
    let store = Store::open(dir.path()).unwrap();
    assert!(partition.join("vigil-span").exists(), "written again");
    assert_eq!(ns(&store.search(&window).unwrap().hits), [1]);
}

fn store_partition(events: &Path) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(events)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Partitions whose spans overlap (a backfill arrived after newer events) merge into one
/// newest-first order, page by page.
#[test]
fn pages_merge_partitions_whose_spans_overlap() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let day = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
    // Arrived on the 25th: the 25th's events. On the 27th: a backfill of the 20th to the
    // 26th, interleaved with the 25th's, and the 27th's own.
    let mut events = Vec::new();
    for h in 0..6 {
        events.push(event(100 + h, day(25, 2 * h + 1), day(25, 23)));
    }
    for h in 0..12 {
        events.push(event(
            200 + h,
            day(20 + h / 2, 2 * (h % 2) + 12),
            day(27, 1),
        ));
        events.push(event(300 + h, day(25, 2 * h), day(27, 2)));
    }
    events.push(event(400, day(27, 3), day(27, 3)));
    store.index_events(&events).unwrap();
    store.commit().unwrap();
    assert_eq!(store.partitions().unwrap().len(), 2);
    let mut expected: Vec<(DateTime<Utc>, i64)> = events
        .iter()
        .map(|e| (e.time, ns(std::slice::from_ref(e))[0]))
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    let all = store.search(&SearchRequest::new("", 100)).unwrap();
    let order: Vec<DateTime<Utc>> = all.hits.iter().map(|e| e.time).collect();
    let wanted: Vec<DateTime<Utc>> = expected.iter().map(|(t, _)| *t).collect();
    assert_eq!(order, wanted, "newest first across both partitions");
    let mut paged = Vec::new();
    let mut request = SearchRequest::new("", 4);
    loop {
        let page = store.search(&request).unwrap();
        assert_eq!(page.total, events.len() as u64);
        paged.extend(page.hits.iter().map(|e| e.time));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(paged, wanted);
}

/// An event dated 45 days back arrives now: 30 days of retention keep it, since it is kept
/// by arrival, and it is still found by id.
#[test]
fn retention_keeps_events_by_arrival() {
    let dir = TempDir::new().unwrap();
    let options = StoreOptions {
        retention: Retention {
            max_age: Some(Duration::days(30)),
            max_bytes: None,
        },
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let now = Utc::now();
    let arrived_earlier = now - Duration::days(40);
    let events = [
        event(1, now - Duration::days(45), now),
        event(2, now, now),
        // Arrived 40 days ago (a replay of the bus keeps that): removed.
        event(3, arrived_earlier, arrived_earlier),
    ];
    store.index_events(&events).unwrap();
    store.commit().unwrap();
    let report = store.apply_retention(now).unwrap();
    assert_eq!(
        report.removed,
        [PartitionKey {
            start: store.options().partition.key(arrived_earlier).start
        }]
    );
    assert_eq!(ns(&store.events_by_id(&[events[0].id], now).unwrap()), [1]);
    assert_eq!(store.event_count().unwrap(), 2);
}

/// A resend arriving in another period keeps the stored copy, committed or not, in one batch
/// or across reopens (the id filters are rebuilt from the partitions' terms).
#[test]
fn an_id_gets_one_document_across_partitions() {
    let dir = TempDir::new().unwrap();
    let first_day = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
    let later = |days: i64| first_day + Duration::days(days);
    let original = event(1, first_day, first_day);
    let resent = |days: i64| {
        let mut again = original.clone();
        again.received = later(days);
        again.record = Record::json(r#"{"eventName": "Rewritten", "n": 1}"#).unwrap();
        again
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.index_events(std::slice::from_ref(&original)).unwrap();
        // Not committed yet, and again within one batch with another partition's event.
        store.index_events(&[resent(1)]).unwrap();
        store
            .index_events(&[event(2, later(2), later(2)), resent(2)])
            .unwrap();
        store.commit().unwrap();
        store.index_events(&[resent(3)]).unwrap();
        store.commit().unwrap();
        assert_eq!(store.partition_stats().unwrap().duplicates_skipped, 3);
    }
    let store = Store::open(dir.path()).unwrap();
    store.index_events(&[resent(4), resent(4)]).unwrap();
    store.commit().unwrap();
    let hits = store.search(&SearchRequest::new("n:1", 10)).unwrap();
    assert_eq!(hits.total, 1);
    assert_eq!(hits.hits[0], original, "the first copy, unchanged");
    assert_eq!(store.event_count().unwrap(), 2);
    // Within its own partition a replay still replaces its copy, as a bus replay does.
    let mut replayed = original.clone();
    replayed.record = Record::json(r#"{"eventName": "Replayed", "n": 1}"#).unwrap();
    store.index_events(std::slice::from_ref(&replayed)).unwrap();
    store.commit().unwrap();
    let hits = store.search(&SearchRequest::new("n:1", 10)).unwrap();
    assert_eq!(hits.hits, [replayed]);
}

/// Events whose own times are absurd are indexed at their arrival, flagged, and keep their
/// times as sent; however many periods they name, they are one partition.
#[test]
fn absurd_times_are_flagged_and_stored_as_sent() {
    let dir = TempDir::new().unwrap();
    let now = Utc::now();
    let absurd = [
        Utc.with_ymd_and_hms(11476, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap(),
        DateTime::<Utc>::UNIX_EPOCH,
        now + Duration::hours(2),
    ];
    let events: Vec<Event> = absurd
        .iter()
        .enumerate()
        .map(|(n, time)| event(n as u32, *time, now))
        .chain([event(9, now - Duration::minutes(5), now)])
        .collect();
    {
        let store = Store::open(dir.path()).unwrap();
        store.index_events(&events).unwrap();
        store.commit().unwrap();
        assert_eq!(store.partition_stats().unwrap().suspect_times, 4);
    }
    for store in [Store::open(dir.path()).unwrap(), read_only(dir.path())] {
        assert_eq!(store.partitions().unwrap().len(), 1);
        let flagged = store
            .search(&SearchRequest::new("time_suspect:true", 10))
            .unwrap();
        let mut times: Vec<DateTime<Utc>> = flagged.hits.iter().map(|e| e.time).collect();
        times.sort();
        let mut expected = absurd.to_vec();
        expected.sort();
        assert_eq!(times, expected);
        let recent = store
            .search(&between(
                "",
                now - Duration::hours(1),
                now + Duration::seconds(1),
            ))
            .unwrap();
        assert_eq!(recent.total, 5, "indexed at their arrival");
        assert!(!recent.total_is_lower_bound);
        assert_eq!(
            store
                .search(&SearchRequest::new("-time_suspect:true", 10))
                .unwrap()
                .total,
            1
        );
    }
}

/// A batch whose events arrived over ten periods (a bus backlog after ten days down) keeps
/// at most four writers open at once, and loses none of them.
#[test]
fn writers_open_at_once_are_bounded() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let events: Vec<Event> = (0..10)
        .map(|n| {
            let received = now - Duration::days(i64::from(n));
            event(n, received, received)
        })
        .collect();
    store.index_events(&events).unwrap();
    assert!(store.partition_stats().unwrap().open_writers <= 4);
    store.commit().unwrap();
    assert_eq!(store.partitions().unwrap().len(), 10);
    assert_eq!(store.event_count().unwrap(), 10);
}

/// Before partitions followed arrival, a record dated in the year 11476 made a partition
/// named `+114760815T000000Z`, which was never read back: its events could not be found.
/// After the upgrade they are.
#[test]
fn a_partition_named_beyond_year_9999_is_read_after_the_upgrade() {
    let dir = TempDir::new().unwrap();
    let now = Utc::now();
    {
        let store = Store::open(dir.path()).unwrap();
        store.index_events(&[event(7, now, now)]).unwrap();
        store.commit().unwrap();
    }
    // As an earlier Vigil left it: the name of its event time, no span file.
    let events = dir.path().join("events");
    let written = store_partition(&events);
    std::fs::remove_file(written.join("vigil-span")).unwrap();
    std::fs::rename(&written, events.join("+114760815T000000Z")).unwrap();
    for store in [read_only(dir.path()), Store::open(dir.path()).unwrap()] {
        let found = store.search(&SearchRequest::new("n:7", 10)).unwrap();
        assert_eq!(ns(&found.hits), [7]);
        assert!(!found.total_is_lower_bound);
        assert_eq!(store.partitions().unwrap().len(), 1);
    }
}
