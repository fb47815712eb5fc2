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
pub mod items;
pub mod report;
pub mod rerank;
pub mod seen;
pub mod server;
pub mod trending;

pub use config::{ExperimentConfig, FeedConfig, VariantConfig};
pub use error::{Error, Result};
pub use feed::{FeedRequest, FeedResponse, FeedService, STAGES};

/// How the ranker keys a feature view's rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ViewKeys {
    /// The entity columns.
    pub entity: Vec<String>,
    /// A stream view (its rows change without a new version): never kept in the item cache.
    pub stream: bool,
}

/// Each feature view's keys, by view name: how the ranker keys its online inputs.
pub fn view_entities(
    views: &[strata_features::view::FeatureView],
) -> std::collections::HashMap<String, ViewKeys> {
    views
        .iter()
        .map(|v| {
            let keys = ViewKeys {
                entity: v.entity.clone(),
                stream: v.stream().is_some(),
            };
            (v.name.clone(), keys)
        })
        .collect()
}
