//! Iceberg tables beyond appends: Strata's own commit path ([`commit`]), live-file listing
//! ([`files`]), reading rows with their file and position ([`read`]), the write
//! operations built on them ([`dml`]) and table maintenance ([`maintain`]: compaction,
//! snapshot expiry, orphan removal, listings, the automatic compaction policy) and erasure of
//! users' rows ([`erase`]).

mod cache;
pub mod commit;
pub mod create;
pub mod dml;
pub mod erase;
pub mod evolve;
pub mod files;
pub mod maintain;
pub mod read;
pub mod scan;

pub use commit::{commit_change, snapshot_current_schema, swap_metadata, Change};
pub use create::create_table;
pub use dml::{
    append, conform, delete_where, merge, merge_schema, merge_with_properties, overwrite_partition,
    overwrite_partition_stream, overwrite_partitions, replace_all, replace_all_stream, update,
    Match, MergeClause, MergeSpec, Outcome, WriteMode,
};
pub use files::{LiveFile, LiveManifest, TableFiles};
pub use maintain::{
    compact, expire_snapshots, parse_table_name, remove_orphans, CompactOptions, CompactReport,
    CompactionPolicy, ExpireReport, OrphanReport,
};

/// Every table of the catalog's top-level namespaces, and the namespaces whose tables could not
/// be listed (a broken catalog entry): the caller decides whether that is a warning (background
/// maintenance) or an error (erasure, which must be complete).
pub async fn all_tables(
    catalog: &dyn iceberg::Catalog,
) -> crate::Result<(Vec<iceberg::TableIdent>, Vec<(String, iceberg::Error)>)> {
    let namespaces = catalog
        .list_namespaces(None)
        .await
        .map_err(|e| crate::Error::iceberg("listing namespaces", e))?;
    let mut tables = Vec::new();
    let mut unreadable = Vec::new();
    for ns in namespaces {
        match catalog.list_tables(&ns).await {
            Ok(t) => tables.extend(t),
            Err(e) => unreadable.push((ns.join("."), e)),
        }
    }
    Ok((tables, unreadable))
}
