//! Strata's Iceberg table engine: the catalog ([`Lake`]: the embedded SQLite SQL catalog, or a
//! REST catalog through [`catalog_client`]), the built-in ODS tables, and everything that changes
//! a table — commits, Parquet writes, DML, maintenance, erasure — on local disk or S3.
//!
//! The SQL engine (`strata-sql`), the REST catalog server (`strata-rest`), the event lake sink
//! (`strata-sink`) and the CDC ODS merger (`strata-cdc`'s `merge/`) are built on it.
//!
//! Where things live:
//! - `lake.rs`: opening the catalog, creating `ods.ods_event` / `ods.ods_event_rejected`, the
//!   query runtime (memory limit, spill directory)
//! - `schema.rs`: the two event tables' columns, partition specs and properties
//! - `batch.rs`: bus records → Arrow columns grouped by partition
//! - `write.rs`: Parquet data and position-delete files; a commit carrying bus offsets
//! - `position.rs`: the `strata.bus.events.offsets` snapshot summary property
//! - `table/`: the commit path (ADR 0005) and the write API: append, partition overwrite,
//!   delete, update, merge; `table/maintain/` compaction, expiry, orphans; `table/erase/`
//!   erasure of a person's rows
//! - `catalog_client.rs`: the Iceberg REST catalog client, `[catalog] kind = "rest"` (ADR 0018)
//! - `dialect.rs`: the SQL dialect (time travel) shared with `strata-sql`
//! - `s3.rs`: table files on S3 (iceberg `Storage` over object_store, ADR 0014)
//! - `retry.rs`: the backoff every retrying writer uses
//! - `load/`: file loads (Parquet, CSV, JSON from local paths or S3) into a table as one
//!   commit: append, overwrite, merge by key with DMS-style I/U/D changes (ADR 0051)

pub mod batch;
pub mod catalog_client;
pub mod config;
pub mod dialect;
pub mod error;
pub mod lake;
pub mod load;
pub mod position;
pub mod retry;
pub mod s3;
pub mod schema;
pub mod table;
pub mod write;

pub use batch::{event_type, utc_date, utc_hour};
pub use error::{Error, Fault, Result};
pub use lake::Lake;
pub use position::{
    carried_properties, decode_offsets, encode_offsets, offsets_key, table_position,
    EVENTS_OFFSETS_KEY,
};
pub use schema::{OdsTable, EVENT_TABLE, ODS_NAMESPACE, REJECTED_TABLE};
pub use write::writer_properties;
