//! `[bus]`: the durable log between the collector and its consumers, the embedded segment log
//! or a Kafka-protocol broker. Parsed as a section of `strata.toml` (the root config lives in
//! the `strata` binary); [`BusConfig::validate`] is pure, so `strata check` runs offline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
/// `bus.record_format`: the encoding is the event record's, so the type lives with it.
pub use strata_core::event::RecordFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// Segment log under `<data>/bus`.
    Embedded,
    /// Any Kafka-protocol broker (Apache Kafka, MSK, Redpanda, tansu) at `bus.brokers`.
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `embedded` (segment log under `<data>/bus`) or `kafka` (the brokers at `brokers`).
    pub kind: BusKind,
    /// Encoding of the events the collector appends to the `events` topic.
    pub record_format: RecordFormat,
    /// Partitions of the `events` topic (keyed by user id, else anonymous id). With Kafka:
    /// the partition count of the `events` topic when Strata creates it.
    pub partitions: u32,
    /// Size at which a segment file is closed and a new one started, in bytes.
    pub segment_bytes: u64,
    /// Group commit: appends arriving within this window share one fsync.
    #[serde(with = "humantime_serde")]
    pub group_commit_window: Duration,
    /// Bytes waiting for fsync beyond which producers get "overloaded" (→ HTTP 503).
    pub max_pending_bytes: u64,
    /// Closed segments older than this are deleted (only once every consumer group is past them).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Per-partition size beyond which the oldest closed segments are deleted.
    pub retention_bytes: u64,
    /// Kafka: bootstrap brokers, `HOST:PORT,HOST:PORT,…` (required when `kind = "kafka"`).
    pub brokers: String,
    /// Kafka: client id the brokers see in their logs, metrics and quotas.
    pub client_id: String,
    /// Kafka: replication factor of the topics Strata creates; 0 = the broker's
    /// `default.replication.factor`. Existing topics are used as they are.
    pub replication_factor: u16,
    /// Kafka: an append not acknowledged by the brokers within this time fails (→ HTTP 503,
    /// the SDK retries; the collector's dedup drops the copy if the first one did land).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Kafka: records waiting for the brokers' acknowledgement beyond which producers get
    /// "overloaded" (→ HTTP 503). `max_pending_bytes` bounds their bytes the same way.
    pub max_pending_records: u32,
    /// Kafka: further librdkafka properties (security, SASL, timeouts), e.g.
    /// `"security.protocol" = "SASL_SSL"`. Those Strata's guarantees rest on (bootstrap.servers,
    /// enable.idempotence, acks, group.id, offset handling) cannot be set here.
    pub librdkafka: BTreeMap<String, String>,
}

/// librdkafka properties Strata sets itself: idempotence, acks=all and offset handling are what
/// "acknowledged means on every in-sync replica" and exactly-once rest on.
pub const KAFKA_RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "linger.ms",
    "queue.buffering.max.ms",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
    "isolation.level",
    "transactional.id",
];

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            record_format: RecordFormat::Binary,
            partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            group_commit_window: Duration::from_millis(2),
            max_pending_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: 16 * 1024 * 1024 * 1024,
            brokers: String::new(),
            client_id: "strata".to_string(),
            replication_factor: 0,
            delivery_timeout: Duration::from_secs(15),
            max_pending_records: 100_000,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl BusConfig {
    /// Every problem of the section, one message each (empty: valid).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.partitions == 0 || self.partitions > 1024 {
            problems.push("bus.partitions must be between 1 and 1024".to_string());
        }
        if self.segment_bytes < 1024 * 1024 {
            problems.push("bus.segment_bytes must be at least 1 MiB".to_string());
        }
        if let Err(e) = self.validate_kafka() {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The Kafka keys, checked offline (librdkafka itself checks property names and values
    /// when `strata check` or `serve` builds the client configuration).
    fn validate_kafka(&self) -> Result<(), String> {
        let bad = |msg: String| Err(msg);
        if self.kind != BusKind::Kafka {
            return Ok(());
        }
        let brokers: Vec<&str> = self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return bad(
                "bus.brokers must list the Kafka brokers (HOST:PORT,...) when bus.kind = \"kafka\""
                    .into(),
            );
        }
        for b in brokers {
            let port = b.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty() && !host.contains('/'))
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
            });
            if port.is_none_or(|p| p == 0) {
                return bad(format!("bus.brokers: {b:?} is not HOST:PORT"));
            }
        }
        if self.client_id.trim().is_empty() {
            return bad("bus.client_id must not be empty".into());
        }
        if self.delivery_timeout < Duration::from_secs(1) {
            return bad("bus.delivery_timeout must be at least 1s".into());
        }
        if self.max_pending_records == 0 || self.max_pending_records > 10_000_000 {
            return bad("bus.max_pending_records must be between 1 and 10000000".into());
        }
        if self.max_pending_bytes < 1024 || self.max_pending_bytes > (i32::MAX as u64) * 1024 {
            return bad("bus.max_pending_bytes must be between 1 KiB and 2 TiB with Kafka".into());
        }
        for key in self.librdkafka.keys() {
            if KAFKA_RESERVED_PROPERTIES.contains(&key.as_str()) {
                return bad(format!(
                    "bus.librdkafka.{key:?} is set by Strata (use bus.brokers, bus.client_id, \
                     bus.delivery_timeout, bus.max_pending_*; idempotence, acks and offsets \
                     are fixed for exactly-once)"
                ));
            }
        }
        Ok(())
    }
}
