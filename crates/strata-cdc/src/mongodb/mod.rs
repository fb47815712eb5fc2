//! MongoDB and Amazon DocumentDB (ADR 0055): collections snapshotted in `_id` order, then
//! followed through one database change stream, onto `cdc.<source>.<collection>` like the
//! other sources, so the ODS merger lands each in `ods.ods_<collection>` keyed by `_id`
//! (latest document wins, deletes applied).
//!
//! - `config.rs`: what the user writes (`kind = "mongodb"`) and its offline checks
//! - `decode.rs`: BSON → rows (`_id`, `doc` as relaxed Extended JSON, typed declared
//!   fields) and raw change events → what they do (pure; tested on BSON bytes in `tests.rs`)
//! - `position.rs`: the resume token beside the cluster time that orders it
//! - `source.rs`: the driver: connecting, the snapshot's cursors, the change stream loop
//! - `connector.rs`: the `Connector` trait

pub mod config;
pub mod connector;
pub mod decode;
pub mod position;
pub mod source;
#[cfg(test)]
mod tests;

pub use config::MongoSourceConfig;
pub use position::ResumePoint;
pub use source::MongoSource;
