//! MariaDB / MySQL: schemas from `information_schema` (`schema.rs`), value decoding for the
//! binary protocol and binlog rows (`decode.rs`), key-ordered snapshot chunks
//! (`snapshot.rs`), GTID positions for resuming on any server of a topology (`gtid.rs`),
//! where a stream starts and what the topics already hold (`resume.rs`) and the snapshot →
//! binlog loop (`source.rs`).

pub mod connector;
pub mod decode;
pub mod gtid;
pub mod position;
#[cfg(test)]
mod props;
mod resume;
pub mod schema;
pub mod snapshot;
pub mod source;

pub use schema::SourceTable;
pub use source::{read_tables, MysqlSource};
