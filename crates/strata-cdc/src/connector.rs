//! The shape of a change source (ADR 0033). A connector implements the typed
//! [`Connector`] trait: its configuration, its own position type, a snapshot reader and a
//! change stream from a position. The runtime holds any connector as the object-safe
//! [`DynConnector`] / [`DynSource`] (built by [`registry`](crate::registry)) and runs every
//! kind with the one loop of [`runtime`](crate::runtime): connect, snapshot what needs it,
//! stream; retry with backoff; re-snapshot when the server lost the position.
//!
//! Adding a kind: a module implementing [`Connector`] (and its config struct and variant in
//! `crate::config`), and one entry in [`registry::connector`](crate::registry::connector).

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{SourceCommon, SourceKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_bus::Log;
use strata_core::cdc::{Row, SourcePosition, TableSchema, Value};
use tokio::sync::watch;

use crate::batch::Pending;
use crate::error::Result;
use crate::state::SourceState;
use crate::topic::TopicTail;

/// Each table's current schema and rows, read for `strata cdc verify`.
pub type TableRows = Vec<(TableSchema, Vec<Row>)>;

/// A future the erased forms return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a source's change stream resumes, in the source's own terms (a binlog file, offset
/// and GTID set; a PostgreSQL LSN; later a resume token). Saved in the state file (serde) and
/// ordered along one source's stream.
pub trait Position:
    Clone + Debug + Display + Ord + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Reads a position from a state file written before positions had their own types
    /// (format 1: every kind saved a binlog-shaped `{"file", "pos"}` object).
    fn from_legacy(value: &serde_json::Value) -> std::result::Result<Self, String>;

    /// The bus coordinate of the `row`-th snapshot read taken at this position (see
    /// [`SourcePosition`] for how the coordinates of one topic order).
    fn snapshot_read(&self, row: u64) -> SourcePosition;
}

/// A table read from the source's catalog.
pub trait CatalogTable: Send + Sync {
    /// Its schema as it goes on the topic; `schema().table` is the config's table entry.
    fn schema(&self) -> &TableSchema;
}

/// What a connector gets from the runtime: the bus and its state file.
#[derive(Clone)]
pub struct Context {
    pub log: Arc<dyn Log>,
    /// `<data>/cdc/<source>.json`
    pub state_path: PathBuf,
}

/// Why a change stream returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Shutdown: the runtime stops.
    Shutdown,
    /// `strata cdc resync` asked for a re-snapshot: the runtime starts the next attempt.
    Resync,
}

/// What the stream of one attempt works with (the runtime prepared the topics and ran the
/// snapshot; `state.resume` is where to stream from).
pub struct StreamStart<'a, C: Connector> {
    pub session: C::Session,
    /// The configured tables, as streaming starts with them.
    pub tables: Vec<C::Table>,
    /// What each table's topic holds at its end (by table name): changes at or before the
    /// last one held are not appended again.
    pub tails: HashMap<String, TopicTail>,
    pub state: &'a mut SourceState<C::Position>,
    /// Committed transactions on their way to the bus: the runtime waits for whatever is
    /// still in flight when the stream fails.
    pub pending: &'a mut Pending<C::Position>,
    pub shutdown: &'a mut watch::Receiver<bool>,
}

/// A kind of change source, for implementers. The runtime calls, per attempt: [`open`],
/// then [`start_position`] (no state yet) or [`check_saved`], [`end_position`] for
/// re-snapshots, [`read_chunk`] for every snapshot chunk and [`stream`]; after a lost
/// position (with `on_position_lost = "resnapshot"`) [`restart_position`].
///
/// [`open`]: Connector::open
/// [`start_position`]: Connector::start_position
/// [`check_saved`]: Connector::check_saved
/// [`end_position`]: Connector::end_position
/// [`read_chunk`]: Connector::read_chunk
/// [`stream`]: Connector::stream
/// [`restart_position`]: Connector::restart_position
pub trait Connector: Sized + Send + Sync + 'static {
    /// The `kind = "…"` of its `[[sources]]` entries.
    const KIND: SourceKind;
    /// What the user writes (`crate::config`); the shared settings by deref.
    type Config: std::ops::Deref<Target = SourceCommon> + Clone + Send + Sync + 'static;
    /// Where its stream resumes.
    type Position: Position;
    /// The connection one attempt reads the catalog and the snapshot on.
    type Session: Send;
    /// A table as its catalog describes it.
    type Table: CatalogTable;

    /// Offline checks (no network): what `strata check` reports.
    fn validate(config: &Self::Config) -> Result<()>;

    /// Prepares a source from its config (parses, connects nothing).
    fn build(config: &Self::Config, context: Context) -> Result<Self>;

    fn config(&self) -> &Self::Config;

    fn context(&self) -> &Context;

    /// Connects and reads the configured tables from the catalog (in config order), with
    /// whatever the stream needs on the server set up (e.g. a publication).
    fn open(&self) -> impl Future<Output = Result<(Self::Session, Vec<Self::Table>)>> + Send;

    /// A source without state: the position its snapshot (or stream) starts at, set up so
    /// that every change after it can be streamed (e.g. a replication slot created).
    fn start_position(
        &self,
        session: &mut Self::Session,
    ) -> impl Future<Output = Result<Self::Position>> + Send;

    /// A source with state: checks that the server still holds its position
    /// ([`Error::PositionLost`](crate::Error::PositionLost) if not) and completes what older
    /// states lack. Saves the state when it changes it.
    fn check_saved(
        &self,
        session: &mut Self::Session,
        state: &mut SourceState<Self::Position>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The current end of the stream: where a table's re-snapshot starts.
    fn end_position(
        &self,
        session: &mut Self::Session,
    ) -> impl Future<Output = Result<Self::Position>> + Send;

    /// After the server lost the position: a new stream start for a re-snapshot of every
    /// table (e.g. a new replication slot).
    fn restart_position(&self) -> impl Future<Output = Result<Self::Position>> + Send;

    /// The table streaming starts with and whether its schema goes on the topic first, given
    /// the schema the topic last got (`sent`) and whether the table is being snapshotted.
    /// Default: the catalog's, sent when it differs.
    fn resume_table(
        &self,
        catalog: Self::Table,
        sent: Option<&TableSchema>,
        _snapshotting: bool,
    ) -> (Self::Table, bool) {
        let send = sent != Some(catalog.schema());
        (catalog, send)
    }

    /// The snapshot reader: up to `limit` rows of `table` with a key greater than `after`, in
    /// key order (a table without a primary key: all of it).
    fn read_chunk(
        &self,
        session: &mut Self::Session,
        table: &Self::Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// The change stream from `start.state.resume` until shutdown or a resync request.
    fn stream(
        &self,
        start: StreamStart<'_, Self>,
    ) -> impl Future<Output = Result<StreamEnd>> + Send;

    /// The current schema and every row of `tables` (all configured ones when empty), for
    /// `strata cdc verify`.
    fn read_tables(
        config: &Self::Config,
        tables: &[String],
    ) -> impl Future<Output = Result<TableRows>> + Send;

    /// How `strata cdc status` names a position, e.g. `binlog position binlog.000002:4`.
    fn describe(config: &Self::Config, position: &Self::Position) -> String;
}

/// A configured source of any kind (its config checked, nothing built): the erased form the
/// commands and the runtime hold.
pub trait DynConnector: Send + Sync {
    fn kind(&self) -> SourceKind;
    fn name(&self) -> &str;
    /// Offline checks.
    fn validate(&self) -> Result<()>;
    /// Prepares the source for [`DynSource::run`] (connects nothing).
    fn build(&self, context: Context) -> Result<Box<dyn DynSource>>;
    /// See [`Connector::read_tables`].
    fn read_tables<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<TableRows>>;
    /// The source's saved progress, None before its first start.
    fn status(&self, state_path: &std::path::Path) -> Result<Option<Status>>;
}

/// A source's saved progress, whatever its kind.
#[derive(Debug, Clone)]
pub struct Status {
    /// The state file, positions as text.
    pub state: SourceState<String>,
    /// Where streaming resumes, in the source's terms (e.g. `slot strata_app at 0/16B3748`).
    pub position: String,
}

/// A built source of any kind, ready to run.
pub trait DynSource: Send {
    fn name(&self) -> &str;
    /// Snapshot, then stream, until `shutdown` turns true (retrying source failures).
    fn run(self: Box<Self>, shutdown: watch::Receiver<bool>) -> BoxFuture<'static, Result<()>>;
}

/// A connector's config behind [`DynConnector`].
pub(crate) struct Configured<C: Connector> {
    pub config: C::Config,
}

impl<C: Connector> DynConnector for Configured<C> {
    fn kind(&self) -> SourceKind {
        C::KIND
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn validate(&self) -> Result<()> {
        C::validate(&self.config)
    }

    fn build(&self, context: Context) -> Result<Box<dyn DynSource>> {
        Ok(Box::new(Built(C::build(&self.config, context)?)))
    }

    fn read_tables<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<TableRows>> {
        Box::pin(C::read_tables(&self.config, tables))
    }

    fn status(&self, state_path: &std::path::Path) -> Result<Option<Status>> {
        Ok(
            crate::state::load::<C::Position>(state_path)?.map(|s| Status {
                position: C::describe(&self.config, &s.resume),
                state: s.map_positions(ToString::to_string),
            }),
        )
    }
}

/// A built connector behind [`DynSource`].
struct Built<C: Connector>(C);

impl<C: Connector> DynSource for Built<C> {
    fn name(&self) -> &str {
        &self.0.config().name
    }

    fn run(self: Box<Self>, shutdown: watch::Receiver<bool>) -> BoxFuture<'static, Result<()>> {
        Box::pin(crate::runtime::run(self.0, shutdown))
    }
}
