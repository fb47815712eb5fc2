//! What a set of snapshots references: manifest lists, manifests, data and delete files.
//! Expiry and orphan removal both decide what to delete from these sets.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataContentType, ManifestFile, ManifestStatus, Snapshot};
use iceberg::table::Table;

use crate::error::{Error, Result};

/// One entry of a manifest.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub path: String,
    pub content: DataContentType,
    /// Added or existing (not a `deleted` tombstone).
    pub live: bool,
}

/// Files referenced by some snapshots.
#[derive(Debug, Default)]
pub(super) struct Reach {
    pub manifest_lists: HashSet<String>,
    pub manifests: HashSet<String>,
    /// Data and delete files, with their content type.
    pub files: HashMap<String, DataContentType>,
}

/// Reads manifests once across several reach computations.
#[derive(Default)]
pub(super) struct ManifestCache {
    entries: HashMap<String, Vec<Entry>>,
}

impl ManifestCache {
    async fn entries(&mut self, table: &Table, manifest: &ManifestFile) -> Result<&[Entry]> {
        let path = &manifest.manifest_path;
        if !self.entries.contains_key(path) {
            let loaded = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(|e| Error::iceberg(format!("reading manifest {path}"), e))?;
            let entries = loaded
                .entries()
                .iter()
                .map(|e| Entry {
                    path: e.data_file().file_path().to_string(),
                    content: e.data_file().content_type(),
                    live: e.status() != ManifestStatus::Deleted,
                })
                .collect();
            self.entries.insert(path.clone(), entries);
        }
        Ok(self.entries.get(path).map(Vec::as_slice).unwrap_or(&[]))
    }
}

/// Everything `snapshots` reference. `live_only`: count only added/existing manifest entries
/// (what those snapshots need to read); otherwise every entry, tombstones included (what they
/// mention at all). `lenient`: a manifest list or manifest that cannot be read is skipped
/// with a warning instead of failing (for snapshots about to be dropped).
pub(super) async fn reach<'a>(
    table: &Table,
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    live_only: bool,
    lenient: bool,
    cache: &mut ManifestCache,
) -> Result<Reach> {
    let mut out = Reach::default();
    for snapshot in snapshots {
        out.manifest_lists
            .insert(snapshot.manifest_list().to_string());
        let manifests = match crate::table::files::manifest_files(table, snapshot).await {
            Ok(m) => m,
            Err(e) if lenient => {
                tracing::warn!(table = %table.identifier(), snapshot = snapshot.snapshot_id(), error = %e, "skipping unreadable manifest list");
                continue;
            }
            Err(e) => return Err(e),
        };
        for manifest in manifests {
            if !out.manifests.insert(manifest.manifest_path.clone()) {
                continue;
            }
            let entries = match cache.entries(table, &manifest).await {
                Ok(entries) => entries,
                Err(e) if lenient => {
                    tracing::warn!(table = %table.identifier(), manifest = %manifest.manifest_path, error = %e, "skipping unreadable manifest");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in entries.iter().filter(|e| e.live || !live_only) {
                out.files.insert(entry.path.clone(), entry.content);
            }
        }
    }
    Ok(out)
}
