//! The embedded segment log: Strata's default bus, a directory of append-only segment files
//! with group commit, consumer groups and retention.
//!
//! Layout under the bus directory:
//!
//! ```text
//! .lock                                   flock'd while a process has the log open
//! topics/<topic>/topic.json               {"version":1,"partitions":N}
//! topics/<topic>/<partition>/<base:020>.log    framed records (see `segment.rs`)
//! topics/<topic>/<partition>/<base:020>.index  sparse offset → position cache of a closed segment
//! groups/<group>.json                     committed positions, replaced atomically
//! ```
//!
//! Durability: `append` returns after its records are fsync'd (see `partition.rs` for the
//! group-commit writer). Readers only see fsync'd records.

mod groups;
mod partition;
mod segment;

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use self::groups::Groups;
use self::partition::{lock, open_partition, AppendReq, PartitionLog, Pending, WriterConfig};
use self::segment::{frame_len, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::log::{Health, Log, Offset, Offsets, Partition, Position, Record, StoredRecord};

/// Room beyond a failed group commit's bytes that `health` wants free before it reports the
/// bus ready again (a new segment file, directory blocks).
const HEALTH_MARGIN_BYTES: u64 = 256 << 10;

/// Tuning of the embedded log. The defaults suit a laptop and a single server alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// A segment is closed and a new one started once it would exceed this many bytes.
    pub segment_bytes: u64,
    /// How long a partition's writer waits for more appends before one write + fsync.
    pub group_commit_window: Duration,
    /// Bytes accepted but not yet fsync'd, across all partitions; beyond it `append` fails
    /// with `Error::Overloaded`.
    pub max_pending_bytes: u64,
    /// Closed segments whose newest record is older than this are deleted.
    pub retention: Duration,
    /// Per partition: the oldest closed segments are deleted while the partition is larger.
    pub retention_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            segment_bytes: 128 << 20,
            group_commit_window: Duration::from_millis(2),
            max_pending_bytes: 64 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: 16 << 30,
        }
    }
}

impl EmbeddedOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_bytes == 0 {
            return Err(Error::Invalid("segment_bytes must be positive".into()));
        }
        if self.max_pending_bytes == 0 {
            return Err(Error::Invalid("max_pending_bytes must be positive".into()));
        }
        Ok(())
    }
}

/// `topics/<topic>/topic.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    version: u32,
    partitions: u32,
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Arc<PartitionLog>>,
}

/// The embedded segment log. Open it once per directory and process.
#[derive(Debug)]
pub struct EmbeddedLog {
    dir: PathBuf,
    options: EmbeddedOptions,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serializes topic creation.
    create: tokio::sync::Mutex<()>,
    groups: Groups,
    pending: Arc<Pending>,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    retention_task: Mutex<Option<JoinHandle<()>>>,
    /// Holds the directory's advisory lock for as long as the log lives.
    _lock: File,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovers every partition, and starts the
    /// writer and retention tasks. Must be called within a tokio runtime.
    pub async fn open(dir: &Path, options: EmbeddedOptions) -> Result<Arc<EmbeddedLog>> {
        options.validate()?;
        let dir = dir.to_path_buf();
        let pending = Arc::new(Pending::new(options.max_pending_bytes));
        let config = WriterConfig {
            segment_bytes: options.segment_bytes,
            window: options.group_commit_window,
        };
        let (lock_file, topics, groups) = {
            let dir = dir.clone();
            let pending = pending.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let lock_file = lock_dir(&dir)?;
                let topics = load_topics(&dir.join("topics"), &config, &pending)?;
                let groups = Groups::load(dir.join("groups"))?;
                fsync_dir(&dir)?;
                Ok((lock_file, topics, groups))
            })
            .await
            .map_err(|e| Error::io("opening bus", std::io::Error::other(e.to_string())))??
        };
        tracing::info!(dir = %dir.display(), topics = topics.len(), "opened embedded bus");
        let log = Arc::new(EmbeddedLog {
            dir,
            options,
            topics: RwLock::new(topics),
            create: tokio::sync::Mutex::new(()),
            groups,
            pending,
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            retention_task: Mutex::new(None),
            _lock: lock_file,
        });
        let task = tokio::spawn(retention_loop(
            Arc::downgrade(&log),
            log.shutdown.subscribe(),
        ));
        *lock(&log.retention_task) = Some(task);
        Ok(log)
    }

    fn topic(&self, topic: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    fn partition(&self, topic: &str, partition: Partition) -> Result<Arc<PartitionLog>> {
        self.topic(topic)?
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    /// Deletes closed segments past `retention` or `retention_bytes`, never one holding
    /// offsets a consumer group has not committed past. Returns the number deleted. Runs
    /// periodically on its own; public for tests and operators.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let topics: Vec<(String, Arc<Topic>)> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let horizon = now_ms.saturating_sub(self.options.retention.as_millis() as i64);
        let mut deleted = 0;
        for (name, topic) in topics {
            for part in &topic.partitions {
                let floor = self.groups.min_committed(&name, part.id);
                let part = part.clone();
                let max_bytes = self.options.retention_bytes;
                deleted += tokio::task::spawn_blocking(move || {
                    delete_old_segments(&part, horizon, max_bytes, floor)
                })
                .await
                .map_err(|e| Error::io("retention", std::io::Error::other(e.to_string())))??;
            }
        }
        Ok(deleted)
    }
}

/// Takes the directory's advisory lock (retrying briefly: a log dropped a moment ago may
/// still be releasing it).
fn lock_dir(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir.join("topics"))
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    for attempt in 0..50 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if attempt < 49 => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }
    Err(Error::io(
        format!("bus directory {} is in use by another log", dir.display()),
        std::io::Error::from(std::io::ErrorKind::WouldBlock),
    ))
}

fn load_topics(
    root: &Path,
    config: &WriterConfig,
    pending: &Arc<Pending>,
) -> Result<HashMap<String, Arc<Topic>>> {
    let ctx = || format!("listing {}", root.display());
    let mut topics = HashMap::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(ctx(), e))? {
        let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let meta_path = path.join("topic.json");
        let bytes = match std::fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(topic = %name, "ignoring topic directory without topic.json");
                continue;
            }
            Err(e) => return Err(Error::io(format!("reading {}", meta_path.display()), e)),
        };
        let meta: TopicFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", meta_path.display())))?;
        let topic = open_topic(&path, &name, meta.partitions, config, pending)?;
        topics.insert(name, Arc::new(topic));
    }
    Ok(topics)
}

fn open_topic(
    dir: &Path,
    name: &str,
    partitions: u32,
    config: &WriterConfig,
    pending: &Arc<Pending>,
) -> Result<Topic> {
    let name: Arc<str> = Arc::from(name);
    let mut parts = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let pdir = dir.join(p.to_string());
        std::fs::create_dir_all(&pdir)
            .map_err(|e| Error::io(format!("creating {}", pdir.display()), e))?;
        parts.push(open_partition(
            name.clone(),
            p,
            pdir,
            config.clone(),
            pending.clone(),
        )?);
    }
    Ok(Topic { partitions: parts })
}

/// Retention for one partition (blocking).
fn delete_old_segments(
    part: &PartitionLog,
    horizon_ms: i64,
    max_bytes: u64,
    floor: Option<Offset>,
) -> Result<usize> {
    let segs: Vec<_> = part
        .segments
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let metas: Vec<_> = segs.iter().map(|s| s.meta()).collect();
    let mut total: u64 = metas.iter().map(|m| m.size).sum();
    let mut count = 0;
    // The last segment is active and never deleted.
    for meta in metas.iter().take(segs.len().saturating_sub(1)) {
        let expired = meta.max_timestamp < horizon_ms;
        if !(expired || total > max_bytes) {
            break;
        }
        if floor.is_some_and(|f| meta.end > f) {
            break;
        }
        total -= meta.size;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let removed: Vec<_> = {
        let mut live = part.segments.write().unwrap_or_else(|e| e.into_inner());
        let n = live
            .iter()
            .zip(&segs[..count])
            .take_while(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        live.drain(..n).collect()
    };
    for seg in &removed {
        // Readers holding the segment keep reading from the open file.
        for path in [seg.path.clone(), seg.index_path()] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
            }
        }
        tracing::info!(topic = %part.topic, partition = part.id, base = seg.base, "retention deleted segment");
    }
    fsync_dir(&part.dir)?;
    metrics::counter!("strata_bus_retention_deleted_segments_total")
        .increment(removed.len() as u64);
    Ok(removed.len())
}

async fn retention_loop(log: Weak<EmbeddedLog>, mut shutdown: watch::Receiver<bool>) {
    let interval = match log.upgrade() {
        Some(l) => {
            (l.options.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
        }
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let Some(log) = log.upgrade() else { return };
        if let Err(e) = log.enforce_retention().await {
            tracing::warn!(error = %e, "retention failed");
        }
    }
}

#[async_trait]
impl Log for EmbeddedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        validate_name("topic", topic)?;
        if partitions == 0 {
            return Err(Error::Invalid(format!(
                "topic {topic}: partitions must be positive"
            )));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let _serial = self.create.lock().await;
        if self.topic(topic).is_ok() {
            return Ok(());
        }
        let root = self.dir.join("topics");
        let dir = root.join(topic);
        let name = topic.to_string();
        let pending = self.pending.clone();
        let config = WriterConfig {
            segment_bytes: self.options.segment_bytes,
            window: self.options.group_commit_window,
        };
        let opened = tokio::task::spawn_blocking(move || -> Result<Topic> {
            let t = open_topic(&dir, &name, partitions, &config, &pending)?;
            let meta = TopicFile {
                version: 1,
                partitions,
            };
            let bytes = serde_json::to_vec(&meta)
                .map_err(|e| Error::Invalid(format!("encoding topic metadata: {e}")))?;
            replace_file(&dir.join("topic.json"), &bytes)?;
            fsync_dir(&root)?;
            Ok(t)
        })
        .await
        .map_err(|e| Error::io("creating topic", std::io::Error::other(e.to_string())))??;
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string(), Arc::new(opened));
        tracing::info!(topic, partitions, "created topic");
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let t = self.topic(topic)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = t.partitions.len() as u32;
        let count = records.len();
        // Per partition: its records, their input indices, their framed bytes.
        let mut groups: Vec<(Vec<Record>, Vec<usize>, u64)> =
            (0..n).map(|_| (Vec::new(), Vec::new(), 0)).collect();
        let mut total = 0u64;
        for (i, r) in records.into_iter().enumerate() {
            if r.key.len() + r.value.len() > MAX_RECORD_BYTES {
                return Err(Error::Invalid(format!(
                    "record of {} bytes exceeds the {MAX_RECORD_BYTES} byte limit",
                    r.key.len() + r.value.len()
                )));
            }
            let p = crate::partition_for(&r.key, n) as usize;
            let bytes = frame_len(&r) as u64;
            total += bytes;
            let g = &mut groups[p];
            g.0.push(r);
            g.1.push(i);
            g.2 += bytes;
        }
        self.pending.try_acquire(total).map_err(|cur| {
            metrics::counter!("strata_bus_overloaded_total").increment(1);
            Error::Overloaded(format!(
                "{cur} bytes awaiting fsync, limit {}; this append needs {total}",
                self.pending.max()
            ))
        })?;
        let mut waits = Vec::new();
        let mut unsent = total;
        for (p, (recs, idx, bytes)) in groups.into_iter().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let (done, rx) = oneshot::channel();
            let req = AppendReq {
                records: recs,
                bytes,
                done,
            };
            if t.partitions[p].submit(req).is_err() {
                self.pending.release(unsent);
                return Err(Error::Closed);
            }
            unsent -= bytes;
            waits.push((p as Partition, idx, rx));
        }
        let mut positions = vec![
            Position {
                partition: 0,
                offset: 0
            };
            count
        ];
        let mut first_err = None;
        let mut appended = Vec::new();
        for (partition, idx, rx) in waits {
            match rx.await {
                Ok(Ok(first)) => {
                    for (j, i) in idx.into_iter().enumerate() {
                        positions[i] = Position {
                            partition,
                            offset: first + j as u64,
                        };
                        appended.push(i);
                    }
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(Error::Closed);
                }
            }
        }
        match first_err {
            None => Ok(positions),
            Some(e) if appended.is_empty() => Err(e),
            // Some partitions took their records: the caller must know which (the collector
            // remembers them so a client's retry of the whole request does not double them).
            Some(e) => {
                appended.sort_unstable();
                Err(Error::Partial {
                    appended,
                    total: count,
                    source: Box::new(e),
                })
            }
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        let part = self.partition(topic, partition)?;
        tokio::task::spawn_blocking(move || part.read_blocking(from, max_records, max_bytes))
            .await
            .map_err(|e| Error::io("read", std::io::Error::other(e.to_string())))?
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: Partition,
        offset: Offset,
        timeout: Duration,
    ) -> Result<()> {
        let part = self.partition(topic, partition)?;
        let mut rx = part.hw.subscribe();
        if *rx.borrow_and_update() > offset {
            return Ok(());
        }
        let mut shutdown = self.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return Err(Error::Closed);
        }
        tokio::select! {
            biased;
            // Timing out is a normal outcome.
            _ = tokio::time::timeout(timeout, rx.wait_for(|hw| *hw > offset)) => Ok(()),
            _ = shutdown.changed() => Err(Error::Closed),
        }
    }

    async fn end_offsets(&self, topic: &str) -> Result<Offsets> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| (p.id, p.end())).collect())
    }

    async fn start_offsets(&self, topic: &str) -> Result<Offsets> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| (p.id, p.start())).collect())
    }

    async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()> {
        let t = self.topic(topic)?;
        if let Some(p) = offsets.keys().find(|p| **p as usize >= t.partitions.len()) {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition: *p,
            });
        }
        self.groups.commit(group, topic, offsets).await
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Offsets> {
        validate_name("group", group)?;
        Ok(self.groups.committed(group, topic))
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        let task = lock(&self.retention_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let topics: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for t in topics {
            for p in &t.partitions {
                p.close().await;
            }
        }
        tracing::info!(dir = %self.dir.display(), "closed embedded bus");
        Ok(())
    }

    fn health(&self) -> Health {
        if self.closed.load(Ordering::Acquire) {
            return Health::Closed;
        }
        let mut needed = None::<u64>;
        for topic in self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            for p in &topic.partitions {
                match p.health.blocked() {
                    Some(u64::MAX) => return Health::StorageFailing,
                    Some(n) => needed = Some(needed.unwrap_or(0).max(n)),
                    None => {}
                }
            }
        }
        match needed {
            // A commit failed for want of space: ready again once the disk has room for it
            // (the next append then clears the state for good).
            Some(n)
                if !strata_core::fsutil::has_room(
                    &self.dir,
                    n.saturating_add(HEALTH_MARGIN_BYTES),
                ) =>
            {
                Health::StorageFull
            }
            _ => Health::Ready,
        }
    }
}

/// [`strata_core::fsutil::fsync_dir`] with the bus's error (a full disk is `StorageFull`).
fn fsync_dir(dir: &Path) -> Result<()> {
    strata_core::fsutil::fsync_dir(dir)
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// [`strata_core::fsutil::replace_file`] with the bus's error (a full disk is `StorageFull`).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    strata_core::fsutil::replace_file(path, bytes)
        .map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}

/// Topic and group names become path components: keep them to a safe alphabet (Kafka's).
fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{kind} name {name:?} must be 1-249 characters of [A-Za-z0-9._-]"
        )))
    }
}
