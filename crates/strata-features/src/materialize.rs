//! Syncing a feature view from the lake into the online store.
//!
//! - **Incremental.** A table-sourced view remembers the snapshot it last reflected (in the
//!   store's metadata, published atomically with the rows). When every snapshot since is an
//!   append, only the data files those snapshots added are read. Anything else (an overwrite,
//!   a delete, a compaction, expired history, a changed schema) reads the table in full; so do
//!   query-sourced views. A view whose sources have not changed is not synced at all.
//! - **Atomic.** The sync writes a new version beside the published one (`strata-online`):
//!   readers see the old version until [`SyncWriter::publish`]. Killed half-way, the old
//!   version stays served and the next sync writes over what the killed one left.
//! - **Bounded memory.** Data files are streamed batch by batch (`stream_located`), rows are
//!   written `online.batch_rows` at a time; nothing holds a whole table or file. A query
//!   source streams from DataFusion (whose own operators bound what they hold).
//! - Rows with a later event time win when an entity comes more than once (e.g. a table with
//!   one partition per day: the newest day's row is served).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{Field, Schema, SchemaRef};
use chrono::Utc;
use futures::StreamExt;
use iceberg::spec::Operation;
use iceberg::table::Table;
use iceberg::TableIdent;
use strata_online::meta::SourceSnapshots;
use strata_online::store::SyncRow;
use strata_online::{OnlineStore, SyncWriter};
use strata_sql::SqlSession;
use strata_table::table::files::TableFiles;
use strata_table::table::read::{
    located_schema, position_deletes, stream_located, table_arrow_schema, FILE_COLUMN, POS_COLUMN,
};
use strata_table::Lake;

use crate::convert::convert;
use crate::error::{Error, Result};
use crate::view::{FeatureView, ResolvedView, Source};

/// How a sync is done.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Entities per write batch (`online.batch_rows`).
    pub batch_rows: usize,
    /// Read the source in full even when an incremental sync is possible.
    pub full: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            batch_rows: 2000,
            full: false,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub view: String,
    /// `full`, `incremental`, or `up_to_date` (nothing changed, nothing written).
    pub mode: String,
    /// The version published (the current one when up to date).
    pub version: u64,
    /// The source snapshots the published version reflects.
    pub sources: SourceSnapshots,
    /// Data files read (table sources).
    pub files_read: u64,
    /// Rows read from the source.
    pub rows_read: u64,
    /// Entity rows written to the store.
    pub written: u64,
    /// Rows left out: no entity key, or no event time.
    pub skipped: u64,
    /// Entities the published version serves.
    pub entities: u64,
    pub elapsed_ms: u64,
}

/// Resolves `view` against the lake: its source's schema, checked.
pub async fn resolve(lake: &Lake, view: &FeatureView) -> Result<ResolvedView> {
    let schema = source_schema(lake, view).await?;
    view.resolve(&schema)
}

async fn source_schema(lake: &Lake, view: &FeatureView) -> Result<SchemaRef> {
    match &view.source {
        Source::Table { namespace, table } => {
            let table = load(lake, namespace, table, view).await?;
            Ok(table_arrow_schema(&table)?)
        }
        Source::Stream(spec) => Ok(spec.schema(&view.entity[0])),
        Source::Query(sql) => {
            let session = SqlSession::new(lake).await?;
            let df = session.context().sql(sql).await.map_err(|e| {
                Error::Plan(format!(
                    "feature view {} ({}): query: {e}",
                    view.name, view.file
                ))
            })?;
            Ok(Arc::new(df.schema().as_arrow().clone()))
        }
    }
}

async fn load(lake: &Lake, namespace: &str, table: &str, view: &FeatureView) -> Result<Table> {
    let ident = TableIdent::from_strs([namespace, table])
        .map_err(|e| Error::Plan(format!("feature view {}: {e}", view.name)))?;
    lake.load_table(&ident).await.map_err(|e| match e {
        strata_table::Error::NotFound(_) => Error::Plan(format!(
            "feature view {} ({}): source table {namespace}.{table} does not exist",
            view.name, view.file
        )),
        e => Error::Lake(e),
    })
}

/// The snapshots of the tables `view` reads, now.
async fn current_sources(lake: &Lake, view: &FeatureView) -> Result<SourceSnapshots> {
    let mut out = BTreeMap::new();
    for table in view.reads()? {
        let Some((ns, t)) = table.split_once('.') else {
            continue;
        };
        let loaded = load(lake, ns, t, view).await?;
        out.insert(
            table.clone(),
            loaded.metadata().current_snapshot_id().unwrap_or(-1),
        );
    }
    Ok(out)
}

/// The snapshots after `base` up to the current one when all of them are appends (`None`:
/// `base` is not an ancestor of the current snapshot, or something else than an append
/// happened since — the caller reads in full).
fn appended_since(table: &Table, base: i64) -> Option<HashSet<i64>> {
    let metadata = table.metadata();
    let mut out = HashSet::new();
    let mut at = metadata.current_snapshot();
    while let Some(s) = at {
        if s.snapshot_id() == base {
            return Some(out);
        }
        if s.summary().operation != Operation::Append {
            return None;
        }
        out.insert(s.snapshot_id());
        at = s
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p));
    }
    // Walked off the history (expired snapshots) without meeting the base.
    None
}

/// What a sync reads: a loaded table (its name as `reads()` writes it), or a query.
enum Input<'a> {
    Table(String, Box<Table>),
    Query(&'a str),
}

/// Syncs `view` into `store`.
pub async fn materialize(
    lake: &Lake,
    store: &OnlineStore,
    view: &FeatureView,
    options: &SyncOptions,
) -> Result<SyncReport> {
    let started = Instant::now();
    // A table source is loaded once: its schema, its snapshot and its files come from the
    // same metadata.
    let input = match &view.source {
        Source::Table { namespace, table } => Input::Table(
            format!("{namespace}.{table}"),
            Box::new(load(lake, namespace, table, view).await?),
        ),
        Source::Query(sql) => Input::Query(sql),
        Source::Stream(_) => {
            return Err(Error::Plan(format!(
                "feature view {} is a stream view: the realtime consumer inside `strata serve` keeps it current; it has no sync",
                view.name
            )))
        }
    };
    let (resolved, sources) = match &input {
        Input::Table(name, table) => (
            view.resolve(&table_arrow_schema(table)?)?,
            [(
                name.clone(),
                table.metadata().current_snapshot_id().unwrap_or(-1),
            )]
            .into(),
        ),
        Input::Query(_) => (
            resolve(lake, view).await?,
            current_sources(lake, view).await?,
        ),
    };
    let columns = resolved.columns();
    let meta = store.meta(&view.name).await?.unwrap_or_default();
    let same_schema = meta
        .published
        .as_ref()
        .and_then(|p| meta.schemas.get(&p.schema))
        .is_some_and(|s| *s == columns);
    let mut report = SyncReport {
        view: view.name.clone(),
        mode: "up_to_date".to_string(),
        version: meta.published_version(),
        sources: sources.clone(),
        files_read: 0,
        rows_read: 0,
        written: 0,
        skipped: 0,
        entities: meta.published.as_ref().map_or(0, |p| p.entities),
        elapsed_ms: 0,
    };
    if let Some(published) = &meta.published {
        if same_schema && published.sources == sources && !options.full {
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(view = %view.name, version = published.version, "feature view is up to date");
            return Ok(report);
        }
    }
    match input {
        Input::Table(name, loaded) => {
            let base = meta
                .published
                .as_ref()
                .filter(|_| same_schema && !options.full)
                .and_then(|p| p.sources.get(&name).copied());
            let added = base.and_then(|b| appended_since(&loaded, b));
            let mut writer = store
                .begin_sync(
                    &view.name,
                    &columns,
                    sources,
                    added.is_none(),
                    options.batch_rows,
                )
                .await?;
            report.mode = if added.is_some() {
                "incremental"
            } else {
                "full"
            }
            .to_string();
            let run =
                sync_table(&loaded, &resolved, added.as_ref(), &mut writer, &mut report).await;
            finish(writer, run, &mut report).await?;
        }
        Input::Query(sql) => {
            let mut writer = store
                .begin_sync(&view.name, &columns, sources, true, options.batch_rows)
                .await?;
            report.mode = "full".to_string();
            let run = sync_query(lake, sql, &resolved, &mut writer, &mut report).await;
            finish(writer, run, &mut report).await?;
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    metrics::gauge!("strata_features_entities", "view" => view.name.clone())
        .set(report.entities as f64);
    metrics::gauge!("strata_features_published_version", "view" => view.name.clone())
        .set(report.version as f64);
    tracing::info!(
        view = %view.name,
        mode = %report.mode,
        version = report.version,
        files = report.files_read,
        rows_read = report.rows_read,
        written = report.written,
        skipped = report.skipped,
        entities = report.entities,
        elapsed_ms = report.elapsed_ms,
        "feature view synced"
    );
    Ok(report)
}

/// Publishes after a successful read; gives the sync up (old version stays) after a failed one.
async fn finish(writer: SyncWriter, run: Result<()>, report: &mut SyncReport) -> Result<()> {
    match run {
        Ok(()) => {
            let published = writer.publish().await?;
            report.version = published.version;
            report.entities = published.entities;
            report.written = published.written;
            Ok(())
        }
        Err(e) => {
            if let Err(abandon) = writer.abandon().await {
                tracing::warn!(view = %report.view, error = %abandon, "releasing the sync lock failed");
            }
            Err(e)
        }
    }
}

/// Writes rows in batches of the writer's size.
struct Batcher<'a> {
    writer: &'a mut SyncWriter,
    pending: Vec<SyncRow>,
    view: String,
    last_progress: Instant,
}

impl Batcher<'_> {
    async fn push(&mut self, rows: Vec<SyncRow>) -> Result<()> {
        self.pending.extend(rows);
        while self.pending.len() >= self.writer.batch_rows() {
            let rest = self.pending.split_off(self.writer.batch_rows());
            let batch = std::mem::replace(&mut self.pending, rest);
            let n = batch.len() as u64;
            self.writer.write(batch).await?;
            metrics::counter!("strata_features_sync_rows_total", "view" => self.view.clone())
                .increment(n);
            pause_for_crash_tests(&self.view, self.writer.written()).await;
            if self.last_progress.elapsed() >= Duration::from_secs(5) {
                self.last_progress = Instant::now();
                tracing::info!(view = %self.view, written = self.writer.written(), "feature sync progress");
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        self.writer.write(batch).await?;
        metrics::counter!("strata_features_sync_rows_total", "view" => self.view.clone())
            .increment(n);
        Ok(())
    }
}

/// `STRATA_TEST_SYNC_PAUSE=<view>:<rows>` stops a sync of `view` for good once it has written
/// `rows` rows, after saying so on stderr: the crash tests `kill -9` the process there, in the
/// middle of a sync, deterministically.
async fn pause_for_crash_tests(view: &str, written: u64) {
    let Ok(spec) = std::env::var("STRATA_TEST_SYNC_PAUSE") else {
        return;
    };
    let Some((name, rows)) = spec.split_once(':') else {
        return;
    };
    if name == view && rows.parse::<u64>().is_ok_and(|r| written >= r) {
        eprintln!("sync of {view} paused after {written} rows (STRATA_TEST_SYNC_PAUSE)");
        std::future::pending::<()>().await;
    }
}

async fn sync_table(
    table: &Table,
    view: &ResolvedView,
    added: Option<&HashSet<i64>>,
    writer: &mut SyncWriter,
    report: &mut SyncReport,
) -> Result<()> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(()); // an empty table: an empty version
    };
    let default_ts = snapshot.timestamp_ms() * 1000;
    let files = TableFiles::of_snapshot(table, snapshot).await?;
    let deletes = position_deletes(table, &files).await?;
    // Only the columns the view reads (and the location columns the reader appends).
    let located = located_schema(table)?;
    let wanted: HashSet<String> = view.read_columns().into_iter().collect();
    let fields: Vec<Field> = located
        .fields()
        .iter()
        .filter(|f| wanted.contains(f.name()) || f.name() == FILE_COLUMN || f.name() == POS_COLUMN)
        .map(|f| f.as_ref().clone())
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut batcher = Batcher {
        writer,
        pending: Vec::new(),
        view: view.view.name.clone(),
        last_progress: Instant::now(),
    };
    for file in files.data_files() {
        if let Some(added) = added {
            if !added.contains(&file.snapshot_id) {
                continue;
            }
        }
        report.files_read += 1;
        let mut stream = stream_located(table, file, deletes.get(file.path()).cloned(), &schema)?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            report.rows_read += batch.num_rows() as u64;
            let converted = convert(view, &batch, default_ts)?;
            report.skipped += converted.skipped;
            batcher.push(converted.rows).await?;
        }
    }
    batcher.flush().await
}

async fn sync_query(
    lake: &Lake,
    sql: &str,
    view: &ResolvedView,
    writer: &mut SyncWriter,
    report: &mut SyncReport,
) -> Result<()> {
    let session = SqlSession::new(lake).await?;
    let (_, mut stream) = session.query_stream(sql).await?;
    let default_ts = Utc::now().timestamp_micros();
    let mut batcher = Batcher {
        writer,
        pending: Vec::new(),
        view: view.view.name.clone(),
        last_progress: Instant::now(),
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| {
            Error::Lake(strata_table::Error::Execution(format!(
                "feature view {}: {e}",
                view.view.name
            )))
        })?;
        report.rows_read += batch.num_rows() as u64;
        let converted = convert(view, &batch, default_ts)?;
        report.skipped += converted.skipped;
        batcher.push(converted.rows).await?;
    }
    batcher.flush().await
}

/// The tables of `reads` (a view's [`FeatureView::reads`]) the lake cannot load: not built
/// yet, or not there at all.
pub async fn missing_sources(lake: &Lake, reads: &BTreeSet<String>) -> Vec<String> {
    let mut missing = Vec::new();
    for table in reads {
        let Some((ns, t)) = table.split_once('.') else {
            continue;
        };
        let exists = match TableIdent::from_strs([ns, t]) {
            Ok(ident) => lake.load_table(&ident).await.is_ok(),
            Err(_) => false,
        };
        if !exists {
            missing.push(table.clone());
        }
    }
    missing
}

/// Checks every view against the lake before anything runs: sources exist, columns exist and
/// can be served. A source a project model will write (`produced`) but that is not built yet
/// is not an error; it is returned as a note. Every problem is returned.
pub async fn check_views(
    lake: &Lake,
    views: &[FeatureView],
    produced: &HashSet<String>,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for view in views {
        let reads = match view.reads() {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let mut unbuilt = Vec::new();
        for table in missing_sources(lake, &reads).await {
            if produced.contains(&table) {
                unbuilt.push(table);
            } else {
                problems.push(format!(
                    "feature view {} ({}): source table {table} does not exist and no model writes it",
                    view.name, view.file
                ));
            }
        }
        if !unbuilt.is_empty() {
            notes.push(format!(
                "feature view {}: columns checked once {} is built",
                view.name,
                unbuilt.join(", ")
            ));
            continue;
        }
        if problems
            .iter()
            .any(|p| p.contains(&format!("feature view {} (", view.name)))
        {
            continue;
        }
        if let Err(e) = resolve(lake, view).await {
            problems.push(e.to_string());
        }
    }
    (problems, notes)
}
