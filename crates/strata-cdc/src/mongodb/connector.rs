//! How the MongoDB source plugs into the runtime's loop (`crate::connector`, ADR 0055): the
//! stream's start point is taken when a source starts (before the snapshot reads anything),
//! the snapshot reads each collection in `_id` order, the stream is the database change
//! stream from the saved resume token, and a token the oplog no longer holds is a lost
//! position (re-snapshotted with `on_position_lost = "resnapshot"`).

use strata_core::cdc::{Row, TableSchema, Value};

use super::config::MongoSourceConfig;
use super::position::ResumePoint;
use super::source::{connect, read_all, MongoSource, MongoTable, Session};
use crate::config::SourceKind;
use crate::connector::{Connector, Context, StreamEnd, StreamStart};
use crate::error::{Error, Result};
use crate::state::SourceState;

impl Connector for MongoSource {
    const KIND: SourceKind = SourceKind::Mongodb;
    type Config = MongoSourceConfig;
    type Position = ResumePoint;
    type Session = Session;
    type Table = MongoTable;

    fn validate(config: &MongoSourceConfig) -> Result<()> {
        config.validate().map_err(|e| Error::Unsupported {
            table: config.name.clone(),
            message: e.to_string(),
        })
    }

    /// Connects nothing (the connection string is read from the environment on connect).
    fn build(config: &MongoSourceConfig, context: Context) -> Result<Self> {
        Ok(MongoSource {
            config: config.clone(),
            context,
        })
    }

    fn config(&self) -> &MongoSourceConfig {
        &self.config
    }

    fn context(&self) -> &Context {
        &self.context
    }

    async fn open(&self) -> Result<(Session, Vec<MongoTable>)> {
        let (client, _db) = connect(&self.config).await?;
        Ok((
            Session {
                client,
                snapshot: None,
                stream: None,
            },
            self.tables(),
        ))
    }

    /// The stream's start, taken before the snapshot reads: every change after it is
    /// streamed after the snapshot (replayed over the snapshot's rows, which converges).
    async fn start_position(&self, session: &mut Session) -> Result<ResumePoint> {
        self.current_position(&session.client).await
    }

    /// Resumes the stream from the saved token: a token the oplog no longer holds is
    /// [`Error::PositionLost`]. The opened stream is kept for [`Connector::stream`].
    async fn check_saved(
        &self,
        session: &mut Session,
        state: &mut SourceState<ResumePoint>,
    ) -> Result<()> {
        let stream = self
            .open_stream(&session.client, Some(&state.resume))
            .await?;
        session.stream = Some(stream);
        Ok(())
    }

    async fn end_position(&self, session: &mut Session) -> Result<ResumePoint> {
        self.current_position(&session.client).await
    }

    async fn restart_position(&self) -> Result<ResumePoint> {
        let (client, _db) = connect(&self.config).await?;
        self.current_position(&client).await
    }

    async fn read_chunk(
        &self,
        session: &mut Session,
        table: &MongoTable,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        MongoSource::read_chunk(self, session, table, after, limit).await
    }

    async fn stream(&self, start: StreamStart<'_, Self>) -> Result<StreamEnd> {
        let StreamStart {
            mut session,
            tables,
            tails,
            state,
            pending,
            shutdown,
        } = start;
        let opened = session.stream.take();
        self.stream_changes(
            &session.client,
            opened,
            &tables,
            &tails,
            state,
            pending,
            shutdown,
        )
        .await
    }

    async fn read_tables(
        config: &MongoSourceConfig,
        tables: &[String],
    ) -> Result<Vec<(TableSchema, Vec<Row>)>> {
        read_all(config, tables).await
    }

    fn describe(config: &MongoSourceConfig, position: &ResumePoint) -> String {
        format!("database {} change stream at {position}", config.database)
    }
}
