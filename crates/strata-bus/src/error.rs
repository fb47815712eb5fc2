//! Bus errors: whose fault, and whether a retry can help.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Producers are faster than the disk: back off and retry (HTTP 503).
    #[error("bus overloaded: {0}")]
    Overloaded(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("unknown partition {partition} of topic {topic:?}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("offset {offset} of {topic}/{partition} is out of range (retained {start}..{end})")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The disk (or quota) under the bus is full: the environment's fault. Nothing of the
    /// failed call was acknowledged; the same call succeeds once space is freed.
    #[error("bus storage full ({context}): {source}")]
    StorageFull {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Any other failed read, write or fsync (the environment's fault; retryable).
    #[error("bus i/o error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An append spread over several partitions failed on some of them: the records at
    /// `appended` (indices into the call's input) are durable and will be read by consumers,
    /// the others are not. Whether a retry helps is `source`'s call.
    #[error("{source} ({} of {total} records were appended)", appended.len())]
    Partial {
        appended: Vec<usize>,
        total: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("bus data corrupt: {0}")]
    Corrupt(String),
    #[error("bus is closed")]
    Closed,
}

impl Error {
    /// An I/O error with what was being done; a full disk or quota becomes
    /// [`Error::StorageFull`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if is_storage_full(&source) {
            Error::StorageFull { context, source }
        } else {
            Error::Io { context, source }
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Overloaded(_) | Error::StorageFull { .. } | Error::Io { .. } => true,
            Error::Partial { source, .. } => source.retryable(),
            _ => false,
        }
    }

    /// Whether the call failed for want of disk space (here or in a partial append's cause).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::StorageFull { .. } => true,
            Error::Partial { source, .. } => source.is_storage_full(),
            _ => false,
        }
    }

    /// The error without the partial-append wrapper.
    pub fn root(&self) -> &Error {
        match self {
            Error::Partial { source, .. } => source.root(),
            other => other,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
