//! The crate's one error type: each variant says whose fault it is and whether a retry helps.

use std::path::PathBuf;

use strata_core::error::Fault;

#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    /// The caller's input: a vector of the wrong length, a non-finite value, a duplicate id, an
    /// unknown payload field, bad parameters. Fix the input; a retry does not help.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing an index file failed (disk, permissions): a retry may help.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An index file is not a complete index of a version this build reads (truncated, bit
    /// rot, another format): rebuild it from the embeddings; a retry does not help.
    #[error("index file {path} is unusable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl AnnError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        AnnError::Invalid(msg.into())
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            AnnError::Invalid(_) => Fault::User,
            AnnError::Io { .. } => Fault::External,
            AnnError::Corrupt { .. } => Fault::External,
        }
    }

    /// Whether the same call can succeed when tried again.
    pub fn retryable(&self) -> bool {
        matches!(self, AnnError::Io { .. })
    }
}

pub type Result<T, E = AnnError> = std::result::Result<T, E>;
