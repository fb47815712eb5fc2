//! One partition: its segments, its group-commit writer task, and positional reads.
//!
//! The writer task is the only code that writes the active segment. It collects the appends
//! queued within the group-commit window, encodes them into one buffer, and on a blocking
//! thread does one `pwrite` + one `fdatasync`. Only then does it publish the new segment size
//! and high watermark (so readers never see a record that a crash could lose) and complete the
//! waiting appenders.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::fsutil::fsync_dir;
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
        poisoned: None,
    };
    let target = WriterTarget {
        topic: topic.clone(),
        id,
        hw: hw.clone(),
    };
    let handle = tokio::spawn(run_writer(target, state, rx, config, pending));
    Ok(Arc::new(PartitionLog {
        topic,
        id,
        dir,
        segments,
        hw,
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
    /// Set after a failed fsync: what reached the disk is unknown, so stop writing.
    poisoned: Option<String>,
}

impl WriterState {
    /// Writes and fsyncs the batch; returns the first offset of each request's records.
    fn commit(&mut self, batch: &[Vec<Record>]) -> Result<Vec<Offset>> {
        if let Some(why) = &self.poisoned {
            return Err(Error::io(
                "partition stopped after an fsync failure; reopen the bus",
                std::io::Error::other(why.clone()),
            ));
        }
        let total: u64 = batch
            .iter()
            .flatten()
            .map(|r| super::segment::frame_len(r) as u64)
            .sum();
        if self.size > 0 && self.size + total > self.segment_bytes {
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
                if pos - last_indexed >= INDEX_INTERVAL {
                    new_index.push((offset, pos));
                    last_indexed = pos;
                }
                encode(&mut self.buf, offset, r);
                max_ts = max_ts.max(r.timestamp_ms);
                offset += 1;
            }
        }
        let file = &self.active.file;
        if let Err(e) = file.write_all_at(&self.buf, self.size) {
            // Cut what may have been written so the next batch starts on a frame boundary.
            if let Err(e2) = file.set_len(self.size) {
                self.poisoned = Some(format!("write failed ({e}) and truncate failed ({e2})"));
            }
            return Err(Error::io(
                format!("writing {}", self.active.path.display()),
                e,
            ));
        }
        let started = Instant::now();
        if let Err(e) = file.sync_data() {
            self.poisoned = Some(format!("fdatasync failed: {e}"));
            tracing::error!(segment = %self.active.path.display(), error = %e, "fsync failed");
            return Err(Error::io(
                format!("fsync {}", self.active.path.display()),
                e,
            ));
        }
        metrics::histogram!("strata_bus_fsync_seconds").record(started.elapsed().as_secs_f64());
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

    /// Closes the active segment and starts a new one at `next_offset`.
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
        Ok(())
    }
}

/// What the writer task publishes to; it holds no reference to the partition itself, so
/// dropping the log closes the queue and ends the task.
struct WriterTarget {
    topic: Arc<str>,
    id: Partition,
    hw: Arc<watch::Sender<Offset>>,
}

async fn run_writer(
    part: WriterTarget,
    state: WriterState,
    mut rx: mpsc::UnboundedReceiver<AppendReq>,
    config: WriterConfig,
    pending: Arc<Pending>,
) {
    let mut state = Some(state);
    let topic_label = part.topic.to_string();
    while let Some(first) = rx.recv().await {
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
        let result = match state.take() {
            None => Err(Error::Closed),
            Some(mut st) => {
                let joined = tokio::task::spawn_blocking(move || {
                    let r = st.commit(&batch);
                    (st, r)
                })
                .await;
                match joined {
                    Ok((st, r)) => {
                        state = Some(st);
                        r
                    }
                    Err(e) => {
                        tracing::error!(topic = %part.topic, partition = part.id, error = %e, "writer thread failed");
                        Err(Error::io(
                            "bus writer thread failed",
                            std::io::Error::other(e.to_string()),
                        ))
                    }
                }
            }
        };
        pending.release(bytes);
        match result {
            Ok(firsts) => {
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
                tracing::warn!(topic = %part.topic, partition = part.id, error = %e, records, "group commit failed");
                let msg = e.to_string();
                let retry = e.retryable();
                let mut first = Some(e);
                for w in waiters {
                    let err = first.take().unwrap_or_else(|| {
                        if retry {
                            Error::io("group commit failed", std::io::Error::other(msg.clone()))
                        } else {
                            Error::Corrupt(msg.clone())
                        }
                    });
                    let _ = w.send(Err(err));
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
