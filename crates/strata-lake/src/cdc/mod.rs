//! Database CDC into the lake: the ODS merger (`merge.rs`) applies the change records of bus
//! topics `cdc.<source>.<table>` to `ods.ods_<table>`; `schema.rs` maps source types to
//! Iceberg, builds Arrow rows from change images and reads ODS rows back for `verify`.

pub mod merge;
pub mod schema;

pub use merge::{last_commit_ts_key, CdcMerger, CdcTable};
pub use schema::{read_ods_rows, PRIMARY_KEY_PROPERTY};
