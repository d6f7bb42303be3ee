//! The stage loops against the embedded bus, in this process: replay after a crash, commits
//! that trail durable output, and correlation state that follows its partition.

mod consume;
mod detect;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use vigil_bus::{
    committed_offsets, Bus, BusError, Checkpoint, Delivery, EmbeddedBus, EmbeddedBusOptions,
    Message, Subscription, Topics,
};
use vigil_event::{Alert, Event, EventId, LogSource, Record, Source};

/// Called with each checkpoint a wrapped subscription is asked to commit; an error refuses it.
type CommitHook = Arc<dyn Fn(&Checkpoint) -> Result<(), BusError> + Send + Sync>;

/// The embedded bus, with a hook in front of every commit, state saves that may be
/// refused, and a hook on publishing alerts.
struct HookedBus {
    inner: Arc<EmbeddedBus>,
    on_commit: CommitHook,
    refuse_state: bool,
    alerts: AlertsHook,
}

/// What a [`HookedBus`] does with a publish to the alerts topic.
enum AlertsHook {
    Pass,
    /// It never finishes, as if the process died first; the flags say whether it began, and
    /// whether a state save began while it was held.
    Hold(Arc<Held>),
}

#[derive(Default)]
struct Held {
    publishing: AtomicBool,
    saved_meanwhile: AtomicBool,
}

struct HookedSubscription {
    inner: Box<dyn Subscription>,
    on_commit: CommitHook,
}

#[async_trait]
impl Bus for HookedBus {
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        if topic == Topics::default().alerts {
            match &self.alerts {
                AlertsHook::Pass => {}
                AlertsHook::Hold(held) => {
                    held.publishing.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await
                }
            }
        }
        self.inner.publish(topic, messages).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(HookedSubscription {
            inner: self.inner.subscribe(topic, group).await?,
            on_commit: self.on_commit.clone(),
        }))
    }

    async fn save_state(&self, key: &str, state: Bytes) -> Result<(), BusError> {
        if self.refuse_state {
            return Err(BusError::Unavailable("the test refuses state".into()));
        }
        match &self.alerts {
            AlertsHook::Hold(held) if held.publishing.load(Ordering::SeqCst) => {
                held.saved_meanwhile.store(true, Ordering::SeqCst);
            }
            _ => {}
        }
        self.inner.save_state(key, state).await
    }

    async fn load_state(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        self.inner.load_state(key).await
    }
}

#[async_trait]
impl Subscription for HookedSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.inner.next_batch(max, wait).await
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), BusError> {
        (self.on_commit)(checkpoint)?;
        self.inner.commit(checkpoint).await
    }

    async fn lag(&self) -> Result<u64, BusError> {
        self.inner.lag().await
    }
}

fn open_bus(dir: &std::path::Path) -> Arc<EmbeddedBus> {
    Arc::new(EmbeddedBus::open(dir.join("bus"), EmbeddedBusOptions::default()).unwrap())
}

fn no_hook() -> CommitHook {
    Arc::new(|_| Ok(()))
}

fn hooked(bus: &Arc<EmbeddedBus>, on_commit: CommitHook) -> Arc<dyn Bus> {
    Arc::new(HookedBus {
        inner: bus.clone(),
        on_commit,
        refuse_state: false,
        alerts: AlertsHook::Pass,
    })
}

/// A bus on which nothing a stage does after processing can succeed: state saves and commits
/// are refused.
fn refusing(bus: &Arc<EmbeddedBus>) -> Arc<dyn Bus> {
    Arc::new(HookedBus {
        inner: bus.clone(),
        on_commit: Arc::new(|_| Err(BusError::Unavailable("the test refuses commits".into()))),
        refuse_state: true,
        alerts: AlertsHook::Pass,
    })
}

/// The offset `group` has committed on `topic`, 0 before its first commit.
fn committed(bus: &EmbeddedBus, topic: &str, group: &str) -> u64 {
    committed_offsets(bus.root())
        .unwrap()
        .get(topic)
        .and_then(|groups| groups.get(group).copied())
        .unwrap_or(0)
}

/// Waits until `check` holds, for at most 30 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An application log event: `action` by `user`, `seconds` after a fixed time.
fn app_event(seq: u32, user: &str, action: &str, seconds: i64) -> Event {
    let time = DateTime::<Utc>::from_timestamp(1_795_000_000 + seconds, 0).unwrap();
    Event {
        id: EventId::derive("stage test", &[&seq.to_le_bytes()]),
        time,
        received: time,
        source: Source {
            kind: "json".into(),
            name: "app".into(),
        },
        logsource: LogSource::new(Some("test"), Some("app"), None),
        record: Record::json(&format!(
            r#"{{"action":"{action}","user":"{user}","seq":{seq}}}"#
        ))
        .unwrap(),
        fields: Default::default(),
    }
}

fn event_messages(events: &[Event]) -> Vec<Message> {
    events
        .iter()
        .map(|event| Message::new("app", event.to_bus()))
        .collect()
}

/// What the stages publish: events in their own format, alerts as JSON.
pub(crate) trait BusMessage: Sized {
    fn decode(payload: &[u8]) -> Self;
}

impl BusMessage for Event {
    fn decode(payload: &[u8]) -> Self {
        Event::from_bus(payload).unwrap()
    }
}

impl BusMessage for Alert {
    fn decode(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap()
    }
}

/// Everything on `topic` so far, read by a group of its own.
pub(crate) async fn read_all<T: BusMessage>(bus: &EmbeddedBus, topic: &str) -> Vec<T> {
    let mut subscription = bus.subscribe(topic, "test-reader").await.unwrap();
    let mut items = Vec::new();
    loop {
        let batch = subscription
            .next_batch(1000, Duration::from_millis(50))
            .await
            .unwrap();
        if batch.is_empty() {
            return items;
        }
        items.extend(batch.iter().map(|delivery| T::decode(&delivery.payload)));
    }
}

/// Remembers what it is given, for the loop's own tests.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u64>>>);

impl Seen {
    fn offsets(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}
