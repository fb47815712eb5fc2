//! A stream view's rows in the store: written as they change, visible at once.
//!
//! A batch view publishes whole versions (`store.rs`); a stream view has one version, published
//! when the view is (re)created, and every row is written in that version's slot, so a write is
//! visible as soon as it lands. Beside the rows, the consumer that computes them keeps its
//! state in a companion view, `<view>~state`: one entry per entity (the window state, and the bus
//! positions it includes) and, as that view's metadata, the checkpoint (positions to resume
//! from and per-partition clocks). Keeping state in the same store as the rows is what lets a
//! restarted consumer — on this machine or another one against the same Redis — carry on
//! exactly where the rows are.

use chrono::Utc;

use crate::backend::{Entries, Write};
use crate::entry::{Entry, Slot, SlotState};
use crate::error::Result;
use crate::meta::{Column, Published};
use crate::store::{encode_meta, OnlineStore};
use crate::value::{encode_row, Value};

/// Suffix of the companion view holding a stream view's state.
pub const STATE_SUFFIX: &str = "~state";

/// Mode recorded in a stream view's published metadata.
pub const STREAM_MODE: &str = "stream";

/// One row to write: entity key, the time it is as of (µs), values in the view's column order.
#[derive(Debug, Clone)]
pub struct StreamRow {
    pub key: Vec<u8>,
    pub as_of_us: i64,
    pub values: Vec<Value>,
}

/// A stream view's rows and state in the store.
#[derive(Debug, Clone)]
pub struct StreamTable {
    store: OnlineStore,
    view: String,
    state_view: String,
    version: u64,
    schema: u32,
}

impl OnlineStore {
    /// The stream view `view` with rows of `columns`. `fresh`: drop what the view and its
    /// state hold first (a new or changed definition); otherwise rows and state are kept and
    /// only a changed column list publishes a new schema.
    pub async fn stream_table(
        &self,
        view: &str,
        columns: &[Column],
        fresh: bool,
    ) -> Result<StreamTable> {
        let state_view = format!("{view}{STATE_SUFFIX}");
        if fresh {
            self.backend().drop_view(view).await?;
            self.backend().drop_view(&state_view).await?;
        }
        let mut meta = self.meta(view).await?.unwrap_or_default();
        let schema = meta.schema_id(columns);
        let reuse = meta
            .published
            .as_ref()
            .filter(|p| p.mode == STREAM_MODE && p.schema == schema)
            .map(|p| p.version);
        let version = match reuse {
            Some(v) => v,
            None => {
                let version = meta.next_version.max(meta.published_version() + 1);
                meta.next_version = version + 1;
                let now = Utc::now();
                meta.pending = None;
                meta.published = Some(Published {
                    version,
                    schema,
                    sources: Default::default(),
                    entities: 0,
                    written: 0,
                    mode: STREAM_MODE.to_string(),
                    started_at: now,
                    published_at: now,
                });
                self.backend().put_meta(view, encode_meta(&meta)?).await?;
                version
            }
        };
        Ok(StreamTable {
            store: self.clone(),
            view: view.to_string(),
            state_view,
            version,
            schema,
        })
    }

    /// Applies writes of any views as one unit (see [`crate::backend::Backend::write_batch`]).
    pub async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        self.backend().write_batch(writes).await
    }
}

impl StreamTable {
    pub fn view(&self) -> &str {
        &self.view
    }

    /// Writes rows (one batch: one transaction embedded, one `MSET` on Redis).
    pub async fn put_rows(&self, rows: &[StreamRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.store
            .backend()
            .write_batch(vec![self.rows(rows)])
            .await
    }

    /// The write of `rows`, to combine with others in one [`OnlineStore::write_batch`].
    pub fn rows(&self, rows: &[StreamRow]) -> Write {
        let mut entries: Entries = Vec::with_capacity(rows.len());
        let mut buf = Vec::new();
        for row in rows {
            buf.clear();
            encode_row(&row.values, &mut buf);
            let entry = Entry {
                current: Slot {
                    version: self.version,
                    state: SlotState::Row {
                        schema: self.schema,
                        event_ts: row.as_of_us,
                        values: buf.clone(),
                    },
                },
                previous: None,
            };
            entries.push((row.key.clone(), entry.encode()));
        }
        Write::Put {
            view: self.view.clone(),
            entries,
        }
    }

    /// The write of per-entity state entries.
    pub fn states(&self, states: Entries) -> Write {
        Write::Put {
            view: self.state_view.clone(),
            entries: states,
        }
    }

    /// The removal of entities' states (their windows emptied).
    pub fn states_removed(&self, keys: Vec<Vec<u8>>) -> Write {
        Write::Delete {
            view: self.state_view.clone(),
            keys,
        }
    }

    /// The write of the checkpoint.
    pub fn checkpoint_write(&self, bytes: Vec<u8>) -> Write {
        Write::Meta {
            view: self.state_view.clone(),
            meta: bytes,
        }
    }

    /// Removes entities' rows and states (erasure).
    pub async fn delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        let writes = [&self.view, &self.state_view]
            .into_iter()
            .map(|view| Write::Delete {
                view: view.clone(),
                keys: keys.to_vec(),
            })
            .collect();
        self.store.backend().write_batch(writes).await
    }

    /// The checkpoint last written (`None`: never).
    pub async fn checkpoint(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.store.backend().read(&self.state_view, &[]).await?.0)
    }

    /// Up to `limit` state entries from `cursor` (see `Backend::scan`).
    pub async fn scan_states(
        &self,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Entries, Option<Vec<u8>>)> {
        self.store
            .backend()
            .scan(&self.state_view, cursor, limit)
            .await
    }

    /// Whether a scan of the states may return an entry twice (Redis).
    pub fn scan_may_repeat(&self) -> bool {
        self.store.backend().scan_may_repeat()
    }

    /// The write recording how many entities the view holds and how many rows were written
    /// (shown by `strata features status`; its metadata, read now; `None`: the view has none),
    /// to combine with others in one
    /// [`OnlineStore::write_batch`]. Only the view's consumer (holding its lock) writes it.
    pub async fn entities_write(&self, entities: u64, written: u64) -> Result<Option<Write>> {
        let Some(mut meta) = self.store.meta(&self.view).await? else {
            return Ok(None);
        };
        if let Some(p) = meta.published.as_mut() {
            p.entities = entities;
            p.written = written;
            p.published_at = Utc::now();
        }
        Ok(Some(Write::Meta {
            view: self.view.clone(),
            meta: encode_meta(&meta)?,
        }))
    }

    /// Takes the view's lock for `owner` (one consumer computes a view at a time), or
    /// extends it.
    pub async fn try_lock(&self, owner: &str, lease: std::time::Duration) -> Result<bool> {
        self.store
            .backend()
            .try_lock(&self.lock_name(), owner, lease)
            .await
    }

    pub async fn unlock(&self, owner: &str) -> Result<()> {
        self.store.backend().unlock(&self.lock_name(), owner).await
    }

    /// The lock lives under its own name: re-creating the view drops the view and its state,
    /// never the lock its consumer holds.
    fn lock_name(&self) -> String {
        format!("{}~consumer", self.view)
    }
}

/// Whether `view` is a stream view's companion state view (hidden from view listings).
pub fn is_state_view(view: &str) -> bool {
    view.ends_with(STATE_SUFFIX)
}
