//! How the PostgreSQL source plugs into the runtime's loop (`crate::connector`): the
//! publication and the slot set up when an attempt opens (the slot before the snapshot reads
//! anything, so every change after its consistent point is streamed after the snapshot), a
//! missing slot as a lost position, and a new slot after one.

use crate::config::{PostgresSourceConfig, SourceKind};
use strata_core::cdc::{Row, TableSchema, Value};
use tokio_postgres::Client;

use super::config::Connect;
use super::position::Lsn;
use super::schema::{load_table, SourceTable};
use super::source::PostgresSource;
use crate::connector::{CatalogTable, Connector, Context, StreamEnd, StreamStart};
use crate::error::{Error, Result};
use crate::state::SourceState;

impl CatalogTable for SourceTable {
    fn schema(&self) -> &TableSchema {
        &self.schema
    }
}

/// One attempt's catalog connection, and the slot's confirmed position when it opened (None:
/// no slot).
pub struct Session {
    client: Client,
    slot: Option<u64>,
}

impl Connector for PostgresSource {
    const KIND: SourceKind = SourceKind::Postgres;
    type Config = PostgresSourceConfig;
    type Position = Lsn;
    type Session = Session;
    type Table = SourceTable;

    fn validate(config: &PostgresSourceConfig) -> Result<()> {
        config.validate().map_err(|e| Error::Unsupported {
            table: config.name.clone(),
            message: e.to_string(),
        })
    }

    /// Checks the URL and prepares; connects nothing.
    fn build(config: &PostgresSourceConfig, context: Context) -> Result<Self> {
        Ok(PostgresSource {
            connect: Connect::new(config)?,
            config: config.clone(),
            context,
            slot: config.slot_name(),
            publication: config.publication_name(),
        })
    }

    fn config(&self) -> &PostgresSourceConfig {
        &self.config
    }

    fn context(&self) -> &Context {
        &self.context
    }

    async fn open(&self) -> Result<(Session, Vec<SourceTable>)> {
        let client = self.connect.connect().await?;
        let mut tables = Vec::new();
        for t in &self.config.tables {
            tables.push(load_table(&client, &self.config.name, t).await?);
        }
        for t in &tables {
            if t.replica_identity == b'n'
                || (t.schema.primary_key.is_empty() && t.replica_identity != b'f')
            {
                tracing::warn!(source = %self.config.name, table = t.name(), "table has no primary key or replica identity: the server rejects its updates and deletes while it is published; set REPLICA IDENTITY FULL");
            }
        }
        self.ensure_publication(&client, &tables).await?;
        let slot = self.slot_position(&client).await?;
        Ok((Session { client, slot }, tables))
    }

    async fn start_position(&self, session: &mut Session) -> Result<Lsn> {
        match session.slot {
            // A slot left from an earlier run: everything after its confirmed point is
            // streamed after the new snapshot, which converges the same way.
            Some(lsn) => Ok(Lsn(lsn)),
            None => {
                let lsn = self.create_slot(&session.client).await?;
                session.slot = Some(lsn);
                Ok(Lsn(lsn))
            }
        }
    }

    async fn check_saved(&self, session: &mut Session, state: &mut SourceState<Lsn>) -> Result<()> {
        if session.slot.is_some() {
            return Ok(());
        }
        Err(Error::PositionLost {
            source_name: self.config.name.clone(),
            position: state.resume.to_string(),
            message: format!(
                "replication slot {} does not exist (dropped, or invalidated by max_slot_wal_keep_size)",
                self.slot
            ),
            state: self.context.state_path.display().to_string(),
        })
    }

    /// The current WAL position; the slot still streams everything after the resume
    /// position, which converges.
    async fn end_position(&self, session: &mut Session) -> Result<Lsn> {
        Ok(Lsn(self.current_lsn(&session.client).await?))
    }

    async fn restart_position(&self) -> Result<Lsn> {
        let client = self.connect.connect().await?;
        // An invalidated slot cannot be read again: a new one starts now.
        client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .map_err(|e| self.err("dropping the lost replication slot", e))?;
        Ok(Lsn(self.create_slot(&client).await?))
    }

    /// The schema last sent is what the stream's relation messages are compared with; the
    /// catalog's goes first only when the topic has none or the table is snapshotted.
    fn resume_table(
        &self,
        catalog: SourceTable,
        sent: Option<&TableSchema>,
        snapshotting: bool,
    ) -> (SourceTable, bool) {
        let send = sent.is_none() || (snapshotting && sent != Some(&catalog.schema));
        (catalog, send)
    }

    async fn read_chunk(
        &self,
        session: &mut Session,
        table: &SourceTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        super::snapshot::read_chunk(&session.client, table, after, limit)
            .await
            .map_err(|e| self.with_host(e))
    }

    async fn stream(&self, start: StreamStart<'_, Self>) -> Result<StreamEnd> {
        self.stream_slot(
            &start.session.client,
            start.tables,
            start.tails,
            start.state,
            start.pending,
            start.shutdown,
        )
        .await
    }

    async fn read_tables(
        config: &PostgresSourceConfig,
        tables: &[String],
    ) -> Result<Vec<(TableSchema, Vec<Row>)>> {
        Ok(super::snapshot::read_tables(config, tables)
            .await?
            .into_iter()
            .map(|(t, rows)| (t.schema, rows))
            .collect())
    }

    fn describe(config: &PostgresSourceConfig, position: &Lsn) -> String {
        format!("slot {} at {position}", config.slot_name())
    }
}
