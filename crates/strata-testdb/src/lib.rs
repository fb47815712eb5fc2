//! Real database servers for Strata's tests and the CDC benchmark: each gets its own data dir
//! in a temp dir and a free 127.0.0.1 port, and is stopped by PID when dropped
//! (see `../shared/TEST-SERVERS.md`). No server installed is a failure with the install
//! command, never a silent skip (`tests/run.sh` and `bench/run.sh` install them).
//!
//! - [`MariaDb`]: MariaDB with ROW binlog and FULL row images, database `app`, user `cdc`
//! - [`Postgres`]: PostgreSQL 15 with `wal_level = logical`, database `app` owned by `cdc`
//! - [`RedisServer`]: Redis without persistence (skips when none is installed, unless required)
//! - [`EsServer`]: the noida-db Elasticsearch API emulator (skips when none is installed,
//!   unless `STRATA_TEST_REQUIRE_ES=1`)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a server that cannot start fails the test or benchmark that asked for it"
)]

mod elasticsearch;
mod mariadb;
mod postgres;
mod redis;

pub use elasticsearch::EsServer;
pub use mariadb::MariaDb;
pub use postgres::Postgres;
pub use redis::RedisServer;

use std::net::TcpListener;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
