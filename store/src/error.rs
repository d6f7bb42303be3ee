use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The search text (or a time or cursor sent with it) is wrong; the message is meant for
    /// the person who typed it, and `position` is the byte offset in the query text it refers
    /// to, when there is one.
    #[error("invalid query: {message}")]
    Query {
        message: String,
        position: Option<usize>,
    },
    /// The index directory could not be created or opened.
    #[error("cannot open the index at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The index was written with term dictionaries this build does not read; a writing
    /// store rewrites it when it opens (see `index::TERMS_FILE`).
    #[error(
        "the index at {path} was written by an earlier Vigil with term dictionaries this one \
         does not read; open the data directory with `vigil run` once to rewrite it"
    )]
    NeedsRewrite { path: PathBuf },
    /// The store was opened read-only and was asked to change something.
    #[error("the store is open read-only")]
    ReadOnly,
    /// Tantivy failed while indexing, committing or searching.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// Reading or removing a partition's files failed.
    #[error("index storage error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An alert change breaks the lifecycle rules; the message is for the analyst.
    #[error("{0}")]
    InvalidChange(String),
    /// No alert has this id.
    #[error("no alert has the id {id}")]
    NotFound { id: String },
    /// The alert lifecycle database failed.
    #[error("lifecycle database error at {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// An event or alert could not be serialized for storage.
    #[error("cannot serialize a document: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A stored document could not be read back; the index is damaged or was written by an
    /// incompatible version.
    #[error("stored document {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
}

impl StoreError {
    pub(crate) fn query(message: impl Into<String>) -> Self {
        StoreError::Query {
            message: message.into(),
            position: None,
        }
    }

    pub(crate) fn query_at(message: impl Into<String>, position: usize) -> Self {
        StoreError::Query {
            message: message.into(),
            position: Some(position),
        }
    }
}
