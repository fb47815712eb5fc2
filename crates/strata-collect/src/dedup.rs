//! Deduplication of SDK retries: a `(app, messageId)` seen within `collector.dedup_window` is
//! dropped. Bounded by `collector.dedup_capacity` (oldest evicted first). Ids are remembered as
//! 128-bit hashes (no strings kept), and only once their append to the bus succeeded.
//!
//! On startup the set is warmed from the tail of the `events` topic, so a client retrying
//! across a collector restart is not counted twice.

use std::collections::{hash_map, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_bus::{Consumer, Log, OnLost};
use strata_core::event::EVENTS_TOPIC;
use strata_core::BusRecordView;

use crate::error::Result;

/// A `(app, messageId)` pair, hashed.
pub type Key = u128;

/// Hash of `(app, message_id)`: two independent 64-bit SipHashes.
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

/// The remembered ids.
pub struct Dedup {
    window_micros: i64,
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Key → time it was recorded (epoch µs).
    seen: HashMap<Key, i64, BuildHasherDefault<KeyHasher>>,
    /// Insertion order, for eviction. May hold stale entries (re-recorded keys).
    order: VecDeque<(Key, i64)>,
}

/// Most entries allocated up front; past this the map grows as it fills.
const PREALLOCATE_MAX: usize = 4 << 20;

/// A [`Key`] is already a uniform hash: the map uses its bits as they are instead of hashing
/// them again (one SipHash less per lookup).
#[derive(Default)]
struct KeyHasher(u64);

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

impl Dedup {
    pub fn new(window: Duration, capacity: usize) -> Self {
        let preallocate = if window.is_zero() {
            0
        } else {
            capacity.min(PREALLOCATE_MAX)
        };
        Self {
            window_micros: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            capacity,
            // Allocated once: growing a map of millions of entries rehashes all of them and
            // faults in fresh pages while requests wait.
            inner: Mutex::new(Inner {
                seen: HashMap::with_capacity_and_hasher(preallocate, BuildHasherDefault::default()),
                order: VecDeque::with_capacity(preallocate),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For each key, whether it was seen within the window before `now`.
    pub fn seen_many(&self, keys: &[Key], now: i64) -> Vec<bool> {
        let inner = self.lock();
        let horizon = now.saturating_sub(self.window_micros);
        keys.iter()
            .map(|k| inner.seen.get(k).is_some_and(|&t| t >= horizon))
            .collect()
    }

    /// Remembers keys (after their append succeeded) at time `at`.
    pub fn record_many(&self, keys: &[Key], at: i64) {
        if self.capacity == 0 || self.window_micros == 0 {
            return;
        }
        let mut inner = self.lock();
        for &k in keys {
            inner.seen.insert(k, at);
            inner.order.push_back((k, at));
        }
        self.evict(&mut inner, at);
    }

    fn evict(&self, inner: &mut Inner, now: i64) {
        let horizon = now.saturating_sub(self.window_micros);
        while let Some(&(k, t)) = inner.order.front() {
            let expired = t < horizon;
            let over = inner.seen.len() > self.capacity || inner.order.len() > 2 * self.capacity;
            if !expired && !over {
                break;
            }
            inner.order.pop_front();
            // Only forget the key if this entry is its latest recording.
            if let hash_map::Entry::Occupied(e) = inner.seen.entry(k) {
                if *e.get() == t {
                    e.remove();
                }
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the tail of the `events` topic back and remembers the message ids of accepted
    /// events recorded within the window (at most `capacity`, the newest kept).
    pub async fn warm(&self, log: &Arc<dyn Log>, now: i64) -> Result<usize> {
        if self.capacity == 0 || self.window_micros == 0 {
            return Ok(0);
        }
        let horizon_ms = now.saturating_sub(self.window_micros) / 1000;
        let ends = log.end_offsets(EVENTS_TOPIC).await?;
        let starts = log.start_offsets(EVENTS_TOPIC).await?;
        let partitions = ends.len().max(1) as u64;
        // Keys spread evenly over partitions: each one's share of the capacity, plus slack.
        let per_partition = (self.capacity as u64).div_ceil(partitions) * 2;
        let mut found: Vec<(i64, Key)> = Vec::new();
        for (&partition, &end) in &ends {
            let start = starts.get(&partition).copied().unwrap_or(0);
            let from = end.saturating_sub(per_partition).max(start);
            // Retention may pass the window's start while it is read: the read goes on from
            // the oldest record left.
            let mut tail = Consumer::range(log.clone(), EVENTS_TOPIC, partition, from, end)
                .with_limits(10_000, 8 * 1024 * 1024)
                .on_lost(OnLost::SkipQuietly);
            while !tail.done() {
                let batch = tail.fetch().await?;
                if batch.is_empty() {
                    break;
                }
                for r in batch {
                    if r.timestamp_ms < horizon_ms {
                        continue;
                    }
                    if let Ok(BusRecordView::Event(e)) = BusRecordView::decode(&r.value) {
                        found.push((r.timestamp_ms * 1000, key(&e.app, &e.message_id)));
                    }
                }
            }
        }
        found.sort_unstable_by_key(|&(t, _)| t);
        let skip = found.len().saturating_sub(self.capacity);
        let mut inner = self.lock();
        for &(t, k) in &found[skip..] {
            inner.seen.insert(k, t);
            inner.order.push_back((k, t));
        }
        self.evict(&mut inner, now);
        Ok(inner.seen.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn window_and_capacity() {
        let d = Dedup::new(Duration::from_secs(10), 3);
        let (a, b, c, e) = (key("w", "a"), key("w", "b"), key("w", "c"), key("w", "e"));
        assert_ne!(key("w", "a"), key("m", "a"));
        assert_eq!(d.seen_many(&[a], 0), vec![false]);
        d.record_many(&[a, b], 0);
        assert_eq!(d.seen_many(&[a, b, c], 5 * S), vec![true, true, false]);
        // Outside the window.
        assert_eq!(d.seen_many(&[a], 11 * S), vec![false]);
        // Capacity: the oldest goes.
        d.record_many(&[c, e], S);
        assert_eq!(d.len(), 3);
        assert_eq!(
            d.seen_many(&[a, b, c, e], 2 * S),
            vec![false, true, true, true]
        );
        // Re-recording refreshes; the stale queue entry does not evict it.
        d.record_many(&[b], 9 * S);
        d.record_many(&[], 15 * S);
        assert_eq!(d.seen_many(&[b, c], 15 * S), vec![true, false]);
    }

    #[tokio::test]
    async fn warm_remembers_the_tail_within_the_window() {
        use strata_bus::Record;
        use strata_core::event::RecordFormat;
        use strata_core::{BusRecord, Event};

        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            strata_bus::embedded::EmbeddedLog::open(dir.path(), Default::default())
                .await
                .unwrap();
        log.ensure_topic(EVENTS_TOPIC, 2).await.unwrap();
        let now = 100_000 * S;
        // Ten events an hour old, then ten a second old, over both partitions.
        let records = (0..20)
            .map(|i| {
                let at = if i < 10 { now - 3600 * S } else { now - S };
                let event = Event {
                    message_id: format!("m{i}"),
                    app: "web".into(),
                    kind: "track".into(),
                    server_ts: at,
                    event_ts: at,
                    ..Default::default()
                };
                Record {
                    key: format!("u{i}").into(),
                    value: BusRecord::Event(Box::new(event))
                        .encode(RecordFormat::Binary)
                        .into(),
                    timestamp_ms: at / 1000,
                }
            })
            .collect();
        log.append(EVENTS_TOPIC, records).await.unwrap();
        let d = Dedup::new(Duration::from_secs(60), 100);
        assert_eq!(d.warm(&log, now).await.unwrap(), 10);
        let keys: Vec<Key> = (0..20).map(|i| key("web", &format!("m{i}"))).collect();
        let recent: Vec<bool> = (0..20).map(|i| i >= 10).collect();
        assert_eq!(d.seen_many(&keys, now), recent);
    }

    #[test]
    fn disabled_when_capacity_zero() {
        let d = Dedup::new(Duration::from_secs(10), 0);
        d.record_many(&[key("w", "a")], 0);
        assert!(d.is_empty());
    }
}
