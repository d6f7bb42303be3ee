//! Reading what ingest published: events in their own format, quarantined records as JSON.

use vigil_event::{Event, Quarantined};

pub trait BusMessage: Sized {
    fn decode(payload: &[u8]) -> Self;
}

impl BusMessage for Event {
    fn decode(payload: &[u8]) -> Self {
        Event::from_bus(payload).unwrap()
    }
}

impl BusMessage for Quarantined {
    fn decode(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap()
    }
}
