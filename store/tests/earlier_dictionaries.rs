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
