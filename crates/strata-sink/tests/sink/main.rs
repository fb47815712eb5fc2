//! The event lake sink end to end over an in-memory bus: exactly-once commits, positions,
//! crashes, conflicts, the dead-letter table.

#[path = "../../../strata-table/tests/common/mod.rs"]
mod common;
pub use common::*;
// What the tests named `crate::…` when they lived inside the lake crate.
pub use strata_table::*;

mod sink;
