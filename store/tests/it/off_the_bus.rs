//! Events indexed as the index stage reads them off the bus: framed messages whose JSON record
//! nothing has checked since ingest. The store's read of the record is its check, so a record
//! that is no JSON object (a forged or damaged message) must neither fail the batch nor be
//! stored as JSON that would no longer read back.

use chrono::{TimeZone, Utc};
use serde_json::Map;
use tempfile::TempDir;
use vigil_event::wire::EventOnBus;
use vigil_event::{Event, EventId, LogSource, Record, Source};
use vigil_store::{SearchRequest, Store};

fn event(n: u8, record: Record) -> Event {
    let time = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, n.into()).unwrap();
    Event {
        id: EventId::derive("vigil off the bus test", &[&[n]]),
        time,
        received: time,
        source: Source {
            kind: "http".into(),
            name: "forged".into(),
        },
        logsource: LogSource::new(Some("aws"), Some("cloudtrail"), None),
        record,
        fields: Map::new(),
    }
}

/// The framed message of `event`, its JSON record's text replaced by `record`.
fn framed_with_record(event: &Event, record: &str) -> Vec<u8> {
    let mut message = event.to_bus();
    let original = event.record.as_str().len();
    message.truncate(message.len() - original);
    message.extend_from_slice(record.as_bytes());
    message
}

#[test]
fn a_record_read_off_the_bus_is_stored_as_what_it_reads_as() {
    let good = event(
        1,
        Record::json(r#"{"eventName":"ConsoleLogin","n":1.50}"#).unwrap(),
    );
    let broken = event(2, Record::json(r#"{"eventName":"x"}"#).unwrap());
    let array = event(3, Record::json(r#"{"a":1}"#).unwrap());
    let messages = [
        good.to_bus(),
        framed_with_record(&broken, r#"{"eventName":"StopLogging","cut":"#),
        framed_with_record(&array, r#"[1,"arrayword"]"#),
    ];
    let read: Vec<EventOnBus<'static>> = messages
        .iter()
        .map(|m| EventOnBus::decode(m).unwrap().into_owned())
        .collect();

    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.index_events(&read).unwrap();
    store.commit().unwrap();

    let search = |query: &str| store.search(&SearchRequest::new(query, 10)).unwrap().hits;
    // A good record is indexed by field and stored byte for byte.
    assert_eq!(search("eventName:ConsoleLogin"), [good]);
    // A record that is not JSON is found by its words and reads back as the text it is.
    let hits = search("StopLogging");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].id, broken.id);
    assert_eq!(
        hits[0].record,
        Record::Text(r#"{"eventName":"StopLogging","cut":"#.into())
    );
    // So is JSON that is not an object, which ingest refuses as well.
    let hits = search("arrayword");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].id, array.id);
    assert_eq!(hits[0].record, Record::Text(r#"[1,"arrayword"]"#.into()));
    // Every event was indexed, none lost, and the two kept as text are counted.
    assert_eq!(search("").len(), 3);
    assert_eq!(store.partition_stats().unwrap().records_as_text, 2);
}
