//! The feature store: feature views declared beside a project's models
//! (`models/<project>/features/*.toml`), materialized from the lake into the online store
//! (`strata-online`), served over a Feast-compatible HTTP API inside `strata serve`.
//!
//! - `view.rs`: view files, checking them against the lake;
//! - `materialize.rs`: syncing a view (incremental from Iceberg snapshots, atomic, bounded memory);
//! - `step.rs`: the sync as a warehouse DAG step after the view's source model;
//! - `stream.rs`: `kind = "stream"` views (windowed aggregates over events, computed by
//!   `strata-stream`);
//! - `service.rs`: feature services (named sets of features, `features/services/*.toml`);
//! - `server/`: the serving API (Feast's `/get-online-features`, `/v1/features`).

mod convert;
pub mod erase;
pub mod error;
pub mod materialize;
pub mod server;
pub mod service;
pub mod step;
pub mod stream;
pub mod view;

pub use error::{Error, Result};
pub use materialize::{materialize, SyncOptions, SyncReport};
pub use server::FeatureServer;
pub use service::{load_services, FeatureService};
pub use step::{sync_steps, StoreRef, SyncStep};
pub use view::{load_views, FeatureView, ResolvedView};
