//! The quarantine stays bounded whatever senders had rejected: each record keeps a prefix with
//! its full length and hash, all records together stay under a total, and listings come in
//! pages of bounded size. Databases from before the bounds still open.

use std::path::Path;

use chrono::Utc;
use rusqlite::{params, Connection};
use vigil_event::{Quarantined, Source};
use vigil_store::{QuarantineFilter, QuarantineLimits, QuarantineRecord, Store, StoreOptions};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A rejected line of `len` bytes whose content depends on `seed`.
fn rejected(seed: u8, len: usize) -> Quarantined {
    Quarantined {
        source: Source {
            kind: "http".into(),
            name: "hostile".into(),
        },
        reason: format!("line {seed} is longer than 1048576 bytes"),
        line: Some(u64::from(seed)),
        received: Utc::now(),
        raw: (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect(),
    }
}

fn open(dir: &Path, quarantine: QuarantineLimits) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            quarantine,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn page(store: &Store, limit: usize, cursor: Option<String>) -> vigil_store::QuarantinePage {
    store
        .quarantined(&QuarantineFilter {
            limit,
            cursor,
            ..QuarantineFilter::default()
        })
        .unwrap()
}

/// What the quarantine database takes on disk, its write-ahead log included.
fn database_bytes(dir: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("quarantine.sqlite{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

fn assert_describes(kept: &QuarantineRecord, original: &Quarantined, prefix: usize) {
    assert_eq!(kept.raw_len, original.raw.len() as u64);
    assert_eq!(
        kept.raw_blake3.as_deref(),
        Some(blake3::hash(&original.raw).to_hex().as_str())
    );
    assert_eq!(kept.record.raw, original.raw[..prefix]);
    assert_eq!(kept.raw_truncated, prefix < original.raw.len());
    assert_eq!(kept.record.line, original.line);
}

#[test]
fn a_long_record_keeps_a_prefix_with_its_length_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QuarantineLimits::default());
    let long = rejected(1, 3 * MIB);
    let short = rejected(2, 100);
    assert_eq!(
        store
            .add_quarantined(&[long.clone(), short.clone()])
            .unwrap(),
        2
    );
    // A replay of the whole record is still recognised after the cut.
    assert_eq!(
        store.add_quarantined(std::slice::from_ref(&long)).unwrap(),
        0
    );

    let listed = page(&store, 10, None);
    assert_eq!(listed.records.len(), 2);
    assert_describes(&listed.records[0], &short, 100);
    assert_describes(&listed.records[1], &long, 64 * KIB);
    let db = database_bytes(dir.path());
    assert!(db < MIB as u64, "the database takes {db} bytes");
}

#[test]
fn the_total_stays_bounded_by_evicting_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let limits = QuarantineLimits {
        max_record_bytes: 16 * KIB,
        max_total_bytes: 256 * KIB as u64,
    };
    let store = open(dir.path(), limits);
    for seed in 0..60u8 {
        store.add_quarantined(&[rejected(seed, 40 * KIB)]).unwrap();
    }
    let mut kept = Vec::new();
    let mut cursor = None;
    loop {
        let listed = page(&store, 7, cursor);
        kept.extend(listed.records.iter().map(|r| r.record.line.unwrap()));
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // About 16 KiB and a little each: some fifteen fit, and they are the newest ones.
    assert!(
        (10..=16).contains(&kept.len()),
        "kept {} records",
        kept.len()
    );
    let newest: Vec<u64> = (60 - kept.len() as u64..60).rev().collect();
    assert_eq!(kept, newest);
    // Closed, the log is written back: the file holds what is kept, not all that came.
    drop(store);
    let db = database_bytes(dir.path());
    assert!(db < 600 * KIB as u64, "the database takes {db} bytes");

    // Reopened with a lower total, the bound applies at once.
    let store = open(
        dir.path(),
        QuarantineLimits {
            max_total_bytes: 64 * KIB as u64,
            ..limits
        },
    );
    let left = page(&store, 1000, None).records;
    assert!((1..=4).contains(&left.len()), "kept {}", left.len());
    assert_eq!(left[0].record.line, Some(59));
}

#[test]
fn pages_stay_within_their_byte_budget_and_continue_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QuarantineLimits::default());
    let records: Vec<Quarantined> = (0..40u8).map(|seed| rejected(seed, 3 * MIB)).collect();
    for chunk in records.chunks(8) {
        store.add_quarantined(chunk).unwrap();
    }
    let budget = 256 * KIB;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let listed = store
            .quarantined(&QuarantineFilter {
                limit: 1000,
                cursor,
                max_page_bytes: budget,
                ..QuarantineFilter::default()
            })
            .unwrap();
        let bytes: usize = listed
            .records
            .iter()
            .map(|r| r.record.raw.len() + r.record.reason.len())
            .sum();
        assert!(bytes <= budget, "a page carries {bytes} bytes");
        let json = serde_json::to_vec(&listed).unwrap();
        assert!(json.len() < 2 * budget, "a page is {} bytes", json.len());
        seen.extend(listed.records.iter().map(|r| r.record.line.unwrap()));
        pages += 1;
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(pages >= 10, "{pages} pages");
    assert_eq!(seen, (0..40u64).rev().collect::<Vec<_>>());

    assert!(store
        .quarantined(&QuarantineFilter {
            cursor: Some("not-a-cursor".into()),
            ..QuarantineFilter::default()
        })
        .is_err());
}

/// The table as Vigil wrote it before records were bounded.
const EARLIER_SCHEMA: &str = "
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        received TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        source_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        position INTEGER,
        raw BLOB NOT NULL
    );
    CREATE INDEX quarantine_by_source ON quarantine (source_name, seq);
";

#[test]
fn a_database_from_before_the_bounds_still_opens_and_is_cut_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quarantine.sqlite");
    let long = rejected(7, 3 * MIB);
    let short = rejected(8, 300);
    // A store as it was, with its quarantine database replaced by one of the earlier table.
    drop(open(dir.path(), QuarantineLimits::default()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("quarantine.sqlite{suffix}")));
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(EARLIER_SCHEMA).unwrap();
        for (id, record) in [("a", &long), ("b", &short)] {
            conn.execute(
                "INSERT INTO quarantine (id, received, source_kind, source_name, reason,
                 position, raw) VALUES (?1, ?2, 'http', 'hostile', ?3, ?4, ?5)",
                params![
                    id,
                    "2026-11-28T10:00:00.000000Z",
                    record.reason,
                    record.line.map(|l| l as i64),
                    record.raw
                ],
            )
            .unwrap();
        }
    }

    // Read only, as `vigil search` would: the earlier table is read as it is.
    let reader = Store::open_with(
        dir.path(),
        StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let listed = page(&reader, 10, None);
    assert_eq!(listed.records.len(), 2);
    assert_describes(&listed.records[0], &short, 300);
    assert_eq!(listed.records[1].raw_len, long.raw.len() as u64);
    assert!(listed.records[1].raw_truncated);
    assert_eq!(listed.records[1].record.raw, long.raw[..64 * KIB]);
    drop(reader);

    let before = database_bytes(dir.path());
    let store = open(dir.path(), QuarantineLimits::default());
    let listed = page(&store, 10, None);
    assert_eq!(listed.records.len(), 2);
    assert_describes(&listed.records[0], &short, 300);
    assert_describes(&listed.records[1], &long, 64 * KIB);
    let after = database_bytes(dir.path());
    assert!(
        after < before / 4,
        "the file went from {before} to {after} bytes"
    );
    // New records still go in beside the old ones.
    store.add_quarantined(&[rejected(9, 10)]).unwrap();
    assert_eq!(page(&store, 10, None).records.len(), 3);
}
