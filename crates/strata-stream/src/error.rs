//! Stream consumer errors.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] strata_bus::Error),
    #[error(transparent)]
    Online(#[from] strata_online::Error),
    #[error(transparent)]
    Lake(#[from] strata_table::Error),
    /// Reading the lake for a backfill failed.
    #[error("backfilling from the lake: {0}")]
    Backfill(String),
    /// Another process took over what this one was computing.
    #[error("{0}")]
    Lost(String),
}

impl Error {
    /// Whether running again may succeed (the store or the lake was unreachable).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Bus(e) => e.retryable(),
            Error::Online(e) => e.retryable(),
            Error::Lake(e) => e.retryable(),
            Error::Backfill(_) | Error::Lost(_) => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
