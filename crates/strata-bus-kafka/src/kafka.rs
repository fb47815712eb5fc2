//! [`KafkaLog`]: the `Log` trait over rdkafka clients (one producer, one admin client, one
//! reader per partition read, one offsets client per consumer group).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use rdkafka::util::Timeout;
use strata_bus::{Error, Log, Offset, Offsets, Partition, Position, Record, Result, StoredRecord};
use tokio::sync::Mutex as AsyncMutex;

use crate::client::{config_message, Context, KafkaOptions};
use crate::error::{call_error, join_error, produce_error, transient, OpenError};
use crate::reader::Reader;

/// Largest record (key + value) accepted, as on the embedded bus; Kafka's own default
/// `message.max.bytes` is about 1 MiB, so larger ones would fail at the broker anyway.
const MAX_RECORD_BYTES: usize = 1 << 20;

type SharedReader = Arc<AsyncMutex<Reader>>;

/// The Kafka bus. Open it once per process; it is shared as `Arc<dyn Log>`.
pub struct KafkaLog {
    options: KafkaOptions,
    /// Replaced by a fresh one after a fatal idempotence error (which leaves it unusable).
    producer: RwLock<FutureProducer<Context>>,
    /// When the producer was last replaced after delivery timeouts.
    renewed: Mutex<Option<Instant>>,
    admin: AdminClient<Context>,
    /// Metadata and watermarks (an admin client cannot list offsets in rdkafka 0.39).
    meta: Arc<BaseConsumer<Context>>,
    /// Per partition: a reader at its tail that confirms where it ends (`confirm_end`).
    probes: Mutex<HashMap<(String, Partition), SharedReader>>,
    /// Partition counts of topics seen (a topic's partition count never shrinks).
    partitions: RwLock<HashMap<String, u32>>,
    readers: Mutex<HashMap<(String, Partition), SharedReader>>,
    /// The highest end offset seen per partition (acknowledged appends, watermarks): reads
    /// below it wait for the fetch instead of reporting the end.
    known_ends: Mutex<HashMap<(String, Partition), Offset>>,
    groups: Mutex<HashMap<String, Arc<BaseConsumer<Context>>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.options.brokers)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl KafkaLog {
    /// Creates the clients and checks that the brokers answer (bounded by
    /// `request_timeout`). Must be called within a tokio runtime.
    pub async fn open(options: KafkaOptions) -> std::result::Result<Arc<KafkaLog>, OpenError> {
        let config_err = |e: KafkaError| OpenError::Config(config_message(&e));
        let producer: FutureProducer<Context> = options
            .producer()
            .create_with_context(Context)
            .map_err(config_err)?;
        let admin: AdminClient<Context> = options
            .admin()
            .create_with_context(Context)
            .map_err(config_err)?;
        let meta: BaseConsumer<Context> = options
            .group(&format!("{}-meta", options.client_id))
            .create_with_context(Context)
            .map_err(config_err)?;
        let meta = Arc::new(meta);
        let timeout = options.request_timeout;
        let m = meta.clone();
        let brokers = tokio::task::spawn_blocking(move || {
            m.fetch_metadata(None, timeout).map(|md| md.brokers().len())
        })
        .await
        .map_err(|e| OpenError::Unavailable(e.to_string()))?
        .map_err(|e| {
            OpenError::Unavailable(format!(
                "no answer from {} within {timeout:?}: {e}",
                options.brokers
            ))
        })?;
        tracing::info!(brokers = %options.brokers, answered = brokers, "opened kafka bus");
        Ok(Arc::new(KafkaLog {
            options,
            producer: RwLock::new(producer),
            renewed: Mutex::new(None),
            admin,
            meta,
            probes: Mutex::new(HashMap::new()),
            partitions: RwLock::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            known_ends: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }))
    }

    fn producer(&self) -> FutureProducer<Context> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the producer after a fatal error (librdkafka's idempotent producer then
    /// refuses everything) or a delivery timeout (the brokers may have lost the producer's
    /// id: tansu restarted empty answers UNKNOWN_PRODUCER_ID forever, and Kafka does once the
    /// id expires; a new producer gets a new id). At most once per `delivery_timeout` for
    /// timeouts. Records the old one had not delivered fail to their callers, who retry; the
    /// collector's dedup drops any copies.
    fn renew_producer(&self, failed: &FutureProducer<Context>, error: &KafkaError) {
        let fatal = failed.client().fatal_error();
        let timed_out = crate::error::code_of(error) == Some(RDKafkaErrorCode::MessageTimedOut);
        if fatal.is_none() && !timed_out {
            return;
        }
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if current.client().native_ptr() != failed.client().native_ptr() {
            return; // another append already renewed it
        }
        let mut last = lock(&self.renewed);
        if fatal.is_none() && last.is_some_and(|t| t.elapsed() < self.options.delivery_timeout) {
            return;
        }
        match self.options.producer().create_with_context(Context) {
            Ok(fresh) => {
                match &fatal {
                    Some((code, reason)) => {
                        tracing::error!(%code, reason, "kafka producer hit a fatal error; started a new one")
                    }
                    None => {
                        tracing::warn!(error = %error, "kafka deliveries time out; started a new producer")
                    }
                }
                metrics::counter!("strata_bus_kafka_producer_renewals_total").increment(1);
                let old = std::mem::replace(&mut *current, fresh);
                *last = Some(Instant::now());
                // Dropping a producer purges and briefly flushes: not on an async thread.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => tracing::error!(error = %e, "could not replace the failed kafka producer"),
        }
    }

    fn saw_end(&self, topic: &str, partition: Partition, end: Offset) {
        let mut ends = lock(&self.known_ends);
        let e = ends.entry((topic.to_string(), partition)).or_insert(0);
        *e = (*e).max(end);
    }

    fn known_end(&self, topic: &str, partition: Partition) -> Offset {
        lock(&self.known_ends)
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        self.options.request_timeout
    }

    /// Runs a blocking librdkafka call off the async threads.
    async fn blocking<T, F>(&self, context: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer<Context>) -> T + Send + 'static,
    {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| join_error(context, e))
    }

    /// Partition count from the cluster metadata. Lists all topics rather than asking for
    /// one: asking for one makes brokers with auto-creation on (tansu always) create it.
    async fn fetch_partitions(&self, topic: &str) -> Result<Option<u32>> {
        let timeout = self.timeout();
        let name = topic.to_string();
        let found = self
            .blocking("metadata", move |c| {
                c.fetch_metadata(None, timeout).map(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .map(|t| (t.partitions().len() as u32, t.error()))
                })
            })
            .await?
            .map_err(|e| call_error(format!("metadata of {topic}"), &e))?;
        match found {
            Some((n, None)) if n > 0 => {
                self.partitions
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(topic.to_string(), n);
                Ok(Some(n))
            }
            // Listed but without partitions yet (being created) or with an error.
            Some(_) | None => Ok(None),
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(n) = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return Ok(*n);
        }
        self.fetch_partitions(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    async fn check_partition(&self, topic: &str, partition: Partition) -> Result<()> {
        if partition >= self.partition_count(topic).await? {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok(())
    }

    fn reader(&self, topic: &str, partition: Partition) -> Result<SharedReader> {
        let mut readers = lock(&self.readers);
        if let Some(r) = readers.get(&(topic.to_string(), partition)) {
            return Ok(r.clone());
        }
        let r = Arc::new(AsyncMutex::new(self.new_reader(topic, partition)?));
        readers.insert((topic.to_string(), partition), r.clone());
        Ok(r)
    }

    fn new_reader(&self, topic: &str, partition: Partition) -> Result<Reader> {
        let consumer: StreamConsumer<Context> = self
            .options
            .reader()
            .create_with_context(Context)
            .map_err(|e| Error::Invalid(config_message(&e)))?;
        Ok(Reader::new(topic, partition, consumer))
    }

    fn group(&self, group: &str) -> Result<Arc<BaseConsumer<Context>>> {
        let mut groups = lock(&self.groups);
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let c: BaseConsumer<Context> = self
            .options
            .group(group)
            .create_with_context(Context)
            .map_err(|e| Error::Invalid(config_message(&e)))?;
        let c = Arc::new(c);
        groups.insert(group.to_string(), c.clone());
        Ok(c)
    }

    /// Low and high watermark of every partition (`ListOffsets`).
    async fn watermarks(&self, topic: &str) -> Result<Vec<(Partition, i64, i64)>> {
        let n = self.partition_count(topic).await?;
        let timeout = self.timeout();
        let name = topic.to_string();
        self.blocking("watermarks", move |c| {
            (0..n)
                .map(|p| {
                    c.fetch_watermarks(&name, p as i32, timeout)
                        .map(|(lo, hi)| (p, lo, hi))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .await?
        .map_err(|e| call_error(format!("watermarks of {topic}"), &e))
    }

    /// The true end of a partition whose `ListOffsets` end is `hi` (> its start): reads from
    /// `hi - 1` (or from where this partition's probe already is, when that is past it) to
    /// the end-of-partition event. Kafka's answer is exact and this returns it after one
    /// record; tansu 0.6 answers the last batch's base offset + 1, and this finds the records
    /// after it. The probe stays at the tail, so the next call reads only what is new.
    async fn confirm_end(&self, topic: &str, partition: Partition, hi: Offset) -> Result<Offset> {
        let probe = {
            let mut probes = lock(&self.probes);
            match probes.get(&(topic.to_string(), partition)) {
                Some(p) => p.clone(),
                None => {
                    let consumer = self
                        .options
                        .probe()
                        .create_with_context(Context)
                        .map_err(|e| Error::Invalid(config_message(&e)))?;
                    let p = Arc::new(AsyncMutex::new(Reader::new(topic, partition, consumer)));
                    probes.insert((topic.to_string(), partition), p.clone());
                    p
                }
            }
        };
        let mut reader = probe.lock().await;
        let mut end = hi;
        let mut from = reader.cursor().filter(|c| *c >= hi - 1).unwrap_or(hi - 1);
        // Bounded: producers may keep appending while we look; an end is a snapshot anyway.
        for _ in 0..4 {
            let batch = reader.read(from, 100_000, 64 << 20, hi).await?;
            let Some(last) = batch.last() else {
                break;
            };
            end = end.max(last.offset + 1);
            from = last.offset + 1;
        }
        Ok(end)
    }

    /// Low and high watermark of one partition.
    async fn watermark(&self, topic: &str, partition: Partition) -> Result<(Offset, Offset)> {
        let timeout = self.timeout();
        let name = topic.to_string();
        let (lo, hi) = self
            .blocking("watermarks", move |c| {
                c.fetch_watermarks(&name, partition as i32, timeout)
            })
            .await?
            .map_err(|e| call_error(format!("watermarks of {topic}/{partition}"), &e))?;
        let (lo, hi) = (lo.max(0) as Offset, hi.max(0) as Offset);
        self.saw_end(topic, partition, hi);
        Ok((lo, hi))
    }

    /// Fills in the retained range of an out-of-range error.
    async fn out_of_range(&self, e: Error) -> Error {
        match e {
            Error::OffsetOutOfRange {
                topic,
                partition,
                offset,
                ..
            } => {
                let (start, end) = self.watermark(&topic, partition).await.unwrap_or((0, 0));
                Error::OffsetOutOfRange {
                    topic,
                    partition,
                    offset,
                    start,
                    end,
                }
            }
            other => other,
        }
    }
}

#[async_trait]
impl Log for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.check_open()?;
        if topic.is_empty() || partitions == 0 {
            return Err(Error::Invalid(format!(
                "topic {topic:?}: a name and a positive partition count are needed"
            )));
        }
        if self.fetch_partitions(topic).await?.is_some() {
            return Ok(());
        }
        let replication = match self.options.replication_factor {
            0 => -1,
            n => i32::from(n),
        };
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(replication),
        );
        let opts = AdminOptions::new().request_timeout(Some(self.timeout()));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| call_error(format!("creating topic {topic}"), &e))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic, partitions, "created kafka topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    let e = KafkaError::AdminOp(code);
                    return Err(call_error(format!("creating topic {topic}"), &e));
                }
            }
        }
        // Metadata can trail the creation for a moment.
        let mut wait = Duration::from_millis(20);
        for _ in 0..12 {
            if self.fetch_partitions(topic).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        Err(call_error(
            format!("topic {topic} created but not in the metadata"),
            &KafkaError::MetadataFetch(RDKafkaErrorCode::LeaderNotAvailable),
        ))
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic).await
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        self.check_open()?;
        let n = self.partition_count(topic).await?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.key.len() + r.value.len() > MAX_RECORD_BYTES)
        {
            return Err(Error::Invalid(format!(
                "record of {} bytes exceeds the {MAX_RECORD_BYTES} byte limit",
                r.key.len() + r.value.len()
            )));
        }
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let partition = strata_bus::partition_for(&r.key, n);
            let mut fr = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(partition as i32)
                .payload(&r.value[..])
                .timestamp(r.timestamp_ms);
            if !r.key.is_empty() {
                fr = fr.key(&r.key[..]);
            }
            match producer.send_result(fr) {
                Ok(d) => deliveries.push(d),
                // Records already queued may still be delivered: the caller retries the
                // whole request and the collector's dedup drops the copies.
                Err((e, _)) => {
                    self.renew_producer(&producer, &e);
                    return Err(produce_error(topic, &e));
                }
            }
        }
        let mut positions = Vec::with_capacity(deliveries.len());
        let mut first_err: Option<(Error, Option<KafkaError>)> = None;
        for d in deliveries {
            match d.await {
                Ok(Ok(delivery)) => positions.push(Position {
                    partition: delivery.partition.max(0) as Partition,
                    offset: delivery.offset.max(0) as Offset,
                }),
                Ok(Err((e, _))) => {
                    first_err.get_or_insert_with(|| (produce_error(topic, &e), Some(e)));
                }
                Err(_) => {
                    first_err.get_or_insert((Error::Closed, None));
                }
            }
        }
        match first_err {
            Some((e, kafka)) => {
                if let Some(k) = kafka {
                    self.renew_producer(&producer, &k);
                }
                Err(e)
            }
            None => {
                let mut ends: HashMap<Partition, Offset> = HashMap::new();
                for p in &positions {
                    let e = ends.entry(p.partition).or_default();
                    *e = (*e).max(p.offset + 1);
                }
                for (p, end) in ends {
                    self.saw_end(topic, p, end);
                }
                Ok(positions)
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
        self.check_open()?;
        self.check_partition(topic, partition).await?;
        let reader = self.reader(topic, partition)?;
        let mut reader = reader.lock().await;
        if !reader.positioned_at(from) {
            // Kafka would report it only after a fetch; ask first, like the embedded bus.
            let (start, end) = self.watermark(topic, partition).await?;
            if from < start {
                return Err(Error::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset: from,
                    start,
                    end,
                });
            }
        }
        let known_end = self.known_end(topic, partition);
        match reader.read(from, max_records, max_bytes, known_end).await {
            Ok(records) => Ok(records),
            Err(e) => Err(self.out_of_range(e).await),
        }
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: Partition,
        offset: Offset,
        timeout: Duration,
    ) -> Result<()> {
        self.check_open()?;
        self.check_partition(topic, partition).await?;
        let reader = self.reader(topic, partition)?;
        let mut reader = reader.lock().await;
        match reader.wait_for(offset, timeout).await {
            // Below the start: there are records later on.
            Err(Error::OffsetOutOfRange { .. }) => Ok(()),
            other => other,
        }
    }

    async fn end_offsets(&self, topic: &str) -> Result<Offsets> {
        self.check_open()?;
        // All partitions at once: each confirmation is about one fetch round trip.
        let ends = self
            .watermarks(topic)
            .await?
            .into_iter()
            .map(|(p, lo, hi)| async move {
                let (lo, hi) = (lo.max(0) as Offset, hi.max(0) as Offset);
                let end = if hi > lo {
                    self.confirm_end(topic, p, hi).await?
                } else {
                    hi
                };
                Ok::<_, Error>((p, end))
            });
        let mut out = Offsets::new();
        for r in futures::future::join_all(ends).await {
            let (p, end) = r?;
            self.saw_end(topic, p, end);
            // This process's own acknowledged appends count even if a fetch has not seen them.
            out.insert(p, end.max(self.known_end(topic, p)));
        }
        Ok(out)
    }

    async fn start_offsets(&self, topic: &str) -> Result<Offsets> {
        self.check_open()?;
        Ok(self
            .watermarks(topic)
            .await?
            .into_iter()
            .map(|(p, lo, _)| (p, lo.max(0) as Offset))
            .collect())
    }

    async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()> {
        self.check_open()?;
        let n = self.partition_count(topic).await?;
        if let Some(p) = offsets.keys().find(|p| **p >= n) {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition: *p,
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(topic, *p as i32, KOffset::Offset(*o as i64))
                .map_err(|e| call_error(format!("commit of {group}"), &e))?;
        }
        let consumer = self.group(group)?;
        let ctx = format!("committing group {group} on {topic}");
        let mut wait = Duration::from_millis(50);
        for attempt in 0..5 {
            let (c, t) = (consumer.clone(), tpl.clone());
            let result = tokio::task::spawn_blocking(move || c.commit(&t, CommitMode::Sync))
                .await
                .map_err(|e| join_error(&ctx, e))?;
            match result {
                Ok(()) => return Ok(()),
                // The coordinator moves or loads: a short bounded retry.
                Err(e) if attempt < 4 && e.rdkafka_error_code().is_some_and(transient) => {
                    tracing::debug!(group, error = %e, "kafka commit retried");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(call_error(&ctx, &e)),
            }
        }
        Err(Error::io(
            ctx,
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        ))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Offsets> {
        self.check_open()?;
        let n = self.partition_count(topic).await?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(topic, p as i32);
        }
        let consumer = self.group(group)?;
        let timeout = self.timeout();
        let ctx = format!("committed offsets of group {group} on {topic}");
        let got = tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, timeout))
            .await
            .map_err(|e| join_error(&ctx, e))?
            .map_err(|e| call_error(&ctx, &e))?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                KOffset::Offset(o) if o >= 0 => Some((e.partition() as Partition, o as Offset)),
                _ => None,
            })
            .collect())
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let producer = self.producer();
        let timeout = Timeout::After(self.options.delivery_timeout);
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| join_error("flushing the producer", e))?;
        lock(&self.readers).clear();
        lock(&self.groups).clear();
        lock(&self.probes).clear();
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "kafka producer did not flush everything before closing");
        }
        tracing::info!(brokers = %self.options.brokers, "closed kafka bus");
        Ok(())
    }
}
