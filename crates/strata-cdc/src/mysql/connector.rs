//! How the MariaDB/MySQL source plugs into the runtime's loop (`crate::connector`): a
//! connection per attempt, the binlog end as the start of snapshots and re-snapshots, GTID
//! positions filled into states saved before they were tracked.

use crate::config::{MysqlSourceConfig, SourceKind};
use mysql_async::Conn;
use strata_core::cdc::{Row, TableSchema, Value};

use super::position::BinlogPos;
use super::schema::SourceTable;
use super::source::{connect_opts, MysqlSource};
use crate::connector::{CatalogTable, Connector, Context, StreamEnd, StreamStart};
use crate::error::{Error, Result};
use crate::state::SourceState;

impl CatalogTable for SourceTable {
    fn schema(&self) -> &TableSchema {
        &self.schema
    }
}

impl Connector for MysqlSource {
    const KIND: SourceKind = SourceKind::Mysql;
    type Config = MysqlSourceConfig;
    type Position = BinlogPos;
    type Session = Conn;
    type Table = SourceTable;

    fn validate(config: &MysqlSourceConfig) -> Result<()> {
        config.validate().map_err(|e| Error::Unsupported {
            table: config.name.clone(),
            message: e.to_string(),
        })
    }

    fn build(config: &MysqlSourceConfig, context: Context) -> Result<Self> {
        MysqlSource::new(config, context)
    }

    fn config(&self) -> &MysqlSourceConfig {
        &self.config
    }

    fn context(&self) -> &Context {
        &self.context
    }

    async fn open(&self) -> Result<(Conn, Vec<SourceTable>)> {
        let mut conn = self.connect().await?;
        let tables = self.load_tables(&mut conn).await?;
        Ok((conn, tables))
    }

    async fn start_position(&self, conn: &mut Conn) -> Result<BinlogPos> {
        self.binlog_end(conn).await
    }

    async fn check_saved(&self, conn: &mut Conn, state: &mut SourceState<BinlogPos>) -> Result<()> {
        // A purged binlog shows when the stream starts (error 1236).
        self.fill_gtids(conn, state).await
    }

    async fn end_position(&self, conn: &mut Conn) -> Result<BinlogPos> {
        self.binlog_end(conn).await
    }

    async fn restart_position(&self) -> Result<BinlogPos> {
        let mut conn = self.connect().await?;
        let start = self.binlog_end(&mut conn).await?;
        let _ = conn.disconnect().await;
        Ok(start)
    }

    /// Streaming resumes before a schema change the server already shows: the binlog up to
    /// it is decoded with the schema last sent, and its DDL event brings the new one.
    fn resume_table(
        &self,
        catalog: SourceTable,
        sent: Option<&TableSchema>,
        snapshotting: bool,
    ) -> (SourceTable, bool) {
        let table = match sent {
            Some(sent) if sent != &catalog.schema && !snapshotting => {
                match SourceTable::from_schema(sent) {
                    Ok(old) => {
                        tracing::info!(source = %self.config.name, table = catalog.name(), "the table's schema changed since the last record sent; streaming up to the change with the old one");
                        old
                    }
                    Err(_) => catalog,
                }
            }
            _ => catalog,
        };
        let send = sent != Some(&table.schema);
        (table, send)
    }

    async fn read_chunk(
        &self,
        conn: &mut Conn,
        table: &SourceTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        super::snapshot::read_chunk(conn, table, after, limit)
            .await
            .map_err(|e| self.with_host(e))
    }

    async fn stream(&self, start: StreamStart<'_, Self>) -> Result<StreamEnd> {
        // The binlog stream opens its own connection.
        drop(start.session);
        self.stream_binlog(
            start.tables,
            start.tails,
            start.state,
            start.pending,
            start.shutdown,
        )
        .await
    }

    async fn read_tables(
        config: &MysqlSourceConfig,
        tables: &[String],
    ) -> Result<Vec<(TableSchema, Vec<Row>)>> {
        Ok(super::source::read_tables(config, tables)
            .await?
            .into_iter()
            .map(|(t, rows)| (t.schema, rows))
            .collect())
    }

    fn describe(_config: &MysqlSourceConfig, position: &BinlogPos) -> String {
        format!("binlog position {position}")
    }
}

impl MysqlSource {
    /// Checks the URL and prepares; connects nothing.
    pub fn new(config: &MysqlSourceConfig, context: Context) -> Result<Self> {
        let (opts, database, host) = connect_opts(config)?;
        Ok(MysqlSource {
            config: config.clone(),
            context,
            opts,
            database,
            host,
        })
    }
}
