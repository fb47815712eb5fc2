//! A real PostgreSQL 15 for tests (`wal_level = logical`): the shared start/stop logic lives
//! in `crates/strata-testdb`, which the CDC benchmark uses too.

// Not every test binary that includes `common` starts a server.
#[allow(unused_imports)]
pub use strata_testdb::Postgres;
