//! The crate's one error type. Each variant says whose fault it is and whether a retry helps.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Caller's fault, retry cannot help: the configuration is invalid (every problem listed).
    #[error("invalid two-tower configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Caller's fault, retry cannot help: a batch, a request or a catalogue does not match the
    /// towers' specification (wrong column count, ragged columns, empty training set).
    #[error("{0}")]
    Input(String),
    /// The environment's fault (disk full, permissions, a vanished temp dir); a retry may help
    /// once the cause is fixed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The environment could not provide a resource (the training thread pool). A retry may
    /// help.
    #[error("{0}")]
    Resources(String),
    /// A saved model cannot be loaded: truncated, corrupted, another format version, or files
    /// from two different saves. Retrying the load cannot help; save again.
    #[error("model artifact {}: {reason}", .path.display())]
    Artifact { path: PathBuf, reason: String },
    /// Internal fault (a tensor operation failed: a bug in the crate, or out of memory).
    /// Retrying with the same input fails the same way.
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether running the same call again can succeed (only environment faults).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Resources(_))
    }
}
