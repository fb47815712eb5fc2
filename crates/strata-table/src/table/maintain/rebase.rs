//! Committing a compaction next to live writers: when another writer committed first, check
//! that the plan still holds on the new snapshot and commit the same files on top of it.
//!
//! The window between reading the table and the catalog swap must stay short, or a writer
//! that commits often (the lake sink at a short flush interval) wins every race. So a rebase
//! reads only what is new — the manifest list, plus manifests not seen before (manifests are
//! immutable) — and retries at once after a lost race (the winner just committed, so the next
//! moments are the quietest); only repeated losses back off.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataContentType, DataFile, Operation};
use iceberg::table::Table;
use iceberg::TableIdent;

use super::carried_properties;
use super::compact::{discard, same_scope, Plan};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::retry::Backoff;
use crate::table::commit::{commit_change, Change};
use crate::table::files::manifest_files;
use crate::table::files::{LiveManifest, TableFiles};
use crate::table::read::read_position_delete_file;

/// Lost races retried without waiting before backoff starts.
const IMMEDIATE_RETRIES: u32 = 3;
/// Attempts in all (immediate ones included).
const MAX_ATTEMPTS: u32 = 16;

/// What kind of snapshot a rebased rewrite commits.
#[derive(Clone, Debug)]
pub struct Commit {
    /// `replace` for a compaction (rows unchanged); erasure removes rows: `delete`.
    pub operation: Operation,
    /// See [`Change::tombstones`].
    pub tombstones: bool,
    /// Summary properties besides the carried positions.
    pub properties: HashMap<String, String>,
}

impl Commit {
    pub fn compaction() -> Self {
        Commit {
            operation: Operation::Replace,
            tombstones: true,
            properties: HashMap::new(),
        }
    }
}

/// Commits the rewrite, rebasing onto newer snapshots while that is safe. Returns the table
/// and the attempts made. [`Error::Conflict`] when the plan no longer holds (re-plan);
/// [`Error::CommitFailed`] when other writers kept winning.
pub async fn commit(
    lake: &Lake,
    ident: &TableIdent,
    mut table: Table,
    mut files: TableFiles,
    plan: &Plan,
    written: &[DataFile],
    kind: Commit,
) -> Result<(Table, u32)> {
    let mut backoff = Backoff::new(MAX_ATTEMPTS - IMMEDIATE_RETRIES);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if let Some(reason) = invalidated(&table, &files, plan).await? {
            discard(&table, written).await;
            return Err(Error::Conflict {
                table: ident.to_string(),
                message: reason,
            });
        }
        let mut change = Change::new(kind.operation.clone());
        change.tombstones = kind.tombstones;
        change.added_data = written.to_vec();
        change.removed = plan
            .rewritten
            .iter()
            .chain(&plan.removed_deletes)
            .cloned()
            .collect();
        // A replace does not move the lake sink's bus position: carry it, so it survives
        // the expiry of the snapshots that set it.
        change.properties = carried_properties(&table);
        change.properties.extend(kind.properties.clone());
        match commit_change(lake, &table, &files, change).await {
            Ok(table) => return Ok((table, attempts)),
            Err(Error::Conflict { message, .. }) if attempts < MAX_ATTEMPTS => {
                tracing::info!(table = %ident, attempt = attempts, %message, "concurrent commit, rebasing the compaction");
                if attempts > IMMEDIATE_RETRIES {
                    backoff.wait().await;
                }
                table = lake.load_table(ident).await?;
                files = refresh(&table, &files).await?;
            }
            Err(Error::Conflict { message, .. }) => {
                discard(&table, written).await;
                return Err(Error::CommitFailed {
                    table: ident.to_string(),
                    attempts,
                    message: format!("still conflicting: {message}"),
                });
            }
            // The outcome may be unknown: keep the files (orphan removal deletes them if the
            // commit did not land).
            Err(e) => return Err(e),
        }
    }
}

/// The live files of `table`'s current snapshot, reusing the manifests `previous` read.
async fn refresh(table: &Table, previous: &TableFiles) -> Result<TableFiles> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return TableFiles::current(table).await;
    };
    let known: HashMap<&str, &LiveManifest> = previous
        .manifests
        .iter()
        .map(|m| (m.manifest.manifest_path.as_str(), m))
        .collect();
    let mut manifests = Vec::new();
    for manifest in manifest_files(table, snapshot).await? {
        if let Some(m) = known.get(manifest.manifest_path.as_str()) {
            manifests.push((*m).clone());
            continue;
        }
        manifests.push(LiveManifest::load(table, manifest).await?);
    }
    // Cloned, not built, so fields this code does not know keep their values.
    let mut files = previous.clone();
    files.snapshot_id = Some(snapshot.snapshot_id());
    files.manifests = manifests;
    Ok(files)
}

/// Why the plan cannot be committed on top of `files` (the current snapshot), if it cannot.
async fn invalidated(table: &Table, files: &TableFiles, plan: &Plan) -> Result<Option<String>> {
    if files.snapshot_id == plan.snapshot_id {
        return Ok(None);
    }
    let metadata = table.metadata();
    if metadata.current_schema_id() != plan.schema_id
        || metadata.default_partition_spec_id() != plan.spec_id
    {
        return Ok(Some("the schema or partition spec changed".to_string()));
    }
    let live: HashSet<&str> = files
        .manifests
        .iter()
        .flat_map(|m| m.live.iter())
        .map(|f| f.path())
        .collect();
    for path in plan.rewritten.iter().chain(&plan.removed_deletes) {
        if !live.contains(path.as_str()) {
            return Ok(Some(format!("{path} was removed by a concurrent commit")));
        }
    }
    for d in files
        .delete_files()
        .filter(|d| !plan.known_deletes.contains(d.path()))
    {
        let in_scope = plan
            .rewritten_partitions
            .iter()
            .any(|(spec, partition)| same_scope(table, d, *spec, partition));
        match d.file.content_type() {
            DataContentType::EqualityDeletes if in_scope => {
                return Ok(Some(format!(
                    "equality deletes {} were added to a partition being compacted",
                    d.path()
                )));
            }
            DataContentType::PositionDeletes => {
                let hit = match d.file.referenced_data_file() {
                    Some(data) => plan.rewritten.contains(&data),
                    None if in_scope => read_position_delete_file(table, d)
                        .await?
                        .keys()
                        .any(|p| plan.rewritten.contains(p)),
                    None => false,
                };
                if hit {
                    return Ok(Some(format!(
                        "position deletes {} were added against a file being compacted",
                        d.path()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}
