//! The live files of a snapshot, read from its manifest list and manifests, with the
//! bookkeeping a new snapshot needs to carry them over (snapshot id and sequence numbers).

use std::sync::Arc;

use iceberg::spec::{
    DataContentType, DataFile, ManifestContentType, ManifestFile, ManifestList, ManifestStatus,
    Snapshot,
};
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::table::cache;

/// One live (added or existing) file of a manifest.
#[derive(Clone, Debug)]
pub struct LiveFile {
    pub file: DataFile,
    /// Partition spec of the file (the spec of the manifest listing it).
    pub spec_id: i32,
    /// Snapshot that added the file.
    pub snapshot_id: i64,
    /// Data sequence number (position deletes apply to data files with a sequence number ≤
    /// theirs).
    pub sequence_number: i64,
    pub file_sequence_number: i64,
}

impl LiveFile {
    pub fn path(&self) -> &str {
        self.file.file_path()
    }

    pub fn is_data(&self) -> bool {
        self.file.content_type() == DataContentType::Data
    }
}

/// One manifest of the snapshot and its live entries.
#[derive(Clone, Debug)]
pub struct LiveManifest {
    pub manifest: ManifestFile,
    pub live: Vec<LiveFile>,
}

/// Every entry of `manifest` (tombstones included), through the process-wide cache
/// (`cache.rs`): a manifest is parsed once per process.
pub async fn manifest_entries(
    table: &Table,
    manifest: &ManifestFile,
) -> Result<Arc<cache::ManifestEntries>> {
    let path = &manifest.manifest_path;
    if let Some(entries) = cache::lookup(&cache::MANIFESTS, path) {
        return Ok(entries);
    }
    let loaded = manifest
        .load_manifest(table.file_io())
        .await
        .map_err(|e| Error::iceberg(format!("reading manifest {path}"), e))?;
    let entries = Arc::new(loaded.entries().to_vec());
    cache::store(
        &cache::MANIFESTS,
        path,
        entries.clone(),
        entries.len() as u64,
    );
    Ok(entries)
}

impl LiveManifest {
    /// Reads `manifest`'s added and existing entries, with the snapshot id and sequence
    /// numbers they inherit from it. A manifest parsed before comes from the process-wide cache (`cache.rs`).
    pub async fn load(table: &Table, manifest: ManifestFile) -> Result<LiveManifest> {
        let entries = manifest_entries(table, &manifest).await?;
        let live = entries
            .iter()
            .filter(|e| e.status() != ManifestStatus::Deleted)
            .map(|e| LiveFile {
                file: e.data_file().clone(),
                spec_id: manifest.partition_spec_id,
                snapshot_id: e.snapshot_id().unwrap_or(manifest.added_snapshot_id),
                sequence_number: e.sequence_number().unwrap_or(manifest.sequence_number),
                file_sequence_number: e.file_sequence_number.unwrap_or(manifest.sequence_number),
            })
            .collect();
        Ok(LiveManifest { manifest, live })
    }
}

/// All live files of one snapshot (empty for a table without snapshots).
#[derive(Clone, Debug, Default)]
pub struct TableFiles {
    pub snapshot_id: Option<i64>,
    pub manifests: Vec<LiveManifest>,
    /// False when only the manifest list was read ([`TableFiles::manifests_only`]): `live`
    /// is empty and only appends can be committed on top.
    pub entries_loaded: bool,
}

impl TableFiles {
    /// The live files of the table's current snapshot.
    pub async fn current(table: &Table) -> Result<TableFiles> {
        match table.metadata().current_snapshot() {
            Some(s) => Self::of_snapshot(table, s).await,
            None => Ok(TableFiles::default()),
        }
    }

    /// The current snapshot's manifest list only — enough for an append, which carries every
    /// manifest over unread.
    pub async fn manifests_only(table: &Table) -> Result<TableFiles> {
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(TableFiles::default());
        };
        Ok(TableFiles {
            snapshot_id: Some(snapshot.snapshot_id()),
            manifests: manifest_files(table, snapshot)
                .await?
                .into_iter()
                .map(|manifest| LiveManifest {
                    manifest,
                    live: Vec::new(),
                })
                .collect(),
            entries_loaded: false,
        })
    }

    pub async fn of_snapshot(table: &Table, snapshot: &Snapshot) -> Result<TableFiles> {
        let mut manifests = Vec::new();
        for manifest in manifest_files(table, snapshot).await? {
            manifests.push(LiveManifest::load(table, manifest).await?);
        }
        Ok(TableFiles {
            snapshot_id: Some(snapshot.snapshot_id()),
            manifests,
            entries_loaded: true,
        })
    }

    /// Live data files.
    pub fn data_files(&self) -> impl Iterator<Item = &LiveFile> {
        self.manifests
            .iter()
            .filter(|m| m.manifest.content == ManifestContentType::Data)
            .flat_map(|m| m.live.iter())
            .filter(|f| f.is_data())
    }

    /// Live delete files (position and equality).
    pub fn delete_files(&self) -> impl Iterator<Item = &LiveFile> {
        self.manifests
            .iter()
            .flat_map(|m| m.live.iter())
            .filter(|f| !f.is_data())
    }

    pub fn find(&self, path: &str) -> Option<&LiveFile> {
        self.manifests
            .iter()
            .flat_map(|m| m.live.iter())
            .find(|f| f.path() == path)
    }
}

/// The manifests a snapshot's manifest list names.
pub async fn manifest_files(table: &Table, snapshot: &Snapshot) -> Result<Vec<ManifestFile>> {
    let ident = table.identifier();
    let path = snapshot.manifest_list();
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(|e| Error::iceberg(format!("opening manifest list {path} of {ident}"), e))?
        .read()
        .await
        .map_err(|e| Error::iceberg(format!("reading manifest list {path} of {ident}"), e))?;
    let list = ManifestList::parse_with_version(&bytes, table.metadata().format_version())
        .map_err(|e| Error::iceberg(format!("parsing manifest list {path} of {ident}"), e))?;
    Ok(list.consume_entries().into_iter().collect())
}
