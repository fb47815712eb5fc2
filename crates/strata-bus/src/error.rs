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
    #[error("bus i/o error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bus data corrupt: {0}")]
    Corrupt(String),
    #[error("bus is closed")]
    Closed,
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Overloaded(_) | Error::Io { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
