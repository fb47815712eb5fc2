//! The `Log` trait: what producers and consumers see of the bus, whatever the backend
//! (the embedded segment log today; Kafka later). Producers and consumers hold an
//! `Arc<dyn Log>` and never name a backend.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// A partition number within a topic.
pub type Partition = u32;
/// A record's position within its partition: 0, 1, 2, … with no gaps.
pub type Offset = u64;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Chooses the partition (hash of the key modulo the partition count). Empty key: partition 0.
    pub key: Bytes,
    pub value: Bytes,
    /// Producer time, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// A record read back, with where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition: Partition,
    pub offset: Offset,
    pub key: Bytes,
    pub value: Bytes,
    pub timestamp_ms: i64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: Partition,
    pub offset: Offset,
}

/// Per-partition offsets, e.g. a consumer group's committed "next offset to read".
pub type Offsets = BTreeMap<Partition, Offset>;

/// Whether the bus can take appends now, as a readiness check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The disk under the bus is full: appends fail until space is freed (the bus takes
    /// appends again by itself then).
    StorageFull,
    /// Writing to the bus's storage fails for another reason and the bus cannot yet restore a
    /// clean end of its log; it keeps trying.
    StorageFailing,
    /// `close` was called.
    Closed,
}

impl Health {
    /// A short reason for clients and load balancers (never a path or an OS message).
    pub fn reason(self) -> &'static str {
        match self {
            Health::Ready => "ready",
            Health::StorageFull => "the server's disk is full; retry later",
            Health::StorageFailing => "the server cannot write to its storage; retry later",
            Health::Closed => "the server is shutting down",
        }
    }
}

#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Creates the topic if it does not exist. An existing topic keeps its partition count.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    /// Number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<u32>;

    /// Appends records; returns once they are durable (fsync'd, group-committed with other
    /// concurrent appends). Returns `Error::Overloaded` instead of queueing without bound.
    /// The positions are in the order of `records`.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>>;

    /// Reads records of one partition starting at `from`, at most `max_records` and roughly
    /// `max_bytes`. Returns an empty vector at the end of the log (does not wait).
    /// Reading below the oldest retained offset is `Error::OffsetOutOfRange`.
    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>>;

    /// Waits until `partition` has a record at `offset` or later, or `timeout` passes.
    async fn wait_for(
        &self,
        topic: &str,
        partition: Partition,
        offset: Offset,
        timeout: std::time::Duration,
    ) -> Result<()>;

    /// The next offset to be written per partition (the high watermark).
    async fn end_offsets(&self, topic: &str) -> Result<Offsets>;

    /// The oldest offset still retained per partition.
    async fn start_offsets(&self, topic: &str) -> Result<Offsets>;

    /// Stores `group`'s positions (next offset to read) durably.
    async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()>;

    /// `group`'s committed positions; partitions never committed are absent.
    async fn committed(&self, group: &str, topic: &str) -> Result<Offsets>;

    /// Flushes and stops background work. Appends after this fail.
    async fn close(&self) -> Result<()>;

    /// Whether appends can succeed now. Cheap (no I/O beyond a `statvfs`), for `/health`.
    fn health(&self) -> Health {
        Health::Ready
    }
}
