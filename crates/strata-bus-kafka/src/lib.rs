//! Strata's Kafka bus: [`strata_bus::Log`] over any Kafka-protocol broker, through rdkafka
//! (its bundled librdkafka).
//!
//! Producers and consumers hold an `Arc<dyn Log>` and never know which backend they talk to.
//! What the backend maps where (ADR 0011):
//!
//! - `append`: an idempotent producer with `acks=all`; it resolves only once the brokers
//!   acknowledged every record, with the positions from the delivery reports. The partition
//!   is chosen by Strata ([`strata_bus::partition_for`], FNV-1a of the key), not by Kafka's
//!   partitioner, so a key lands in the same partition number as on the embedded bus.
//!   Bounded: `queue.buffering.max.messages`/`max.kbytes`; a full queue, an unreachable
//!   broker (delivery timeout) → `Error::Overloaded` (HTTP 503).
//! - `read`/`wait_for`: one assign-only consumer per partition read, positioned by assign at
//!   the offset the caller asks for (exactly-once is driven by the offsets Strata stores in
//!   its Iceberg snapshots, ADR 0001; Kafka's group offsets are advisory).
//! - `end_offsets`/`start_offsets`: watermarks (`ListOffsets`), the end confirmed by reading
//!   the last batch (tansu 0.6 reports the last batch's base offset + 1 as its end).
//! - `commit`/`committed`: Kafka consumer-group offsets of a group that never joins
//!   (standalone commits).

mod client;
mod error;
mod kafka;
mod reader;

pub use client::{validate_properties, KafkaOptions};
pub use error::OpenError;
pub use kafka::KafkaLog;
