//! The sink's message-id window (ADR 0048): an event whose `(app, messageId)` the sink already
//! wrote to `ods.ods_event` within `lake.dedup_window` is dropped. The collectors drop SDK
//! retries they saw themselves (`strata-collect/src/dedup.rs`, ADR 0002); a retry that the load
//! balancer sent to another collector reaches the bus twice, and the sink, the one writer of
//! the lake, drops the second copy.
//!
//! - The key is the collector's: `(app, messageId)`, kept as a 128-bit hash.
//! - Time is the bus record's timestamp (when a collector took the event), not the sink's
//!   clock: a sink catching up on a backlog judges records as they were received, and the
//!   window rebuilt after a restart holds what the one before the restart held.
//! - First write wins: a key is remembered when its record goes to `ods.ods_event`; a dropped
//!   copy does not refresh it.
//! - Bounded: ids older than the window (behind the newest record read) are forgotten, and at
//!   most `lake.dedup_capacity` are kept (the oldest go first).
//!
//! The window belongs to the sink's read state and is rebuilt whenever that is (start, resume
//! after a failure or a conflict) from the bus records below `ods.ods_event`'s committed
//! position: exactly the records already written (or dropped as copies of written ones).
//! Buffered rows a failed flush threw away are re-read, so their ids never block them.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use strata_bus::{Consumer, Log, Offsets, OnLost};
use strata_core::BusRecordView;
use strata_table::error::{Error, Result};

/// A `(app, messageId)` pair, hashed.
pub type Key = u128;

/// Hash of `(app, message_id)`: two independent 64-bit SipHashes (the collector's scope: an
/// id is unique per app).
pub fn key(app: &str, message_id: &str) -> Key {
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        app.hash(&mut h);
        message_id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Records read per partition when rebuilding, per id of capacity (partitions are not evenly
/// filled).
const REBUILD_SLACK: u64 = 2;
/// Most ids read back that the rebuild allocates room for up front.
const PREALLOCATE_MAX: u64 = 8 << 20;

/// The ids written within the window.
pub struct Written {
    window_ms: i64,
    capacity: usize,
    /// The keys remembered; each has exactly one entry in `order`.
    seen: HashSet<Key, BuildHasherDefault<KeyHasher>>,
    /// `(key, record time in epoch ms)` in the order they were written, for eviction.
    order: VecDeque<(Key, i64)>,
    /// The newest record time seen: the window ends here.
    newest_ms: i64,
}

impl Written {
    /// An empty window; `window` or `capacity` zero turns de-duplication off.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Written {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            capacity,
            seen: HashSet::default(),
            order: VecDeque::new(),
            newest_ms: i64::MIN,
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0 && self.window_ms > 0
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether the record with `key`, taken by a collector at `at_ms`, is the first of its id
    /// within the window: `true` remembers it (it is to be written), `false` is a copy.
    pub fn first(&mut self, key: Key, at_ms: i64) -> bool {
        if !self.enabled() {
            return true;
        }
        self.newest_ms = self.newest_ms.max(at_ms);
        self.evict();
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back((key, at_ms));
        if self.seen.len() > self.capacity {
            self.evict();
        }
        true
    }

    /// Forgets ids recorded before the window's start, and the oldest past the capacity.
    fn evict(&mut self) {
        let horizon = self.newest_ms.saturating_sub(self.window_ms);
        while let Some(&(k, t)) = self.order.front() {
            if t >= horizon && self.seen.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&k);
        }
    }

    /// The window as it stood once the records of `topic` below `until` were written: their
    /// event ids within the window, at most `capacity` (the newest kept). Reads at most
    /// `2 × capacity / partitions` records back from each partition's position.
    pub async fn rebuild(
        log: &Arc<dyn Log>,
        topic: &str,
        until: &Offsets,
        window: Duration,
        capacity: usize,
    ) -> Result<Written> {
        let mut written = Written::new(window, capacity);
        if !written.enabled() {
            return Ok(written);
        }
        let starts = log
            .start_offsets(topic)
            .await
            .map_err(|e| Error::bus(format!("start offsets of {topic}"), e))?;
        let partitions = until.len().max(1) as u64;
        let per_partition = (capacity as u64).div_ceil(partitions) * REBUILD_SLACK;
        let ranges: Vec<(u32, u64, u64)> = until
            .iter()
            .map(|(&partition, &end)| {
                let start = starts.get(&partition).copied().unwrap_or(0);
                (partition, end.saturating_sub(per_partition).max(start), end)
            })
            .filter(|&(_, from, end)| from < end)
            .collect();
        let records: u64 = ranges.iter().map(|&(_, from, end)| end - from).sum();
        // Allocated once (no doubling of a vector of millions); past a bound it grows.
        let mut found: Vec<(i64, Key)> =
            Vec::with_capacity(usize::try_from(records.min(PREALLOCATE_MAX)).unwrap_or(0));
        for (partition, from, end) in ranges {
            // Retention may pass the tail's start while it is read: the read goes on from the
            // oldest record left (those ids are older than anything retained).
            let mut tail = Consumer::range(log.clone(), topic, partition, from, end)
                .with_limits(10_000, 8 * 1024 * 1024)
                .on_lost(OnLost::SkipQuietly);
            while !tail.done() {
                let batch = tail
                    .fetch()
                    .await
                    .map_err(|e| Error::bus(format!("reading {topic} back"), e))?;
                if batch.is_empty() {
                    break;
                }
                crate::off_workers_sync(|| {
                    for r in &batch {
                        if let Ok(BusRecordView::Event(e)) = BusRecordView::decode(&r.value) {
                            found.push((r.timestamp_ms, key(&e.app, &e.message_id)));
                        }
                    }
                });
            }
        }
        // In the order the collectors took them: the first copy of an id is the one kept.
        found.sort_by_key(|&(t, _)| t);
        for (t, k) in found {
            written.first(k, t);
        }
        Ok(written)
    }
}

/// A [`Key`] is already a uniform hash: the set uses its bits as they are instead of hashing
/// them again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here; fold anything else in so the hasher stays correct.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, k: u128) {
        self.0 ^= (k as u64) ^ ((k >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    #[test]
    fn first_copy_wins_within_the_window() {
        let mut w = Written::new(Duration::from_secs(10), 100);
        let (a, b) = (key("web", "a"), key("web", "b"));
        assert_ne!(key("web", "a"), key("ios", "a"), "ids are scoped per app");
        assert!(w.first(a, 0));
        assert!(!w.first(a, 5 * S), "a copy within the window");
        assert!(w.first(b, 10 * S));
        assert!(!w.first(a, 10 * S), "the window's edge is inside");
        // A record 11 s on pushes `a` out; `b` stays.
        assert!(w.first(key("web", "c"), 11 * S));
        assert!(w.first(a, 11 * S), "past the window: written again");
        assert!(!w.first(b, 12 * S));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn capacity_forgets_the_oldest() {
        let mut w = Written::new(Duration::from_secs(3600), 2);
        let keys: Vec<Key> = (0..3).map(|i| key("web", &format!("m{i}"))).collect();
        for &k in &keys {
            assert!(w.first(k, 0));
        }
        assert_eq!(w.len(), 2);
        assert!(!w.first(keys[2], 0));
        assert!(w.first(keys[0], 0), "evicted by capacity");
    }

    #[test]
    fn off_when_window_or_capacity_is_zero() {
        for mut w in [
            Written::new(Duration::ZERO, 100),
            Written::new(Duration::from_secs(10), 0),
        ] {
            assert!(w.first(key("web", "a"), 0));
            assert!(w.first(key("web", "a"), 0));
            assert!(w.is_empty());
        }
    }
}
