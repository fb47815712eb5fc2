//! The serving API over HTTP: the feature server's router on 127.0.0.1:0 over a real online
//! store (embedded in a temp dir; Redis: a real `redis-server` on 127.0.0.1, skipped when none
//! is installed unless `STRATA_TEST_REQUIRE_REDIS=1`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod errors;
mod feast;
mod feast_client;
mod governance;
mod redis;
mod support;
