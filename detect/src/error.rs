/// Why one rule document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct RuleError {
    /// The file name (or other origin) the caller gave for the text.
    pub origin: String,
    /// The 1-based line the problem is on.
    pub line: usize,
    pub message: String,
}

/// A problem found inside one document, before the origin is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub line: usize,
    pub message: String,
}

impl Problem {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Problem {
            line,
            message: message.into(),
        }
    }
}

impl From<crate::yaml::YamlError> for Problem {
    fn from(err: crate::yaml::YamlError) -> Self {
        Problem::new(err.line, err.message)
    }
}
