//! The feed API: `GET /v1/feed` answers a user's feed in one call, in-process.
//!
//! - [`config`]: `[feed]` and `[[experiments]]`.
//! - [`catalog`]: the in-memory catalogue loaded from the lake (posts, follows, trending...).
//! - [`feed`]: the request pipeline (sources → merge and filters → rank → re-rank).
//! - [`rerank`]: author caps and MMR.
//! - [`seen`]: the last-recommended cache.
//! - [`events`]: `Feed Served` events onto the bus.
//! - [`server`]: the HTTP route and the catalogue refresh.
//! - [`trending`]: real-time trending from the `post_trending` stream view.

pub mod catalog;
mod columns;
pub mod config;
pub mod error;
pub mod events;
pub mod feed;
pub mod report;
pub mod rerank;
pub mod seen;
pub mod server;
pub mod trending;

pub use config::{ExperimentConfig, FeedConfig, VariantConfig};
pub use error::{Error, Result};
pub use feed::{FeedRequest, FeedResponse, FeedService, STAGES};

/// Each feature view's entity columns, by view name: how the ranker keys its online inputs.
pub fn view_entities(
    views: &[strata_features::view::FeatureView],
) -> std::collections::HashMap<String, Vec<String>> {
    views
        .iter()
        .map(|v| (v.name.clone(), v.entity.clone()))
        .collect()
}
