//! Lake errors: each variant says whose fault it is and whether a retry can help.

use std::fmt;

/// Whose fault an error is: the one definition, shared with every crate.
pub use strata_core::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse or does not plan (user's fault, not retryable).
    #[error("sql error: {0}")]
    Sql(String),
    /// A table, namespace or snapshot the user named does not exist (user's fault).
    #[error("not found: {0}")]
    NotFound(String),
    /// A request that cannot be carried out as given: a bad option or table property value,
    /// an operation the table does not support (user's fault, not retryable).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The Iceberg catalog or table files failed (external; often retryable). The message
    /// already holds the iceberg error's text (and its causes), so it is not also a `source`:
    /// `{:#}` would print it twice.
    #[error("iceberg error ({context}): {cause}")]
    Iceberg {
        context: String,
        cause: Box<iceberg::Error>,
    },
    /// A commit whose outcome is unknown and could not be confirmed after bounded retries
    /// (external, retryable: the next start re-reads from the committed position).
    #[error("commit of {table} failed after {attempts} attempts: {message}")]
    CommitFailed {
        table: String,
        attempts: u32,
        message: String,
    },
    /// Another writer moved the table's bus position (two sinks on one lake?). Not retryable
    /// as is: the sink re-reads the positions and resumes from them.
    #[error("conflict on {table}: {message}")]
    Conflict { table: String, message: String },
    /// The bus failed (external; retryable when the bus says so).
    #[error("bus error ({context}): {source}")]
    Bus {
        context: String,
        #[source]
        source: strata_bus::Error,
    },
    /// File system or catalog database I/O outside Iceberg (external, retryable).
    #[error("i/o error ({context}): {message}")]
    Io { context: String, message: String },
    /// DataFusion failed while executing a query that planned (external or internal;
    /// not retried automatically).
    #[error("query execution error: {0}")]
    Execution(String),
    /// Arrow failed building or printing batches (internal bug, not retryable).
    #[error("arrow error ({context}): {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A broken invariant inside the lake (internal bug, not retryable).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn iceberg(context: impl Into<String>, source: iceberg::Error) -> Self {
        Error::Iceberg {
            context: context.into(),
            cause: Box::new(source),
        }
    }

    pub fn bus(context: impl Into<String>, source: strata_bus::Error) -> Self {
        Error::Bus {
            context: context.into(),
            source,
        }
    }

    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub fn io(context: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Io {
            context: context.into(),
            message: message.to_string(),
        }
    }

    /// Maps a DataFusion error: planning problems are the user's, the rest execution errors.
    pub fn datafusion(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e.find_root() {
            D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => {
                Error::Sql(e.to_string())
            }
            _ => Error::Execution(e.to_string()),
        }
    }

    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Sql(_) | Error::NotFound(_) | Error::Invalid(_) => Fault::User,
            Error::Iceberg { cause, .. } => match cause.kind() {
                iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound => {
                    Fault::User
                }
                iceberg::ErrorKind::DataInvalid | iceberg::ErrorKind::PreconditionFailed => {
                    Fault::Internal
                }
                _ => Fault::External,
            },
            Error::CommitFailed { .. }
            | Error::Conflict { .. }
            | Error::Bus { .. }
            | Error::Io { .. } => Fault::External,
            Error::Execution(_) => Fault::External,
            Error::Arrow { .. } | Error::Internal(_) => Fault::Internal,
        }
    }

    /// Whether retrying the same operation later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Sql(_)
            | Error::NotFound(_)
            | Error::Invalid(_)
            | Error::Conflict { .. }
            | Error::Arrow { .. }
            | Error::Internal(_) => false,
            Error::Iceberg { cause, .. } => {
                cause.retryable()
                    || matches!(
                        cause.kind(),
                        iceberg::ErrorKind::Unexpected | iceberg::ErrorKind::CatalogCommitConflicts
                    )
            }
            Error::CommitFailed { .. } | Error::Io { .. } => true,
            Error::Bus { source, .. } => source.retryable(),
            Error::Execution(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
