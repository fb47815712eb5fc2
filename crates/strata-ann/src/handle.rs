//! The index a server searches, replaced atomically when a model version is promoted.

use std::sync::{Arc, RwLock};

use crate::index::Index;

/// Holds the current index. A request calls [`IndexHandle::load`] once and searches the
/// `Arc<Index>` it got for its whole life; [`IndexHandle::swap`] puts a new index in place for
/// later requests while in-flight ones finish on the old one, which is freed when the last of
/// them drops it. The lock is held only to clone or replace the `Arc`, never during a search.
#[derive(Debug)]
pub struct IndexHandle {
    current: RwLock<Arc<Index>>,
}

impl IndexHandle {
    pub fn new(index: Arc<Index>) -> Self {
        IndexHandle {
            current: RwLock::new(index),
        }
    }

    /// The current index.
    pub fn load(&self) -> Arc<Index> {
        // The lock is never held across code that can panic, so a poisoned lock still holds a
        // whole `Arc`: use it.
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Replaces the current index; returns the one it replaced.
    pub fn swap(&self, index: Arc<Index>) -> Arc<Index> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, index)
    }
}
