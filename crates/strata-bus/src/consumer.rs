//! A consumer over the [`Log`] trait: one topic, the partitions assigned to it, the next
//! offset to read in each, batch reads that wait for new records, and commits under a
//! consumer group. Every reader of the bus (the lake sink, the CDC merger, the collector's
//! de-duplication warm-up, the stream consumers) goes through it, so the read / wait / skip /
//! commit loop is written once for every backend.
//!
//! ```no_run
//! # async fn run(log: std::sync::Arc<dyn strata_bus::Log>) -> strata_bus::Result<()> {
//! use std::time::Duration;
//! use strata_bus::consumer::{Consumer, StartAt};
//!
//! let mut consumer = Consumer::open(log, "realtime", "events", StartAt::Committed).await?;
//! loop {
//!     let batch = consumer.poll(Duration::from_secs(1)).await?;
//!     for record in &batch {
//!         // … apply the record …
//!     }
//!     // Commit once what the records produced is durable.
//!     consumer.commit().await?;
//! }
//! # }
//! ```
//!
//! Positions move when [`Consumer::poll`] hands records out; the group's committed positions
//! move only on [`Consumer::commit`] / [`Consumer::commit_at`]. A consumer whose position fell
//! below what retention keeps jumps to the oldest retained record, counts what it lost
//! ([`Consumer::lost`]) and logs it: a reader never spins on a deleted offset. [`OnLost`]
//! says otherwise for readers that must not pass a gap, or that owe the records to no one.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::log::{Log, Offset, Offsets, Partition, StoredRecord};

/// Records per read of one partition.
pub const DEFAULT_MAX_RECORDS: usize = 8192;
/// Bytes per read of one partition (roughly).
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Where a consumer starts in partitions it has no explicit position for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The group's committed positions; partitions never committed start at the oldest
    /// retained record.
    Committed,
    /// The oldest retained record of every partition.
    Earliest,
    /// The end of every partition: only records appended from now on.
    Latest,
    /// These positions; partitions not named start at the oldest retained record.
    At(Offsets),
}

/// What a read does when retention deleted the records at a partition's position before they
/// were read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLost {
    /// Jump to the oldest retained record, count the records passed over ([`Consumer::lost`],
    /// `strata_bus_records_lost_total`) and log an error: for a consumer that owed those
    /// records to a table (the lake sink).
    #[default]
    Skip,
    /// Jump to the oldest retained record, counted in [`Consumer::lost`] only: for a reader of
    /// a recent window whose start retention may pass while it reads, which owes the records
    /// to no one (the de-duplication warm-up, a topic's tail, a lag probe).
    SkipQuietly,
    /// Fail the read with [`Error::OffsetOutOfRange`] and keep the position: for a consumer
    /// that cannot go on past a gap (the CDC merger: its table would silently differ from the
    /// source).
    Fail,
}

/// One topic's reader for a consumer group (or for no group: a plain reader of a range).
pub struct Consumer {
    log: Arc<dyn Log>,
    group: Option<String>,
    topic: String,
    /// The assigned partitions, in the order they are read (round-robin from `cursor`).
    assigned: Vec<Partition>,
    next: Offsets,
    /// Reads stop below these offsets (a bounded read of a range); `None`: no bound.
    until: Option<Offsets>,
    cursor: usize,
    max_records: usize,
    max_bytes: usize,
    on_lost: OnLost,
    lost: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("next", &self.next)
            .field("until", &self.until)
            .finish()
    }
}

impl Consumer {
    /// A consumer of every partition of `topic` for `group`. Fails with
    /// [`Error::UnknownTopic`] when the topic does not exist yet (see
    /// [`Consumer::wait_for_topic`]).
    pub async fn open(
        log: Arc<dyn Log>,
        group: &str,
        topic: &str,
        start: StartAt,
    ) -> Result<Consumer> {
        let partitions = log.partitions(topic).await?;
        Consumer::assign(log, Some(group), topic, (0..partitions).collect(), start).await
    }

    /// A consumer of `partitions` of `topic`, for `group` (`None`: a plain reader that cannot
    /// commit).
    pub async fn assign(
        log: Arc<dyn Log>,
        group: Option<&str>,
        topic: &str,
        partitions: Vec<Partition>,
        start: StartAt,
    ) -> Result<Consumer> {
        let mut next = Offsets::new();
        let needs_start = partitions.iter().any(|p| match &start {
            StartAt::At(at) => !at.contains_key(p),
            StartAt::Committed | StartAt::Earliest => true,
            StartAt::Latest => false,
        });
        let oldest = if needs_start {
            log.start_offsets(topic).await?
        } else {
            Offsets::new()
        };
        let chosen = match &start {
            StartAt::Committed => match group {
                Some(g) => log.committed(g, topic).await?,
                None => {
                    return Err(Error::Invalid(
                        "a reader without a consumer group has no committed positions".into(),
                    ))
                }
            },
            StartAt::Latest => log.end_offsets(topic).await?,
            StartAt::At(at) => at.clone(),
            StartAt::Earliest => Offsets::new(),
        };
        for p in &partitions {
            let from = chosen
                .get(p)
                .copied()
                .unwrap_or_else(|| oldest.get(p).copied().unwrap_or(0));
            next.insert(*p, from);
        }
        Ok(Consumer {
            log,
            group: group.map(str::to_string),
            topic: topic.to_string(),
            assigned: partitions,
            next,
            until: None,
            cursor: 0,
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
            on_lost: OnLost::Skip,
            lost: 0,
        })
    }

    /// A reader of `[from, until)` of one partition, no group: reads stop at `until` and
    /// [`Consumer::done`] turns true there.
    pub fn range(
        log: Arc<dyn Log>,
        topic: &str,
        partition: Partition,
        from: Offset,
        until: Offset,
    ) -> Consumer {
        Consumer {
            log,
            group: None,
            topic: topic.to_string(),
            assigned: vec![partition],
            next: Offsets::from([(partition, from)]),
            until: Some(Offsets::from([(partition, until)])),
            cursor: 0,
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
            on_lost: OnLost::Skip,
            lost: 0,
        }
    }

    /// Caps each read of one partition at `records` records and roughly `bytes` bytes.
    pub fn with_limits(mut self, records: usize, bytes: usize) -> Consumer {
        self.max_records = records.max(1);
        self.max_bytes = bytes.max(1);
        self
    }

    /// What a read below the oldest retained record does (default [`OnLost::Skip`]).
    pub fn on_lost(mut self, on_lost: OnLost) -> Consumer {
        self.on_lost = on_lost;
        self
    }

    /// Stops reading each partition below `until` (e.g. the end offsets taken when a drain
    /// began).
    pub fn stop_at(&mut self, until: Offsets) {
        self.until = Some(until);
    }

    /// Waits until `topic` exists and returns its partition count, or `None` when `stop`
    /// turns true first. `poll_every` is how often it looks.
    pub async fn wait_for_topic(
        log: &dyn Log,
        topic: &str,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        poll_every: Duration,
    ) -> Result<Option<u32>> {
        loop {
            match log.partitions(topic).await {
                Ok(n) => return Ok(Some(n)),
                Err(Error::UnknownTopic(_)) => {
                    tracing::info!(topic, "waiting for the topic to be created");
                }
                Err(e) => return Err(e),
            }
            if *stop.borrow() {
                return Ok(None);
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { return Ok(None) },
                _ = tokio::time::sleep(poll_every) => {}
            }
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    pub fn partitions(&self) -> &[Partition] {
        &self.assigned
    }

    /// The next offset to read per assigned partition.
    pub fn positions(&self) -> &Offsets {
        &self.next
    }

    /// Records skipped because retention deleted them before they were read.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Moves one partition's position.
    pub fn seek(&mut self, partition: Partition, offset: Offset) {
        if self.assigned.contains(&partition) {
            self.next.insert(partition, offset);
        }
    }

    /// Moves every partition named in `positions`.
    pub fn seek_all(&mut self, positions: &Offsets) {
        for (p, o) in positions {
            self.seek(*p, *o);
        }
    }

    /// Whether every assigned partition has been read up to `end`.
    pub fn reached(&self, end: &Offsets) -> bool {
        end.iter().all(|(p, o)| {
            !self.assigned.contains(p) || self.next.get(p).copied().unwrap_or(0) >= *o
        })
    }

    /// Whether a bounded reader ([`Consumer::range`], [`Consumer::stop_at`]) read everything.
    pub fn done(&self) -> bool {
        self.until.as_ref().is_some_and(|u| self.reached(u))
    }

    /// Reads the next batch without waiting: the first assigned partition, round-robin, that
    /// has records at its position. Empty when every partition is at its end (or bound).
    /// Positions move past the records returned. A partition whose read fails is tried after
    /// the others on the next call, so one failing partition does not hold the rest back.
    pub async fn fetch(&mut self) -> Result<Vec<StoredRecord>> {
        let n = self.assigned.len();
        for i in 0..n {
            let p = self.assigned[(self.cursor + i) % n];
            let bound = self.until.as_ref().and_then(|u| u.get(&p).copied());
            let mut records = match self.read(p, bound).await {
                Ok(records) => records,
                Err(e) => {
                    self.cursor = (self.cursor + i + 1) % n;
                    return Err(e);
                }
            };
            if let Some(b) = bound {
                let past = records.last().is_some_and(|r| r.offset >= b);
                records.retain(|r| r.offset < b);
                if records.is_empty() {
                    if past {
                        // The read returned only records past the bound: the bound is
                        // reached. (An empty read is only the end of the log for now.)
                        self.next.insert(p, b);
                    }
                    continue;
                }
            }
            if let Some(last) = records.last() {
                self.next.insert(p, last.offset + 1);
                self.cursor = (self.cursor + i + 1) % n;
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    /// One read of partition `p` at its position (empty at its end or `bound`). Records that
    /// retention deleted are passed over as [`OnLost`] says, and the read goes on from the
    /// oldest retained record.
    async fn read(&mut self, p: Partition, bound: Option<Offset>) -> Result<Vec<StoredRecord>> {
        loop {
            let from = self.next.get(&p).copied().unwrap_or(0);
            if bound.is_some_and(|b| from >= b) {
                return Ok(Vec::new());
            }
            match self
                .log
                .read(&self.topic, p, from, self.max_records, self.max_bytes)
                .await
            {
                Err(Error::OffsetOutOfRange { start, .. })
                    if from < start && self.on_lost != OnLost::Fail =>
                {
                    self.skip(p, from, start);
                }
                other => return other,
            }
        }
    }

    /// Moves partition `p` from `from` to `start`, the oldest retained record.
    fn skip(&mut self, p: Partition, from: Offset, start: Offset) {
        let skipped = start - from;
        self.lost += skipped;
        self.next.insert(p, start);
        if self.on_lost == OnLost::Skip {
            metrics::counter!("strata_bus_records_lost_total", "topic" => self.topic.clone())
                .increment(skipped);
            tracing::error!(
                topic = %self.topic,
                group = ?self.group,
                partition = p,
                from,
                start,
                "bus retention deleted records this consumer never read; skipping them"
            );
        } else {
            tracing::debug!(topic = %self.topic, partition = p, from, start, "bus retention passed this reader; going on from the oldest record");
        }
    }

    /// The next batch: [`Consumer::fetch`], and when every partition is at its end, waits up
    /// to `timeout` for a new record in any of them and tries once more. Empty after the
    /// timeout (callers do their idle work then).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<StoredRecord>> {
        let records = self.fetch().await?;
        if !records.is_empty() || self.done() {
            return Ok(records);
        }
        self.wait(timeout).await?;
        self.fetch().await
    }

    /// Waits until any assigned partition has a record at its position, or `timeout`.
    pub async fn wait(&self, timeout: Duration) -> Result<()> {
        let waits = self
            .next
            .iter()
            .filter(|(p, o)| {
                let bound = self.until.as_ref().and_then(|u| u.get(p).copied());
                bound.is_none_or(|b| **o < b)
            })
            .map(|(p, o)| Box::pin(self.log.wait_for(&self.topic, *p, *o, timeout)))
            .collect::<Vec<_>>();
        if waits.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(());
        }
        futures::future::select_all(waits).await.0
    }

    /// Commits the current positions under the group.
    pub async fn commit(&self) -> Result<()> {
        self.commit_at(&self.next).await
    }

    /// Commits `positions` under the group (e.g. the positions a downstream commit covered,
    /// which may trail what was read).
    pub async fn commit_at(&self, positions: &Offsets) -> Result<()> {
        let Some(group) = &self.group else {
            return Err(Error::Invalid(
                "a reader without a consumer group cannot commit".into(),
            ));
        };
        self.log.commit(group, &self.topic, positions).await
    }

    /// The group's committed positions (empty for a reader without a group).
    pub async fn committed(&self) -> Result<Offsets> {
        match &self.group {
            Some(g) => self.log.committed(g, &self.topic).await,
            None => Ok(Offsets::new()),
        }
    }

    /// Records between the positions and the end of the assigned partitions.
    pub async fn lag(&self) -> Result<u64> {
        let end = self.log.end_offsets(&self.topic).await?;
        Ok(self
            .assigned
            .iter()
            .map(|p| {
                let e = end.get(p).copied().unwrap_or(0);
                e.saturating_sub(self.next.get(p).copied().unwrap_or(0))
            })
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedLog;
    use crate::log::Record;
    use bytes::Bytes;

    async fn log_with(
        partitions: u32,
        records: &[(&str, &str)],
    ) -> (tempfile::TempDir, Arc<dyn Log>) {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> = EmbeddedLog::open(dir.path(), Default::default())
            .await
            .unwrap();
        log.ensure_topic("t", partitions).await.unwrap();
        let recs = records
            .iter()
            .map(|(k, v)| Record {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Bytes::copy_from_slice(v.as_bytes()),
                timestamp_ms: 0,
            })
            .collect();
        log.append("t", recs).await.unwrap();
        (dir, log)
    }

    #[tokio::test]
    async fn reads_every_partition_and_resumes_from_the_commit() {
        let records: Vec<(String, String)> = (0..50)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (_dir, log) = log_with(3, &pairs).await;
        let mut c = Consumer::open(log.clone(), "g", "t", StartAt::Committed)
            .await
            .unwrap()
            .with_limits(7, 1 << 20);
        let mut seen = Vec::new();
        loop {
            let batch = c.fetch().await.unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 7);
            seen.extend(batch.into_iter().map(|r| r.value));
        }
        assert_eq!(seen.len(), 50);
        assert_eq!(c.lag().await.unwrap(), 0);
        c.commit().await.unwrap();

        let more = [("k1", "late")];
        log.append(
            "t",
            more.iter()
                .map(|(k, v)| Record {
                    key: Bytes::from_static(k.as_bytes()),
                    value: Bytes::from_static(v.as_bytes()),
                    timestamp_ms: 0,
                })
                .collect(),
        )
        .await
        .unwrap();
        let mut again = Consumer::open(log, "g", "t", StartAt::Committed)
            .await
            .unwrap();
        let batch = again.poll(Duration::from_millis(10)).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(&batch[0].value[..], b"late");
    }

    #[tokio::test]
    async fn latest_skips_what_exists_and_poll_waits_for_new_records() {
        let (_dir, log) = log_with(1, &[("a", "old")]).await;
        let mut c = Consumer::open(log.clone(), "g", "t", StartAt::Latest)
            .await
            .unwrap();
        assert!(c.poll(Duration::from_millis(10)).await.unwrap().is_empty());
        let writer = log.clone();
        let append = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer
                .append(
                    "t",
                    vec![Record {
                        key: Bytes::from_static(b"a"),
                        value: Bytes::from_static(b"new"),
                        timestamp_ms: 0,
                    }],
                )
                .await
                .unwrap();
        });
        let batch = c.poll(Duration::from_secs(10)).await.unwrap();
        append.await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(&batch[0].value[..], b"new");
    }

    #[tokio::test]
    async fn a_range_stops_at_its_bound() {
        let records: Vec<(String, String)> = (0..20)
            .map(|i| ("k".to_string(), format!("v{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (_dir, log) = log_with(1, &pairs).await;
        let mut c = Consumer::range(log.clone(), "t", 0, 5, 12).with_limits(4, 1 << 20);
        let mut offsets = Vec::new();
        while !c.done() {
            let batch = c.poll(Duration::from_millis(10)).await.unwrap();
            offsets.extend(batch.iter().map(|r| r.offset));
        }
        assert_eq!(offsets, (5..12).collect::<Vec<_>>());
        assert!(
            c.commit().await.is_err(),
            "a plain reader has no group to commit"
        );
        // A bound past the end of the log is not reached by reading to the end.
        let mut c = Consumer::range(log, "t", 0, 15, 100);
        assert_eq!(c.fetch().await.unwrap().len(), 5);
        assert!(c.fetch().await.unwrap().is_empty());
        assert_eq!(c.positions()[&0], 20);
        assert!(!c.done());
    }

    /// A one-partition log whose first 10 of 14 records retention deleted.
    async fn log_with_a_gap() -> (tempfile::TempDir, Arc<dyn Log>, Offset) {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::embedded::EmbeddedOptions {
            segment_bytes: 200,
            retention: Duration::from_secs(3600),
            ..Default::default()
        };
        let log = EmbeddedLog::open(dir.path(), options).await.unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for i in 0..14 {
            let timestamp_ms = if i < 10 {
                now_ms - 2 * 3600 * 1000
            } else {
                now_ms
            };
            let record = Record {
                key: Bytes::new(),
                value: Bytes::from("o".repeat(70)),
                timestamp_ms,
            };
            log.append("t", vec![record]).await.unwrap();
        }
        assert!(log.enforce_retention().await.unwrap() >= 1);
        let start = log.start_offsets("t").await.unwrap()[&0];
        assert!(start > 0);
        (dir, log, start)
    }

    #[tokio::test]
    async fn a_gap_is_skipped_counted_or_refused_as_asked() {
        let (_dir, log, start) = log_with_a_gap().await;
        for on_lost in [OnLost::Skip, OnLost::SkipQuietly] {
            let mut c = Consumer::range(log.clone(), "t", 0, 0, 14).on_lost(on_lost);
            // The read goes on from the oldest record in the same call: empty still means
            // "at the end".
            let batch = c.fetch().await.unwrap();
            assert_eq!(batch.first().map(|r| r.offset), Some(start), "{on_lost:?}");
            assert_eq!(c.lost(), start, "{on_lost:?}");
            assert!(c.done(), "{on_lost:?}");
        }
        let mut c = Consumer::range(log, "t", 0, 0, 14).on_lost(OnLost::Fail);
        for _ in 0..2 {
            assert!(matches!(
                c.fetch().await,
                Err(Error::OffsetOutOfRange { offset: 0, .. })
            ));
            assert_eq!(c.positions()[&0], 0);
        }
        assert_eq!(c.lost(), 0);
    }

    /// Reads of partition 0 fail (retryably); everything else is the embedded log's.
    struct FailingPartition(Arc<dyn Log>);

    #[async_trait::async_trait]
    impl Log for FailingPartition {
        async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
            self.0.ensure_topic(topic, partitions).await
        }
        async fn partitions(&self, topic: &str) -> Result<u32> {
            self.0.partitions(topic).await
        }
        async fn append(
            &self,
            topic: &str,
            records: Vec<Record>,
        ) -> Result<Vec<crate::log::Position>> {
            self.0.append(topic, records).await
        }
        async fn read(
            &self,
            topic: &str,
            partition: Partition,
            from: Offset,
            max_records: usize,
            max_bytes: usize,
        ) -> Result<Vec<StoredRecord>> {
            if partition == 0 {
                return Err(Error::io("read", std::io::Error::other("injected")));
            }
            self.0
                .read(topic, partition, from, max_records, max_bytes)
                .await
        }
        async fn wait_for(
            &self,
            topic: &str,
            partition: Partition,
            offset: Offset,
            timeout: Duration,
        ) -> Result<()> {
            self.0.wait_for(topic, partition, offset, timeout).await
        }
        async fn end_offsets(&self, topic: &str) -> Result<Offsets> {
            self.0.end_offsets(topic).await
        }
        async fn start_offsets(&self, topic: &str) -> Result<Offsets> {
            self.0.start_offsets(topic).await
        }
        async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()> {
            self.0.commit(group, topic, offsets).await
        }
        async fn committed(&self, group: &str, topic: &str) -> Result<Offsets> {
            self.0.committed(group, topic).await
        }
        async fn close(&self) -> Result<()> {
            self.0.close().await
        }
    }

    #[tokio::test]
    async fn a_failing_partition_does_not_hold_the_others_back() {
        let records: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (_dir, inner) = log_with(2, &pairs).await;
        let on_1 = inner.end_offsets("t").await.unwrap()[&1];
        assert!(on_1 > 0);
        let log: Arc<dyn Log> = Arc::new(FailingPartition(inner));
        let mut c = Consumer::open(log, "g", "t", StartAt::Earliest)
            .await
            .unwrap();
        // A caller that backs off and fetches again after an error still reads partition 1.
        let mut read = 0;
        for _ in 0..4 {
            match c.fetch().await {
                Ok(batch) => read += batch.len() as u64,
                Err(e) => assert!(e.retryable()),
            }
        }
        assert_eq!(read, on_1);
        assert_eq!(c.positions()[&0], 0);
    }
}
