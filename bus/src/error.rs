use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt bus log {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A consumer group committed past the end of the log: acknowledged messages are gone
    /// from disk. Opening anyway would give their offsets to new messages, which that group
    /// would then never read.
    #[error(
        "bus log ends at offset {end}, but consumer group {group:?} committed offset \
         {committed} ({path}): acknowledged messages are missing from the log. Refusing to \
         open it, since new messages would reuse those offsets and never reach that group. \
         Restore the data directory from a backup, or, to accept the loss, write {end} into \
         {path}"
    )]
    CommittedPastEnd {
        path: PathBuf,
        group: String,
        committed: u64,
        end: u64,
    },
    #[error("invalid topic or group name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("message too large: {size} bytes, at most {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    /// The stages reading a topic are too far behind for it to take more now: backpressure,
    /// to retry later, not a failure.
    #[error("the pipeline is behind: {0}")]
    Behind(String),
}

impl BusError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BusError {
        let path = path.into();
        move |source| BusError::Io { path, source }
    }
}
