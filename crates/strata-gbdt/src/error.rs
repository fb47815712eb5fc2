//! The crate's one error type.

/// What went wrong; each variant says whose fault it is. Retrying never helps: training and
/// prediction are pure functions of their inputs.
#[derive(Debug, thiserror::Error)]
pub enum GbdtError {
    /// The caller's parameters are invalid (user's fault; fix the model definition).
    #[error("invalid gbdt parameters: {0}")]
    InvalidParams(String),
    /// The data does not fit the feature specs or the objective (user's data).
    #[error("invalid gbdt data: {0}")]
    InvalidData(String),
    /// A serialized model could not be read (a corrupt or foreign artifact).
    #[error("invalid gbdt model: {0}")]
    InvalidModel(String),
}

impl GbdtError {
    /// Whether the caller (its parameters, data or file) is at fault. Always true today: the
    /// crate does no I/O, so nothing external can fail.
    pub fn is_user_error(&self) -> bool {
        true
    }

    /// Whether the same call could succeed if retried: never, the crate is deterministic.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, GbdtError>;
