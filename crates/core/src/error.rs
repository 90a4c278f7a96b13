//! One error type for every stage, so a pipeline can report any failure in one line.

use std::path::PathBuf;

/// Everything that can go wrong in Stagewise, each variant naming *where* (file, line, field) and
/// *what was expected*, so the user can fix the input without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A text file is not valid UTF-8.
    #[error("{path}: invalid UTF-8 at byte offset {offset}")]
    InvalidUtf8 {
        /// The file involved.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// Input data is unusable (empty corpus, too short for one batch, malformed line, ...).
    #[error("{context}: {message}")]
    Data {
        /// Where: a file name, possibly with a line number.
        context: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("config: {field}: {message}")]
    Config {
        /// The dotted key path of the offending field, e.g. `model.hidden`.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// Two buffers or tensors disagree in shape.
    #[error("shape mismatch in {what}: expected {expected}, got {actual}")]
    Shape {
        /// The buffer or tensor name.
        what: String,
        /// The expected shape, human readable.
        expected: String,
        /// The actual shape, human readable.
        actual: String,
    },
    /// A checkpoint or weight file is corrupt, truncated or from an incompatible version.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A numeric failure (NaN or infinity) that makes further training meaningless.
    #[error("numerical error in {stage}: {message}")]
    Numeric {
        /// The stage that detected it.
        stage: String,
        /// What was detected.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Data`].
    pub fn data(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data { context: context.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Shorthand for [`Error::Shape`].
    pub fn shape(
        what: impl Into<String>,
        expected: impl std::fmt::Debug,
        actual: impl std::fmt::Debug,
    ) -> Self {
        Error::Shape { what: what.into(), expected: format!("{expected:?}"), actual: format!("{actual:?}") }
    }
}

/// The result type of every fallible Stagewise call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
