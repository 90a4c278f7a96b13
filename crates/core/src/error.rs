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
    /// A buffer the system would not allocate, or whose size does not fit the address space.
    #[error("{what}: cannot allocate {size}")]
    Memory {
        /// The tensor or buffer, with its shape.
        what: String,
        /// Its size, human readable (`128.0 GB`, or `more than 2^64 bytes`).
        size: String,
    },
    /// Any of the above, with where in a run it happened (`epoch 2, window 17 of 398 (step 415)`).
    #[error("{context}: {source}")]
    Context {
        /// Where.
        context: String,
        /// What.
        #[source]
        source: Box<Error>,
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

    /// This error with where it happened prefixed ([`Error::Context`]).
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context { context: context.into(), source: Box::new(self) }
    }

    /// [`Error::Memory`] for `count` elements of `elem_bytes` each (`None`: the count overflowed).
    pub fn memory(what: impl Into<String>, count: Option<usize>, elem_bytes: usize) -> Self {
        let size = match count.and_then(|c| c.checked_mul(elem_bytes)) {
            Some(bytes) => human_bytes(bytes as f64),
            None => String::from("more than 2^64 bytes"),
        };
        Error::Memory { what: what.into(), size }
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

/// A byte count for people: `512 B`, `1.5 KB`, `128.0 GB` (powers of 1000), `1.2e21 B` beyond.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    if bytes >= 1e21 {
        return format!("{bytes:.1e} B");
    }
    let mut value = bytes;
    for (i, unit) in UNITS.iter().enumerate() {
        if value < 1000.0 || i == UNITS.len() - 1 {
            return if i == 0 { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") };
        }
        value /= 1000.0;
    }
    format!("{bytes:e} B")
}

/// The result type of every fallible Stagewise call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_like_people_write_them() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KB");
        assert_eq!(human_bytes(128e9), "128.0 GB");
        assert_eq!(human_bytes(999e18), "999.0 EB");
        assert_eq!(human_bytes(4.72e25), "4.7e25 B");
        let e = Error::memory("lstm.gates [4, 8]", None, 4).to_string();
        assert_eq!(e, "lstm.gates [4, 8]: cannot allocate more than 2^64 bytes");
    }
}
