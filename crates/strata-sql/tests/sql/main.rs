//! The SQL engine over a real lake in a temp dir: queries, time travel, DDL and DML
//! statements, metadata tables.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

#[path = "../../../strata-table/tests/common/mod.rs"]
mod common;
pub use common::*;
// What the tests named `crate::…` when they lived inside the lake crate.
pub use strata_table::*;

mod sql;
