//! Strata's change-data-capture sources. Each source reads a database (snapshot, then its
//! change stream) and puts every row change on bus topic `cdc.<source>.<table>` as a
//! [`strata_core::cdc::CdcRecord`]; the ODS merger in `strata-lake` applies them.
//!
//! - `mysql/`: MariaDB and MySQL (row binlog)
//! - `postgres/`: PostgreSQL (logical replication slot, pgoutput)
//! - `topic.rs`: reading back and appending to the `cdc.*` topics (shared by the sources)
//! - `state.rs`: the source's durable progress file under `<data>/cdc/`
//! - `verify.rs`: source vs ODS comparison (row count, per-row checksum, differing keys)

pub mod error;
pub mod mysql;
pub mod postgres;
pub mod state;
pub mod topic;
pub mod verify;

pub use error::{Error, Result};
