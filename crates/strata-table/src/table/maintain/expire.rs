//! Snapshot expiry: drop old snapshots from the table metadata, then delete every file only
//! they referenced.
//!
//! Kept: the current snapshot and the newest `retain_last` of the main branch's history;
//! every snapshot committed after the cutoff; the head of every other branch or tag and the
//! history of other branches; and on the main branch, back to the nearest snapshot carrying
//! each Strata position (`strata.*` summary keys, e.g. the lake sink's bus offsets), which
//! the sink walks back to on restart. The kept part of the main history is always unbroken (a prefix of
//! it), so `TIMESTAMP AS OF` and the position walk never hit a gap.
//!
//! The reachable sets are computed from the metadata the new metadata replaces, before the
//! swap: files live in a kept snapshot's manifests stay; every other file of a dropped
//! snapshot (its manifest list, manifests no kept snapshot lists, data and delete files no
//! kept manifest lists as live) is deleted, only after the swap succeeded. Writers that
//! commit meanwhile build on the new metadata, which only references kept files.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use iceberg::spec::{DataContentType, Snapshot, TableMetadata, TableMetadataBuilder, MAIN_BRANCH};
use iceberg::table::Table;
use iceberg::TableIdent;

use super::is_carried_key;
use super::reach::{reach, ManifestCache};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::commit::swap_metadata;
use crate::table::dml::with_conflict_retry;

/// What an expiry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpireReport {
    pub snapshots_removed: usize,
    pub snapshots_kept: usize,
    pub manifest_lists_deleted: usize,
    pub manifests_deleted: usize,
    pub data_files_deleted: usize,
    pub delete_files_deleted: usize,
    /// Files that could not be deleted (already gone or I/O errors; logged).
    pub delete_failures: usize,
}

/// Expires snapshots of `ident` committed more than `older_than` ago, keeping at least the
/// newest `retain_last` (minimum 1) of the main branch; see the module docs.
pub async fn expire_snapshots(
    lake: &Lake,
    ident: &TableIdent,
    older_than: Duration,
    retain_last: usize,
) -> Result<ExpireReport> {
    let cutoff_ms = chrono::Utc::now().timestamp_millis()
        - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let retain_last = retain_last.max(1);
    expire_keeping(lake, ident, |table| async move {
        kept_snapshots(table.metadata(), cutoff_ms, retain_last)
    })
    .await
}

/// Drops every snapshot of `ident` that `keep` (asked again on every attempt, with the table
/// as just loaded) leaves out, then deletes the files only they referenced. Erasure uses it
/// with its own rule (`table::erase`); [`expire_snapshots`] with the retention rule.
pub async fn expire_keeping<K, Fut>(
    lake: &Lake,
    ident: &TableIdent,
    keep: K,
) -> Result<ExpireReport>
where
    K: Fn(Table) -> Fut,
    Fut: std::future::Future<Output = Result<HashSet<i64>>>,
{
    let (table, removed, doomed) = with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let keep = keep(table.clone()).await?;
        let metadata = table.metadata();
        let removed: Vec<i64> = metadata
            .snapshots()
            .map(|s| s.snapshot_id())
            .filter(|id| !keep.contains(id))
            .collect();
        if removed.is_empty() {
            return Ok((table, removed, Doomed::default()));
        }
        let doomed = doomed_files(&table, &keep).await?;
        let table = swap_rebasing(lake, table, &removed).await?;
        Ok((table, removed, doomed))
    })
    .await?;

    let mut report = ExpireReport {
        snapshots_removed: removed.len(),
        snapshots_kept: table.metadata().snapshots().len(),
        ..Default::default()
    };
    let file_io = table.file_io();
    let delete = |path: String| async move {
        match file_io.delete(&path).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%path, error = %e, "could not delete an expired file");
                false
            }
        }
    };
    for (path, content) in doomed.files {
        if delete(path).await {
            match content {
                DataContentType::Data => report.data_files_deleted += 1,
                _ => report.delete_files_deleted += 1,
            }
        } else {
            report.delete_failures += 1;
        }
    }
    for path in doomed.manifests {
        if delete(path).await {
            report.manifests_deleted += 1;
        } else {
            report.delete_failures += 1;
        }
    }
    for path in doomed.manifest_lists {
        if delete(path).await {
            report.manifest_lists_deleted += 1;
        } else {
            report.delete_failures += 1;
        }
    }
    if report.snapshots_removed > 0 {
        tracing::info!(
            table = %ident,
            snapshots_removed = report.snapshots_removed,
            data_files = report.data_files_deleted,
            delete_files = report.delete_files_deleted,
            manifests = report.manifests_deleted,
            "expired snapshots"
        );
    }
    Ok(report)
}

/// Swaps in `table`'s metadata without the `removed` snapshots. When another writer committed
/// first and only added snapshots (the usual case next to the lake sink or the CDC merger),
/// the same removal applies to the newer metadata — new snapshots build on kept ones and
/// reference no file of a removed one — so it is retried at once on top of it, without
/// planning again (which reads every manifest list and could keep losing to a fast writer).
/// Anything else (a snapshot gone, a new ref to a removed snapshot) is a conflict: re-plan.
async fn swap_rebasing(lake: &Lake, mut table: Table, removed: &[i64]) -> Result<Table> {
    const REBASES: u32 = 20;
    let ident = table.identifier().clone();
    let mut rebases = 0;
    loop {
        let location = table.metadata_location().map(str::to_string);
        let next = TableMetadataBuilder::new_from_metadata(table.metadata().clone(), location)
            .remove_snapshots(removed)
            .build()
            .map_err(|e| Error::iceberg(format!("expiring snapshots of {ident}"), e))?;
        match swap_metadata(lake, &table, next).await {
            Err(Error::Conflict {
                table: name,
                message,
            }) if rebases < REBASES => {
                let newer = lake.load_table(&ident).await?;
                if !only_added(table.metadata(), newer.metadata(), removed)? {
                    return Err(Error::Conflict {
                        table: name,
                        message,
                    });
                }
                rebases += 1;
                table = newer;
            }
            other => return other,
        }
    }
}

/// Whether `newer` is `older` plus snapshots only, none of its refs on a `removed` one.
fn only_added(older: &TableMetadata, newer: &TableMetadata, removed: &[i64]) -> Result<bool> {
    if older
        .snapshots()
        .any(|s| newer.snapshot_by_id(s.snapshot_id()).is_none())
    {
        return Ok(false);
    }
    Ok(!refs(newer)?.iter().any(|(_, id, _)| removed.contains(id)))
}

/// Files referenced only by the snapshots not in `keep`.
#[derive(Debug, Default)]
struct Doomed {
    manifest_lists: Vec<String>,
    manifests: Vec<String>,
    files: Vec<(String, DataContentType)>,
}

async fn doomed_files(table: &Table, keep: &HashSet<i64>) -> Result<Doomed> {
    let metadata = table.metadata();
    let (kept, dropped): (Vec<&Snapshot>, Vec<&Snapshot>) = metadata
        .snapshots()
        .map(|s| s.as_ref())
        .partition(|s| keep.contains(&s.snapshot_id()));
    let mut cache = ManifestCache::default();
    // What kept snapshots need must be read completely; what dropped ones mention may be
    // partly gone already (an earlier expiry that failed halfway).
    let needed = reach(table, kept, true, false, &mut cache).await?;
    let mentioned = reach(table, dropped, false, true, &mut cache).await?;
    Ok(Doomed {
        manifest_lists: mentioned
            .manifest_lists
            .into_iter()
            .filter(|p| !needed.manifest_lists.contains(p))
            .collect(),
        manifests: mentioned
            .manifests
            .into_iter()
            .filter(|p| !needed.manifests.contains(p))
            .collect(),
        files: mentioned
            .files
            .into_iter()
            .filter(|(p, _)| !needed.files.contains_key(p))
            .collect(),
    })
}

/// The snapshot ids that stay (see the module docs).
fn kept_snapshots(
    metadata: &TableMetadata,
    cutoff_ms: i64,
    retain_last: usize,
) -> Result<HashSet<i64>> {
    let mut keep = HashSet::new();
    // Main history, newest first.
    let main = ancestry(metadata, metadata.current_snapshot().map(|s| s.as_ref()));
    // Newest `retain_last`, everything after the cutoff, and back to the nearest carrier of
    // every position key.
    let mut depth = retain_last.min(main.len());
    let mut seen_keys: HashSet<&str> = HashSet::new();
    for (i, s) in main.iter().enumerate() {
        if s.timestamp_ms() >= cutoff_ms {
            depth = depth.max(i + 1);
        }
        for k in s.summary().additional_properties.keys() {
            if is_carried_key(k) && seen_keys.insert(k.as_str()) {
                depth = depth.max(i + 1);
            }
        }
    }
    keep.extend(main.iter().take(depth).map(|s| s.snapshot_id()));
    // Not on the main history: kept when recent.
    for s in metadata.snapshots() {
        if s.timestamp_ms() >= cutoff_ms {
            keep.insert(s.snapshot_id());
        }
    }
    // Other refs.
    for (name, head, is_branch) in refs(metadata)? {
        if name == MAIN_BRANCH {
            continue;
        }
        keep.insert(head);
        if is_branch {
            let head = metadata.snapshot_by_id(head).map(|s| s.as_ref());
            keep.extend(ancestry(metadata, head).iter().map(|s| s.snapshot_id()));
        }
    }
    Ok(keep)
}

/// `start` and its parents, newest first (bounded: a cyclic chain cannot loop).
fn ancestry<'a>(metadata: &'a TableMetadata, start: Option<&'a Snapshot>) -> Vec<&'a Snapshot> {
    let mut out = Vec::new();
    let mut next = start;
    while let Some(s) = next {
        if out.len() > metadata.snapshots().len() {
            break;
        }
        out.push(s);
        next = s
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id))
            .map(|s| s.as_ref());
    }
    out
}

/// (name, snapshot id, is a branch) of every ref. iceberg 0.10.1 does not expose the refs
/// map, so it is read from the metadata's JSON form (the spec's `refs` object).
fn refs(metadata: &TableMetadata) -> Result<Vec<(String, i64, bool)>> {
    let json = serde_json::to_value(metadata)
        .map_err(|e| Error::Internal(format!("serializing table metadata: {e}")))?;
    let mut out = Vec::new();
    let Some(refs) = json.get("refs").and_then(|r| r.as_object()) else {
        return Ok(out);
    };
    let refs: HashMap<&String, &serde_json::Value> = refs.iter().collect();
    for (name, r) in refs {
        let id = r
            .get("snapshot-id")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| {
                Error::Internal(format!("ref {name} has no snapshot-id in table metadata"))
            })?;
        let is_branch = r.get("type").and_then(|v| v.as_str()) != Some("tag");
        out.push((name.clone(), id, is_branch));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_read_from_metadata_json() {
        // A v2 metadata with a main branch and a tag, as the spec writes it.
        let text = r#"{
          "format-version": 2, "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1",
          "location": "/tmp/t", "last-sequence-number": 2, "last-updated-ms": 1700000000000,
          "last-column-id": 1, "current-schema-id": 0,
          "schemas": [{"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "x", "required": false, "type": "long"}]}],
          "default-spec-id": 0, "partition-specs": [{"spec-id": 0, "fields": []}],
          "last-partition-id": 999, "default-sort-order-id": 0,
          "sort-orders": [{"order-id": 0, "fields": []}],
          "properties": {}, "current-snapshot-id": 2,
          "refs": {"main": {"snapshot-id": 2, "type": "branch"}, "v1": {"snapshot-id": 1, "type": "tag"}},
          "snapshots": [
            {"snapshot-id": 1, "sequence-number": 1, "timestamp-ms": 1600000000000, "manifest-list": "/tmp/t/m1.avro", "summary": {"operation": "append"}, "schema-id": 0},
            {"snapshot-id": 2, "parent-snapshot-id": 1, "sequence-number": 2, "timestamp-ms": 1700000000000, "manifest-list": "/tmp/t/m2.avro", "summary": {"operation": "append"}, "schema-id": 0}
          ],
          "snapshot-log": [{"snapshot-id": 1, "timestamp-ms": 1600000000000}, {"snapshot-id": 2, "timestamp-ms": 1700000000000}],
          "metadata-log": []
        }"#;
        let metadata: TableMetadata = serde_json::from_str(text).unwrap();
        let mut r = refs(&metadata).unwrap();
        r.sort();
        assert_eq!(
            r,
            vec![("main".to_string(), 2, true), ("v1".to_string(), 1, false)]
        );
        // The tag keeps snapshot 1 although it is old and retain_last is 1.
        let keep = kept_snapshots(&metadata, 1_650_000_000_000, 1).unwrap();
        assert_eq!(keep, HashSet::from([1, 2]));
        // Without the tag it would go (checked through the main history alone).
        let main = ancestry(&metadata, metadata.current_snapshot().map(|s| s.as_ref()));
        assert_eq!(main.len(), 2);
    }
}
