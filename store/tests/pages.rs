//! Pagination, totals and aggregations.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map};
use tempfile::TempDir;
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::{SearchRequest, Store, StoreError};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0)
        .single()
        .expect("time")
}

fn login(n: u32, time: DateTime<Utc>) -> Event {
    let record = json!({
        "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
        "userIdentity": {"userName": format!("user{n}")}, "n": n
    });
    Event {
        id: EventId::derive("pages", &[&n.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "cloudtrail".into(),
            name: "org-trail".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record: Record::json(&record.to_string()).expect("object"),
        fields: Map::new(),
    }
}

fn number(event: &Event) -> u64 {
    event.document().expect("doc")["n"].as_u64().expect("n")
}

#[test]
fn cursor_pages_stay_stable_while_new_events_arrive() {
    let dir = TempDir::new().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // Twelve events, several sharing a timestamp so that pages split inside a tie.
    let events: Vec<Event> = (0..12)
        .map(|n| login(n, base() + Duration::seconds(i64::from(n / 3))))
        .collect();
    store.index_events(&events).expect("index");
    store.commit().expect("commit");

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut arrivals = 100;
    loop {
        let page = store
            .search(&SearchRequest {
                cursor: cursor.clone(),
                ..SearchRequest::new("eventName:ConsoleLogin", 5)
            })
            .expect("page");
        seen.extend(page.hits.iter().map(number));
        // Newer events arrive between pages, including one at the exact time of the
        // newest tie; none of them may appear in later pages or shift them.
        let newer = [
            login(arrivals, base() + Duration::minutes(5)),
            login(arrivals + 1, base() + Duration::seconds(3)),
        ];
        arrivals += 2;
        store.index_events(&newer).expect("index newer");
        store.commit().expect("commit newer");
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<u64> = (0..12).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "every event exactly once: {seen:?}");
    // Newest first: times never increase along the pages.
    expected.sort_by_key(|n| std::cmp::Reverse(n / 3));
    let times: Vec<u64> = seen.iter().map(|n| n / 3).collect();
    let mut descending = times.clone();
    descending.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, descending);
}

#[test]
fn totals_count_all_matches_and_the_last_page_has_no_cursor() {
    let dir = TempDir::new().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let events: Vec<Event> = (0..7)
        .map(|n| login(n, base() + Duration::minutes(i64::from(n))))
        .collect();
    store.index_events(&events).expect("index");
    store.commit().expect("commit");
    let first = store
        .search(&SearchRequest::new("", 4))
        .expect("first page");
    assert_eq!(first.total, 7);
    assert!(!first.total_is_lower_bound);
    assert_eq!(
        first.hits.iter().map(number).collect::<Vec<_>>(),
        [6, 5, 4, 3]
    );
    let second = store
        .search(&SearchRequest {
            cursor: first.next_cursor.clone(),
            ..SearchRequest::new("", 4)
        })
        .expect("second page");
    assert_eq!(second.total, 7, "the total ignores the cursor");
    assert_eq!(
        second.hits.iter().map(number).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    assert_eq!(second.next_cursor, None);
    match store.search(&SearchRequest {
        cursor: Some("not-a-cursor".into()),
        ..SearchRequest::new("", 4)
    }) {
        Err(StoreError::Query { .. }) => {}
        other => panic!("a bad cursor is the client's error: {other:?}"),
    }
}
