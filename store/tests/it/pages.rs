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

fn request_log(n: u32, time: DateTime<Utc>, status: u64, path: &str) -> Event {
    let line = format!("192.0.2.{n} - - [x] \"GET {path} HTTP/1.1\" {status} 10 \"-\" \"curl\"");
    let mut event = Event {
        id: EventId::derive("pages access", &[&n.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "flask-access".into(),
            name: "web-1".into(),
        },
        logsource: LogSource::new(None, Some("flask"), Some("webserver")),
        record: Record::Text(line),
        fields: Map::new(),
    };
    event.fields.insert("sc-status".into(), json!(status));
    event.fields.insert("cs-uri-stem".into(), json!(path));
    event
}

fn mixed() -> (TempDir, Store) {
    let dir = TempDir::new().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut events = Vec::new();
    // Logins at minutes 0..6, requests at minutes 0..30 (status 500 on every third).
    for n in 0..6 {
        events.push(login(n, base() + Duration::minutes(i64::from(n))));
    }
    for n in 0..30 {
        let status = if n % 3 == 0 { 500 } else { 200 };
        let path = if n % 2 == 0 { "/login" } else { "/users" };
        events.push(request_log(
            n,
            base() + Duration::minutes(i64::from(n)),
            status,
            path,
        ));
    }
    store.index_events(&events).expect("index");
    store.commit().expect("commit");
    (dir, store)
}

#[test]
fn histograms_pick_their_interval_and_count_each_bucket() {
    let (_dir, store) = mixed();
    let from = base();
    let to = base() + Duration::hours(1);
    let histogram = store
        .histogram(
            "",
            &vigil_store::Visibility::everything(),
            Some(from),
            Some(to),
        )
        .expect("histogram");
    assert_eq!(histogram.interval_seconds, 30, "an hour in 30 s buckets");
    assert_eq!(histogram.buckets.len(), 120);
    assert_eq!(histogram.buckets[0].start, from);
    assert_eq!(
        histogram.buckets[0].count, 2,
        "a login and a request at minute 0"
    );
    assert_eq!(histogram.buckets[1].count, 0);
    assert_eq!(histogram.buckets[2].count, 2);
    assert_eq!(histogram.buckets.iter().map(|b| b.count).sum::<u64>(), 36);

    let errors = store
        .histogram(
            "sc-status:>=500",
            &vigil_store::Visibility::everything(),
            Some(from),
            Some(to),
        )
        .expect("histogram");
    assert_eq!(errors.buckets.iter().map(|b| b.count).sum::<u64>(), 10);

    let day = store
        .histogram(
            "",
            &vigil_store::Visibility::everything(),
            Some(from),
            Some(from + Duration::days(1)),
        )
        .expect("day");
    assert_eq!(day.interval_seconds, 1800);
    assert_eq!(day.buckets[0].count, 36, "all within the first half hour");

    let spanning = store
        .histogram(
            "source_kind:cloudtrail",
            &vigil_store::Visibility::everything(),
            None,
            None,
        )
        .expect("auto");
    assert_eq!(spanning.buckets.first().map(|b| b.start), Some(base()));
    assert_eq!(spanning.buckets.iter().map(|b| b.count).sum::<u64>(), 6);
    assert!(store
        .histogram(
            "nomatch",
            &vigil_store::Visibility::everything(),
            None,
            None
        )
        .expect("empty")
        .buckets
        .is_empty());
}

#[test]
fn facets_count_top_values_of_source_fields_and_record_paths() {
    let (_dir, store) = mixed();
    let by_source = store
        .facets(
            "",
            &vigil_store::Visibility::everything(),
            "source_kind",
            10,
            None,
            None,
        )
        .expect("facets");
    let pairs: Vec<(serde_json::Value, u64)> = by_source
        .values
        .iter()
        .map(|v| (v.value.clone(), v.count))
        .collect();
    assert_eq!(
        pairs,
        [(json!("flask-access"), 30), (json!("cloudtrail"), 6)]
    );

    let statuses = store
        .facets(
            "",
            &vigil_store::Visibility::everything(),
            "sc-status",
            10,
            None,
            None,
        )
        .expect("statuses");
    let pairs: Vec<(serde_json::Value, u64)> = statuses
        .values
        .iter()
        .map(|v| (v.value.clone(), v.count))
        .collect();
    assert_eq!(pairs, [(json!(200), 20), (json!(500), 10)]);

    let paths = store
        .facets(
            "sc-status:500",
            &vigil_store::Visibility::everything(),
            "record.cs-uri-stem",
            1,
            None,
            None,
        )
        .expect("paths");
    assert_eq!(paths.values.len(), 1);
    assert_eq!(paths.values[0].value, json!("/login"));
    assert_eq!(paths.values[0].count, 5);
    assert_eq!(paths.other_count, 5);

    let users = store
        .facets(
            "",
            &vigil_store::Visibility::everything(),
            "userIdentity.userName",
            3,
            Some(base()),
            Some(base() + Duration::minutes(2)),
        )
        .expect("users");
    assert_eq!(users.values.len(), 2, "the time range applies");

    for bad in ["time", "doc", "text", "a..b"] {
        assert!(
            matches!(
                store.facets(
                    "",
                    &vigil_store::Visibility::everything(),
                    bad,
                    5,
                    None,
                    None
                ),
                Err(StoreError::Query { .. })
            ),
            "{bad}"
        );
    }
}
