//! librdkafka client configuration: what Strata fixes, what the user tunes, and the context
//! that sends librdkafka's logs to `tracing`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use crate::error::OpenError;

/// How to reach and use the Kafka cluster (`[bus]` with `kind = "kafka"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Bootstrap brokers, `HOST:PORT,HOST:PORT`.
    pub brokers: String,
    /// `client.id`; consumers append `-<role>`.
    pub client_id: String,
    /// Replication factor of created topics; 0 = the brokers' default.
    pub replication_factor: u16,
    /// Producer linger (`linger.ms`): appends within it share one produce request.
    pub linger: Duration,
    /// `message.timeout.ms`: an append not acknowledged within it fails as `Overloaded`.
    pub delivery_timeout: Duration,
    /// `queue.buffering.max.messages`: records awaiting acknowledgement.
    pub max_pending_records: u32,
    /// `queue.buffering.max.kbytes` (in bytes here): bytes awaiting acknowledgement.
    pub max_pending_bytes: u64,
    /// Metadata, admin, offsets and commit calls give up after this (retryable error).
    pub request_timeout: Duration,
    /// Further librdkafka properties, applied to every client.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            brokers: "127.0.0.1:9092".into(),
            client_id: "strata".into(),
            replication_factor: 0,
            linger: Duration::from_millis(2),
            delivery_timeout: Duration::from_secs(15),
            max_pending_records: 100_000,
            max_pending_bytes: 64 << 20,
            request_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl KafkaOptions {
    /// What every client shares: brokers, client id, the user's properties.
    fn base(&self, role: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id))
            .set_log_level(RDKafkaLogLevel::Warning);
        c
    }

    /// The idempotent producer: acks from every in-sync replica, bounded queue.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.base("producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", ms(self.linger))
            .set("message.timeout.ms", ms(self.delivery_timeout))
            .set(
                "queue.buffering.max.messages",
                self.max_pending_records.max(1).to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                (self.max_pending_bytes / 1024)
                    .clamp(1, i32::MAX as u64)
                    .to_string(),
            );
        c
    }

    /// An assign-only reader: no group, no auto commit, end-of-partition events on, and an
    /// out-of-range position reported rather than silently reset.
    pub(crate) fn reader(&self) -> ClientConfig {
        let mut c = self.base("reader");
        c.set("group.id", format!("{}-reader", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "100")
            // Prefetch per partition stays small: readers are positioned often.
            .set("queued.max.messages.kbytes", "16384")
            .set("isolation.level", "read_uncommitted");
        c
    }

    /// A reader that only confirms where partitions end: it sits at the tail, so its
    /// prefetch is kept small (librdkafka stops fetching once that much is queued).
    pub(crate) fn probe(&self) -> ClientConfig {
        let mut c = self.reader();
        c.set("client.id", format!("{}-probe", self.client_id))
            .set("queued.max.messages.kbytes", "1024")
            .set("queued.min.messages", "1000");
        c
    }

    /// A client of consumer group `group` used only to commit and fetch its offsets.
    pub(crate) fn group(&self, group: &str) -> ClientConfig {
        let mut c = self.base("group");
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        c
    }

    /// Metadata, watermarks and topic creation.
    pub(crate) fn admin(&self) -> ClientConfig {
        self.base("admin")
    }
}

/// Checks the user's librdkafka properties (names and values) with librdkafka itself, without
/// creating a client or touching the network: what `strata check` runs.
pub fn validate_properties(options: &KafkaOptions) -> Result<(), OpenError> {
    for config in [
        options.producer(),
        options.reader(),
        options.probe(),
        options.group("check"),
        options.admin(),
    ] {
        config
            .create_native_config()
            .map_err(|e| OpenError::Config(config_message(&e)))?;
    }
    Ok(())
}

pub(crate) fn config_message(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            format!("librdkafka property {key:?} = {value:?}: {desc}")
        }
        other => other.to_string(),
    }
}

/// Routes librdkafka's logs and global errors to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Context;

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for Context {}
