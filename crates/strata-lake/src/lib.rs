//! Strata's lake: the Iceberg catalog and ODS tables ([`Lake`]), the sink that turns bus topic
//! `events` into Parquet files committed exactly once ([`LakeSink`]), and the DataFusion SQL
//! session behind `strata sql` ([`SqlSession`]).
//!
//! Where things live:
//! - `lake.rs`: opening the SQLite SQL catalog, creating `ods.ods_event` / `ods.ods_event_rejected`
//! - `schema.rs`: the two tables' columns, partition specs and properties
//! - `batch.rs`: bus records → Arrow columns grouped by partition
//! - `write.rs`: Parquet data and position-delete files; the sink's commit carrying bus offsets
//! - `position.rs`: the `strata.bus.events.offsets` snapshot summary property
//! - `sink.rs`: the consume → buffer → flush → commit loop
//! - `table/`: the commit path (ADR 0005) and the write API: append, partition overwrite,
//!   delete, update, merge
//! - `rest/`: the Iceberg REST catalog API over this catalog (`/iceberg` in `strata serve`) and
//!   its bearer tokens (ADR 0013)
//! - `sql/`: the SQL session, lake DDL/DML statements, time travel, output formats, column
//!   masking for sessions run as a role (`sql/masking.rs`)
//! - `audit.rs`: the access log `audit.access_log`
//! - `s3.rs`: table files on S3 (iceberg `Storage` over object_store, ADR 0014)

pub mod audit;
pub mod batch;
pub mod cdc;
mod error;
mod lake;
mod position;
pub mod rest;
mod retry;
pub mod s3;
mod schema;
mod sink;
mod sql;
pub mod table;
mod write;

pub use batch::{event_type, utc_date, utc_hour};
pub use error::{Error, Fault, Result};
pub use lake::Lake;
pub use position::{
    carried_properties, decode_offsets, encode_offsets, offsets_key, table_position,
    EVENTS_OFFSETS_KEY,
};
pub use schema::{OdsTable, EVENT_TABLE, ODS_NAMESPACE, REJECTED_TABLE};
pub use sink::{LakeSink, LAKE_GROUP};
pub use sql::masking;
pub use sql::{
    format_batches, list_tables, snapshot_at, OutputFormat, SqlSession, TimeTravelDialect,
};
pub use write::writer_properties;

#[cfg(test)]
mod tests;
