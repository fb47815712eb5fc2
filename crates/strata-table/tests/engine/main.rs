//! The table engine against real files in temp dirs: tables and Arrow building, commits with bus
//! offsets, DML, compaction, snapshot expiry and erasure. Results are read back with SQL
//! (`strata-sql`) and some tables are filled through the event sink (`strata-sink`), which is
//! why these are integration tests: they link one copy of this crate with both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

#[path = "../common/mod.rs"]
mod common;
pub use common::*;
// What the tests named `crate::…` when they lived inside the lake crate.
pub use strata_table::*;

mod compact;
mod dml;
mod erase;
mod expire;
mod tables;
