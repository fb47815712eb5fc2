//! A view's metadata in the store (JSON, one value per view): the published version readers
//! see, the sync in progress, and the schemas rows refer to. Publishing a version is one write
//! of this value.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::value::FeatureType;

/// One feature of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FeatureType,
}

/// What a sync read: each source table and the snapshot it read up to.
pub type SourceSnapshots = BTreeMap<String, i64>;

/// The version readers see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub version: u64,
    /// The schema rows of this version were written with (older rows may use older schemas).
    pub schema: u32,
    /// The source snapshots this version reflects.
    pub sources: SourceSnapshots,
    /// Entities in this version (rows served).
    pub entities: u64,
    /// Rows the sync that made it wrote (all of them for a full sync, the changes for an
    /// incremental one).
    pub written: u64,
    /// `full` or `incremental`.
    pub mode: String,
    pub started_at: DateTime<Utc>,
    pub published_at: DateTime<Utc>,
}

/// A sync that started and has not published (running, or killed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub version: u64,
    pub sources: SourceSnapshots,
    pub mode: String,
    pub started_at: DateTime<Utc>,
    /// Rows written so far (progress; updated every few batches).
    pub written: u64,
    /// Rows the sync expects to write, when known.
    pub expected: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewMeta {
    /// Metadata format; a newer Strata may write a higher one, which this one refuses to read.
    pub format: u32,
    pub published: Option<Published>,
    pub pending: Option<Pending>,
    /// Schemas by id; rows name theirs.
    pub schemas: BTreeMap<u32, Vec<Column>>,
    /// The version the next sync writes.
    pub next_version: u64,
}

pub const FORMAT: u32 = 1;

impl Default for ViewMeta {
    fn default() -> Self {
        ViewMeta {
            format: FORMAT,
            published: None,
            pending: None,
            schemas: BTreeMap::new(),
            next_version: 1,
        }
    }
}

impl ViewMeta {
    /// The published version (0: nothing published yet, every entry is invisible).
    pub fn published_version(&self) -> u64 {
        self.published.as_ref().map_or(0, |p| p.version)
    }

    /// The id of `columns` among the schemas, adding it when new.
    pub fn schema_id(&mut self, columns: &[Column]) -> u32 {
        if let Some((id, _)) = self.schemas.iter().find(|(_, c)| c.as_slice() == columns) {
            return *id;
        }
        let id = self.schemas.keys().next_back().map_or(1, |last| last + 1);
        self.schemas.insert(id, columns.to_vec());
        id
    }
}
