//! Strata's bus: a durable, partitioned, replayable log with consumer groups.
//!
//! [`Log`] is the only thing producers and consumers see. [`embedded::EmbeddedLog`] keeps
//! segments under `<data>/bus`; a Kafka backend can implement the same trait.

pub mod config;
pub mod consumer;
pub mod embedded;
pub mod error;
pub mod log;

pub use consumer::{Consumer, OnLost, StartAt};
pub use error::{Error, Result};
pub use log::{Health, Log, Offset, Offsets, Partition, Position, Record, StoredRecord};

/// Partition for `key` among `partitions` (stable across restarts and versions: FNV-1a 32).
pub fn partition_for(key: &[u8], partitions: u32) -> Partition {
    if key.is_empty() || partitions <= 1 {
        return 0;
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions
}
