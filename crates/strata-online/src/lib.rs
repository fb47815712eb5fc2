//! The online store: one entry per (feature view, entity key) holding the entity's whole row of
//! that view, so one lookup is one read; embedded (LMDB under the data directory) by default,
//! Redis by configuration, with the same behaviour on both.
//!
//! A sync (materialization) never shows half its work: every entry keeps two slots, the row a
//! sync is writing and the row the published version sees (`entry.rs`), and a view's metadata
//! names the published version. Readers fetch the metadata and the entries in one atomic read
//! and pick, per entry, the slot their version sees; publishing a new version is one write of
//! the metadata. A sync killed half-way leaves the old version served; the next one writes a
//! newer version over it and nothing is doubled (entries are keyed).
//!
//! - `value.rs`: feature values and the row encoding;
//! - `entry.rs`: the two-slot entry and the visibility rule;
//! - `meta.rs`: a view's metadata (published version, pending sync, schemas);
//! - `backend.rs`: what a storage backend provides (a namespaced KV with an atomic
//!   "metadata + these keys" read);
//! - `store.rs`: [`OnlineStore`], the versioned store over a backend (lookups, syncs, erasure);
//! - `stream.rs`: stream views' rows (written as they change, visible at once) and their
//!   consumer's state and checkpoint;
//! - `lmdb.rs`, `redis.rs`: the two backends; `config.rs`: `[online]`.

pub mod backend;
pub mod config;
pub mod entry;
pub mod error;
pub mod meta;
pub mod store;
pub mod stream;
pub mod value;

mod lmdb;
mod redis;

pub use config::OnlineConfig;
pub use error::{Error, Result};
pub use store::{
    entity_key, ColumnRow, Lookup, LookupStatus, OnlineStore, SyncRow, SyncWriter, ViewRows,
};
pub use stream::{StreamRow, StreamTable};
pub use value::{FeatureType, Value};
