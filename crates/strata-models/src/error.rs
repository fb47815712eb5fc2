//! Model errors: whose fault, and whether a retry helps.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file is wrong (the user's; found before anything runs). Names the file.
    #[error("{file}: {message}")]
    Spec { file: String, message: String },
    /// A model does not fit the lake or its data (columns missing, no rows in a split). The
    /// user's; a retry does not help.
    #[error("{0}")]
    Plan(String),
    /// The training or validation window has no rows (a new project, a backfill's first
    /// days). A DAG step logs it and succeeds without a new version; `models train` fails.
    #[error("{0}")]
    NotEnoughData(String),
    /// Training failed on the data (no positives, a diverging loss).
    #[error("{0}")]
    Train(String),
    /// The registry was asked something impossible (unknown version, promote a failed one).
    #[error("{0}")]
    Registry(String),
    /// The lake failed (may be retryable; see [`strata_table::Error::retryable`]).
    #[error(transparent)]
    Lake(#[from] strata_table::Error),
    #[error(transparent)]
    Features(#[from] strata_features::Error),
    #[error("i/o error ({context}): {message}")]
    Io { context: String, message: String },
    /// A serving request is wrong. The client's. HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing to serve: no promoted version. HTTP 503 (a retry helps once one is promoted).
    #[error("{0}")]
    NotReady(String),
    /// A bug. HTTP 500.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn spec(file: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Spec {
            file: file.into(),
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Lake(e) => e.retryable(),
            Error::Features(e) => e.retryable(),
            Error::Io { .. } | Error::NotReady(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
