//! The feature-store benchmark's parts (`src/bin/features_bench.rs` runs them): the generated
//! reference tables ([`data`]), the lookups' requests and checks ([`answers`]), the open-loop
//! HTTP load generator ([`load`]), the feature server as the benchmark runs it ([`serve`]), a
//! `redis-server` ([`redis_server`]) and the Markdown report ([`report`]).

pub mod answers;
pub mod data;
pub mod load;
pub mod redis_server;
pub mod report;
pub mod serve;
