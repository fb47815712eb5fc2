//! Strata's change-data-capture sources. Each source reads a database (snapshot, then its
//! change stream) and puts every row change on bus topic `cdc.<source>.<table>` as a
//! [`strata_core::cdc::CdcRecord`]; the ODS merger (`merge/`) applies them to the lake.
//!
//! A kind of source is a connector (ADR 0033): a module implementing the typed
//! [`connector::Connector`] trait (its config, its own [`connector::Position`] type, a snapshot
//! reader, a change stream from a position), registered in `registry.rs`. The runtime holds
//! any of them as a `Box<dyn DynConnector>` / `Box<dyn DynSource>` and runs them all with one
//! loop (`runtime.rs`).
//!
//! - `connector.rs`: the typed trait, the position trait and the erased forms
//! - `registry.rs`: `kind` → connector (the one place that lists the kinds)
//! - `runtime.rs`: the run / retry / re-snapshot loop every connector runs; `retry.rs` its
//!   backoff
//! - `mysql/`: MariaDB and MySQL (row binlog; position: binlog file, offset, GTID set)
//! - `postgres/`: PostgreSQL (logical replication slot, pgoutput; position: an LSN)
//! - `elasticsearch/`: Elasticsearch / OpenSearch (full export by point in time or scroll,
//!   then increments by a timestamp field; position: the watermark)
//! - `mongodb/`: MongoDB / DocumentDB (`_id`-ordered snapshot, then a database change
//!   stream; position: the resume token beside its cluster time)
//! - `decode.rs`: value conversions both connectors share (dates, times, decimals, floats)
//! - `batch.rs`: committed transactions collected into one durable bus append (shared)
//! - `snapshot.rs`: the chunked snapshot and per-table re-snapshots (shared)
//! - `topic.rs`: reading back and appending to the `cdc.*` topics (shared by the sources)
//! - `state.rs`: the source's durable progress file under `<data>/cdc/` (format 2; older
//!   files are migrated on load)
//! - `verify.rs`: source vs ODS comparison (row count, per-row checksum, differing keys)
//! - `merge/`: the ODS merger: topic `cdc.<source>.<table>` → `ods.ods_<table>` (MERGE per
//!   batch, schema evolution, lag)

pub mod batch;
pub mod config;
pub mod connector;
pub mod decode;
pub mod elasticsearch;
pub mod error;
pub mod merge;
pub mod mongodb;
pub mod mysql;
pub mod postgres;
pub mod registry;
mod retry;
mod runtime;
mod snapshot;
pub mod state;
pub mod topic;
pub mod verify;

pub use connector::{Connector, DynConnector, DynSource, Position};
pub use error::{Error, Result};

use std::path::Path;
use std::sync::Arc;

use crate::config::SourceConfig;
use strata_core::cdc::{Row, TableSchema};

/// A configured source of any kind, built and ready to run (`strata serve`).
pub struct Source(Box<dyn DynSource>);

impl Source {
    /// Checks the config and prepares; connects nothing.
    pub fn new(
        config: &SourceConfig,
        log: Arc<dyn strata_bus::Log>,
        data_dir: &Path,
    ) -> Result<Source> {
        let connector = registry::connector(config);
        connector.validate()?;
        let context = connector::Context {
            log,
            state_path: state::state_path(data_dir, &config.name),
        };
        Ok(Source(connector.build(context)?))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Snapshot, then stream, until `shutdown` turns true (retrying source failures).
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        self.0.run(shutdown).await
    }
}

/// The current schema and every row of `tables` (all configured ones when empty), read from
/// the source, for `strata cdc verify`. `TableSchema::table` is the config's table entry.
pub async fn read_tables(
    config: &SourceConfig,
    tables: &[String],
) -> Result<Vec<(TableSchema, Vec<Row>)>> {
    registry::connector(config).read_tables(tables).await
}

/// The source's saved progress for `strata cdc status` (None: never started).
pub fn status(config: &SourceConfig, data_dir: &Path) -> Result<Option<connector::Status>> {
    registry::connector(config).status(&state::state_path(data_dir, &config.name))
}
