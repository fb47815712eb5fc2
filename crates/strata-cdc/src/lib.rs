//! Strata's change-data-capture sources. Each source reads a database (snapshot, then its
//! change stream) and puts every row change on bus topic `cdc.<source>.<table>` as a
//! [`strata_core::cdc::CdcRecord`]; the ODS merger (`merge/`) applies them to the lake.
//!
//! - `mysql/`: MariaDB and MySQL (row binlog)
//! - `postgres/`: PostgreSQL (logical replication slot, pgoutput)
//! - `batch.rs`: committed transactions collected into one durable bus append (shared)
//! - `snapshot.rs`: the chunked snapshot and per-table re-snapshots (shared)
//! - `topic.rs`: reading back and appending to the `cdc.*` topics (shared by the sources)
//! - `state.rs`: the source's durable progress file under `<data>/cdc/`
//! - `verify.rs`: source vs ODS comparison (row count, per-row checksum, differing keys)
//! - `merge/`: the ODS merger: topic `cdc.<source>.<table>` → `ods.ods_<table>` (MERGE per
//!   batch, schema evolution, lag)

pub mod batch;
pub mod error;
pub mod merge;
pub mod mysql;
pub mod postgres;
mod retry;
mod snapshot;
pub mod state;
pub mod topic;
pub mod verify;

pub use error::{Error, Result};

use std::path::Path;
use std::sync::Arc;

use strata_core::cdc::{Row, TableSchema};
use strata_core::config::{SourceConfig, SourceKind};

/// A configured source of any kind, for the runtime (`strata serve`).
pub enum Source {
    Mysql(Box<mysql::MysqlSource>),
    Postgres(Box<postgres::PostgresSource>),
}

impl Source {
    /// Checks the config and prepares; connects nothing.
    pub fn new(
        config: &SourceConfig,
        log: Arc<dyn strata_bus::Log>,
        data_dir: &Path,
    ) -> Result<Source> {
        Ok(match config.kind {
            SourceKind::Mysql => {
                Source::Mysql(Box::new(mysql::MysqlSource::new(config, log, data_dir)?))
            }
            SourceKind::Postgres => Source::Postgres(Box::new(postgres::PostgresSource::new(
                config, log, data_dir,
            )?)),
        })
    }

    /// Snapshot, then stream, until `shutdown` turns true (retrying source failures).
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        match self {
            Source::Mysql(s) => s.run(shutdown).await,
            Source::Postgres(s) => s.run(shutdown).await,
        }
    }
}

/// The current schema and every row of `tables` (all configured ones when empty), read from
/// the source, for `strata cdc verify`. `TableSchema::table` is the config's table entry.
pub async fn read_tables(
    config: &SourceConfig,
    tables: &[String],
) -> Result<Vec<(TableSchema, Vec<Row>)>> {
    Ok(match config.kind {
        SourceKind::Mysql => mysql::read_tables(config, tables)
            .await?
            .into_iter()
            .map(|(t, rows)| (t.schema, rows))
            .collect(),
        SourceKind::Postgres => postgres::read_tables(config, tables)
            .await?
            .into_iter()
            .map(|(t, rows)| (t.schema, rows))
            .collect(),
    })
}
