//! PostgreSQL: the URL and session (`config.rs`), schemas from `pg_catalog` (`schema.rs`),
//! pgoutput messages (`pgoutput.rs`), text output → values (`decode.rs`), key-ordered snapshot
//! chunks (`snapshot.rs`), the replication connection (`replication.rs`) and the slot → bus loop
//! (`source.rs`).

pub mod config;
pub mod connector;
pub mod decode;
pub mod pgoutput;
pub mod position;
#[cfg(test)]
mod props;
pub mod replication;
pub mod schema;
pub mod snapshot;
pub mod source;

pub use schema::SourceTable;
pub use snapshot::read_tables;
pub use source::PostgresSource;
