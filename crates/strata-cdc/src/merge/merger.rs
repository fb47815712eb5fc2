//! The ODS merger: consumes `cdc.<source>.<table>` and keeps `ods.ods_<table>` equal to the
//! source table, exactly once (ADR 0007).
//!
//! - The first record of a topic is the table's schema; the ODS table is created from it.
//! - Changes are buffered and applied every `commit_interval`: the latest change per primary
//!   key (bus order = source order) goes through one MERGE (delete → DELETE, else upsert).
//!   Tables without a primary key get every change appended with its `_op`.
//! - A later schema record evolves the tables (columns added, dropped, widened) after the
//!   changes before it are committed under the old schema; a change Iceberg cannot follow
//!   stops that table (the reason lands in its `strata.cdc.stopped` property) and only it.
//! - A truncate record (a source TRUNCATE, or the start of a re-snapshot) removes every row
//!   in one commit.
//! - Each commit's snapshot summary holds `strata.bus.<topic>.offsets` = the next bus offset
//!   after the changes it contains. A restart reads it and resumes there, so a SIGKILL at any
//!   point neither loses nor doubles a change. The optional `<target>_changelog` table keeps
//!   its own position the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::SourceConfig;
use datafusion::common::Column;
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::SessionContext;
use iceberg::spec::{Operation, UnboundPartitionSpec};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};
use strata_bus::{Consumer, Log, Offsets, OnLost, StartAt};
use strata_core::cdc::{CdcRecord, Change, Op, TableSchema, Truncate, Value};
use tokio::sync::watch;

use super::schema::{
    evolved_schema, ods_batch, ods_schema, primary_key_of, OdsRow, OP_COLUMN, PRIMARY_KEY_PROPERTY,
    SOURCE_PROPERTY,
};
use strata_table::error::{Error, Result};
use strata_table::lake::Lake;
use strata_table::position::{encode_offsets, offsets_key};
use strata_table::schema::table_properties;
use strata_table::table::evolve::{commit_metadata_change, MetadataChange};
use strata_table::table::read::table_arrow_schema;
use strata_table::table::{
    commit_change, merge_with_properties, Change as TableChange, MergeClause,
};
use strata_table::table::{MergeSpec, TableFiles};
use strata_table::write::write_rows;

/// Records per bus read.
const READ_MAX_RECORDS: usize = 8192;
/// Bytes per bus read (roughly).
const READ_MAX_BYTES: usize = 16 << 20;
/// Buffered changes per table that force a commit before the interval ends.
const MAX_BUFFERED: usize = 200_000;
/// Longest wait for new records when nothing is buffered.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Wait between looks for a topic that does not exist yet.
const TOPIC_WAIT: Duration = Duration::from_millis(100);
/// Pause before a table retries after a retryable failure.
const RETRY_WAIT: Duration = Duration::from_millis(500);
/// How often a stopped table whose reads keep failing tries again.
const STOPPED_WAIT: Duration = Duration::from_secs(5);

/// One source table the merger keeps in its ODS table.
#[derive(Debug, Clone)]
pub struct CdcTable {
    pub source: String,
    pub table: String,
    pub topic: String,
    pub target: TableIdent,
    pub changelog: Option<TableIdent>,
    pub commit_interval: Duration,
}

impl CdcTable {
    /// The tables of every configured source.
    pub fn from_sources(sources: &[SourceConfig]) -> Vec<CdcTable> {
        let mut out = Vec::new();
        for s in sources {
            for t in &s.tables {
                let (ns, name) = s.target(t);
                let target = TableIdent::new(NamespaceIdent::new(ns.clone()), name.clone());
                out.push(CdcTable {
                    source: s.name.clone(),
                    table: t.clone(),
                    topic: s.topic(t),
                    changelog: s.keep_changelog.then(|| {
                        TableIdent::new(NamespaceIdent::new(ns), format!("{name}_changelog"))
                    }),
                    target,
                    commit_interval: s.commit_interval,
                });
            }
        }
        out
    }
}

/// Per-table progress of the merger.
struct TableState {
    spec: CdcTable,
    /// Reads partition 0 of the topic as group [`CDC_GROUP`]; its position is the next bus
    /// offset to read.
    consumer: Consumer,
    /// Next offset the ODS table / the changelog does not hold yet (None: table not created).
    target_pos: Option<u64>,
    changelog_pos: Option<u64>,
    schema: Option<TableSchema>,
    buffer: Vec<(u64, Change)>,
    last_commit: Instant,
    /// The ODS table's primary key (empty: append-only), read once it exists.
    key: Option<Vec<String>>,
    /// Why the table stopped: its changes are passed over until a re-snapshot starts.
    stopped: Option<String>,
}

impl TableState {
    /// The next bus offset to read.
    fn next(&self) -> u64 {
        self.consumer.positions().get(&0).copied().unwrap_or(0)
    }
}

/// Consumer group the merger commits its (advisory) positions under, one per `cdc.*` topic.
pub const CDC_GROUP: &str = "cdc";

/// Applies CDC topics to ODS tables.
pub struct CdcMerger {
    lake: Lake,
    log: Arc<dyn Log>,
    tables: Vec<CdcTable>,
}

impl CdcMerger {
    pub fn new(lake: &Lake, log: Arc<dyn Log>, tables: Vec<CdcTable>) -> CdcMerger {
        CdcMerger {
            lake: lake.clone(),
            log,
            tables,
        }
    }

    /// Runs until `shutdown` turns true, then applies everything already on the bus and
    /// returns. Each table runs as its own task, so tables commit concurrently and one slow
    /// or stopped table does not hold the others back.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        let merger = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for spec in merger.tables.clone() {
            let merger = merger.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { merger.run_table(spec, shutdown).await });
        }
        tracing::info!(tables = merger.tables.len(), "cdc merger started");
        // The first error ends the merger; dropping the set aborts the other tables, whose
        // committed positions make that safe.
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(Error::Internal(format!("cdc merger task: {e}"))),
            }
        }
        tracing::info!("cdc merger stopped");
        Ok(())
    }

    /// One table's loop: read, buffer, commit every `commit_interval`; after shutdown, apply
    /// what is on the bus and return.
    async fn run_table(&self, spec: CdcTable, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut st = self.start(spec).await?;
        let mut stopping = *shutdown.borrow();
        loop {
            let got = match self.step(&mut st, stopping).await {
                Ok(n) => n,
                Err(e) if e.retryable() => {
                    tracing::warn!(table = %st.spec.target, error = %e, "cdc merge failed, retrying from the committed position");
                    tokio::time::sleep(RETRY_WAIT).await;
                    st = self.start(st.spec.clone()).await?;
                    continue;
                }
                Err(e) if st.stopped.as_deref() == Some(e.to_string().as_str()) => {
                    // The same failure again, so it comes from reading, not from a record (an
                    // offset that retention deleted, say): wait instead of spinning, log it
                    // once, and let shutdown end the loop.
                    if stopping {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(STOPPED_WAIT) => {}
                        _ = shutdown.changed() => {}
                    }
                    stopping = *shutdown.borrow();
                    continue;
                }
                Err(e) => {
                    // The other tables go on; `strata cdc status` shows why this one stopped.
                    // Its records are passed over until a re-snapshot (`strata cdc resync`)
                    // starts, which brings it back.
                    tracing::error!(table = %st.spec.target, error = %e, "cdc table stopped until it is re-snapshotted");
                    if let Err(e2) = self
                        .set_stopped(&st.spec.target, Some(&e.to_string()))
                        .await
                    {
                        tracing::warn!(table = %st.spec.target, error = %e2, "could not record why the cdc table stopped");
                    }
                    st.buffer.clear();
                    st.stopped = Some(e.to_string());
                    continue;
                }
            };
            if stopping && got == 0 {
                return Ok(());
            }
            if got == 0 {
                // Wake for the next record, for the commit falling due, or for shutdown.
                let wait = if st.buffer.is_empty() {
                    IDLE_WAIT
                } else {
                    st.spec
                        .commit_interval
                        .saturating_sub(st.last_commit.elapsed())
                        .max(Duration::from_millis(1))
                };
                tokio::select! {
                    r = st.consumer.wait(wait) => {
                        if r.is_err() {
                            // No topic yet (the source has not started) or a bus hiccup.
                            tokio::time::sleep(wait.min(TOPIC_WAIT)).await;
                        }
                    }
                    _ = shutdown.changed() => {}
                }
                stopping = *shutdown.borrow();
            }
        }
    }

    async fn start(&self, spec: CdcTable) -> Result<TableState> {
        let target_pos = self.position_of(&spec.target, &spec.topic).await?;
        if target_pos.is_some() {
            // A table stopped before is tried again from its committed position.
            self.set_stopped(&spec.target, None).await?;
        }
        let changelog_pos = match &spec.changelog {
            Some(c) => self.position_of(c, &spec.topic).await?,
            None => None,
        };
        let next = match (&spec.changelog, target_pos, changelog_pos) {
            (None, p, _) => p.unwrap_or(0),
            (Some(_), a, b) => a.unwrap_or(0).min(b.unwrap_or(0)),
        };
        tracing::info!(table = %spec.target, topic = %spec.topic, from = next, "cdc table resumes");
        // Partition 0 only: a CDC topic has one partition so the source order holds. The
        // topic may not exist yet (the source has not started); reads then find nothing.
        // Retention passing an unapplied change is an error, not a skip: the table would
        // silently differ from its source.
        let consumer = Consumer::assign(
            self.log.clone(),
            Some(CDC_GROUP),
            &spec.topic,
            vec![0],
            StartAt::At(Offsets::from([(0, next)])),
        )
        .await
        .map_err(|e| Error::bus(format!("positioning the reader of {}", spec.topic), e))?
        .with_limits(READ_MAX_RECORDS, READ_MAX_BYTES)
        .on_lost(OnLost::Fail);
        hold(&consumer, next).await;
        Ok(TableState {
            spec,
            consumer,
            target_pos,
            changelog_pos,
            schema: None,
            buffer: Vec::new(),
            last_commit: Instant::now(),
            key: None,
            stopped: None,
        })
    }

    /// Records (or clears) in the table's [`STOPPED_PROPERTY`] why the merger stopped it.
    async fn set_stopped(&self, ident: &TableIdent, reason: Option<&str>) -> Result<()> {
        let what = format!("updating the properties of {ident}");
        commit_metadata_change(&self.lake, ident, &what, |table| {
            let current = table.metadata().properties().get(STOPPED_PROPERTY);
            let mut change = MetadataChange::default();
            match reason {
                _ if current.map(String::as_str) == reason => {}
                Some(r) => {
                    change.set_properties =
                        HashMap::from([(STOPPED_PROPERTY.to_string(), r.to_string())])
                }
                None => change.remove_properties = vec![STOPPED_PROPERTY.to_string()],
            }
            Ok((change, ()))
        })
        .await?;
        Ok(())
    }

    /// The next offset `ident` does not hold: from its snapshot summary; 0 for an existing
    /// table without a position, None when the table does not exist.
    async fn position_of(&self, ident: &TableIdent, topic: &str) -> Result<Option<u64>> {
        Ok(super::lag::applied(&self.lake, ident, topic)
            .await?
            .map(|a| a.next))
    }

    /// Reads one batch of records and commits when due. Returns how many records it read.
    async fn step(&self, st: &mut TableState, stopping: bool) -> Result<usize> {
        let records = match st.consumer.fetch().await {
            Ok(r) => r,
            // The source has not created its topic yet.
            Err(strata_bus::Error::UnknownTopic(_)) => Vec::new(),
            Err(e) => return Err(Error::bus(format!("reading {}", st.spec.topic), e)),
        };
        let n = records.len();
        for r in records {
            let offset = r.offset;
            let record = CdcRecord::from_json(&r.value).map_err(|e| {
                Error::Internal(format!(
                    "{} offset {offset}: not a CDC record: {e}",
                    st.spec.topic
                ))
            });
            let applied = match record {
                Ok(record) if st.stopped.is_some() => self.while_stopped(st, record, offset).await,
                Ok(record) => self.apply(st, record, offset).await,
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                // A record that fails is not read again unless the table restarts; the rest
                // of the batch is.
                st.consumer.seek(0, offset + 1);
                return Err(e);
            }
        }
        // Commits start at most every `commit_interval` (measured from the previous start,
        // so a commit's own duration does not stretch the period); after a quiet spell the
        // first change goes out at once.
        let due = st.last_commit.elapsed() >= st.spec.commit_interval
            || st.buffer.len() >= MAX_BUFFERED
            || (stopping && n == 0);
        if due && !st.buffer.is_empty() {
            let started = Instant::now();
            let end = st.next();
            self.commit(st, end).await?;
            st.last_commit = started;
        }
        Ok(n)
    }

    /// Takes one record of a running table.
    async fn apply(&self, st: &mut TableState, record: CdcRecord, offset: u64) -> Result<()> {
        match record {
            CdcRecord::Schema(schema) => {
                if st.schema.as_ref() != Some(&schema) {
                    // Changes made under the old schema are committed under it first.
                    self.commit_until(st, offset).await?;
                    self.on_schema(st, schema, offset).await?;
                }
            }
            CdcRecord::Truncate(t) => {
                self.commit_until(st, offset).await?;
                self.truncate(st, &t, offset).await?;
            }
            CdcRecord::Change(change) => {
                if st.schema.is_none() && st.target_pos.is_none() {
                    return Err(Error::Internal(format!(
                        "{}: change at offset {offset} before any schema record",
                        st.spec.topic
                    )));
                }
                st.buffer.push((offset, *change));
            }
        }
        Ok(())
    }

    /// Takes one record of a stopped table: changes are passed over, the latest schema is
    /// kept, and the truncate that starts a re-snapshot brings the table back — with the
    /// schema of the re-snapshot, whatever it is, since no old row survives it.
    async fn while_stopped(
        &self,
        st: &mut TableState,
        record: CdcRecord,
        offset: u64,
    ) -> Result<()> {
        match record {
            CdcRecord::Schema(schema) => st.schema = Some(schema),
            CdcRecord::Truncate(t) if t.position.snapshot => {
                let Some(schema) = st.schema.clone() else {
                    return Ok(());
                };
                let mut tables = vec![st.spec.target.clone()];
                tables.extend(st.spec.changelog.clone());
                for ident in &tables {
                    self.evolve(ident, &schema, true).await?;
                }
                st.key = None;
                self.truncate(st, &t, offset).await?;
                self.set_stopped(&st.spec.target, None).await?;
                st.stopped = None;
                tracing::info!(table = %st.spec.target, "cdc table re-snapshotting, running again");
            }
            CdcRecord::Truncate(_) | CdcRecord::Change(_) => {}
        }
        Ok(())
    }

    /// Commits what is buffered as holding every offset before `offset` (a schema change or a
    /// truncate is next).
    async fn commit_until(&self, st: &mut TableState, offset: u64) -> Result<()> {
        if !st.buffer.is_empty() {
            self.commit(st, offset).await?;
            st.last_commit = Instant::now();
        }
        Ok(())
    }

    /// A schema record: creates the tables on the first, and makes them follow the source's
    /// columns on every later one (schema evolution). Applying one twice changes nothing, so a
    /// restart that re-reads it is harmless.
    async fn on_schema(&self, st: &mut TableState, schema: TableSchema, offset: u64) -> Result<()> {
        // Kept even when following it fails: a stopped table re-snapshots with it.
        st.schema = Some(schema.clone());
        if st.target_pos.is_none() {
            self.create(&st.spec.target, &schema).await?;
            st.target_pos = Some(0);
        }
        if let Some(c) = &st.spec.changelog {
            if st.changelog_pos.is_none() {
                self.create(c, &schema).await?;
                st.changelog_pos = Some(0);
            }
        }
        let mut tables = vec![st.spec.target.clone()];
        tables.extend(st.spec.changelog.clone());
        for ident in &tables {
            self.evolve(ident, &schema, false).await.map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!(
                    "{ident}: the source schema of {}.{} changed at bus offset {offset} in a way the ODS table cannot follow: {m}; the table stopped, the others go on (`strata cdc resync` re-snapshots it)",
                    schema.database, schema.table
                )),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Gives `ident` the columns of `schema` (see [`evolved_schema`]; `reset`: the table is
    /// about to be emptied, so any change goes, the primary key included).
    async fn evolve(&self, ident: &TableIdent, schema: &TableSchema, reset: bool) -> Result<()> {
        let what = format!("evolving the schema of {ident}");
        let evolved = commit_metadata_change(&self.lake, ident, &what, |table| {
            let mut change = MetadataChange {
                schema: evolved_schema(table, schema, reset)?,
                ..Default::default()
            };
            if reset && primary_key_of(table) != schema.primary_key {
                change.set_properties = HashMap::from([(
                    PRIMARY_KEY_PROPERTY.to_string(),
                    schema.primary_key.join(","),
                )]);
            }
            Ok((change, ()))
        })
        .await?;
        if evolved.is_some() {
            let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(table = %ident, ?columns, "cdc table schema evolved");
        }
        Ok(())
    }

    /// A truncate at `offset`: the table's rows go, in one commit that holds the offset; the
    /// changelog records it as a row with `_op = 't'`.
    async fn truncate(&self, st: &mut TableState, t: &Truncate, offset: u64) -> Result<()> {
        let end = offset + 1;
        let props = positions(&st.spec.topic, end, Some(t.commit_ts));
        if st.target_pos.is_some_and(|p| p < end) {
            let mut backoff = strata_table::retry::Backoff::new(8);
            loop {
                let table = self.lake.load_table(&st.spec.target).await?;
                let files = TableFiles::current(&table).await?;
                let mut change = TableChange::new(Operation::Delete);
                change.removed = files
                    .data_files()
                    .chain(files.delete_files())
                    .map(|f| f.path().to_string())
                    .collect();
                change.properties = props.clone();
                match commit_change(&self.lake, &table, &files, change).await {
                    Ok(_) => break,
                    Err(Error::Conflict { .. }) if backoff.can_retry() => backoff.wait().await,
                    Err(e) => return Err(e),
                }
            }
            st.target_pos = Some(end);
            tracing::info!(table = %st.spec.target, reason = %t.reason, position = %t.position, "cdc table truncated");
        }
        if let Some(c) = st.spec.changelog.clone() {
            if st.changelog_pos.is_some_and(|p| p < end) {
                let row = OdsRow {
                    image: None,
                    op: TRUNCATE_OP,
                    source_pos: t.position.to_string(),
                    commit_ts: t.commit_ts,
                };
                self.append(&c, &[row], props).await?;
                st.changelog_pos = Some(end);
            }
        }
        Ok(())
    }

    async fn create(&self, ident: &TableIdent, schema: &TableSchema) -> Result<()> {
        let ns = ident.namespace().clone();
        let catalog = self.lake.catalog();
        strata_table::lake::ensure_namespace(catalog.as_ref(), &ns).await?;
        let mut properties = table_properties();
        properties.insert(
            PRIMARY_KEY_PROPERTY.to_string(),
            schema.primary_key.join(","),
        );
        properties.insert(
            SOURCE_PROPERTY.to_string(),
            format!("{}.{}.{}", schema.source, schema.database, schema.table),
        );
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .schema(ods_schema(schema)?)
            .partition_spec(UnboundPartitionSpec::builder().build())
            .properties(properties)
            .build();
        match catalog.create_table(&ns, creation).await {
            Ok(_) => tracing::info!(table = %ident, "created cdc table"),
            Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => {}
            Err(e) => return Err(Error::iceberg(format!("creating {ident}"), e)),
        }
        Ok(())
    }

    /// Applies the buffer to the ODS table (and the changelog) with the offsets in the same
    /// snapshot, then clears it.
    async fn commit(&self, st: &mut TableState, end: u64) -> Result<()> {
        let started = Instant::now();
        let props = positions(
            &st.spec.topic,
            end,
            st.buffer.last().map(|(_, c)| c.commit_ts),
        );

        let target_from = st.target_pos.unwrap_or(0);
        let changes: Vec<&(u64, Change)> = st
            .buffer
            .iter()
            .filter(|(o, _)| *o >= target_from)
            .collect();
        let key = match &st.key {
            Some(k) => k.clone(),
            None => {
                let k = primary_key_of(&self.lake.load_table(&st.spec.target).await?);
                st.key = Some(k.clone());
                k
            }
        };
        let n = changes.len();
        if !changes.is_empty() || target_from < end {
            if key.is_empty() {
                let rows: Vec<OdsRow<'_>> = changes.iter().map(|(_, c)| ods_row(c)).collect();
                self.append(&st.spec.target, &rows, props.clone()).await?;
            } else {
                self.upsert(&st.spec.target, &key, &changes, props.clone())
                    .await?;
            }
            st.target_pos = Some(end);
        }
        if let Some(c) = st.spec.changelog.clone() {
            let from = st.changelog_pos.unwrap_or(0);
            let changes: Vec<&(u64, Change)> =
                st.buffer.iter().filter(|(o, _)| *o >= from).collect();
            if from < end {
                let rows: Vec<OdsRow<'_>> = changes.iter().map(|(_, c)| ods_row(c)).collect();
                self.append(&c, &rows, props.clone()).await?;
                st.changelog_pos = Some(end);
            }
        }
        st.buffer.clear();
        hold(&st.consumer, end).await;
        metrics::counter!("strata_cdc_applied_changes_total", "table" => st.spec.target.to_string())
            .increment(n as u64);
        tracing::debug!(table = %st.spec.target, changes = n, next = end, elapsed = ?started.elapsed(), "cdc commit");
        Ok(())
    }

    /// Appends rows (keyless tables, changelogs). Position-only commits (no rows) still
    /// record the offsets.
    async fn append(
        &self,
        ident: &TableIdent,
        rows: &[OdsRow<'_>],
        props: HashMap<String, String>,
    ) -> Result<()> {
        let mut backoff = strata_table::retry::Backoff::new(8);
        loop {
            let table = self.lake.load_table(ident).await?;
            let schema = table_arrow_schema(&table)?;
            let batch = ods_batch(&schema, rows)?;
            let files = TableFiles::manifests_only(&table).await?;
            let data = write_rows(&table, &[batch]).await?;
            let mut change = TableChange::new(Operation::Append);
            change.added_data = data;
            change.properties = props.clone();
            match commit_change(&self.lake, &table, &files, change).await {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) if backoff.can_retry() => backoff.wait().await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Latest change per key → one MERGE carrying the offsets.
    async fn upsert(
        &self,
        ident: &TableIdent,
        key: &[String],
        changes: &[&(u64, Change)],
        props: HashMap<String, String>,
    ) -> Result<()> {
        // Per key, the change that decides its final state: the row of the last change that
        // wrote it, or a deletion when the last change moved the key away (an update of the
        // key itself) or deleted it.
        let key_of = |row: Option<&strata_core::cdc::Row>| -> Vec<String> {
            key.iter()
                .map(|k| {
                    row.and_then(|r| r.get(k))
                        .map(Value::canonical)
                        .unwrap_or_default()
                })
                .collect()
        };
        let mut latest: HashMap<Vec<String>, (usize, bool)> = HashMap::new();
        for (i, (_, c)) in changes.iter().enumerate() {
            if let (Op::Update, Some(before), Some(after)) = (c.op, &c.before, &c.after) {
                let old = key_of(Some(before));
                if old != key_of(Some(after)) {
                    latest.insert(old, (i, true));
                }
            }
            latest.insert(key_of(c.image()), (i, false));
        }
        let mut order: Vec<(usize, bool)> = latest.into_values().collect();
        order.sort_unstable();
        let picked: Vec<OdsRow<'_>> = order
            .into_iter()
            .map(|(i, moved_away)| {
                let c = &changes[i].1;
                if moved_away {
                    OdsRow {
                        image: c.before.as_ref(),
                        op: Op::Delete.as_str(),
                        source_pos: c.position.to_string(),
                        commit_ts: c.commit_ts,
                    }
                } else {
                    ods_row(c)
                }
            })
            .collect();
        let table = self.lake.load_table(ident).await?;
        let schema = table_arrow_schema(&table)?;
        let batch = ods_batch(&schema, &picked)?;
        let ctx = SessionContext::new_with_config_rt(Default::default(), self.lake.runtime());
        let source = ctx.read_batch(batch).map_err(Error::datafusion)?;
        let t = |n: &str| col(Column::new(Some("t"), n));
        let s = |n: &str| col(Column::new(Some("s"), n));
        let on = key
            .iter()
            .map(|k| t(k).eq(s(k)))
            .reduce(Expr::and)
            .ok_or_else(|| Error::Internal("merge without a key".to_string()))?;
        let is_delete = s(OP_COLUMN).eq(lit(Op::Delete.as_str()));
        let spec = MergeSpec {
            target_alias: "t".to_string(),
            source_alias: "s".to_string(),
            on,
            clauses: vec![
                MergeClause::Delete {
                    condition: Some(is_delete.clone()),
                },
                MergeClause::Update {
                    condition: None,
                    assignments: None,
                },
                MergeClause::Insert {
                    condition: Some(s(OP_COLUMN).not_eq(lit(Op::Delete.as_str()))),
                    values: None,
                },
            ],
        };
        let outcome =
            merge_with_properties(&self.lake, &ctx, ident, source, spec, props.clone()).await?;
        if outcome.snapshot_id.is_none() {
            // Nothing changed in the rows (e.g. only deletes of absent keys): record the
            // position alone so a restart does not re-read these changes.
            self.append(ident, &[], props).await?;
        }
        Ok(())
    }
}

/// Commits `next` as the [`CDC_GROUP`] position on the consumer's topic, so bus retention
/// keeps every change the merger has not applied (retention deletes only what every group has
/// read; without a group it deleted changes the merger still needed). Advisory: the tables'
/// snapshot summaries stay the truth, as with the lake sink's group.
async fn hold(consumer: &Consumer, next: u64) {
    if let Err(e) = consumer.commit_at(&Offsets::from([(0, next)])).await {
        tracing::warn!(topic = consumer.topic(), error = %e, "committing bus offsets for group cdc failed");
    }
}

/// Table property: why the merger stopped applying changes to this table (absent: it runs).
pub const STOPPED_PROPERTY: &str = "strata.cdc.stopped";

/// The `_op` of a changelog row that records a truncate.
pub const TRUNCATE_OP: &str = "t";

/// Snapshot summary properties of a commit that holds the topic's offsets before `end`.
fn positions(topic: &str, end: u64, last_commit_ts: Option<i64>) -> HashMap<String, String> {
    let mut props = HashMap::new();
    let mut offsets = Offsets::new();
    offsets.insert(0, end);
    props.insert(offsets_key(topic), encode_offsets(&offsets));
    if let Some(ts) = last_commit_ts {
        props.insert(last_commit_ts_key(topic), ts.to_string());
    }
    props
}

/// Snapshot summary key: source commit time (epoch µs) of the last change a table holds.
pub fn last_commit_ts_key(topic: &str) -> String {
    format!("strata.cdc.{topic}.last-commit-ts")
}

fn ods_row(c: &Change) -> OdsRow<'_> {
    OdsRow {
        image: c.image(),
        op: c.op.as_str(),
        source_pos: c.position.to_string(),
        commit_ts: c.commit_ts,
    }
}
