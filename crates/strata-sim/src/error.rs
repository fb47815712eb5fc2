//! The crate's error type. Each variant says whose fault it is and whether a retry can help.

/// Errors of the simulator and the load driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings from the user (a retry cannot help).
    #[error("invalid simulation settings: {0}")]
    Config(String),
    /// The target URL cannot be used (user input; a retry cannot help).
    #[error("invalid target {target:?}: {reason}")]
    Target {
        /// What the user gave.
        target: String,
        /// Why it is refused.
        reason: String,
    },
    /// The target misbehaved or the network failed (external; a retry may help).
    #[error("http: {0}")]
    Http(String),
    /// I/O with the target (external; a retry may help).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A bug in the simulator (internal).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Http(_) | Error::Io(_))
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
