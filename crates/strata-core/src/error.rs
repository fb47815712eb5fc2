//! The core error type. Each kind says whose fault it is and whether a retry can help.

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The user's input or configuration: fix it and try again.
    User,
    /// Something outside Strata (disk, network, another service): a retry may help.
    External,
    /// A bug in Strata.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    User(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Error::User(_) => Fault::User,
            Error::Io { .. } => Fault::External,
            Error::Internal(_) => Fault::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        self.fault() == Fault::External
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
