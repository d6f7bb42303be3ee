//! Field names of the events index. Queries name them directly (`source_kind:cloudtrail`), so
//! they are part of the search language and change only with it.
//!
//! The tiebreak's value, taken from an id, is here too: the events index, the id filters and
//! the id queries all derive it the same way.

use vigil_event::EventId;

pub const ID: &str = "id";
pub const TIME: &str = "time";
pub const SOURCE_KIND: &str = "source_kind";
pub const SOURCE_NAME: &str = "source_name";
pub const PRODUCT: &str = "product";
pub const SERVICE: &str = "service";
pub const CATEGORY: &str = "category";
pub const RECORD: &str = "record";
pub const TEXT: &str = "text";
pub const DOC: &str = "doc";
/// Orders events with the same time; see `tiebreak`.
pub const TIEBREAK: &str = "tiebreak";
/// `true` on events whose own time is implausible (see [`crate::partition::place`]);
/// absent on the others.
pub const TIME_SUSPECT: &str = "time_suspect";
/// When Vigil received the event (its arrival, which partitions are cut by): a column read
/// by aggregations, not a name queries use, so `received:` still means the record's field.
pub const RECEIVED: &str = "received";

/// The second sort key after time, taken from the id: hits with equal times then come in a
/// fixed order, which a cursor needs to resume exactly where a page ended.
pub(crate) fn tiebreak(id: &EventId) -> u64 {
    let bytes = id.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(first)
}
