//! Feature-store errors: whose fault, and whether a retry helps.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A feature view file is wrong (the user's; found before anything runs). Names the file.
    #[error("{file}: {message}")]
    View { file: String, message: String },
    /// A view does not fit the lake (source or columns missing, unsupported types). The user's.
    #[error("{0}")]
    Plan(String),
    /// The lake failed (may be retryable; see [`strata_table::Error::retryable`]).
    #[error(transparent)]
    Lake(#[from] strata_table::Error),
    /// The online store failed (Redis down: retryable).
    #[error(transparent)]
    Online(#[from] strata_online::Error),
    #[error("i/o error ({context}): {message}")]
    Io { context: String, message: String },
}

impl Error {
    pub fn view(file: impl Into<String>, message: impl Into<String>) -> Error {
        Error::View {
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
            Error::Online(e) => e.retryable(),
            Error::Io { .. } => true,
            Error::View { .. } | Error::Plan(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
