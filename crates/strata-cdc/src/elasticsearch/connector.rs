//! How the Elasticsearch source plugs into the runtime's loop (`crate::connector`, ADR 0053):
//! the snapshot is the full export (point in time or scroll, in timestamp order), the stream is
//! the increments by the timestamp field, the position is the watermark. Rows are keyed by
//! `_id`, so the ODS merger keeps the latest version of each document.

use strata_core::cdc::{Row, TableSchema, Value};

use super::client::EsClient;
use super::config::EsSourceConfig;
use super::pager::keep_alive_text;
use super::position::{format_ms, Watermark};
use super::source::{read_all, EsSource, EsTable, Reader, Session};
use crate::config::SourceKind;
use crate::connector::{Connector, Context, StreamEnd, StreamStart};
use crate::error::{Error, Result};
use crate::state::SourceState;

impl Connector for EsSource {
    const KIND: SourceKind = SourceKind::Elasticsearch;
    type Config = EsSourceConfig;
    type Position = Watermark;
    type Session = Session;
    type Table = EsTable;

    fn validate(config: &EsSourceConfig) -> Result<()> {
        config.validate().map_err(|e| Error::Unsupported {
            table: config.name.clone(),
            message: e.to_string(),
        })
    }

    /// Reads the credentials from the environment; connects nothing.
    fn build(config: &EsSourceConfig, context: Context) -> Result<Self> {
        Ok(EsSource {
            client: EsClient::new(config)?,
            config: config.clone(),
            context,
        })
    }

    fn config(&self) -> &EsSourceConfig {
        &self.config
    }

    fn context(&self) -> &Context {
        &self.context
    }

    async fn open(&self) -> Result<(Session, Vec<EsTable>)> {
        let (session, table) = Reader::connect(&self.config, &self.client).await?;
        Ok((session, vec![table]))
    }

    /// The newest timestamp in the index: increments start there (minus the overlap) once
    /// the full export is done.
    async fn start_position(&self, session: &mut Session) -> Result<Watermark> {
        self.reader().newest(&session.client, session.nanos).await
    }

    /// A watermark cannot be lost: the index is read again from it.
    async fn check_saved(
        &self,
        _session: &mut Session,
        _state: &mut SourceState<Watermark>,
    ) -> Result<()> {
        Ok(())
    }

    async fn end_position(&self, session: &mut Session) -> Result<Watermark> {
        self.reader().newest(&session.client, session.nanos).await
    }

    async fn restart_position(&self) -> Result<Watermark> {
        let (session, _) = Reader::connect(&self.config, &self.client).await?;
        self.reader().newest(&session.client, session.nanos).await
    }

    async fn read_chunk(
        &self,
        session: &mut Session,
        table: &EsTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        self.reader()
            .export_page(session, table, after, limit)
            .await
    }

    async fn stream(&self, start: StreamStart<'_, Self>) -> Result<StreamEnd> {
        let StreamStart {
            mut session,
            tables,
            state,
            pending,
            shutdown,
            ..
        } = start;
        let Some(table) = tables.first() else {
            return Err(Error::Internal(
                "an elasticsearch source without its index".to_string(),
            ));
        };
        self.stream_increments(&mut session, table, state, pending, shutdown)
            .await
    }

    async fn read_tables(
        config: &EsSourceConfig,
        _tables: &[String],
    ) -> Result<Vec<(TableSchema, Vec<Row>)>> {
        read_all(config).await
    }

    fn describe(config: &EsSourceConfig, position: &Watermark) -> String {
        let overlap = i64::try_from(config.overlap.as_millis()).unwrap_or(i64::MAX);
        match position.read_from(overlap) {
            Some(from) => format!(
                "{} watermark {position}; the next increment reads from {} (overlap {})",
                config.timestamp_field,
                format_ms(from),
                keep_alive_text(config.overlap)
            ),
            None => format!(
                "{} watermark: none yet; the next increment reads every stamped document",
                config.timestamp_field
            ),
        }
    }
}
