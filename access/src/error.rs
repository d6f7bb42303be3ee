use std::path::PathBuf;

/// What went wrong in the access database or with a request to change it.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the access database {path} failed: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request the data does not allow; the message says why, for the caller.
    #[error("{0}")]
    Invalid(String),
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("a {kind} named {name:?} already exists")]
    Exists { kind: &'static str, name: String },
    #[error("the operating system gave no randomness: {0}")]
    Random(String),
    #[error("hashing a password failed: {0}")]
    Hash(String),
    #[error("the access database holds something unreadable: {0}")]
    Corrupt(String),
}
