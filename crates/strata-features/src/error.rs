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
    /// A serving request is wrong (unknown view or feature, a bad entity, malformed JSON).
    /// The client's; a retry does not help. HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// A serving request's body is larger than the server takes. The client's. HTTP 413.
    #[error("{0}")]
    TooLarge(String),
    /// No bearer token, or an unknown, revoked or expired one. The client's. HTTP 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The token may not do this (scope, namespace grants, role). The client's. HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// A declared view that was never materialized: nothing to serve yet. The operator's; a
    /// retry helps once `strata features materialize VIEW` ran. HTTP 503.
    #[error(
        "feature view {0} has not been materialized yet: run `strata features materialize {0}`"
    )]
    NotMaterialized(String),
    /// A bug or the server's environment (its token file cannot be read). HTTP 500.
    #[error("{0}")]
    Internal(String),
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
            Error::NotMaterialized(_) => true,
            Error::View { .. }
            | Error::Plan(_)
            | Error::BadRequest(_)
            | Error::TooLarge(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::Internal(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
