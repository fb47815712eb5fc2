//! Database CDC into the lake: the ODS merger (`merger.rs`) applies the change records of bus
//! topics `cdc.<source>.<table>` to `ods.ods_<table>`; `schema.rs` maps source types to
//! Iceberg, builds Arrow rows from change images and reads ODS rows back for `verify`;
//! `lag.rs` measures how far each ODS table trails its topic.

pub mod lag;
pub mod merger;
pub mod schema;

pub use lag::{applied, applied_in, cdc_lag, Applied, CdcLag};
pub use merger::{
    last_commit_ts_key, CdcMerger, CdcTable, CDC_GROUP, STOPPED_PROPERTY, TRUNCATE_OP,
};
pub use schema::{read_ods_rows, PRIMARY_KEY_PROPERTY};
