use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use vigil_bus::{Bus, BusError, Checkpoint, Delivery, EmbeddedBus, EmbeddedBusOptions, Message};

fn messages(range: std::ops::Range<u32>) -> Vec<Message> {
    range
        .map(|i| Message::new(format!("k{}", i % 3), format!("payload {i}")))
        .collect()
}

fn payloads(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.payload.to_vec()).unwrap())
        .collect()
}

fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.offset).collect()
}

fn checkpoint_after(delivery: &Delivery) -> Checkpoint {
    let mut checkpoint = Checkpoint::default();
    checkpoint.advance(delivery);
    checkpoint
}

const WAIT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn delivers_in_order_and_resumes_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..10)).await.unwrap();
        let mut sub = bus.subscribe("events", "detect").await.unwrap();
        let batch = sub.next_batch(4, WAIT).await.unwrap();
        assert_eq!(
            payloads(&batch),
            ["payload 0", "payload 1", "payload 2", "payload 3"]
        );
        assert_eq!(batch[1].key.as_ref(), b"k1");
        assert_eq!(batch[3].offset, 3);
        sub.commit(&checkpoint_after(&batch[3])).await.unwrap();
        assert_eq!(sub.lag().await.unwrap(), 6);
        // Read but not committed: must come again after a restart.
        let more = sub.next_batch(2, WAIT).await.unwrap();
        assert_eq!(more[0].offset, 4);
    }
    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    let mut sub = bus.subscribe("events", "detect").await.unwrap();
    let batch = sub.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&batch), (4..10).collect::<Vec<_>>());
    // Appends after a reopen continue the offsets.
    bus.publish("events", messages(10..11)).await.unwrap();
    let batch = sub.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&batch), [10]);
    assert_eq!(payloads(&batch), ["payload 10"]);
}

#[tokio::test]
async fn groups_are_independent_and_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    bus.publish("events", messages(0..3)).await.unwrap();
    let mut a = bus.subscribe("events", "a").await.unwrap();
    let mut b = bus.subscribe("events", "b").await.unwrap();
    assert_eq!(a.next_batch(10, WAIT).await.unwrap().len(), 3);
    assert_eq!(b.next_batch(10, WAIT).await.unwrap().len(), 3);
    assert!(matches!(
        bus.subscribe("events", "a").await,
        Err(BusError::Unavailable(_))
    ));
    drop(a);
    assert!(bus.subscribe("events", "a").await.is_ok());
}

#[tokio::test]
async fn waits_for_new_messages_and_times_out_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap());
    let mut sub = bus.subscribe("t", "g").await.unwrap();
    assert!(sub
        .next_batch(10, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
    let producer = bus.clone();
    let publish = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer.publish("t", messages(0..1)).await.unwrap();
    });
    let batch = sub.next_batch(10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(batch.len(), 1);
    publish.await.unwrap();
}

#[tokio::test]
async fn torn_tail_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..5)).await.unwrap();
    }
    let segment = dir.path().join("events").join(format!("{:020}.log", 0));
    let good_len = fs::metadata(&segment).unwrap().len();
    // A crash in the middle of a write: a header that promises more than follows.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(file);

    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), good_len);
    bus.publish("events", messages(5..6)).await.unwrap();
    let mut sub = bus.subscribe("events", "g").await.unwrap();
    let batch = sub.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&batch), (0..6).collect::<Vec<_>>());
    assert_eq!(payloads(&batch)[5], "payload 5");
}

#[tokio::test]
async fn corrupt_frame_is_cut_off_at_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..3)).await.unwrap();
    }
    let segment = dir.path().join("events").join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();
    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    let mut sub = bus.subscribe("events", "g").await.unwrap();
    assert_eq!(sub.next_batch(100, WAIT).await.unwrap().len(), 2);
}

#[tokio::test]
async fn segments_roll_and_are_pruned_once_every_group_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedBusOptions {
        segment_bytes: 64,
        ..EmbeddedBusOptions::default()
    };
    let bus = EmbeddedBus::open(dir.path(), options.clone()).unwrap();
    let mut fast = bus.subscribe("events", "fast").await.unwrap();
    let mut slow = bus.subscribe("events", "slow").await.unwrap();
    for i in 0..20 {
        bus.publish("events", messages(i..i + 1)).await.unwrap();
    }
    let segments = || {
        fs::read_dir(dir.path().join("events"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    };
    let before = segments();
    assert!(before > 3, "expected several segments, got {before}");

    // Reads cross segment boundaries transparently.
    let all = fast.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&all), (0..20).collect::<Vec<_>>());
    fast.commit(&checkpoint_after(all.last().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        segments(),
        before,
        "the slow group still needs every segment"
    );

    let some = slow.next_batch(15, WAIT).await.unwrap();
    slow.commit(&checkpoint_after(some.last().unwrap()))
        .await
        .unwrap();
    assert!(segments() < before);

    // A restarted slow consumer still finds its next message.
    drop((slow, fast, bus));
    let bus = EmbeddedBus::open(dir.path(), options).unwrap();
    let mut slow = bus.subscribe("events", "slow").await.unwrap();
    let rest = slow.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&rest), (15..20).collect::<Vec<_>>());
    bus.publish("events", messages(20..21)).await.unwrap();
    assert_eq!(offsets(&slow.next_batch(100, WAIT).await.unwrap()), [20]);
}

#[tokio::test]
async fn rejects_bad_names_and_oversized_messages() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedBusOptions {
        max_message_bytes: 100,
        ..EmbeddedBusOptions::default()
    };
    let bus = EmbeddedBus::open(dir.path(), options).unwrap();
    for name in ["", "..", "a/b", "offsets"] {
        assert!(matches!(
            bus.publish(name, messages(0..1)).await,
            Err(BusError::InvalidName(_))
        ));
    }
    let big = Message::new("k", vec![b'x'; 200]);
    assert!(matches!(
        bus.publish("t", vec![big]).await,
        Err(BusError::MessageTooLarge { .. })
    ));
    let mut sub = bus.subscribe("t", "g").await.unwrap();
    assert!(sub
        .next_batch(10, Duration::from_millis(20))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_lower_message_limit_after_a_restart_keeps_the_frames_written_before() {
    let dir = tempfile::tempdir().unwrap();
    let big_payload = vec![b'b'; 900 * 1024];
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..2)).await.unwrap();
        bus.publish("events", vec![Message::new("k", big_payload.clone())])
            .await
            .unwrap();
        let mut sub = bus.subscribe("events", "index").await.unwrap();
        let batch = sub.next_batch(100, WAIT).await.unwrap();
        assert_eq!(offsets(&batch), [0, 1, 2]);
        sub.commit(&checkpoint_after(&batch[2])).await.unwrap();
    }
    let segment = dir.path().join("events").join(format!("{:020}.log", 0));
    let len_before = fs::metadata(&segment).unwrap().len();

    let lower = EmbeddedBusOptions {
        max_message_bytes: 64 * 1024,
        ..EmbeddedBusOptions::default()
    };
    let bus = EmbeddedBus::open(dir.path(), lower).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), len_before);
    // The large frame is still there and readable.
    let mut fresh = bus.subscribe("events", "fresh").await.unwrap();
    let all = fresh.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&all), [0, 1, 2]);
    assert_eq!(all[2].payload.as_ref(), big_payload.as_slice());
    // New publishes get fresh offsets, which the group that committed past the frame reads.
    bus.publish("events", messages(3..5)).await.unwrap();
    let mut index = bus.subscribe("events", "index").await.unwrap();
    let batch = index.next_batch(100, WAIT).await.unwrap();
    assert_eq!(offsets(&batch), [3, 4]);
    assert_eq!(payloads(&batch), ["payload 3", "payload 4"]);
    // The lower limit still holds for new publishes.
    assert!(matches!(
        bus.publish("events", vec![Message::new("k", big_payload)])
            .await,
        Err(BusError::MessageTooLarge { .. })
    ));
}

#[tokio::test]
async fn a_committed_offset_past_the_end_of_the_log_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..5)).await.unwrap();
        let mut sub = bus.subscribe("events", "index").await.unwrap();
        let batch = sub.next_batch(100, WAIT).await.unwrap();
        sub.commit(&checkpoint_after(batch.last().unwrap()))
            .await
            .unwrap();
    }
    // The log loses its last two acknowledged frames, as a wrong "repair" would do.
    let segment = dir.path().join("events").join(format!("{:020}.log", 0));
    let bytes = fs::read(&segment).unwrap();
    let frame_len = (bytes.len()) / 5;
    fs::write(&segment, &bytes[..3 * frame_len]).unwrap();

    let error = match EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()) {
        Ok(_) => panic!("a log behind its committed offset opened"),
        Err(error) => error,
    };
    match &error {
        BusError::CommittedPastEnd {
            group,
            committed,
            end,
            ..
        } => {
            assert_eq!(group, "index");
            assert_eq!((*committed, *end), (5, 3));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("committed offset 5"), "{message}");
    // Nothing was cut or rewritten by the refused open.
    assert_eq!(fs::metadata(&segment).unwrap().len(), 3 * frame_len as u64);
}

#[tokio::test]
async fn a_torn_tail_after_committed_data_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", messages(0..3)).await.unwrap();
        let mut sub = bus.subscribe("events", "index").await.unwrap();
        let batch = sub.next_batch(100, WAIT).await.unwrap();
        sub.commit(&checkpoint_after(batch.last().unwrap()))
            .await
            .unwrap();
    }
    let segment = dir.path().join("events").join(format!("{:020}.log", 0));
    let good_len = fs::metadata(&segment).unwrap().len();
    // A torn header that claims a frame of almost 4 GiB: cut without allocating it.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0xff, 0xff, 0xff, 0xf0, 9, 9, 9, 9, b'x'])
        .unwrap();
    drop(file);
    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), good_len);
    bus.publish("events", messages(3..4)).await.unwrap();
    let mut sub = bus.subscribe("events", "index").await.unwrap();
    assert_eq!(offsets(&sub.next_batch(100, WAIT).await.unwrap()), [3]);
}

/// One append of 2,000 messages of many sizes, with empty keys and payloads among them (more
/// slices than one vectored write takes, were appends written that way): every frame lands
/// whole, in order, and reads back after a reopen, whose recovery would cut a garbled tail.
#[tokio::test]
async fn a_large_append_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sent: Vec<Message> = (0..2000u32)
        .map(|i| {
            let key = if i % 7 == 0 {
                String::new()
            } else {
                format!("k{i}")
            };
            let payload = "x".repeat((i as usize * 37) % 3000);
            Message::new(key, payload)
        })
        .collect();
    {
        let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
        bus.publish("events", sent.clone()).await.unwrap();
    }
    let bus = EmbeddedBus::open(dir.path(), EmbeddedBusOptions::default()).unwrap();
    let mut sub = bus.subscribe("events", "index").await.unwrap();
    let mut read = Vec::new();
    while read.len() < sent.len() {
        let batch = sub.next_batch(700, WAIT).await.unwrap();
        assert!(!batch.is_empty(), "stopped at {}", read.len());
        read.extend(batch);
    }
    assert_eq!(offsets(&read), (0..2000).collect::<Vec<_>>());
    for (delivery, message) in read.iter().zip(&sent) {
        assert_eq!(delivery.key, message.key);
        assert_eq!(delivery.payload, message.payload);
    }
    // And appends after it continue where it ended.
    bus.publish("events", messages(0..1)).await.unwrap();
    let batch = sub.next_batch(10, WAIT).await.unwrap();
    assert_eq!(offsets(&batch), [2000]);
}
