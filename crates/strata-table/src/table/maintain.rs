//! Table maintenance: compaction, snapshot expiry, orphan file removal, the listings behind
//! `strata table history|snapshots|files`, and the automatic compaction policy `strata serve`
//! runs.
//!
//! - [`compact`](compact::compact): bin-packs a partition's small data files, and every data
//!   file with deletes against it, into files of about the target size with the deletes
//!   applied; one `replace` snapshot removes the old data files and the delete files that
//!   only referenced them.
//! - [`expire_snapshots`](expire::expire_snapshots): drops old snapshots from the metadata,
//!   then deletes the files only they referenced.
//! - [`remove_orphans`](orphans::remove_orphans): deletes old files under the table location
//!   that nothing references (failed writes, metadata that fell off the log).
//! - [`policy`]: when a table needs compaction (table properties `strata.compaction.*`) and
//!   the background loop that checks every table.
//!
//! All of them commit through [`crate::table::commit`] (catalog compare-and-swap), so they run
//! next to writers: a commit that lost the race is rebased or re-planned, never forced.

pub mod compact;
pub mod expire;
pub mod listing;
pub mod orphans;
pub mod policy;
mod reach;
pub mod rebase;

use std::collections::HashMap;

use iceberg::table::Table;
use iceberg::TableIdent;

use crate::error::{Error, Result};
use crate::schema::ODS_NAMESPACE;

pub use compact::{compact, CompactOptions, CompactReport};
pub use expire::{expire_snapshots, ExpireReport};
pub use listing::{
    files, files_batch, history, history_batch, snapshots, snapshots_batch, FileRow, HistoryRow,
    SnapshotRow,
};
pub use orphans::{remove_orphans, OrphanReport};
pub use policy::{auto_compact, compact_if_needed, expire_if_due, CompactionPolicy, Trigger};

/// Whether a snapshot summary key is a Strata position (`strata.*`: the lake sink's bus
/// offsets and claims). A position stays in force until a newer snapshot sets the key again,
/// so readers walk back to the nearest snapshot carrying it.
pub fn is_carried_key(key: &str) -> bool {
    key.starts_with("strata.")
}

/// The `strata.*` summary properties in force at the current snapshot (for each key, the
/// value of the nearest snapshot carrying it). A compaction sets them on its snapshot so a
/// position never depends on an ancestor that expiry may drop.
pub fn carried_properties(table: &Table) -> HashMap<String, String> {
    let metadata = table.metadata();
    let mut out = HashMap::new();
    let mut next = metadata.current_snapshot();
    let mut budget = metadata.snapshots().len();
    while let Some(snapshot) = next {
        for (k, v) in &snapshot.summary().additional_properties {
            if is_carried_key(k) && !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        if budget == 0 {
            break;
        }
        budget -= 1;
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    out
}

/// Parses a table name as the CLI takes it: `ns.table` (`a.b.table` for a nested
/// namespace); a bare `table` is in namespace `ods`, the SQL default schema.
pub fn parse_table_name(name: &str) -> Result<TableIdent> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(Error::Invalid(format!(
            "table name {name:?}: expected NAMESPACE.TABLE"
        )));
    }
    let parts: Vec<&str> = if parts.len() == 1 {
        vec![ODS_NAMESPACE, parts[0]]
    } else {
        parts
    };
    TableIdent::from_strs(parts).map_err(|e| Error::Invalid(format!("table name {name:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(
            parse_table_name("app.users").unwrap().to_string(),
            TableIdent::from_strs(["app", "users"]).unwrap().to_string()
        );
        assert_eq!(
            parse_table_name("ods_event").unwrap().namespace().join("."),
            "ods"
        );
        assert_eq!(
            parse_table_name("a.b.t").unwrap().namespace().join("."),
            "a.b"
        );
        assert!(parse_table_name("app.").is_err());
        assert!(parse_table_name("").is_err());
    }
}
