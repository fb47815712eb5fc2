//! The `realtime` consumer inside `strata serve`: reads the `events` topic once for every
//! stream view, applies each event to each view's window state, and after every pass over the
//! bus (every partition read to its end, or a batch cap) writes the entities that changed —
//! rows, states and (every `checkpoint_interval`) each view's checkpoint — in one transaction
//! of the store. A new or changed view is backfilled from the
//! lake first (`ods.ods_event` at one snapshot, the window's worth of events) and continues
//! from the bus at exactly the position that snapshot holds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use futures::StreamExt;
use strata_bus::{Consumer, Log, Offsets, StartAt};
use strata_core::event::EVENTS_TOPIC;
use strata_core::BusRecordView;
use strata_features::FeatureView;
use strata_online::{OnlineStore, StreamTable};
use strata_table::Lake;
use tokio::sync::watch;

use crate::engine::{Checkpoint, ViewEngine};
use crate::fields::StreamEvent;
use crate::{Error, Result};

/// The consumer group the realtime consumer commits its (advisory) positions under.
pub const REALTIME_GROUP: &str = "realtime";

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct RealtimeOptions {
    /// How often each view's checkpoint is written (rows and states are written after every
    /// batch regardless).
    pub checkpoint_interval: Duration,
    /// The longest wait for new events before the idle clock moves and timers fire.
    pub idle_wait: Duration,
    /// Records per bus read.
    pub max_records: usize,
    /// A write happens once everything on the bus is read, or after this many records, or
    /// after `max_batch_time` of reading and applying — whichever comes first.
    pub max_batch_records: usize,
    pub max_batch_time: Duration,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        RealtimeOptions {
            checkpoint_interval: Duration::from_secs(1),
            idle_wait: Duration::from_millis(200),
            max_records: 4096,
            max_batch_records: 50_000,
            max_batch_time: Duration::from_millis(20),
        }
    }
}

/// How long a Redis-held view lock lasts without renewal.
const LOCK_LEASE: Duration = Duration::from_secs(30);

struct Running {
    engine: ViewEngine,
    table: StreamTable,
    written: u64,
}

/// The realtime consumer over a project's stream views.
pub struct Realtime {
    views: Vec<FeatureView>,
    store: OnlineStore,
    log: Arc<dyn Log>,
    lake: Option<Lake>,
    options: RealtimeOptions,
    owner: String,
    progress: Option<watch::Sender<Offsets>>,
}

impl Realtime {
    /// The consumer of `views`' stream views (batch views are ignored); `lake`: where new
    /// views backfill from (`None`: from the bus's oldest retained events).
    pub fn new(
        views: &[FeatureView],
        store: OnlineStore,
        log: Arc<dyn Log>,
        lake: Option<Lake>,
        options: RealtimeOptions,
    ) -> Realtime {
        Realtime {
            views: views
                .iter()
                .filter(|v| v.online && v.stream().is_some())
                .cloned()
                .collect(),
            store,
            log,
            lake,
            options,
            owner: format!(
                "realtime-{}-{}",
                std::process::id(),
                strata_core::time::now_micros()
            ),
            progress: None,
        }
    }

    /// Publishes the consumer's positions after every write of rows (tests, benchmarks).
    pub fn with_progress(mut self, progress: watch::Sender<Offsets>) -> Realtime {
        self.progress = Some(progress);
        self
    }

    /// The stream views it computes.
    pub fn view_names(&self) -> Vec<String> {
        self.views.iter().map(|v| v.name.clone()).collect()
    }

    /// Runs until `shutdown` turns true: writes what it computed and its checkpoints, then
    /// returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        if self.views.is_empty() {
            return Ok(());
        }
        let Some(partitions) = Consumer::wait_for_topic(
            self.log.as_ref(),
            EVENTS_TOPIC,
            &mut shutdown,
            Duration::from_secs(1),
        )
        .await?
        else {
            return Ok(());
        };
        let mut running = Vec::new();
        for view in &self.views {
            let Some(engine) = ViewEngine::new(view) else {
                continue;
            };
            let table = self
                .store
                .stream_table(&view.name, engine.columns(), false)
                .await?;
            // One consumer computes a view at a time (another `serve` may hold it: wait).
            while !table.try_lock(&self.owner, LOCK_LEASE).await? {
                tracing::info!(view = %view.name, "another process computes this stream view; waiting");
                tokio::select! {
                    _ = shutdown.changed() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
            running.push(Running {
                engine,
                table,
                written: 0,
            });
        }
        let result = self.compute(&mut running, partitions, shutdown).await;
        for r in &running {
            if let Err(e) = r.table.unlock(&self.owner).await {
                tracing::warn!(view = %r.engine.name, error = %e, "releasing the stream view lock");
            }
        }
        result
    }

    async fn compute(
        &self,
        running: &mut [Running],
        partitions: u32,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        // Resume each view from its checkpoint; backfill the new or changed ones.
        let mut fresh = Vec::new();
        for (i, r) in running.iter_mut().enumerate() {
            let checkpoint = r
                .table
                .checkpoint()
                .await?
                .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok());
            match checkpoint {
                Some(cp) if cp.fingerprint == r.engine.fingerprint() => {
                    r.engine.restore(&cp);
                    let loaded = load_states(r).await?;
                    tracing::info!(view = %r.engine.name, entities = loaded, position = ?cp.positions, "stream view resumed from its checkpoint");
                }
                previous => {
                    if previous.is_some() {
                        tracing::info!(view = %r.engine.name, "stream view definition changed: recomputing it");
                    }
                    r.table = self
                        .store
                        .stream_table(&r.engine.name, r.engine.columns(), true)
                        .await?;
                    fresh.push(i);
                }
            }
        }
        if !fresh.is_empty() {
            let start = self.backfill(running, &fresh).await?;
            for i in &fresh {
                let r = &mut running[*i];
                let backfilled = start.is_some();
                let positions = match &start {
                    Some(p) => p.clone(),
                    None => self.log.start_offsets(EVENTS_TOPIC).await?,
                };
                r.engine.start_at(positions.clone(), backfilled);
                r.engine
                    .advance(strata_core::time::now_micros() - lateness_us(&r.engine));
                let w = start_write(&self.store, std::slice::from_mut(r), positions, true).await?;
                self.finish(w, std::slice::from_mut(r), None).await?;
            }
        }
        let mut from = Offsets::new();
        for p in 0..partitions {
            let min = running
                .iter()
                .map(|r| r.engine.resume().get(&p).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            from.insert(p, min);
        }
        let mut consumer = Consumer::assign(
            self.log.clone(),
            Some(REALTIME_GROUP),
            EVENTS_TOPIC,
            (0..partitions).collect(),
            StartAt::At(from),
        )
        .await?
        .with_limits(self.options.max_records, 8 << 20);
        tracing::info!(views = ?running.iter().map(|r| r.engine.name.clone()).collect::<Vec<_>>(), position = ?consumer.positions(), "realtime consumer started");

        let mut last_checkpoint = Instant::now();
        let mut renewed = Instant::now();
        // The write of the previous pass, still committing while this pass reads and applies
        // (at most one: writes land in order).
        let mut inflight: Option<InFlight> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // While a write is in flight, come back soon to publish it even if the bus is quiet.
            let wait = match inflight {
                Some(_) => INFLIGHT_POLL.min(self.options.idle_wait),
                None => self.options.idle_wait,
            };
            let records = tokio::select! {
                r = consumer.poll(wait) => r,
                _ = shutdown.changed() => break,
            };
            let records = match records {
                Ok(r) => r,
                Err(e) if e.retryable() => {
                    tracing::warn!(error = %e, "bus read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let wall = strata_core::time::now_micros();
            if records.is_empty() {
                // Caught up: time moves on by the wall clock, so windows empty without events.
                for r in running.iter_mut() {
                    let lateness = lateness_us(&r.engine);
                    r.engine.advance(wall - lateness);
                }
            } else {
                // Read on through every partition that has records before writing: one write
                // (one transaction) per pass over the bus, not one per partition's batch.
                let started = Instant::now();
                let mut read = apply(running, &records, wall);
                while read < self.options.max_batch_records
                    && started.elapsed() < self.options.max_batch_time
                {
                    let more = match consumer.fetch().await {
                        Ok(more) => more,
                        Err(e) if e.retryable() => {
                            tracing::warn!(error = %e, "bus read failed; writing what was read");
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if more.is_empty() {
                        break;
                    }
                    read += apply(running, &more, wall);
                }
                metrics::counter!("strata_stream_records_total").increment(read as u64);
                metrics::histogram!("strata_stream_apply_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            let checkpoint = last_checkpoint.elapsed() >= self.options.checkpoint_interval;
            let changed = running.iter().any(|r| r.engine.has_changes());
            if !changed && !checkpoint {
                if records.is_empty() {
                    if let Some(w) = inflight.take() {
                        self.finish(w, running, Some(&consumer)).await?;
                    }
                }
                continue;
            }
            if let Some(w) = inflight.take() {
                self.finish(w, running, Some(&consumer)).await?;
            }
            let positions = consumer.positions().clone();
            inflight = Some(start_write(&self.store, running, positions, checkpoint).await?);
            if checkpoint {
                last_checkpoint = Instant::now();
            }
            if renewed.elapsed() >= LOCK_LEASE / 3 {
                for r in running.iter() {
                    if !r.table.try_lock(&self.owner, LOCK_LEASE).await? {
                        return Err(Error::Lost(format!(
                            "stream view {}: another process took its lock",
                            r.engine.name
                        )));
                    }
                }
                renewed = Instant::now();
            }
        }
        if let Some(w) = inflight.take() {
            self.finish(w, running, Some(&consumer)).await?;
        }
        let positions = consumer.positions().clone();
        let last = start_write(&self.store, running, positions.clone(), true).await?;
        self.finish(last, running, Some(&consumer)).await?;
        tracing::info!(position = ?positions, "realtime consumer stopped");
        Ok(())
    }

    /// Waits for a write to commit, then counts it, publishes its positions and, after a
    /// checkpoint, commits the group's (advisory) positions.
    async fn finish(
        &self,
        w: InFlight,
        running: &mut [Running],
        consumer: Option<&Consumer>,
    ) -> Result<()> {
        match w.task.await {
            Ok(result) => result?,
            Err(e) => {
                return Err(Error::Lost(format!(
                    "the stream views' write task failed: {e}"
                )));
            }
        }
        metrics::histogram!("strata_stream_visible_seconds")
            .record(w.started.elapsed().as_secs_f64());
        for (r, n) in running.iter_mut().zip(&w.rows) {
            r.written += n;
            metrics::counter!("strata_stream_rows_written_total", "view" => r.engine.name.clone())
                .increment(*n);
        }
        if let Some(p) = &self.progress {
            p.send_if_modified(|old| {
                let changed = *old != w.positions;
                if changed {
                    old.clone_from(&w.positions);
                }
                changed
            });
        }
        if w.checkpoint {
            for r in running.iter() {
                let view = r.engine.name.clone();
                metrics::gauge!("strata_stream_entities", "view" => view.clone())
                    .set(r.engine.entities() as f64);
                metrics::gauge!("strata_stream_late_events", "view" => view.clone())
                    .set(r.engine.counts.late as f64);
                metrics::gauge!("strata_stream_clock_seconds", "view" => view)
                    .set(r.engine.clock().max(0) as f64 / 1e6);
            }
            if let Some(consumer) = consumer {
                if let Err(e) = consumer.commit_at(&w.positions).await {
                    tracing::debug!(error = %e, "committing the realtime group's positions");
                }
                if let Ok(lag) = consumer.lag().await {
                    metrics::gauge!("strata_stream_lag_records").set(lag as f64);
                }
            }
        }
        Ok(())
    }

    /// Backfills the fresh views from the lake: the events of their longest window at one
    /// snapshot of `ods.ods_event`, oldest first. Returns the bus position that snapshot
    /// holds (`None`: no lake or no events in it; the views start at the bus's oldest record).
    async fn backfill(&self, running: &mut [Running], fresh: &[usize]) -> Result<Option<Offsets>> {
        let Some(lake) = &self.lake else {
            return Ok(None);
        };
        let ident = strata_table::schema::OdsTable::Event.ident();
        let table = match lake.load_table(&ident).await {
            Ok(t) => t,
            Err(strata_table::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(None);
        };
        let Some(position) = strata_table::position::table_position(&table, EVENTS_TOPIC)? else {
            return Ok(None);
        };
        let horizon = fresh
            .iter()
            .map(|i| running[*i].engine.spec().horizon())
            .max()
            .unwrap_or_default();
        let from_us = strata_core::time::now_micros() - horizon.as_micros() as i64;
        let mut columns: BTreeSet<&'static str> =
            ["event_ts", "event_type", "event"].into_iter().collect();
        for i in fresh {
            let spec = running[*i].engine.spec();
            columns.insert(spec.key.lake_column());
            for a in &spec.aggregates {
                columns.extend(a.field.iter().map(|f| f.lake_column()));
                columns.extend(a.filters.iter().map(|(f, _)| f.lake_column()));
            }
        }
        let list: Vec<&str> = columns.iter().copied().collect();
        let sql = format!(
            "SELECT {} FROM ods.ods_event VERSION AS OF {} WHERE event_ts >= to_timestamp_micros({from_us}) ORDER BY event_ts",
            list.join(", "),
            snapshot.snapshot_id()
        );
        let started = Instant::now();
        let session = strata_sql::SqlSession::new(lake).await?;
        let (_, mut stream) = session.query_stream(&sql).await?;
        let wall = strata_core::time::now_micros();
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| Error::Backfill(e.to_string()))?;
            let col = |name: &str| -> Option<arrow::array::ArrayRef> {
                let c = batch.column_by_name(name)?;
                match c.data_type() {
                    DataType::Utf8 => Some(c.clone()),
                    _ => arrow::compute::cast(c, &DataType::Utf8).ok(),
                }
            };
            let Some(ts) = batch
                .column_by_name("event_ts")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned())
            else {
                return Err(Error::Backfill(
                    "ods.ods_event.event_ts is not a microsecond timestamp".into(),
                ));
            };
            let texts: Vec<(&str, Option<arrow::array::ArrayRef>)> =
                list.iter().map(|c| (*c, col(c))).collect();
            let text = |name: &str, i: usize| -> Option<String> {
                let (_, a) = texts.iter().find(|(n, _)| *n == name)?;
                let a = a.as_ref()?.as_string_opt::<i32>()?;
                (!a.is_null(i)).then(|| a.value(i).to_string())
            };
            for i in 0..batch.num_rows() {
                if ts.is_null(i) {
                    continue;
                }
                let e = StreamEvent {
                    event_ts: ts.value(i),
                    kind: text("event_type", i).unwrap_or_default().into(),
                    event: text("event", i).map(Into::into),
                    user_id: text("user_id", i).map(Into::into),
                    anonymous_id: text("anonymous_id", i).map(Into::into),
                    message_id: text("message_id", i).map(Into::into),
                    ip: text("ip", i).map(Into::into),
                    country: text("country", i).map(Into::into),
                    device: text("device", i).map(Into::into),
                    os: text("os", i).map(Into::into),
                    app: text("app", i).map(Into::into),
                    app_version: text("app_version", i).map(Into::into),
                    user_agent: text("user_agent", i).map(Into::into),
                    properties: text("properties", i).map(Into::into),
                    context: text("context", i).map(Into::into),
                    traits: text("traits", i).map(Into::into),
                    ..Default::default()
                };
                for j in fresh {
                    running[*j].engine.apply(&e, None, wall);
                }
                rows += 1;
            }
        }
        tracing::info!(
            views = ?fresh.iter().map(|i| running[*i].engine.name.clone()).collect::<Vec<_>>(),
            rows,
            seconds = started.elapsed().as_secs_f64(),
            position = ?position,
            "stream views backfilled from the lake"
        );
        Ok(Some(position))
    }
}

fn lateness_us(engine: &ViewEngine) -> i64 {
    engine.spec().allowed_lateness.as_micros() as i64
}

/// Loads a view's stored per-entity state (after a restart).
async fn load_states(r: &mut Running) -> Result<u64> {
    let mut cursor = None;
    let mut loaded = 0u64;
    let mut bad = 0u64;
    loop {
        let (entries, next) = r.table.scan_states(cursor, 10_000).await?;
        for (key, bytes) in entries {
            if r.engine.load(key, &bytes) {
                loaded += 1;
            } else {
                bad += 1;
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if bad > 0 {
        tracing::warn!(view = %r.engine.name, bad, "unreadable stream state entries ignored");
    }
    Ok(loaded)
}

/// Applies bus records to every view; how many records were read.
fn apply(running: &mut [Running], records: &[strata_bus::StoredRecord], wall: i64) -> usize {
    for rec in records {
        let view = match BusRecordView::decode(&rec.value) {
            Ok(BusRecordView::Event(e)) => e,
            Ok(BusRecordView::Rejected(_)) => continue,
            Err(e) => {
                metrics::counter!("strata_stream_undecodable_records_total").increment(1);
                tracing::warn!(partition = rec.partition, offset = rec.offset, error = %e, "undecodable bus record skipped");
                continue;
            }
        };
        let event = StreamEvent::from_view(view);
        for r in running.iter_mut() {
            r.engine
                .apply(&event, Some((rec.partition, rec.offset)), wall);
        }
    }
    records.len()
}

/// How soon the loop comes back while a write is in flight (to publish it when the bus is
/// quiet).
const INFLIGHT_POLL: Duration = Duration::from_millis(2);

/// A write handed to the store, committing in the background.
struct InFlight {
    task: tokio::task::JoinHandle<strata_online::Result<()>>,
    /// The consumer's positions the write makes current.
    positions: Offsets,
    checkpoint: bool,
    /// Rows written per view (in `running`'s order).
    rows: Vec<u64>,
    /// When the pass's changes were taken.
    started: Instant,
}

/// Starts writing what changed in every view — rows, states, emptied states and (with
/// `checkpoint`) each view's checkpoint at `positions` and its entity count — as one unit of
/// the store: one transaction on the embedded store, one `MULTI`/`EXEC` on Redis.
async fn start_write(
    store: &OnlineStore,
    running: &mut [Running],
    positions: Offsets,
    checkpoint: bool,
) -> Result<InFlight> {
    let started = Instant::now();
    let mut writes = Vec::new();
    let mut rows = Vec::with_capacity(running.len());
    for r in running.iter_mut() {
        let mut n = 0;
        if r.engine.has_changes() {
            let changes = r.engine.take_changes(&positions);
            n = changes.rows.len() as u64;
            writes.push(r.table.rows(&changes.rows));
            writes.push(r.table.states(changes.states));
            writes.push(r.table.states_removed(changes.emptied));
        }
        if checkpoint {
            let cp = r.engine.checkpoint(&positions);
            let bytes = serde_json::to_vec(&cp).map_err(|e| Error::Backfill(e.to_string()))?;
            writes.push(r.table.checkpoint_write(bytes));
            writes.extend(
                r.table
                    .entities_write(r.engine.entities() as u64, r.written + n)
                    .await?,
            );
        }
        rows.push(n);
    }
    writes.retain(|w| !w.is_empty());
    let store = store.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let result = store.write_batch(writes).await;
        metrics::histogram!("strata_stream_flush_seconds").record(started.elapsed().as_secs_f64());
        result
    });
    Ok(InFlight {
        task,
        positions,
        checkpoint,
        rows,
        started,
    })
}
