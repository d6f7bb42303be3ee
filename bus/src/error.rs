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
