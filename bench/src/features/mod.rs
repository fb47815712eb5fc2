//! The feature-store benchmark's parts (`src/bin/features_bench.rs` runs them): the generated
//! reference tables ([`data`]) and the open-loop HTTP load generator ([`load`]).

pub mod data;
pub mod load;
