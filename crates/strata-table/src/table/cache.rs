//! Parsed manifests and position delete files, by path, for the life of the process.
//!
//! Iceberg never changes a file once written (every commit writes new manifests, a new
//! manifest list and new metadata), so what a path parsed to once holds for every later
//! snapshot that lists it. Without this, each row-level commit re-read and re-parsed every
//! manifest and delete file of the table: a CDC table committing every second grew one
//! manifest per commit and its commit time grew with it (avro parsing was the largest single
//! cost of the ODS merger).
//!
//! The caches are bounded by weight (files listed, positions deleted) and drop the least
//! recently used entries first. A cached manifest's entries carry what they inherited from
//! the manifest list entry that listed it when it was first read (iceberg's `load_manifest`
//! applies the snapshot id and sequence numbers); those never change once the manifest is
//! committed, so one cached manifest serves every snapshot that lists it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// Manifest entries (files) kept at most.
const MANIFEST_WEIGHT: u64 = 500_000;
/// Deleted positions kept at most.
const DELETE_WEIGHT: u64 = 20_000_000;

/// An LRU map of shared values, bounded by the sum of their weights.
pub struct Cache<T> {
    entries: HashMap<String, Entry<T>>,
    weight: u64,
    max_weight: u64,
    clock: u64,
}

struct Entry<T> {
    value: Arc<T>,
    weight: u64,
    used: u64,
}

impl<T> Cache<T> {
    pub fn new(max_weight: u64) -> Self {
        Cache {
            entries: HashMap::new(),
            weight: 0,
            max_weight,
            clock: 0,
        }
    }

    pub fn get(&mut self, key: &str) -> Option<Arc<T>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|e| {
            e.used = clock;
            e.value.clone()
        })
    }

    /// Keeps `value` unless it alone outweighs the cache; evicts the least recently used
    /// entries down to three quarters of the bound when full.
    pub fn put(&mut self, key: String, value: Arc<T>, weight: u64) {
        let weight = weight.max(1);
        if weight > self.max_weight {
            return;
        }
        self.clock += 1;
        if let Some(old) = self.entries.insert(
            key,
            Entry {
                value,
                weight,
                used: self.clock,
            },
        ) {
            self.weight -= old.weight;
        }
        self.weight += weight;
        if self.weight > self.max_weight {
            let mut by_age: Vec<(u64, String)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.used, k.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, k) in by_age {
                if self.weight <= self.max_weight - self.max_weight / 4 {
                    break;
                }
                if let Some(e) = self.entries.remove(&k) {
                    self.weight -= e.weight;
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A manifest's entries, with the snapshot id and sequence numbers they inherit applied.
pub type ManifestEntries = Vec<iceberg::spec::ManifestEntryRef>;

pub static MANIFESTS: LazyLock<Mutex<Cache<ManifestEntries>>> =
    LazyLock::new(|| Mutex::new(Cache::new(MANIFEST_WEIGHT)));

/// A position delete file: data file path → deleted positions.
pub type PositionDeletes = HashMap<String, std::collections::HashSet<i64>>;

pub static DELETES: LazyLock<Mutex<Cache<PositionDeletes>>> =
    LazyLock::new(|| Mutex::new(Cache::new(DELETE_WEIGHT)));

/// Looks `key` up in `cache` (a poisoned lock counts as a miss).
pub fn lookup<T>(cache: &Mutex<Cache<T>>, key: &str) -> Option<Arc<T>> {
    cache.lock().ok()?.get(key)
}

pub fn store<T>(cache: &Mutex<Cache<T>>, key: &str, value: Arc<T>, weight: u64) {
    if let Ok(mut c) = cache.lock() {
        c.put(key.to_string(), value, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_past_the_bound() {
        let mut c: Cache<u32> = Cache::new(10);
        c.put("a".into(), Arc::new(1), 4);
        c.put("b".into(), Arc::new(2), 4);
        assert_eq!(c.get("a").as_deref(), Some(&1));
        // Over the bound: "b" (used least recently) goes, down to ≤ 8.
        c.put("c".into(), Arc::new(3), 3);
        assert!(c.get("b").is_none());
        assert_eq!(c.get("a").as_deref(), Some(&1));
        assert_eq!(c.get("c").as_deref(), Some(&3));
        assert_eq!((c.len(), c.weight), (2, 7));
        // Replacing a key keeps the weight right; a value heavier than the bound is not kept.
        c.put("c".into(), Arc::new(4), 1);
        assert_eq!(c.weight, 5);
        c.put("huge".into(), Arc::new(5), 11);
        assert!(c.get("huge").is_none());
    }
}
