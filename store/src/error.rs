use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The search text could not be parsed; the message is meant for the person who typed it.
    #[error("invalid query: {message}")]
    Query { message: String },
    /// The index directory could not be created or opened.
    #[error("cannot open the index at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Tantivy failed while indexing, committing or searching.
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
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
        }
    }
}
