//! The lake sink: bus topic `events` → Parquet → Iceberg (`ods.ods_event`,
//! `ods.ods_event_rejected`), exactly once.
//!
//! How exactly-once holds:
//! - Each table's position (next bus offset per partition) lives in its snapshot summaries
//!   ([`strata_table::position`]) and changes in the same atomic catalog swap as its data.
//! - On start the sink reads each table's position, reads every partition from the minimum of
//!   the two (one [`Consumer`] positioned there), and routes a record to a table only if its
//!   offset is at or past that table's position. A crash anywhere (mid-write, between the two
//!   tables' commits) therefore neither loses nor duplicates rows.
//! - A table that gets no rows for a while gets a position-only snapshot now and then (and on
//!   graceful shutdown) so restarts do not re-read the whole bus.
//! - The bus consumer group `lake` is committed after the Iceberg commits (when the sink takes
//!   a finished flush's result); it is advisory (lag metrics, retention), never read back as
//!   the truth.
//!
//! An event whose `(app, messageId)` the sink already wrote within `lake.dedup_window` is
//! dropped (SDK retries that reached two collectors; [`dedup`], ADR 0048). The window is part
//! of the read state: rebuilt from the bus below `ods.ods_event`'s position whenever the sink
//! (re)positions its reader, so a crash neither lets a copy through nor drops a first write.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::Struct;
use iceberg::table::Table;
use strata_bus::{Consumer, Log, Offsets, StartAt, StoredRecord};
use strata_core::event::EVENTS_TOPIC;
use strata_core::BusRecordView;
use strata_table::config::LakeConfig;
use tokio::sync::watch;

use strata_table::batch::{
    BusPosition, EventBuffer, EventColumns, RejectedBuffer, RejectedColumns, RejectedRow,
};
use strata_table::error::{Error, Result};
use strata_table::lake::Lake;
use strata_table::position::{claimed_position, max_offsets, min_offsets, table_position};
use strata_table::retry::Backoff;
use strata_table::schema::OdsTable;
use strata_table::write::{commit_with_position, write_data_files};

pub mod dedup;

use dedup::Written;

/// Consumer group the sink commits (advisory) offsets under.
pub const LAKE_GROUP: &str = "lake";
/// Longest idle wait before re-checking (lag gauge, shutdown).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// A table without rows still records its position this often (and on graceful shutdown).
const MIN_POSITION_COMMIT_INTERVAL: Duration = Duration::from_secs(60);

/// Consecutive position conflicts the sink recovers from before giving up (another sink is
/// writing the same lake).
const MAX_CONFLICT_RESYNCS: u32 = 5;
/// While stopping, a storage outage is waited out this many times before the sink gives up
/// (what it had not committed stays on the bus for the next start).
const MAX_STOPPING_RETRIES: u32 = 5;
/// Longest wait between two attempts while the lake's storage is failing.
const MAX_FAILURE_WAIT: Duration = Duration::from_secs(30);

/// Consumes the `events` topic into the ODS tables.
pub struct LakeSink {
    /// Exclusive lock on `<warehouse>/.strata-lake-sink.lock` (beside the catalog for an S3
    /// lake), held while the sink lives: one writer per lake (see
    /// `write::commit_with_position` for why that matters).
    _lock: std::fs::File,
    lake: Lake,
    log: Arc<dyn Log>,
    config: LakeConfig,
    topic: String,
    /// Consecutive flushes that failed with a retryable error (S3 or disk unavailable).
    failures: AtomicU32,
    /// Set once the sink drains for shutdown: outages are then waited out a bounded time.
    stopping: AtomicBool,
}

impl LakeSink {
    pub async fn new(lake: &Lake, log: Arc<dyn Log>, config: &LakeConfig) -> Result<LakeSink> {
        let lock_path = lake.lock_dir().join(".strata-lake-sink.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Conflict {
                    table: "ods.*".to_string(),
                    message: format!(
                        "another lake sink is running on this lake ({} is locked)",
                        lock_path.display()
                    ),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e))
            }
        }
        for table in OdsTable::ALL {
            lake.load_table(&table.ident()).await?;
        }
        Ok(LakeSink {
            _lock: lock,
            lake: lake.clone(),
            log,
            config: config.clone(),
            topic: EVENTS_TOPIC.to_string(),
            failures: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// Consumes `events` as consumer group `lake` until `shutdown` turns true, then flushes,
    /// commits and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let partitions =
            Consumer::wait_for_topic(self.log.as_ref(), &self.topic, &mut shutdown, IDLE_WAIT)
                .await
                .map_err(|e| Error::bus(format!("partitions of {}", self.topic), e))?;
        let Some(partitions) = partitions else {
            return Ok(());
        };
        let mut state = match SinkState::start(&self, partitions).await {
            Ok(state) => state,
            // S3 (or the disk) went away between opening the lake and now.
            Err(e) if e.retryable() => self.resume_after_failure(partitions, e).await?,
            Err(e) => return Err(e),
        };
        tracing::info!(
            topic = %self.topic,
            partitions,
            start = ?state.consumer.positions(),
            event_position = ?state.tables[0].committed,
            rejected_position = ?state.tables[1].committed,
            dedup_ids = state.written.len(),
            "lake sink started"
        );
        let mut shutting_down = false;
        let mut conflicts = 0u32;
        let mut read_backoff = Backoff::new(u32::MAX);
        // On shutdown the sink first reads up to the bus end offsets taken at that moment, so a
        // graceful stop commits everything that was acknowledged before it.
        let mut drain_to: Option<Offsets> = None;
        loop {
            if drain_to.is_none() && (shutting_down || *shutdown.borrow()) {
                let end = self
                    .log
                    .end_offsets(&self.topic)
                    .await
                    .map_err(|e| Error::bus(format!("end offsets of {}", self.topic), e))?;
                tracing::info!(position = ?state.consumer.positions(), end = ?end, "draining the bus before stopping");
                self.stopping.store(true, Ordering::Relaxed);
                drain_to = Some(end);
            }
            if drain_to
                .as_ref()
                .is_some_and(|end| state.consumer.reached(end))
            {
                break;
            }
            self.settle_if_done(&mut state, &mut conflicts).await?;
            // One partition's batch per read (round-robin); each read may fill a flush.
            let records = match state.consumer.fetch().await {
                Ok(records) => records,
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, "bus read failed, retrying");
                    if drain_to.is_some() && read_backoff.attempts() > 1 {
                        // Nothing could be read since the last failure either: stop rather
                        // than spin (what is left stays on the bus for the next start).
                        break;
                    }
                    read_backoff.wait().await;
                    continue;
                }
                Err(e) => return Err(Error::bus(format!("reading {}", self.topic), e)),
            };
            read_backoff = Backoff::new(u32::MAX);
            if !records.is_empty() {
                route_off_workers(&mut state, &records);
            }
            if state.should_flush(&self.config) {
                self.flush(&mut state, false, &mut conflicts).await?;
            }
            if !records.is_empty() {
                continue;
            }
            if drain_to.is_some() {
                // Nothing more to read although the end was not reached (e.g. retention cut
                // it): stop rather than spin.
                break;
            }
            state.report_lag().await;
            let timeout = state
                .flush_deadline(&self.config)
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(IDLE_WAIT)
                .min(IDLE_WAIT);
            tokio::select! {
                changed = shutdown.changed() => {
                    // A dropped sender also means: stop.
                    if changed.is_err() {
                        shutting_down = true;
                    }
                }
                waited = state.consumer.wait(timeout) => {
                    if let Err(e) = waited {
                        tracing::warn!(error = %e, "bus wait failed");
                        tokio::time::sleep(timeout.max(Duration::from_millis(100))).await;
                    }
                }
            }
        }
        self.flush(&mut state, true, &mut conflicts).await?;
        state.report_lag().await;
        tracing::info!(position = ?state.consumer.positions(), "lake sink stopped");
        Ok(())
    }

    /// Flushes; when another writer moved a table's position, drops the buffers and resumes
    /// from the tables' positions (a bounded number of times).
    async fn flush(
        &self,
        state: &mut SinkState,
        final_flush: bool,
        conflicts: &mut u32,
    ) -> Result<()> {
        let result = state.flush(self, final_flush).await;
        self.recover(state, result, conflicts).await
    }

    /// Takes the result of a finished background flush without starting a new one, so its
    /// errors surface promptly even when no new rows arrive.
    async fn settle_if_done(&self, state: &mut SinkState, conflicts: &mut u32) -> Result<()> {
        if !state.in_flight.as_ref().is_some_and(InFlight::is_finished) {
            return Ok(());
        }
        let result = state.settle().await;
        self.recover(state, result, conflicts).await
    }

    async fn recover(
        &self,
        state: &mut SinkState,
        result: Result<()>,
        conflicts: &mut u32,
    ) -> Result<()> {
        match result {
            Err(Error::Conflict { table, message }) if *conflicts < MAX_CONFLICT_RESYNCS => {
                *conflicts += 1;
                tracing::warn!(%table, %message, "table moved under the sink; resuming from the tables' positions");
                // On a final flush whatever was buffered is simply re-read by the next start.
                *state = SinkState::start(self, state.partitions).await?;
                Ok(())
            }
            Ok(()) => {
                *conflicts = 0;
                self.failures.store(0, Ordering::Relaxed);
                state.report_lag().await;
                Ok(())
            }
            Err(e) if e.retryable() => {
                *state = self.resume_after_failure(state.partitions, e).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A flush (or the sink's start) failed on something that comes back (S3 or the disk unreachable past the
    /// storage client's own retries): wait with growing backoff, then drop the buffers and
    /// resume from the tables' committed positions, re-reading the rest from the bus. A flush
    /// that committed one table but not the other is covered the same way. Nothing is
    /// acknowledged to anyone by the sink, so dropping buffers loses nothing.
    async fn resume_after_failure(&self, partitions: u32, mut error: Error) -> Result<SinkState> {
        loop {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.stopping.load(Ordering::Relaxed) && n > MAX_STOPPING_RETRIES {
                return Err(error);
            }
            let wait =
                Duration::from_millis(200u64.saturating_mul(1 << n.min(10))).min(MAX_FAILURE_WAIT);
            metrics::counter!("strata_lake_flush_failures_total").increment(1);
            tracing::warn!(error = %error, attempt = n, retry_in = ?wait, "lake flush failed; retrying from the committed positions");
            tokio::time::sleep(wait).await;
            match SinkState::start(self, partitions).await {
                Ok(fresh) => {
                    tracing::info!(start = ?fresh.consumer.positions(), "lake sink resumed after a storage failure");
                    return Ok(fresh);
                }
                Err(e) if e.retryable() => error = e,
                Err(e) => return Err(e),
            }
        }
    }
}

struct TableState {
    table: OdsTable,
    arrow_schema: ArrowSchemaRef,
    /// The table's position as stored in its own snapshot summary (what commits are fenced on).
    stored: Offsets,
    /// Where the table is complete: `stored`, or further when the other table's snapshots
    /// claim so (see `position::claim_key`). Routing and targets use this.
    committed: Offsets,
    last_commit: Instant,
}

impl TableState {
    fn new(table: OdsTable, loaded: &Table, topic: &str) -> Result<Self> {
        // The Arrow builders produce exactly Strata's columns in order; a table whose schema
        // was changed by another engine is refused up front with a clear message.
        let want: Vec<String> = table
            .schema()?
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let have: Vec<String> = loaded
            .metadata()
            .current_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        if want != have {
            return Err(Error::Internal(format!(
                "{} has columns {have:?}; this Strata writes {want:?}",
                table.ident()
            )));
        }
        let arrow_schema = schema_to_arrow_schema(loaded.metadata().current_schema())
            .map_err(|e| Error::iceberg(format!("arrow schema of {}", table.name()), e))?;
        Ok(TableState {
            table,
            arrow_schema: Arc::new(arrow_schema),
            stored: table_position(loaded, topic)?.unwrap_or_default(),
            committed: Offsets::new(),
            last_commit: Instant::now(),
        })
    }

    fn needs(&self, partition: u32, offset: u64) -> bool {
        offset >= self.committed.get(&partition).copied().unwrap_or(0)
    }
}

struct SinkState {
    partitions: u32,
    /// Reads every partition of the topic as group `lake`, from where the tables are complete.
    consumer: Consumer,
    events: EventBuffer,
    rejected: RejectedBuffer,
    bytes: usize,
    oldest: Option<Instant>,
    /// `[ods_event, ods_event_rejected]`
    tables: [TableState; 2],
    /// Message ids written to `ods.ods_event` within the de-duplication window, up to the read
    /// position (rows buffered included).
    written: Written,
    /// Copies were dropped since the last flush: `ods.ods_event`'s position is due at the next
    /// flush even without rows, so a run of copies does not read as lag (or get re-read).
    dropped_pending: bool,
    /// The flush being written and committed in the background.
    in_flight: Option<InFlight>,
}

impl SinkState {
    async fn start(sink: &LakeSink, partitions: u32) -> Result<SinkState> {
        let mut tables = Vec::with_capacity(2);
        let mut loaded_tables = Vec::with_capacity(2);
        for table in OdsTable::ALL {
            let loaded = sink.lake.load_table(&table.ident()).await?;
            tables.push(TableState::new(table, &loaded, &sink.topic)?);
            loaded_tables.push(loaded);
        }
        let loaded = loaded_tables;
        let [mut ev, mut rej]: [TableState; 2] = tables
            .try_into()
            .map_err(|_| Error::Internal("expected two tables".to_string()))?;
        let [ev_loaded, rej_loaded] = [&loaded[0], &loaded[1]];
        ev.committed = max_offsets(
            &ev.stored,
            &claimed_position(rej_loaded, &sink.topic, OdsTable::Event.name())?.unwrap_or_default(),
        );
        rej.committed = max_offsets(
            &rej.stored,
            &claimed_position(ev_loaded, &sink.topic, OdsTable::Rejected.name())?
                .unwrap_or_default(),
        );
        let next = min_offsets(&ev.committed, &rej.committed, partitions);
        // Every event below ods_event's position is written (or was dropped as a copy of one
        // that is): the window is what those records leave in it.
        let written_until: Offsets = (0..partitions)
            .filter_map(|p| ev.committed.get(&p).map(|&o| (p, o)))
            .collect();
        let started = Instant::now();
        let written = Written::rebuild(
            &sink.log,
            &sink.topic,
            &written_until,
            sink.config.dedup_window,
            sink.config.dedup_capacity,
        )
        .await?;
        if written.enabled() {
            tracing::info!(ids = written.len(), elapsed = ?started.elapsed(), "lake sink dedup window rebuilt from the bus");
        }
        metrics::gauge!("strata_lake_dedup_ids").set(written.len() as f64);
        let consumer = Consumer::assign(
            sink.log.clone(),
            Some(LAKE_GROUP),
            &sink.topic,
            (0..partitions).collect(),
            StartAt::At(next),
        )
        .await
        .map_err(|e| Error::bus(format!("positioning the reader of {}", sink.topic), e))?;
        Ok(SinkState {
            partitions,
            consumer,
            events: EventBuffer::default(),
            rejected: RejectedBuffer::default(),
            bytes: 0,
            oldest: None,
            tables: [ev, rej],
            written,
            dropped_pending: false,
            in_flight: None,
        })
    }

    fn route(&mut self, records: &[StoredRecord]) {
        let before = self.events.rows() + self.rejected.rows();
        let mut dropped = 0u64;
        for r in records {
            let at = BusPosition {
                partition: r.partition,
                offset: r.offset,
            };
            match BusRecordView::decode(&r.value) {
                Ok(BusRecordView::Event(e)) => {
                    if !self.tables[0].needs(r.partition, r.offset) {
                        continue;
                    }
                    if self.written.enabled()
                        && !self
                            .written
                            .first(dedup::key(&e.app, &e.message_id), r.timestamp_ms)
                    {
                        dropped += 1;
                        tracing::debug!(app = %e.app, message_id = %e.message_id, partition = r.partition, offset = r.offset, "message id already written within the window; dropped");
                        continue;
                    }
                    self.events.push_view(&e, at);
                    self.bytes += r.value.len();
                }
                Ok(BusRecordView::Rejected(x)) => {
                    if self.tables[1].needs(r.partition, r.offset) {
                        self.rejected.push(&RejectedRow::from(x.as_ref()), at);
                        self.bytes += r.value.len();
                    }
                }
                Err(err) => {
                    if self.tables[1].needs(r.partition, r.offset) {
                        tracing::warn!(partition = r.partition, offset = r.offset, error = %err, "undecodable bus record sent to ods_event_rejected");
                        let reason = format!("undecodable bus record: {err}");
                        let raw = String::from_utf8_lossy(&r.value);
                        let row = RejectedRow {
                            message_id: None,
                            app: "",
                            server_ts: r.timestamp_ms.saturating_mul(1000),
                            reason: &reason,
                            raw: &raw,
                        };
                        self.rejected.push(&row, at);
                        self.bytes += r.value.len();
                    }
                }
            }
        }
        if dropped > 0 {
            self.dropped_pending = true;
            metrics::counter!("strata_lake_duplicates_dropped_total").increment(dropped);
        }
        if self.oldest.is_none()
            && (self.events.rows() + self.rejected.rows() > before || dropped > 0)
        {
            self.oldest = Some(Instant::now());
        }
        if self.written.enabled() {
            metrics::gauge!("strata_lake_dedup_ids").set(self.written.len() as f64);
        }
    }

    fn flush_deadline(&self, config: &LakeConfig) -> Option<Instant> {
        self.oldest.map(|t| t + config.flush_interval)
    }

    fn should_flush(&self, config: &LakeConfig) -> bool {
        let rows = self.events.rows() + self.rejected.rows();
        if rows == 0 && !self.dropped_pending {
            return false;
        }
        rows >= config.flush_max_rows
            || self.bytes >= config.flush_max_bytes
            || self
                .flush_deadline(config)
                .is_some_and(|d| Instant::now() >= d)
    }

    /// Writes and commits both tables' buffers (each up to the current read position), then
    /// commits the advisory bus offsets. Encoding and committing run in a background task
    /// while the sink goes on reading (at most one flush in flight; the next flush, or
    /// shutdown, waits for it). A final flush runs inline.
    async fn flush(&mut self, sink: &LakeSink, final_flush: bool) -> Result<()> {
        self.settle().await?;
        let job = self.take_job(sink, final_flush);
        if job.tables.is_empty() {
            return Ok(());
        }
        if final_flush {
            let done = job.run().await?;
            self.apply(done).await;
        } else {
            self.in_flight = Some(InFlight(Some(tokio::spawn(job.run()))));
        }
        Ok(())
    }

    /// Waits for the flush in flight, if any, and takes its new positions.
    async fn settle(&mut self) -> Result<()> {
        if let Some(in_flight) = self.in_flight.take() {
            let done = in_flight.join().await?;
            self.apply(done).await;
        }
        Ok(())
    }

    /// Takes a finished flush's new positions, then commits what both tables hold as group
    /// `lake`'s position: advisory (lag metrics, retention), never read back as the truth.
    async fn apply(&mut self, done: FlushDone) {
        for (i, position) in done.committed {
            if let Some(state) = self.tables.get_mut(i) {
                state.stored = position.clone();
                state.committed = position;
                state.last_commit = Instant::now();
            }
        }
        let group_position = min_offsets(
            &self.tables[0].committed,
            &self.tables[1].committed,
            self.partitions,
        );
        if let Err(e) = self.consumer.commit_at(&group_position).await {
            tracing::warn!(error = %e, "committing bus offsets for group lake failed");
        }
    }

    /// Empties the buffers into a job for the tables that need a commit now.
    fn take_job(&mut self, sink: &LakeSink, final_flush: bool) -> FlushJob {
        let idle_interval = (sink.config.flush_interval * 6).max(MIN_POSITION_COMMIT_INTERVAL);
        let mut tables = Vec::new();
        let rows_by_table = [self.events.rows(), self.rejected.rows()];
        let next = self.consumer.positions();
        // What each table is complete up to once this job is in: with no rows buffered, every
        // record of its kind below the read position is already committed.
        let complete: Vec<Offsets> = self
            .tables
            .iter()
            .zip(rows_by_table)
            .map(|(state, rows)| {
                if rows == 0 {
                    max_offsets(&state.committed, next)
                } else {
                    state.committed.clone()
                }
            })
            .collect();
        for (i, state) in self.tables.iter().enumerate() {
            let target = max_offsets(&state.committed, next);
            let claims: Vec<(String, Offsets)> = self
                .tables
                .iter()
                .zip(&complete)
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (other, c))| (other.table.name().to_string(), c.clone()))
                .collect();
            let (groups, rows) = match state.table {
                OdsTable::Event => {
                    let rows = self.events.rows();
                    (Groups::Events(self.events.take_groups()), rows)
                }
                OdsTable::Rejected => {
                    let rows = self.rejected.rows();
                    (Groups::Rejected(self.rejected.take_groups()), rows)
                }
            };
            let moved = target != state.committed;
            let position_due = final_flush
                || state.last_commit.elapsed() >= idle_interval
                || (state.table == OdsTable::Event && self.dropped_pending);
            if rows == 0 && !(moved && position_due) {
                continue;
            }
            tables.push(TableJob {
                index: i,
                table: state.table,
                arrow_schema: state.arrow_schema.clone(),
                groups,
                rows,
                expected: state.stored.clone(),
                target,
                claims,
            });
        }
        self.bytes = 0;
        self.oldest = None;
        self.dropped_pending = false;
        FlushJob {
            lake: sink.lake.clone(),
            topic: sink.topic.clone(),
            tables,
        }
    }

    async fn report_lag(&self) {
        if let Ok(lag) = self.consumer.lag().await {
            metrics::gauge!("strata_bus_consumer_lag_records", "group" => LAKE_GROUP, "topic" => EVENTS_TOPIC)
                .set(lag as f64);
        }
    }
}

/// Buffered rows of one table, still as Arrow builders (finished in the flush task).
enum Groups {
    Events(Vec<(Struct, EventColumns)>),
    Rejected(Vec<(Struct, RejectedColumns)>),
}

struct TableJob {
    index: usize,
    table: OdsTable,
    arrow_schema: ArrowSchemaRef,
    groups: Groups,
    rows: usize,
    /// The table's stored position before this commit (fencing).
    expected: Offsets,
    target: Offsets,
    /// What this commit records about the other table.
    claims: Vec<(String, Offsets)>,
}

/// One flush: everything it needs, owned, so it can run in its own task.
struct FlushJob {
    lake: Lake,
    topic: String,
    tables: Vec<TableJob>,
}

/// What a flush committed: (table index, new position).
struct FlushDone {
    committed: Vec<(usize, Offsets)>,
}

impl FlushJob {
    async fn run(self) -> Result<FlushDone> {
        let started = Instant::now();
        let mut done = Vec::with_capacity(self.tables.len());
        for job in self.tables {
            let batches = match job.groups {
                Groups::Events(groups) => groups
                    .into_iter()
                    .map(|(k, c)| c.finish(job.arrow_schema.clone()).map(|b| (k, b)))
                    .collect::<Result<Vec<_>>>()?,
                Groups::Rejected(groups) => groups
                    .into_iter()
                    .map(|(k, c)| c.finish(job.arrow_schema.clone()).map(|b| (k, b)))
                    .collect::<Result<Vec<_>>>()?,
            };
            let ident = job.table.ident();
            let name = job.table.name();
            let loaded = self.lake.load_table(&ident).await?;
            // Parquet encoding is the flush's CPU: seconds of it for a big buffer.
            let files = off_workers(write_data_files(&loaded, batches)).await?;
            let file_bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
            let file_count = files.len();
            commit_with_position(
                &self.lake,
                &ident,
                files,
                &self.topic,
                Some(&job.expected),
                &job.target,
                &job.claims,
            )
            .await?;
            metrics::counter!("strata_lake_commits_total", "table" => name).increment(1);
            metrics::counter!("strata_lake_rows_total", "table" => name).increment(job.rows as u64);
            metrics::counter!("strata_lake_bytes_total", "table" => name).increment(file_bytes);
            tracing::info!(table = name, rows = job.rows, files = file_count, bytes = file_bytes, position = ?job.target, "committed");
            done.push((job.index, job.target));
        }
        metrics::histogram!("strata_lake_flush_seconds").record(started.elapsed().as_secs_f64());
        Ok(FlushDone { committed: done })
    }
}

/// Whether CPU-heavy sink work may leave the runtime worker it runs on (`block_in_place`):
/// on a multi-thread runtime the worker's queued tasks (the collector's requests, in `strata
/// serve`) move to another thread meanwhile instead of waiting behind it. A current-thread
/// runtime (tests) runs the work in place.
fn can_leave_worker() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Decodes a read into the buffers (~10 ms of CPU for 8,192 records) off the runtime workers.
fn route_off_workers(state: &mut SinkState, records: &[StoredRecord]) {
    off_workers_sync(|| state.route(records));
}

/// Runs CPU-heavy `work` off the runtime workers (see [`can_leave_worker`]).
fn off_workers_sync<R>(work: impl FnOnce() -> R) -> R {
    if can_leave_worker() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Runs `work` to completion off the runtime workers (see [`can_leave_worker`]).
async fn off_workers<F: std::future::Future>(work: F) -> F::Output {
    if can_leave_worker() {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work))
    } else {
        work.await
    }
}

/// The background flush task; aborted if the sink is dropped (a crash, or a cancelled run).
struct InFlight(Option<tokio::task::JoinHandle<Result<FlushDone>>>);

impl InFlight {
    fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(|h| h.is_finished())
    }

    async fn join(mut self) -> Result<FlushDone> {
        let Some(handle) = self.0.as_mut() else {
            return Err(Error::Internal("flush joined twice".to_string()));
        };
        let result = handle.await;
        self.0 = None;
        match result {
            Ok(done) => done,
            // A panic in the flush is the sink's panic: it reaches the task boundary, where
            // `strata serve`'s guard logs it and restarts the sink from the committed positions.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Internal(format!("flush task failed: {e}"))),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}
