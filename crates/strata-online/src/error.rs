//! The online store's errors: whose fault, and whether a retry can help.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store cannot be reached or refused the call (Redis down, a disk error). A retry may
    /// help; servers answer 503.
    #[error("online store unavailable: {0}")]
    Unavailable(String),
    /// What the store holds cannot be read (a corrupt entry, metadata from a newer Strata).
    /// A bug or a damaged store; a retry does not help.
    #[error("online store data is damaged: {0}")]
    Corrupt(String),
    /// The caller asked for something that cannot be (a second sync of one view at once, a
    /// value of the wrong type). The caller's fault.
    #[error("{0}")]
    Invalid(String),
    /// `[online]` is wrong or the store cannot be opened with it (the user's configuration).
    #[error("online store configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
