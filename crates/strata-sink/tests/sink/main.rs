//! The event lake sink end to end over an in-memory bus: exactly-once commits, positions,
//! crashes, conflicts, the dead-letter table, message ids written once across collectors.

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

mod dedup;
mod sink;
