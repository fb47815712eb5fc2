//! Iceberg tables beyond appends: Strata's own commit path ([`commit`]), live-file listing
//! ([`files`]), reading rows with their file and position ([`read`]) and the write
//! operations built on them ([`dml`]).

pub mod commit;
pub mod dml;
pub mod files;
pub mod read;
pub mod scan;

pub use commit::{commit_change, swap_metadata, Change};
pub use dml::{
    append, conform, delete_where, merge, merge_schema, merge_with_properties,
    overwrite_partitions, update, Match, MergeClause, MergeSpec, Outcome, WriteMode,
};
pub use files::{LiveFile, LiveManifest, TableFiles};
