//! The live tail's view of the store: events committed after a cursor, matching a query, in
//! commit order, whatever time they carry.

use chrono::{TimeZone, Utc};
use serde_json::Map;
use tempfile::TempDir;
use vigil_event::{Event, EventId, LogSource, Record, Source, AUDIT_SOURCE};
use vigil_store::{Store, Visibility};

fn event(n: u32, kind: &str, year: i32, record: &str) -> Event {
    let time = Utc.with_ymd_and_hms(year, 1, 2, 3, 4, 5).unwrap();
    Event {
        id: EventId::derive("live tail test", &[&n.to_le_bytes()]),
        time,
        received: Utc::now(),
        source: Source {
            kind: kind.into(),
            name: format!("{kind}-source"),
        },
        logsource: LogSource::default(),
        record: Record::json(record).unwrap(),
        fields: Map::new(),
    }
}

fn ids(arrived: &vigil_store::Arrived) -> Vec<EventId> {
    arrived.events.iter().map(|(_, event)| event.id).collect()
}

#[test]
fn the_tail_gets_committed_matches_in_commit_order_whatever_their_time() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let start = store.arrival_cursor();
    let hiding = Visibility::hiding(&[AUDIT_SOURCE]);
    let everything = Visibility::everything();
    let query = "eventName:StopLogging";

    // Dated long ago, as a sender hiding from a view of recent times would date it.
    let old = event(1, "cloudtrail", 2001, r#"{"eventName":"StopLogging"}"#);
    let other = event(2, "cloudtrail", 2026, r#"{"eventName":"DescribeTrails"}"#);
    let audit = event(3, AUDIT_SOURCE, 2026, r#"{"eventName":"StopLogging"}"#);
    store
        .index_events(&[old.clone(), other, audit.clone()])
        .unwrap();
    // Indexed but not committed: not searchable, so not in the tail yet.
    let before = store.arrived_since(start, query, &hiding, 10).unwrap();
    assert!(before.events.is_empty());
    assert_eq!(before.cursor, start);
    store.commit().unwrap();

    let seen = store.arrived_since(start, query, &hiding, 10).unwrap();
    assert_eq!(ids(&seen), vec![old.id]);
    assert!(!seen.gap);
    assert_eq!(seen.cursor, store.arrival_cursor());
    let all = store.arrived_since(start, query, &everything, 10).unwrap();
    assert_eq!(ids(&all), vec![old.id, audit.id]);
    // Nothing new after the cursor it gave.
    let again = store
        .arrived_since(seen.cursor, query, &hiding, 10)
        .unwrap();
    assert!(again.events.is_empty());

    // A full page stops at its last event, and the next call carries on from there.
    let batch: Vec<Event> = (10..13)
        .map(|n| event(n, "cloudtrail", 2026, r#"{"eventName":"StopLogging"}"#))
        .collect();
    store.index_events(&batch).unwrap();
    store.commit().unwrap();
    let first = store.arrived_since(seen.cursor, query, &hiding, 2).unwrap();
    assert_eq!(first.events.len(), 2);
    let rest = store
        .arrived_since(first.cursor, query, &hiding, 2)
        .unwrap();
    let mut tailed = ids(&first);
    tailed.extend(ids(&rest));
    let mut expected: Vec<EventId> = batch.iter().map(|e| e.id).collect();
    tailed.sort();
    expected.sort();
    assert_eq!(tailed, expected);
    assert!(rest.events.iter().all(|(n, _)| *n > first.cursor));

    // A bad query fails, with or without new events.
    assert!(store.arrived_since(rest.cursor, "a:(", &hiding, 2).is_err());
    assert!(store.arrived_since(start, "a:(", &hiding, 2).is_err());
    // A cursor from before this store opened reads as a gap, once: the next call carries on
    // from where the first one left off.
    let old = store.arrived_since(0, query, &hiding, 10).unwrap();
    assert!(old.gap);
    assert!(
        !store
            .arrived_since(old.cursor, query, &hiding, 10)
            .unwrap()
            .gap
    );
    // So does it in a store that has committed nothing yet.
    let idle_dir = TempDir::new().unwrap();
    let idle = Store::open(idle_dir.path()).unwrap();
    let first = idle.arrived_since(0, query, &hiding, 10).unwrap();
    assert!(first.gap && first.events.is_empty());
    assert_eq!(first.cursor, idle.arrival_cursor());
    assert!(
        !idle
            .arrived_since(first.cursor, query, &hiding, 10)
            .unwrap()
            .gap
    );
}
