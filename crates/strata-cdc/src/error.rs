//! CDC errors: each variant says whose fault it is and whether a retry can help.

use strata_core::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source database refused or dropped us (external; retryable: the source reconnects
    /// with backoff and resumes from its last position).
    #[error("source {source_name} ({host}): {message}")]
    Source {
        source_name: String,
        host: String,
        message: String,
    },
    /// The source's data or schema is something we cannot mirror (user's side, not retryable
    /// for that table).
    #[error("{table}: {message}")]
    Unsupported { table: String, message: String },
    /// The binlog no longer holds our position (purged), or the PostgreSQL slot is gone or
    /// invalidated: a re-snapshot is needed.
    #[error("source {source_name}: position {position} is no longer on the server ({message}); set on_position_lost = \"resnapshot\" on the source to re-snapshot every table automatically, or remove {state} to re-snapshot")]
    PositionLost {
        source_name: String,
        position: String,
        message: String,
        state: String,
    },
    /// The bus failed (external; retryable when the bus says so).
    #[error("bus error ({context}): {source}")]
    Bus {
        context: String,
        #[source]
        source: strata_bus::Error,
    },
    /// The state file could not be read or written (external).
    #[error("i/o error ({context}): {message}")]
    Io { context: String, message: String },
    /// A broken invariant inside Strata (internal bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Unsupported { .. } | Error::PositionLost { .. } => Fault::User,
            Error::Source { .. } | Error::Bus { .. } | Error::Io { .. } => Fault::External,
            Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether trying again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Source { .. } | Error::Io { .. } => true,
            Error::Bus { source, .. } => source.retryable(),
            _ => false,
        }
    }

    pub fn bus(context: impl Into<String>, source: strata_bus::Error) -> Self {
        Error::Bus {
            context: context.into(),
            source,
        }
    }

    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
