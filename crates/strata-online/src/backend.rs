//! What a storage backend provides: a KV namespaced by view, with an atomic read of a view's
//! metadata together with a batch of its entries. Versioning lives above it (`store.rs`), so
//! both backends behave the same by construction.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// A batch of entries: (entity key, encoded entry).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One part of a [`Backend::write_batch`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Entries of a view, written (as [`Backend::put`]).
    Put { view: String, entries: Entries },
    /// Entries of a view, removed (as [`Backend::delete`]).
    Delete { view: String, keys: Vec<Vec<u8>> },
    /// A view's metadata, replaced (as [`Backend::put_meta`]).
    Meta { view: String, meta: Vec<u8> },
}

/// Items added to one key of a recent-items set (see [`Backend::add_recent`]).
#[derive(Debug, Clone)]
pub struct RecentAdd {
    pub key: Vec<u8>,
    pub items: Vec<u64>,
    /// When they were added, µs.
    pub at_us: i64,
}

impl Write {
    /// Whether it changes nothing (no entries, no keys).
    pub fn is_empty(&self) -> bool {
        match self {
            Write::Put { entries, .. } => entries.is_empty(),
            Write::Delete { keys, .. } => keys.is_empty(),
            Write::Meta { .. } => false,
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `embedded` or `redis`.
    fn kind(&self) -> &'static str;

    /// The view's metadata and the entries of `keys` (in their order), read atomically: one
    /// read transaction on the embedded store, one command (`MGET`) on Redis.
    async fn read(
        &self,
        view: &str,
        keys: &[Vec<u8>],
    ) -> Result<(Option<Vec<u8>>, Vec<Option<Vec<u8>>>)>;

    /// Replaces the view's metadata.
    async fn put_meta(&self, view: &str, meta: Vec<u8>) -> Result<()>;

    /// Writes a batch of entries (one transaction embedded, one pipeline on Redis).
    async fn put(&self, view: &str, entries: Entries) -> Result<()>;

    /// Applies `writes` in order as one unit: one transaction (one fsync) on the embedded
    /// store, one `MULTI`/`EXEC` on Redis, so a reader or a crash sees all of them or none.
    /// The default applies them one by one (not atomic).
    async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        for w in writes {
            match w {
                Write::Put { view, entries } => self.put(&view, entries).await?,
                Write::Delete { view, keys } => {
                    self.delete(&view, &keys).await?;
                }
                Write::Meta { view, meta } => self.put_meta(&view, meta).await?,
            }
        }
        Ok(())
    }

    /// The items added under `key` of the recent-items set `set` at or after `since_us` (the
    /// feed's last-recommended cache), oldest first; `None` when this backend keeps no such
    /// sets (the caller keeps them in memory). Redis keeps them, shared by every process on it.
    async fn recent(&self, set: &str, key: &[u8], since_us: i64) -> Result<Option<Vec<u64>>> {
        let _ = (set, key, since_us);
        Ok(None)
    }

    /// Adds items to keys of the recent-items set `set`: each key keeps items for `keep` after
    /// they were added and `cap` items at most (the oldest go first). False when this backend
    /// keeps no such sets.
    async fn add_recent(
        &self,
        set: &str,
        adds: Vec<RecentAdd>,
        keep: Duration,
        cap: usize,
    ) -> Result<bool> {
        let _ = (set, adds, keep, cap);
        Ok(false)
    }

    /// Up to `limit` entries of the view from `cursor` (`None`: the start); the cursor to
    /// continue from, `None` when the scan is complete. Entries written during a scan may or
    /// may not be returned; none that existed throughout is missed. One call returns an entry
    /// at most once; a later call of the same scan may return it again where
    /// [`Backend::scan_may_repeat`] says so (a caller that counts must deduplicate). A call may
    /// return no entries and still a cursor to continue from.
    async fn scan(
        &self,
        view: &str,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Entries, Option<Vec<u8>>)>;

    /// Whether a scan may return an entry in more than one call: false on the embedded store
    /// (key order), true on Redis (`SCAN` repeats keys when Redis shrinks its table).
    fn scan_may_repeat(&self) -> bool {
        false
    }

    /// Removes entries outright (erasure); how many existed.
    async fn delete(&self, view: &str, keys: &[Vec<u8>]) -> Result<u64>;

    /// Removes a view: its metadata and every entry.
    async fn drop_view(&self, view: &str) -> Result<()>;

    /// The views that have metadata.
    async fn views(&self) -> Result<Vec<String>>;

    /// Whether the store answers (health checks).
    async fn ping(&self) -> Result<()>;

    /// Takes the view's sync lock for `owner`, or extends it when `owner` holds it; false when
    /// another owner holds it. A holder that dies loses it: at once on the embedded store (a
    /// file lock), after `lease` on Redis.
    async fn try_lock(&self, view: &str, owner: &str, lease: Duration) -> Result<bool>;

    /// Releases the lock if `owner` holds it.
    async fn unlock(&self, view: &str, owner: &str) -> Result<()>;
}
