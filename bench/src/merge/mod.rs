//! The MERGE benchmark (issue 3): a CDC change set of 70 % updates, 20 % inserts and 10 %
//! deletes merged into a users table through Strata's Rust API in both write modes, and the
//! same upsert through pyiceberg and DuckDB in the same run.
//!
//! - `data.rs`: the deterministic rows and the expected result
//! - `input.rs`: the Parquet input files every engine loads
//! - `strata.rs`: one write mode through `strata_table::table` (load, scan, MERGE, scan, compaction hook)
//! - `peer.rs`: running `bench/python/merge_peer.py` per peer engine, bounded in time
//! - `report.rs`: the Markdown section

pub mod data;
pub mod input;
pub mod peer;
pub mod report;
pub mod strata;
