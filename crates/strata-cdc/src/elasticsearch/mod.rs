//! Elasticsearch and OpenSearch (ADR 0053): one index (or alias or pattern) exported in full,
//! then incrementally by a timestamp field, onto `cdc.<source>.<table>` like the database
//! sources, so the ODS merger lands it in `ods.ods_es_<table>` keyed by `_id`.
//!
//! - `config.rs`: what the user writes (`kind = "elasticsearch"`) and its offline checks
//! - `client.rs`: the REST calls (reqwest), credentials from the environment, errors by fault
//! - `pager.rs`: a query read page by page (point in time + `search_after`, or scroll)
//! - `decode.rs`: a hit → its row (`_id`, metadata, typed declared fields, `_source` as JSON)
//! - `position.rs`: the watermark (the newest timestamp streamed)
//! - `dedup.rs`: the versions already on the bus, so a re-read window writes nothing twice
//! - `source.rs`: the export's pages and the increment loop; `connector.rs` the trait

pub mod client;
pub mod config;
pub mod connector;
pub mod decode;
pub mod dedup;
pub mod pager;
pub mod position;
pub mod source;

pub use config::EsSourceConfig;
pub use position::Watermark;
pub use source::EsSource;
