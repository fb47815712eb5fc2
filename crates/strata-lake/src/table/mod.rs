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
pub(crate) mod evolve;
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
