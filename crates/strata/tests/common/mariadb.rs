//! A real MariaDB for tests (ROW binlog, FULL images): the shared start/stop logic lives in
//! `crates/strata-testdb`, which the CDC benchmark uses too.

pub use strata_testdb::MariaDb;
