//! A real MariaDB for tests (ROW binlog, FULL images): the shared start/stop logic lives in
//! `crates/strata-testdb`, which the CDC benchmark uses too.

// Not every test binary that includes `common` starts a server.
#[allow(unused_imports)]
pub use strata_testdb::MariaDb;
