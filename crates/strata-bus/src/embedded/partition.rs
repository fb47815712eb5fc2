//! One partition: its segments, its group-commit writer task, and positional reads.
//!
//! The writer task is the only code that writes the active segment. It collects the appends
//! queued within the group-commit window, encodes them into one buffer, and on a blocking
//! thread does one `pwrite` + one `fdatasync`. Only then does it publish the new segment size
//! and high watermark (so readers never see a record that a crash could lose) and complete the
//! waiting appenders.
//!
//! A failed write or fsync (a full disk, an I/O error) or a panic fails that batch's appends —
//! none of them is acknowledged — and the file is cut back to its last durable size (and the
//! cut fsync'd) before anything else is written. The partition takes appends again as soon as
//! that succeeds: a full disk is a state the log leaves by itself once space returns.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::fsync_dir;
use super::segment::{encode, FrameReader, Next, Segment, INDEX_INTERVAL};
use crate::error::{Error, Result};
use crate::log::{Offset, Partition, Record, StoredRecord};

/// Stop collecting a group commit once it holds this many bytes.
const MAX_BATCH_BYTES: u64 = 8 << 20;

/// Bytes accepted by `append` but not yet fsync'd, across the whole log.
#[derive(Debug)]
pub(crate) struct Pending {
    bytes: AtomicU64,
    max: u64,
}

impl Pending {
    pub(crate) fn new(max: u64) -> Self {
        Pending {
            bytes: AtomicU64::new(0),
            max,
        }
    }

    /// Reserves `n` bytes, or returns the current amount if that would exceed the bound.
    pub(crate) fn try_acquire(&self, n: u64) -> std::result::Result<(), u64> {
        let mut cur = self.bytes.load(Ordering::Relaxed);
        loop {
            let next = cur.checked_add(n).filter(|v| *v <= self.max).ok_or(cur)?;
            match self
                .bytes
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    metrics::gauge!("strata_bus_pending_bytes").set(next as f64);
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn release(&self, n: u64) {
        let prev = self.bytes.fetch_sub(n, Ordering::AcqRel);
        metrics::gauge!("strata_bus_pending_bytes").set(prev.saturating_sub(n) as f64);
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }
}

/// One queued append for one partition.
pub(crate) struct AppendReq {
    pub records: Vec<Record>,
    /// Framed bytes, reserved in [`Pending`]; the writer releases them.
    pub bytes: u64,
    /// First offset assigned (the rest follow contiguously).
    pub done: oneshot::Sender<Result<Offset>>,
}

#[derive(Debug)]
pub(crate) struct PartitionLog {
    pub topic: Arc<str>,
    pub id: Partition,
    pub dir: PathBuf,
    /// Oldest first; the last one is the active segment. Never empty.
    pub segments: Arc<RwLock<Vec<Arc<Segment>>>>,
    /// The high watermark: one past the last durable (and so visible) offset.
    pub hw: Arc<watch::Sender<Offset>>,
    /// What the writer last saw of the storage.
    pub health: Arc<WriterHealth>,
    tx: Mutex<Option<mpsc::UnboundedSender<AppendReq>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Loads a partition directory (creating the first segment if there is none), recovers its
/// last segment, and starts its writer task.
pub(crate) fn open_partition(
    topic: Arc<str>,
    id: Partition,
    dir: PathBuf,
    config: WriterConfig,
    pending: Arc<Pending>,
) -> Result<Arc<PartitionLog>> {
    let segments = load_segments(&dir)?;
    let active = segments
        .last()
        .cloned()
        .ok_or_else(|| Error::Corrupt(format!("no segment in {}", dir.display())))?;
    let meta = active.meta();
    let hw = Arc::new(watch::channel(meta.end).0);
    let segments = Arc::new(RwLock::new(segments));
    let (tx, rx) = mpsc::unbounded_channel();
    let state = WriterState {
        topic: topic.clone(),
        dir: dir.clone(),
        segments: segments.clone(),
        active,
        size: meta.size,
        next_offset: meta.end,
        last_indexed: meta.index.last().map_or(0, |(_, p)| *p),
        segment_bytes: config.segment_bytes,
        buf: Vec::new(),
        tail_dirty: false,
        must_roll: false,
    };
    let health = Arc::new(WriterHealth::default());
    let target = WriterTarget {
        topic: topic.clone(),
        id,
        hw: hw.clone(),
        health: health.clone(),
    };
    let handle = tokio::spawn(run_writer(target, state, rx, config, pending));
    Ok(Arc::new(PartitionLog {
        topic,
        id,
        dir,
        segments,
        hw,
        health,
        tx: Mutex::new(Some(tx)),
        writer: Mutex::new(Some(handle)),
    }))
}

fn load_segments(dir: &Path) -> Result<Vec<Arc<Segment>>> {
    let ctx = || format!("listing {}", dir.display());
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let entry = entry.map_err(|e| Error::io(ctx(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            match stem.parse::<u64>() {
                Ok(base) => bases.push(base),
                Err(_) => tracing::warn!(file = %name, "ignoring stray file in partition"),
            }
        } else if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    let mut segments = Vec::with_capacity(bases.len().max(1));
    let last = bases.len().saturating_sub(1);
    for (i, base) in bases.iter().enumerate() {
        let path = Segment::log_path(dir, *base);
        let seg = Segment::open(path.clone(), *base, i == last)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if let Some(prev) = segments.last().map(|s: &Arc<Segment>| s.meta()) {
            if prev.end != *base {
                tracing::warn!(
                    partition = %dir.display(),
                    expected = prev.end,
                    base = *base,
                    "offset gap between segments"
                );
            }
        }
        segments.push(Arc::new(seg));
    }
    if segments.is_empty() {
        let seg = Segment::create(dir, 0)
            .map_err(|e| Error::io(format!("creating first segment in {}", dir.display()), e))?;
        fsync_dir(dir)?;
        segments.push(Arc::new(seg));
    }
    Ok(segments)
}

#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    pub segment_bytes: u64,
    pub window: Duration,
}

/// How long a writer whose segment has an unacknowledged tail it could not cut waits between
/// two attempts while no append comes.
const REPAIR_INTERVAL: Duration = Duration::from_secs(1);

/// What a partition's writer last saw of its storage, for [`crate::Log::health`].
#[derive(Debug, Default)]
pub(crate) struct WriterHealth {
    /// One of the `HEALTH_*` values.
    state: AtomicU8,
    /// With `HEALTH_FULL`: the bytes the failed group commit needed.
    needed: AtomicU64,
}

const HEALTH_OK: u8 = 0;
/// The last group commit failed for want of space.
const HEALTH_FULL: u8 = 1;
/// The segment has a tail that may hold unacknowledged bytes and it could not be cut yet.
const HEALTH_FAILING: u8 = 2;

impl WriterHealth {
    fn set(&self, state: u8, needed: u64) {
        self.needed.store(needed, Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
    }

    /// `None` when fine; `Some(bytes needed)` after a commit failed for want of space;
    /// `Some(u64::MAX)` while the tail cannot be cut.
    pub(crate) fn blocked(&self) -> Option<u64> {
        match self.state.load(Ordering::Acquire) {
            HEALTH_FULL => Some(self.needed.load(Ordering::Relaxed)),
            HEALTH_FAILING => Some(u64::MAX),
            _ => None,
        }
    }
}

/// Owned by the writer task; moved to a blocking thread for each group commit.
struct WriterState {
    topic: Arc<str>,
    dir: PathBuf,
    segments: Arc<RwLock<Vec<Arc<Segment>>>>,
    active: Arc<Segment>,
    /// Durable bytes of the active segment.
    size: u64,
    next_offset: Offset,
    /// Position of the last index entry of the active segment.
    last_indexed: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
    /// A write, an fsync or the writer itself failed after bytes past `size` may have reached
    /// the file: they belong to no acknowledged append and are cut off (and the cut fsync'd)
    /// before anything else is written. Until then the partition refuses appends.
    tail_dirty: bool,
    /// A roll was started and did not finish: the next commit rolls before it writes, so no
    /// record lands in the old segment behind a (possibly created) newer one.
    must_roll: bool,
}

impl WriterState {
    /// Writes and fsyncs the batch; returns the first offset of each request's records.
    ///
    /// State changes only at the very end, after the fsync: an error or a panic anywhere
    /// before leaves `size`, `next_offset` and the segment list describing what is durable, and
    /// `tail_dirty` makes the next call cut whatever else reached the file.
    fn commit(&mut self, batch: &[Vec<Record>]) -> Result<Vec<Offset>> {
        self.repair()?;
        let total: u64 = batch
            .iter()
            .flatten()
            .map(|r| super::segment::frame_len(r) as u64)
            .sum();
        if self.must_roll || (self.size > 0 && self.size + total > self.segment_bytes) {
            self.must_roll = true;
            self.roll()?;
        }
        self.buf.clear();
        self.buf.reserve(total as usize);
        let mut firsts = Vec::with_capacity(batch.len());
        let mut offset = self.next_offset;
        let mut new_index = Vec::new();
        let mut last_indexed = self.last_indexed;
        let mut max_ts = i64::MIN;
        for records in batch {
            firsts.push(offset);
            for r in records {
                let pos = self.size + self.buf.len() as u64;
                if pos.saturating_sub(last_indexed) >= INDEX_INTERVAL {
                    new_index.push((offset, pos));
                    last_indexed = pos;
                }
                encode(&mut self.buf, offset, r);
                max_ts = max_ts.max(r.timestamp_ms);
                offset += 1;
            }
        }
        // From here until the fsync succeeds, bytes past `size` may be in the file.
        self.tail_dirty = true;
        let file = &self.active.file;
        if let Err(e) = file.write_all_at(&self.buf, self.size) {
            let err = Error::io(format!("writing {}", self.active.path.display()), e);
            self.try_repair();
            return Err(err);
        }
        let started = Instant::now();
        #[cfg(test)]
        let synced = faults::before_fsync(&self.dir).and_then(|()| file.sync_data());
        #[cfg(not(test))]
        let synced = file.sync_data();
        if let Err(e) = synced {
            // The batch is not acknowledged. What of it reached the disk is unknown (and after
            // a failed fsync the kernel may have dropped the dirty pages), so it is cut off:
            // the file ends again at the last durable position before anything else goes in.
            tracing::error!(segment = %self.active.path.display(), error = %e, "fsync failed; cutting the unacknowledged tail");
            let err = Error::io(format!("fsync {}", self.active.path.display()), e);
            self.try_repair();
            return Err(err);
        }
        metrics::histogram!("strata_bus_fsync_seconds").record(started.elapsed().as_secs_f64());
        self.tail_dirty = false;
        self.size += self.buf.len() as u64;
        self.next_offset = offset;
        self.last_indexed = last_indexed;
        {
            let mut meta = self.active.meta.write().unwrap_or_else(|e| e.into_inner());
            meta.size = self.size;
            meta.end = offset;
            meta.max_timestamp = meta.max_timestamp.max(max_ts);
            meta.index.extend(new_index);
        }
        if self.buf.capacity() > 2 * MAX_BATCH_BYTES as usize {
            self.buf = Vec::new();
        }
        Ok(firsts)
    }

    /// Cuts the active segment back to its durable size and fsyncs that, if a failed commit
    /// may have left bytes behind it.
    fn repair(&mut self) -> Result<()> {
        if !self.tail_dirty {
            return Ok(());
        }
        let file = &self.active.file;
        file.set_len(self.size)
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                Error::io(
                    format!(
                        "cutting the unacknowledged tail of {}",
                        self.active.path.display()
                    ),
                    e,
                )
            })?;
        self.tail_dirty = false;
        tracing::debug!(topic = %self.topic, segment = %self.active.path.display(), size = self.size, "segment cut back to its last durable position");
        Ok(())
    }

    /// [`Self::repair`] right after a failure; a failure of its own is retried later.
    fn try_repair(&mut self) {
        if let Err(e) = self.repair() {
            tracing::warn!(topic = %self.topic, error = %e, "cannot cut the unacknowledged tail yet; appends wait for it");
        }
    }

    /// Closes the active segment and starts a new one at `next_offset`. On failure
    /// `must_roll` stays set, so the next commit tries again (re-creating the file) before it
    /// writes anything.
    fn roll(&mut self) -> Result<()> {
        let meta = self.active.meta();
        if let Err(e) = self.active.write_index(&meta) {
            tracing::warn!(segment = %self.active.path.display(), error = %e, "cannot write index");
        }
        let seg = Segment::create(&self.dir, self.next_offset)
            .map_err(|e| Error::io(format!("creating segment in {}", self.dir.display()), e))?;
        fsync_dir(&self.dir)?;
        tracing::debug!(
            topic = %self.topic,
            segment = %seg.path.display(),
            "rolled segment"
        );
        let seg = Arc::new(seg);
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        self.active = seg;
        self.size = 0;
        self.last_indexed = 0;
        self.must_roll = false;
        Ok(())
    }
}

/// What the writer task publishes to; it holds no reference to the partition itself, so
/// dropping the log closes the queue and ends the task.
struct WriterTarget {
    topic: Arc<str>,
    id: Partition,
    hw: Arc<watch::Sender<Offset>>,
    health: Arc<WriterHealth>,
}

/// Runs `f` on the state on a blocking thread. A panic inside is caught there: the state
/// survives (marked for a tail cut, see [`WriterState::commit`]) and the panic becomes an error.
async fn on_blocking_thread<T: Send + 'static>(
    part: &WriterTarget,
    state: &mut Option<WriterState>,
    f: impl FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
) -> Result<T> {
    let Some(mut st) = state.take() else {
        return Err(Error::Closed);
    };
    let joined = tokio::task::spawn_blocking(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut st)));
        let r = r.unwrap_or_else(|panic| {
            metrics::counter!("strata_bus_writer_panics_total").increment(1);
            tracing::error!(topic = %st.topic, panic = %panic_message(&*panic), "bus writer panicked; failing its batch");
            st.tail_dirty = true;
            st.try_repair();
            Err(Error::io(
                "bus writer",
                std::io::Error::other(format!("panicked: {}", panic_message(&*panic))),
            ))
        });
        (st, r)
    })
    .await;
    match joined {
        Ok((st, r)) => {
            *state = Some(st);
            r
        }
        Err(e) => {
            // Only a runtime shutting down cancels a blocking task.
            tracing::error!(topic = %part.topic, partition = part.id, error = %e, "writer thread failed");
            Err(Error::Closed)
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic".to_string()
    }
}

/// Publishes the writer's view of its storage after a commit or a repair.
fn report_health(part: &WriterTarget, state: &Option<WriterState>, failed: Option<(&Error, u64)>) {
    let dirty = state.as_ref().is_none_or(|s| s.tail_dirty);
    match failed {
        _ if dirty => part.health.set(HEALTH_FAILING, 0),
        Some((e, bytes)) if e.is_storage_full() => part.health.set(HEALTH_FULL, bytes),
        _ => part.health.set(HEALTH_OK, 0),
    }
}

/// A copy of `e` for the second and later waiters of a failed group commit: the same kind
/// (so a full disk stays a full disk for every caller), the same text.
fn replicate(e: &Error) -> Error {
    match e {
        Error::StorageFull { context, source } | Error::Io { context, source } => Error::io(
            context.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
        Error::Closed => Error::Closed,
        other => Error::Corrupt(other.to_string()),
    }
}

async fn run_writer(
    part: WriterTarget,
    state: WriterState,
    mut rx: mpsc::UnboundedReceiver<AppendReq>,
    config: WriterConfig,
    pending: Arc<Pending>,
) {
    let mut state = Some(state);
    // Group commits failed in a row: the first is logged as a warning, the rest at debug
    // level (a full disk under load fails thousands), the recovery with their count.
    let mut failed_in_a_row = 0u64;
    let topic_label = part.topic.to_string();
    loop {
        let dirty = state.as_ref().is_some_and(|s| s.tail_dirty);
        let first = if dirty {
            // Keep trying to cut the tail while idle, so the partition (and `/health`) comes
            // back once the disk does, without waiting for the next append.
            tokio::select! {
                r = rx.recv() => r,
                _ = tokio::time::sleep(REPAIR_INTERVAL) => {
                    let repaired = on_blocking_thread(&part, &mut state, WriterState::repair).await;
                    if repaired.is_ok() {
                        report_health(&part, &state, None);
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = first else { break };
        let mut bytes = first.bytes;
        let mut reqs = vec![first];
        let deadline = tokio::time::Instant::now() + config.window;
        loop {
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.bytes;
                        reqs.push(r);
                    }
                    Err(_) => break,
                }
            }
            if bytes >= MAX_BATCH_BYTES || config.window.is_zero() {
                break;
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        bytes += r.bytes;
                        reqs.push(r);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut batch = Vec::with_capacity(reqs.len());
        let mut waiters = Vec::with_capacity(reqs.len());
        for r in reqs {
            batch.push(r.records);
            waiters.push(r.done);
        }
        let records: usize = batch.iter().map(Vec::len).sum();
        let result = on_blocking_thread(&part, &mut state, move |st| st.commit(&batch)).await;
        pending.release(bytes);
        match result {
            Ok(firsts) => {
                report_health(&part, &state, None);
                if failed_in_a_row > 0 {
                    tracing::info!(topic = %part.topic, partition = part.id, failed = failed_in_a_row, "group commits succeed again");
                    failed_in_a_row = 0;
                }
                if let Some(st) = &state {
                    part.hw.send_replace(st.next_offset);
                }
                metrics::counter!("strata_bus_appended_records_total", "topic" => topic_label.clone())
                    .increment(records as u64);
                metrics::counter!("strata_bus_appended_bytes_total", "topic" => topic_label.clone())
                    .increment(bytes);
                for (w, first) in waiters.into_iter().zip(firsts) {
                    let _ = w.send(Ok(first));
                }
            }
            Err(e) => {
                report_health(&part, &state, Some((&e, bytes)));
                if e.is_storage_full() {
                    metrics::counter!("strata_bus_storage_full_total").increment(1);
                }
                failed_in_a_row += 1;
                if failed_in_a_row == 1 {
                    tracing::warn!(topic = %part.topic, partition = part.id, error = %e, records, "group commit failed; its appends are not acknowledged");
                } else {
                    tracing::debug!(topic = %part.topic, partition = part.id, error = %e, records, failed = failed_in_a_row, "group commit failed again");
                }
                let mut waiters = waiters.into_iter();
                let head = waiters.next();
                for w in waiters {
                    let _ = w.send(Err(replicate(&e)));
                }
                if let Some(w) = head {
                    let _ = w.send(Err(e));
                }
            }
        }
    }
    tracing::debug!(topic = %part.topic, partition = part.id, "writer stopped");
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PartitionLog {
    /// Queues an append; the bytes must already be reserved in `Pending`.
    pub(crate) fn submit(&self, req: AppendReq) -> std::result::Result<(), AppendReq> {
        match lock(&self.tx).as_ref() {
            Some(tx) => tx.send(req).map_err(|e| e.0),
            None => Err(req),
        }
    }

    /// Stops accepting appends and waits for the writer to drain its queue.
    pub(crate) async fn close(&self) {
        lock(&self.tx).take();
        let handle = lock(&self.writer).take();
        if let Some(h) = handle {
            if let Err(e) = h.await {
                tracing::error!(topic = %self.topic, partition = self.id, error = %e, "writer task failed");
            }
        }
    }

    pub(crate) fn end(&self) -> Offset {
        *self.hw.borrow()
    }

    pub(crate) fn start(&self) -> Offset {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        segs.first().map_or(0, |s| s.base)
    }

    /// Segments that may hold `from` and later offsets.
    fn segments_from(&self, from: Offset) -> (Offset, Vec<Arc<Segment>>) {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        let start = segs.first().map_or(0, |s| s.base);
        let i = segs.partition_point(|s| s.base <= from).saturating_sub(1);
        (start, segs[i.min(segs.len())..].to_vec())
    }

    /// Reads durable records from `from` on (blocking: positional reads).
    pub(crate) fn read_blocking(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        let hw = self.end();
        let (start, segs) = self.segments_from(from);
        if from < start || from > hw {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.to_string(),
                partition: self.id,
                offset: from,
                start,
                end: hw,
            });
        }
        let mut out = Vec::new();
        if from == hw || max_records == 0 {
            return Ok(out);
        }
        let mut bytes = 0usize;
        let mut next = from;
        for seg in segs {
            let meta = seg.meta();
            if meta.end <= next {
                continue;
            }
            let pos = meta.lookup(next);
            let mut reader = FrameReader::new(
                &seg.file,
                pos,
                meta.size,
                max_bytes.saturating_add(64 << 10),
            );
            loop {
                let frame = match reader
                    .next_frame()
                    .map_err(|e| Error::io(format!("reading {}", seg.path.display()), e))?
                {
                    Next::End => break,
                    Next::Bad { pos, reason } => {
                        return Err(Error::Corrupt(format!(
                            "{} at byte {pos}: {reason}",
                            seg.path.display()
                        )))
                    }
                    Next::Frame(f) => f,
                };
                if frame.offset < next {
                    continue;
                }
                if frame.offset >= hw {
                    return Ok(out);
                }
                let size = frame.key.len() + frame.value.len();
                if !out.is_empty() && bytes + size > max_bytes {
                    return Ok(out);
                }
                bytes += size;
                next = frame.offset + 1;
                out.push(StoredRecord {
                    partition: self.id,
                    offset: frame.offset,
                    key: frame.key,
                    value: frame.value,
                    timestamp_ms: frame.timestamp_ms,
                });
                if out.len() >= max_records || bytes >= max_bytes {
                    return Ok(out);
                }
            }
            if next >= hw {
                break;
            }
        }
        Ok(out)
    }
}

/// Failures injected by this crate's unit tests (compiled only for them), per partition dir.
#[cfg(test)]
pub(crate) mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// The next fsync fails (after the write reached the file).
        Fsync,
        /// The writer panics between the write and the fsync.
        Panic,
    }

    static PENDING: Mutex<Vec<(PathBuf, Fault)>> = Mutex::new(Vec::new());

    pub(crate) fn inject(dir: &Path, fault: Fault) {
        super::lock(&PENDING).push((dir.to_path_buf(), fault));
    }

    pub(crate) fn before_fsync(dir: &Path) -> std::io::Result<()> {
        let fault = {
            let mut pending = super::lock(&PENDING);
            let at = pending.iter().position(|(d, _)| d == dir);
            at.map(|i| pending.remove(i).1)
        };
        match fault {
            Some(Fault::Fsync) => Err(std::io::Error::other("injected fsync failure")),
            Some(Fault::Panic) => panic!("injected writer panic"),
            None => Ok(()),
        }
    }
}
