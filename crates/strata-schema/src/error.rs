//! The crate's one error type. Each variant says whose fault it is and whether a retry can
//! help; `status` and `error_code` are the HTTP mapping (Confluent Schema Registry's codes,
//! so its clients understand them), used by `http.rs` only.

use strata_core::error::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client's fault: no such subject.
    #[error("subject {0:?} not found")]
    SubjectNotFound(String),
    /// Client's fault: no such version of the subject.
    #[error("version {1} of subject {0:?} not found")]
    VersionNotFound(String, String),
    /// Client's fault: no schema has this id.
    #[error("schema id {0} not found")]
    SchemaNotFound(u64),
    /// Client's fault: the schema looked up is not a version of the subject.
    #[error("this schema is not registered under subject {0:?}")]
    NotRegistered(String),
    /// Client's fault: the subject has no compatibility level of its own.
    #[error(
        "subject {0:?} has no compatibility level of its own (add ?defaultToGlobal=true for the one in effect)"
    )]
    SubjectConfigNotFound(String),
    /// Client's fault: the schema is not JSON, or uses what the validator does not support.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// Client's fault: a version that is neither a positive number nor `latest`.
    #[error("invalid version {0:?}: a positive integer or \"latest\"")]
    InvalidVersion(String),
    /// Client's fault: an unknown compatibility level.
    #[error("{0}")]
    InvalidCompatibility(String),
    /// Client's fault: an empty, over-long or control-character subject name.
    #[error("{0}")]
    InvalidSubject(String),
    /// Client's fault: the new version breaks the subject's compatibility mode.
    #[error(
        "schema being registered is incompatible with an earlier schema for subject {subject:?} ({mode}): {}",
        messages.join("; ")
    )]
    Incompatible {
        subject: String,
        mode: crate::Compatibility,
        messages: Vec<String>,
    },
    /// Client's fault: a body that is not what the endpoint takes.
    #[error("{0}")]
    BadRequest(String),
    /// Client's fault: no token, or an unknown, revoked or expired one.
    #[error("{0}")]
    Unauthorized(String),
    /// Client's fault: the token lacks the scope the call needs.
    #[error("{0}")]
    Forbidden(String),
    /// The registry file or its lock could not be read or written (disk, permissions). A
    /// retry may help.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The registry file does not parse (edited by hand, or a bug). A retry does not help.
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Error::Io { .. } => Fault::External,
            Error::Corrupt(_) => Fault::Internal,
            _ => Fault::User,
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(self, Error::Io { .. })
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Error::SubjectNotFound(_)
            | Error::VersionNotFound(..)
            | Error::SchemaNotFound(_)
            | Error::NotRegistered(_)
            | Error::SubjectConfigNotFound(_) => 404,
            Error::InvalidSchema(_)
            | Error::InvalidVersion(_)
            | Error::InvalidCompatibility(_)
            | Error::InvalidSubject(_) => 422,
            Error::Incompatible { .. } => 409,
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::Io { .. } | Error::Corrupt(_) => 500,
        }
    }

    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Error::SubjectNotFound(_) => 40401,
            Error::VersionNotFound(..) => 40402,
            Error::SchemaNotFound(_) | Error::NotRegistered(_) => 40403,
            Error::SubjectConfigNotFound(_) => 40408,
            Error::InvalidSchema(_) => 42201,
            Error::InvalidVersion(_) => 42202,
            Error::InvalidCompatibility(_) => 42203,
            Error::InvalidSubject(_) => 42208,
            Error::Incompatible { .. } => 409,
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 40101,
            Error::Forbidden(_) => 40301,
            Error::Io { .. } | Error::Corrupt(_) => 50001,
        }
    }

    /// What a client is told: the whole reason for its own mistakes, only the condition for
    /// the server's (file paths and OS messages go to the server log).
    pub fn public_message(&self) -> String {
        match self.fault() {
            Fault::User => self.to_string(),
            _ => "the schema registry cannot read or write its store; retry later".to_string(),
        }
    }
}
