//! Kafka errors mapped onto `strata_bus::Error`: whose fault, and whether a retry can help.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaErrorCode as Code;

/// Opening the Kafka bus failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is wrong (user's fault; retrying the same config cannot help).
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// The brokers could not be reached or answered with an error (external; retry later).
    #[error("Kafka brokers unavailable: {0}")]
    Unavailable(String),
}

impl From<OpenError> for strata_bus::Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Config(m) => strata_bus::Error::Invalid(m),
            OpenError::Unavailable(m) => strata_bus::Error::io(
                "connecting to the Kafka brokers",
                std::io::Error::new(std::io::ErrorKind::NotConnected, m),
            ),
        }
    }
}

/// Codes that mean "the brokers are unreachable, slow or moving leaders": a later retry can
/// succeed.
pub(crate) fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        Code::QueueFull
            | Code::MessageTimedOut
            | Code::AllBrokersDown
            | Code::BrokerTransportFailure
            | Code::Resolve
            | Code::OperationTimedOut
            | Code::TimedOutQueue
            | Code::RequestTimedOut
            | Code::NetworkException
            | Code::LeaderNotAvailable
            | Code::NotLeaderForPartition
            | Code::BrokerNotAvailable
            | Code::NotEnoughReplicas
            | Code::NotEnoughReplicasAfterAppend
            | Code::CoordinatorLoadInProgress
            | Code::CoordinatorNotAvailable
            | Code::NotCoordinator
            | Code::RebalanceInProgress
            | Code::KafkaStorageError
            | Code::PurgeQueue
            | Code::PurgeInflight
            | Code::UnknownProducerId
    )
}

pub(crate) fn code_of(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::PartitionEOF(_) => Some(Code::PartitionEOF),
        other => other.rdkafka_error_code(),
    }
}

/// An error of a produce: queue full or brokers unreachable is backpressure (`Overloaded`,
/// HTTP 503, nothing was acknowledged); anything else is not retryable as is.
pub(crate) fn produce_error(topic: &str, e: &KafkaError) -> strata_bus::Error {
    match code_of(e) {
        // Fatal: the producer is replaced (see `KafkaLog::renew_producer_if_fatal`), so a retry
        // goes through a new one.
        Some(code) if transient(code) || code == Code::Fatal => {
            metrics::counter!("strata_bus_overloaded_total").increment(1);
            strata_bus::Error::Overloaded(format!("kafka produce to {topic}: {e}"))
        }
        Some(Code::UnknownTopicOrPartition | Code::UnknownTopic) => {
            strata_bus::Error::UnknownTopic(topic.to_string())
        }
        _ => strata_bus::Error::Invalid(format!("kafka produce to {topic}: {e}")),
    }
}

/// An error of a read, metadata, offsets or commit call: transient ones become the retryable
/// `Io`; the rest `Invalid` (not retryable: configuration, authorization, a bug).
pub(crate) fn call_error(context: impl Into<String>, e: &KafkaError) -> strata_bus::Error {
    let context = context.into();
    match code_of(e) {
        Some(code) if transient(code) => strata_bus::Error::io(
            format!("kafka {context}"),
            std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string()),
        ),
        _ => strata_bus::Error::Invalid(format!("kafka {context}: {e}")),
    }
}

/// A blocking librdkafka call that panicked or was cancelled on its thread.
pub(crate) fn join_error(context: &str, e: tokio::task::JoinError) -> strata_bus::Error {
    strata_bus::Error::io(
        format!("kafka {context}"),
        std::io::Error::other(e.to_string()),
    )
}
