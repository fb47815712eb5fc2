//! Models beside the warehouse (issue #26): declared in `models/<project>/ml/<name>.toml`,
//! trained in-process from lake data for a run date, versioned in the registry with the lake,
//! promoted behind a validation gate, served (kNN recall) by `strata serve`.
//!
//! - `spec.rs`: model files;
//! - `data.rs`: training rows from the lake, split by day;
//! - `train.rs`: one training run (GBDT, two-tower + ANN index), its registry entry;
//! - `registry.rs`: artifacts, `audit.model_versions`, `audit.model_deployments`, the gate,
//!   canary routing, rollback;
//! - `step.rs`: training as a warehouse DAG step;
//! - `serve/`: loaded versions and `POST /v1/recall/knn`.

pub mod data;
pub mod error;
pub mod registry;
pub mod spec;
pub mod train;

pub use error::{Error, Result};
pub use spec::{load_models, Kind, ModelSpec};
pub use train::{train, TrainOptions, TrainOutcome};
pub mod serve;
pub mod step;
