//! End-to-end tests of the store against realistic events from Vigil's sources.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use vigil_event::{Alert, Event, EventId, Level, LogSource, Record, Source};
use vigil_store::{SearchRequest, Store, StoreError};

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, minute, second)
        .single()
        .expect("valid test time")
}

fn event(
    kind: &str,
    name: &str,
    logsource: LogSource,
    time: DateTime<Utc>,
    record: Record,
) -> Event {
    Event {
        id: EventId::derive("vigil store test", &[record.as_str().as_bytes()]),
        time,
        received: time + chrono::Duration::seconds(2),
        source: Source {
            kind: kind.into(),
            name: name.into(),
        },
        logsource,
        record,
        fields: Map::new(),
    }
}

fn json_record(value: Value) -> Record {
    Record::json(&value.to_string()).expect("test record is an object")
}

fn console_login() -> Event {
    event(
        "cloudtrail",
        "org-trail",
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        at(0, 0),
        json_record(json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLE",
                "arn": "arn:aws:iam::123456789012:user/alice",
                "accountId": "123456789012",
                "userName": "alice"
            },
            "eventTime": "2024-05-01T10:00:00Z",
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "responseElements": {"ConsoleLogin": "Failure"},
            "additionalEventData": {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"},
            "eventType": "AwsConsoleSignIn"
        })),
    )
}

fn delete_trail() -> Event {
    event(
        "cloudtrail",
        "org-trail",
        LogSource::new(Some("aws"), Some("cloudtrail"), None),
        at(3, 0),
        json_record(json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/ops/mallory"},
            "eventTime": "2024-05-01T10:03:00Z",
            "eventSource": "cloudtrail.amazonaws.com",
            "eventName": "DeleteTrail",
            "awsRegion": "eu-west-1",
            "sourceIPAddress": "198.51.100.4",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": {"name": "org-trail"},
            "additionalEventData": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
            "responseElements": null
        })),
    )
}

fn k8s_secret_read() -> Event {
    event(
        "kubernetes-audit",
        "prod-cluster",
        LogSource::new(Some("kubernetes"), None, Some("application")),
        at(1, 30),
        json_record(json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": "5f7c1a2e-0d1b-4c55-9b8e-3f3c5d6e7a8b",
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/secrets/db-password",
            "verb": "get",
            "user": {
                "username": "system:serviceaccount:default:builder",
                "groups": ["system:serviceaccounts", "system:authenticated"]
            },
            "sourceIPs": ["10.0.0.12"],
            "userAgent": "kubectl/v1.29.0 (linux/amd64)",
            "objectRef": {
                "resource": "secrets",
                "namespace": "default",
                "name": "db-password",
                "apiVersion": "v1"
            },
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2024-05-01T10:01:30.000000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"}
        })),
    )
}

fn flask_login_failure() -> Event {
    event(
        "http",
        "webapp",
        LogSource::new(None, Some("flask"), Some("application")),
        at(2, 0),
        json_record(json!({
            "timestamp": "2024-05-01T10:02:00.123Z",
            "level": "WARNING",
            "logger": "app.auth",
            "message": "login failed for user bob",
            "remote_addr": "198.51.100.23",
            "method": "POST",
            "path": "/login",
            "status": 401
        })),
    )
}

fn access_log_line() -> Event {
    let line = r#"203.0.113.9 - - [01/May/2024:10:05:00 +0000] "GET /admin/config.php HTTP/1.1" 404 153 "-" "sqlmap/1.7.2#stable""#;
    let mut ev = event(
        "http",
        "nginx",
        LogSource::new(None, Some("nginx"), Some("webserver")),
        at(5, 0),
        Record::Text(line.into()),
    );
    for (key, value) in [
        ("client_ip", json!("203.0.113.9")),
        ("method", json!("GET")),
        ("path", json!("/admin/config.php")),
        ("status", json!(404)),
        ("bytes", json!(153)),
        ("user_agent", json!("sqlmap/1.7.2#stable")),
    ] {
        ev.fields.insert(key.into(), value);
    }
    ev
}

/// The five sample events, deliberately not in time order.
fn samples() -> Vec<Event> {
    vec![
        flask_login_failure(),
        console_login(),
        access_log_line(),
        k8s_secret_read(),
        delete_trail(),
    ]
}

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("store opens")
}

fn loaded() -> (TempDir, Store) {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store.index_events(&samples()).expect("index");
    store.commit().expect("commit");
    (dir, store)
}

fn search(store: &Store, query: &str) -> vigil_store::SearchResults {
    store
        .search(&SearchRequest::new(query, 100))
        .unwrap_or_else(|e| panic!("query {query:?} failed: {e}"))
}

/// The source names of the hits, newest first.
fn names(store: &Store, query: &str) -> Vec<String> {
    search(store, query)
        .hits
        .into_iter()
        .map(|e| format!("{}/{}", e.source.kind, e.record_hint()))
        .collect()
}

trait Hint {
    fn record_hint(&self) -> String;
}

impl Hint for Event {
    /// A short label telling the sample events apart in assertion messages.
    fn record_hint(&self) -> String {
        let doc = self.document().unwrap_or_default();
        for key in ["eventName", "verb", "logger", "method"] {
            if let Some(Value::String(s)) = doc.get(key) {
                return s.clone();
            }
        }
        "?".into()
    }
}

#[test]
fn nested_json_paths_match_with_and_without_the_record_prefix() {
    let (_dir, store) = loaded();
    assert_eq!(
        names(&store, "objectRef.resource:secrets"),
        ["kubernetes-audit/get"]
    );
    assert_eq!(
        names(&store, "record.objectRef.resource:secrets"),
        ["kubernetes-audit/get"]
    );
    assert_eq!(
        names(&store, "eventName:ConsoleLogin"),
        ["cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "record.eventName:ConsoleLogin"),
        ["cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "eventName:consolelogin"),
        ["cloudtrail/ConsoleLogin"],
        "record matching is case-insensitive"
    );
    assert_eq!(
        names(&store, "responseElements.ConsoleLogin:Failure"),
        ["cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "userIdentity.userName:alice"),
        ["cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "user.groups:authenticated"),
        ["kubernetes-audit/get"],
        "array elements are searchable"
    );
    assert!(names(&store, "objectRef.resource:configmaps").is_empty());
    assert!(names(&store, "noSuchField:secrets").is_empty());
}

#[test]
fn numbers_and_dotted_keys_in_records_are_searchable() {
    let (_dir, store) = loaded();
    assert_eq!(names(&store, "status:401"), ["http/app.auth"]);
    assert_eq!(
        names(&store, "status:404"),
        ["http/GET"],
        "text record fields"
    );
    assert_eq!(
        names(&store, "responseStatus.code:200"),
        ["kubernetes-audit/get"]
    );
    assert_eq!(
        names(
            &store,
            r#"annotations.authorization.k8s.io\/decision:allow"#
        ),
        ["kubernetes-audit/get"],
        "dotted keys are expanded into paths"
    );
}

#[test]
fn bare_terms_search_all_string_values() {
    let (_dir, store) = loaded();
    assert_eq!(names(&store, "sqlmap"), ["http/GET"], "text record line");
    assert_eq!(names(&store, "bob"), ["http/app.auth"]);
    assert_eq!(names(&store, "BOB"), ["http/app.auth"]);
    assert_eq!(names(&store, "mallory"), ["cloudtrail/DeleteTrail"]);
    assert_eq!(
        names(&store, "db-password"),
        ["kubernetes-audit/get"],
        "a hyphenated word is a phrase, not a negation"
    );
    assert_eq!(names(&store, "153"), ["http/GET"], "numbers count as words");
    assert_eq!(
        names(
            &store,
            "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
        ),
        ["cloudtrail/DeleteTrail"],
        "long indicators such as hashes are kept whole"
    );
    assert_eq!(
        names(
            &store,
            "additionalEventData.sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ),
        ["cloudtrail/DeleteTrail"]
    );
    assert!(names(&store, "nothingmatchesthis").is_empty());
    // Bare words narrow the search rather than widen it.
    assert_eq!(names(&store, "login bob"), ["http/app.auth"]);
    assert!(names(&store, "bob alice").is_empty());
}

#[test]
fn phrases_must_match_in_order() {
    let (_dir, store) = loaded();
    assert_eq!(names(&store, r#""login failed""#), ["http/app.auth"]);
    assert!(names(&store, r#""failed login""#).is_empty());
    assert_eq!(
        names(&store, r#"sourceIPAddress:"203.0.113.7""#),
        ["cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, r#"eventTime:"2024-05-01T10:03:00Z""#),
        ["cloudtrail/DeleteTrail"],
        "date-like strings stay searchable as text"
    );
}

#[test]
fn source_and_logsource_fields_match_exactly_ignoring_case() {
    let (_dir, store) = loaded();
    assert_eq!(
        names(&store, "source_kind:cloudtrail"),
        ["cloudtrail/DeleteTrail", "cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "source_kind:CloudTrail"),
        ["cloudtrail/DeleteTrail", "cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "source_kind:kubernetes-audit"),
        ["kubernetes-audit/get"]
    );
    assert!(
        names(&store, "source_kind:kubernetes").is_empty(),
        "keyword fields match the whole value"
    );
    assert_eq!(names(&store, "source_name:nginx"), ["http/GET"]);
    assert_eq!(names(&store, "service:flask"), ["http/app.auth"]);
    assert_eq!(names(&store, "product:aws").len(), 2);
    assert_eq!(
        names(&store, "category:application"),
        ["http/app.auth", "kubernetes-audit/get"]
    );
}

#[test]
fn boolean_operators_combine_clauses() {
    let (_dir, store) = loaded();
    assert_eq!(
        names(
            &store,
            "source_kind:cloudtrail AND NOT eventName:ConsoleLogin"
        ),
        ["cloudtrail/DeleteTrail"]
    );
    assert_eq!(
        names(&store, "source_kind:cloudtrail -eventName:ConsoleLogin"),
        ["cloudtrail/DeleteTrail"]
    );
    assert_eq!(
        names(&store, "eventName:ConsoleLogin OR verb:get"),
        ["kubernetes-audit/get", "cloudtrail/ConsoleLogin"]
    );
    assert_eq!(
        names(&store, "(sqlmap OR bob) AND source_kind:http"),
        ["http/GET", "http/app.auth"]
    );
    assert_eq!(
        names(&store, "source_kind:http AND NOT (status:404)"),
        ["http/app.auth"]
    );
    // A lone negation means "everything except".
    assert_eq!(
        names(&store, "NOT source_kind:cloudtrail"),
        ["http/GET", "http/app.auth", "kubernetes-audit/get"]
    );
    assert_eq!(
        names(&store, "-source_kind:cloudtrail -source_kind:http"),
        ["kubernetes-audit/get"]
    );
    assert_eq!(
        names(
            &store,
            "eventName:ConsoleLogin OR NOT source_kind:cloudtrail"
        ),
        [
            "http/GET",
            "http/app.auth",
            "kubernetes-audit/get",
            "cloudtrail/ConsoleLogin"
        ]
    );
}

#[test]
fn results_are_newest_first_with_an_exact_total() {
    let (_dir, store) = loaded();
    let all = search(&store, "");
    assert_eq!(all.total, 5);
    let times: Vec<_> = all.hits.iter().map(|e| e.time).collect();
    assert_eq!(times, [at(5, 0), at(3, 0), at(2, 0), at(1, 30), at(0, 0)]);

    let page = store
        .search(&SearchRequest::new("   ", 2))
        .expect("blank query");
    assert_eq!(page.total, 5, "total counts all matches, not the page");
    assert_eq!(
        page.hits.iter().map(|e| e.time).collect::<Vec<_>>(),
        [at(5, 0), at(3, 0)]
    );

    let counted = store
        .search(&SearchRequest::new("source_kind:cloudtrail", 0))
        .expect("limit 0");
    assert_eq!(counted.total, 2);
    assert!(counted.hits.is_empty());

    let huge = store
        .search(&SearchRequest::new(String::new(), usize::MAX))
        .expect("huge limit");
    assert_eq!(huge.hits.len(), 5);
}

#[test]
fn ordering_keeps_sub_second_precision() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let base = at(0, 0);
    let events: Vec<Event> = [3i64, 1, 2]
        .into_iter()
        .map(|ms| {
            let mut ev = flask_login_failure();
            ev.time = base + chrono::Duration::milliseconds(ms);
            ev.id = EventId::derive("ms", &[&ms.to_le_bytes()]);
            ev
        })
        .collect();
    store.index_events(&events).expect("index");
    store.commit().expect("commit");
    let times: Vec<_> = search(&store, "").hits.iter().map(|e| e.time).collect();
    assert_eq!(
        times,
        [
            base + chrono::Duration::milliseconds(3),
            base + chrono::Duration::milliseconds(2),
            base + chrono::Duration::milliseconds(1)
        ]
    );
}

#[test]
fn hits_are_the_original_events() {
    let (_dir, store) = loaded();
    let mut expected = samples();
    expected.sort_by_key(|e| std::cmp::Reverse(e.time));
    let hits = search(&store, "").hits;
    assert_eq!(hits, expected);
    // The JSON record keeps its exact bytes.
    let login = search(&store, "eventName:ConsoleLogin").hits;
    assert_eq!(login[0].record.as_str(), console_login().record.as_str());
}

#[test]
fn indexed_events_are_invisible_until_commit() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store.index_events(&samples()).expect("index");
    assert_eq!(store.event_count().expect("count"), 0);
    assert_eq!(search(&store, "").total, 0);
    store.commit().expect("commit");
    assert_eq!(store.event_count().expect("count"), 5);
    assert_eq!(search(&store, "").total, 5);
}

#[test]
fn replay_within_one_batch_keeps_one_copy() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let ev = console_login();
    store
        .index_events(&[ev.clone(), ev.clone(), ev.clone()])
        .expect("index");
    // A second uncommitted batch carrying the same event.
    store
        .index_events(std::slice::from_ref(&ev))
        .expect("index again");
    store.commit().expect("commit");
    assert_eq!(store.event_count().expect("count"), 1);
    let found = search(&store, "eventName:ConsoleLogin");
    assert_eq!(found.total, 1);
    assert_eq!(found.hits, [ev]);
}

#[test]
fn replay_after_commit_replaces_the_old_copy() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store.index_events(&samples()).expect("index");
    store.commit().expect("commit");
    store.index_events(&samples()).expect("replay");
    store.commit().expect("commit replay");
    assert_eq!(store.event_count().expect("count"), 5);
    assert_eq!(search(&store, "").total, 5);
    assert_eq!(search(&store, "source_kind:cloudtrail").total, 2);

    // A same-id event with different content is an update, not an addition.
    let mut changed = console_login();
    changed.source.name = "other-trail".into();
    store.index_events(&[changed]).expect("update");
    store.commit().expect("commit update");
    assert_eq!(store.event_count().expect("count"), 5);
    assert_eq!(search(&store, "source_name:org-trail").total, 1);
    assert_eq!(search(&store, "source_name:other-trail").total, 1);
}

/// Ids are found through their first eight bytes and checked in full, so two ids that share
/// those bytes are still two events to search, replay and fetch.
#[test]
fn ids_sharing_their_first_eight_bytes_stay_apart() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let id = |last: u8| {
        let mut bytes = [0x64u8; 16];
        bytes[15] = last;
        EventId::from_bytes(bytes)
    };
    let (mut first, mut second) = (console_login(), delete_trail());
    first.id = id(0x10);
    second.id = id(0x20);
    store
        .index_events(&[first.clone(), second.clone()])
        .expect("index");
    store.commit().expect("commit");

    let first_hex = first.id.to_string();
    assert_eq!(
        search(&store, &format!("id:{first_hex}")).hits,
        [first.clone()]
    );
    assert_eq!(
        search(
            &store,
            &format!("id:{}", second.id.to_string().to_uppercase())
        )
        .hits,
        [second.clone()]
    );
    // A prefix within the first eight bytes is a range of them; a longer one is checked.
    assert_eq!(search(&store, "id:6464*").total, 2);
    assert_eq!(
        search(&store, &format!("id:{}*", &first_hex[..24])).total,
        2
    );
    assert_eq!(
        search(&store, &format!("id:{}*", &first_hex[..31])).hits,
        [first.clone()]
    );
    assert_eq!(search(&store, &format!("id:{}", &first_hex[..31])).total, 0);
    assert_eq!(search(&store, "id:not-an-id").total, 0);
    assert_eq!(search(&store, "id:*").total, 2);
    assert_query_error(&store, "id:*6401");
    assert_query_error(&store, "id:/64.*/");

    // A replay of one replaces it and leaves the other.
    let mut replayed = first.clone();
    replayed.source.name = "replayed-trail".into();
    store
        .index_events(std::slice::from_ref(&replayed))
        .expect("replay");
    store.commit().expect("commit replay");
    assert_eq!(store.event_count().expect("count"), 2);
    assert_eq!(
        search(&store, &format!("id:{first_hex}")).hits,
        [replayed.clone()]
    );
    assert_eq!(
        store
            .events_by_id(&[second.id, replayed.id], Utc::now())
            .expect("by id"),
        [second, replayed]
    );
}

#[test]
fn events_survive_reopen_and_replays_after_reopen_stay_single() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        store.index_events(&samples()).expect("index");
        store.commit().expect("commit");
    }
    let store = open(dir.path());
    assert_eq!(store.event_count().expect("count"), 5);
    assert_eq!(names(&store, "objectRef.resource:secrets").len(), 1);
    store.index_events(&samples()).expect("replay");
    store.commit().expect("commit");
    assert_eq!(store.event_count().expect("count"), 5);
    assert_eq!(search(&store, "").total, 5);
}

#[test]
fn uncommitted_events_are_lost_on_reopen() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        store.index_events(&samples()).expect("index");
    }
    let store = open(dir.path());
    assert_eq!(store.event_count().expect("count"), 0);
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let _first = open(dir.path());
    match Store::open(dir.path()) {
        Err(StoreError::Open { .. }) => {}
        Err(other) => panic!("expected an Open error, got {other}"),
        Ok(_) => panic!("a second writer must not open the same index"),
    }
}

fn assert_query_error(store: &Store, query: &str) {
    match store.search(&SearchRequest::new(query, 10)) {
        Err(StoreError::Query { message, .. }) => {
            assert!(!message.is_empty(), "query {query:?} needs a message")
        }
        Err(other) => panic!("query {query:?}: expected a Query error, got {other}"),
        Ok(results) => panic!(
            "query {query:?}: expected a Query error, got {} hits",
            results.total
        ),
    }
}

#[test]
fn bad_queries_are_query_errors() {
    let (_dir, store) = loaded();
    for query in [
        "time:yesterday",
        "doc:anything",
        "eventName:ConsoleLogin AND (",
        &"(".repeat(10_000),
        &format!("{}a{}", "(".repeat(100), ")".repeat(100)),
        &"a ".repeat(20_000),
        &format!("{}a", "NOT ".repeat(2_000)),
        &"a:(".repeat(1_000),
        "-\"unterminated",
    ] {
        assert_query_error(&store, query);
    }
}

#[test]
fn malformed_queries_never_panic() {
    let (_dir, store) = loaded();
    let queries = [
        "AND",
        "OR",
        "NOT",
        "(",
        ")",
        ")(",
        "\"",
        "\"unterminated",
        ":",
        "::",
        "a:",
        ":a",
        "a:b:c",
        "[",
        "]",
        "{",
        "}",
        "[a TO",
        "time:[",
        "time:[* TO *]",
        "*",
        "**",
        "^",
        "a^",
        "a^x",
        "*^2",
        "~",
        "a~",
        "\"a b\"~",
        "\"a b\"~x",
        "-",
        "+",
        "--a",
        "+-a",
        "\\",
        "a\\",
        "/",
        "/a/",
        "a:/b/",
        "record:",
        "record.:x",
        ".a:b",
        "a..b:c",
        "\0",
        "\u{1}a:b",
        "🦀",
        "eventName:🦀",
        "IN [",
        "a IN [b c",
        "a:>",
        "a:>=",
        "a:<5",
        "status:>400",
        "a:*",
        "a:\"\"",
        "\"\"",
        "()",
        "(())",
        "a AND AND b",
        "a OR OR",
        "NOT NOT a",
        "a -",
        "- a",
    ];
    for query in queries {
        match store.search(&SearchRequest::new(query, 10)) {
            Ok(_) | Err(StoreError::Query { .. }) => {}
            Err(other) => panic!("query {query:?}: unexpected error {other}"),
        }
    }
}

#[test]
fn hostile_records_index_without_panicking() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let mut deep = json!("bottom");
    for _ in 0..100 {
        deep = json!({ "n": deep });
    }
    let records = [
        json!({"a\u{0}b": "nul in key", "c\u{1}d": "separator in key", "": "empty key"}),
        json!({"big": 18446744073709551615u64, "neg": -9223372036854775808i64, "float": 1.5e308}),
        json!({"deep": deep}),
        json!({"long": "x".repeat(100_000), "arr": [[1, [2, [3]]], null, true, {"k": "v"}]}),
        json!({"eventTime": "not a date", "date": "2024-13-45T99:99:99Z"}),
    ];
    let mut events: Vec<Event> = records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let mut ev = event(
                "http",
                "fuzz",
                LogSource::default(),
                at(0, 0),
                json_record(record.clone()),
            );
            ev.id = EventId::derive("hostile", &[&[i as u8]]);
            ev
        })
        .collect();
    // Times beyond tantivy's nanosecond range, and a record that is JSON but not an object.
    // The two times are absurd, so they are flagged and indexed at their arrival: they can
    // neither head every newest-first page nor sink below every range.
    let mut future = flask_login_failure();
    future.id = EventId::derive("hostile", &[b"future"]);
    future.time = Utc
        .with_ymd_and_hms(200_000, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let mut past = flask_login_failure();
    past.id = EventId::derive("hostile", &[b"past"]);
    past.time = Utc
        .with_ymd_and_hms(-200_000, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let not_object: Event = serde_json::from_value(json!({
        "id": EventId::derive("hostile", &[b"array"]).to_string(),
        "time": "2024-05-01T10:00:00Z",
        "received": "2024-05-01T10:00:00Z",
        "source": {"kind": "http", "name": "fuzz"},
        "record": {"json": ["arrayword", 1]}
    }))
    .expect("an event whose record is an array");
    events.extend([future.clone(), past.clone(), not_object]);
    store.index_events(&events).expect("index hostile events");
    store.commit().expect("commit");
    assert_eq!(store.event_count().expect("count"), 8);
    let all = search(&store, "");
    assert_eq!(all.total, 8);
    let suspect = search(&store, "time_suspect:true");
    let mut times: Vec<DateTime<Utc>> = suspect.hits.iter().map(|e| e.time).collect();
    times.sort();
    assert_eq!(times, [past.time, future.time], "stored as they came");
    let arrived = SearchRequest {
        from: Some(future.received),
        to: Some(future.received + chrono::Duration::seconds(1)),
        ..SearchRequest::new("time_suspect:true", 10)
    };
    assert_eq!(store.search(&arrived).expect("search").total, 2);
    assert_eq!(search(&store, "arrayword").total, 1);
    assert_eq!(search(&store, "n.n.n.n:bottom").total, 0);
    assert_eq!(search(&store, "empty").total, 1);
}

fn alert(rule: &str, level: Level, detected: DateTime<Utc>, time: DateTime<Utc>) -> Alert {
    let event_ids = vec![EventId::derive("event", &[rule.as_bytes()])];
    Alert {
        id: Alert::derive_id(rule, &event_ids),
        rule_id: rule.into(),
        rule_title: format!("Rule {rule}"),
        level,
        tags: vec!["attack.t1078".into(), "attack.initial_access".into()],
        event_ids,
        time,
        detected,
        source: Source {
            kind: "cloudtrail".into(),
            name: "org-trail".into(),
        },
        group: Default::default(),
        matched: Vec::new(),
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        event_position: None,
    }
}

#[test]
fn alerts_come_newest_first_by_detection_then_event_time() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let a = alert("a", Level::Low, at(10, 0), at(1, 0));
    let b = alert("b", Level::High, at(30, 0), at(2, 0));
    let c = alert("c", Level::Medium, at(20, 0), at(3, 0));
    // Same detection time as `b` but an earlier event: ranks right after it.
    let d = alert("d", Level::Critical, at(30, 0), at(0, 30));
    store
        .index_alerts(&[a.clone(), d.clone(), b.clone()])
        .expect("index");
    store.commit().expect("commit");
    store.index_alerts(std::slice::from_ref(&c)).expect("index");
    assert_eq!(store.alerts(10).expect("alerts").len(), 3, "uncommitted");
    store.commit().expect("commit");
    assert_eq!(
        store.alerts(10).expect("alerts"),
        [b.clone(), d.clone(), c.clone(), a.clone()]
    );
    assert_eq!(store.alerts(2).expect("alerts"), [b, d]);
    assert!(store.alerts(0).expect("alerts").is_empty());
    assert_eq!(store.alerts(usize::MAX).expect("alerts").len(), 4);
}

#[test]
fn alerts_upsert_by_id_in_a_batch_across_commits_and_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let first = alert("brute-force", Level::Medium, at(10, 0), at(9, 0));
    {
        let store = open(dir.path());
        store
            .index_alerts(&[first.clone(), first.clone()])
            .expect("index");
        store.commit().expect("commit");
        assert_eq!(
            store.alerts(10).expect("alerts"),
            std::slice::from_ref(&first)
        );
    }
    let store = open(dir.path());
    let mut raised_again = first.clone();
    raised_again.level = Level::High;
    raised_again.detected = at(11, 0);
    store.index_alerts(&[raised_again.clone()]).expect("index");
    store.commit().expect("commit");
    assert_eq!(store.alerts(10).expect("alerts"), [raised_again]);
}

#[test]
fn indexing_and_searching_run_concurrently() {
    let dir = TempDir::new().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for round in 0..10u8 {
                let events: Vec<Event> = samples()
                    .into_iter()
                    .map(|mut ev| {
                        ev.id = EventId::derive("round", &[&[round], ev.id.as_bytes()]);
                        ev
                    })
                    .collect();
                store.index_events(&events).expect("index");
                store.commit().expect("commit");
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let found = store
                        .search(&SearchRequest::new("source_kind:cloudtrail", 5))
                        .expect("search");
                    assert!(found.hits.len() <= 5);
                    assert_eq!(found.total % 2, 0, "commits are all-or-nothing");
                }
            })
        })
        .collect();
    writer.join().expect("writer thread");
    for reader in readers {
        reader.join().expect("reader thread");
    }
    assert_eq!(store.event_count().expect("count"), 50);
}

#[test]
fn alerts_are_counted_by_rule() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let mut alerts = vec![
        alert("brute-force", Level::High, at(1, 0), at(0, 0)),
        alert("stop-logging", Level::Critical, at(2, 0), at(1, 0)),
    ];
    let mut again = alert("brute-force", Level::High, at(3, 0), at(2, 0));
    again.id = Alert::derive_id("brute-force", &[EventId::derive("other", &[b"x"])]);
    alerts.push(again);
    store.index_alerts(&alerts).expect("index");
    store.commit().expect("commit");
    let counts = store.alert_counts_by_rule(10).expect("counts");
    let pairs: Vec<(Value, u64)> = counts
        .values
        .iter()
        .map(|v| (v.value.clone(), v.count))
        .collect();
    assert_eq!(
        pairs,
        [(json!("brute-force"), 2), (json!("stop-logging"), 1)]
    );
}
