//! Every file any snapshot of a table mentions — live entries and `deleted` tombstones alike,
//! since both keep a file's statistics in a manifest and the old snapshots keep the file
//! itself — and which snapshots mention a given set of files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{DataContentType, DataFile, Snapshot};
use iceberg::table::Table;

use crate::error::Result;
use crate::table::cache::ManifestEntries;
use crate::table::files::manifest_entries;
use crate::table::files::{manifest_files, LiveFile};

/// One manifest and all its entries.
struct Manifest {
    spec_id: i32,
    entries: Arc<ManifestEntries>,
}

/// The manifests of every snapshot of a table.
#[derive(Default)]
pub(super) struct History {
    manifests: HashMap<String, Manifest>,
    /// Snapshot id → the paths of the manifests its manifest list names.
    snapshots: HashMap<i64, Vec<String>>,
}

impl History {
    /// Reads the manifest list of every snapshot and each manifest once (manifests read
    /// before, here or elsewhere in the process, come from the cache).
    pub(super) async fn load(table: &Table) -> Result<History> {
        let mut history = History::default();
        for snapshot in table.metadata().snapshots() {
            history.add_snapshot(table, snapshot).await?;
        }
        Ok(history)
    }

    async fn add_snapshot(&mut self, table: &Table, snapshot: &Snapshot) -> Result<()> {
        let mut paths = Vec::new();
        for manifest in manifest_files(table, snapshot).await? {
            let path = manifest.manifest_path.clone();
            if !self.manifests.contains_key(&path) {
                let entries = manifest_entries(table, &manifest).await?;
                self.manifests.insert(
                    path.clone(),
                    Manifest {
                        spec_id: manifest.partition_spec_id,
                        entries,
                    },
                );
            }
            paths.push(path);
        }
        self.snapshots.insert(snapshot.snapshot_id(), paths);
        Ok(())
    }

    /// Every data file and equality delete file mentioned anywhere (once each), as a
    /// [`LiveFile`] good for reading it (snapshot and sequence numbers are not filled in).
    /// Position delete files hold file paths and positions only (Strata writes no `row`
    /// column), so they are not candidates.
    pub(super) fn candidates(&self) -> Vec<LiveFile> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.manifests.values() {
            for e in m.entries.iter() {
                let f: &DataFile = e.data_file();
                if f.content_type() == DataContentType::PositionDeletes {
                    continue;
                }
                if seen.insert(f.file_path().to_string()) {
                    out.push(LiveFile {
                        file: f.clone(),
                        spec_id: m.spec_id,
                        snapshot_id: 0,
                        sequence_number: 0,
                        file_sequence_number: 0,
                    });
                }
            }
        }
        out
    }

    /// The snapshots whose manifests mention any of `files` (live or deleted entries).
    pub(super) fn mentioning(&self, files: &HashSet<String>) -> HashSet<i64> {
        let tainted: HashSet<&str> = self
            .manifests
            .iter()
            .filter(|(_, m)| {
                m.entries
                    .iter()
                    .any(|e| files.contains(e.data_file().file_path()))
            })
            .map(|(p, _)| p.as_str())
            .collect();
        self.snapshots
            .iter()
            .filter(|(_, manifests)| manifests.iter().any(|p| tainted.contains(p.as_str())))
            .map(|(id, _)| *id)
            .collect()
    }
}
