//! One assign-only consumer per partition read: positioned where the caller asks (by
//! assign), it serves `read` and `wait_for` and knows when it has reached the end (librdkafka's
//! end-of-partition event) without guessing with timeouts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use strata_bus::{Error, Offset, Partition, Result, StoredRecord};

use crate::client::Context;
use crate::error::call_error;

/// The longest `read` waits for the brokers to deliver records it knows exist (or to tell it
/// the partition ends). A slow broker makes `read` return what it has, possibly nothing.
const FETCH_WAIT: Duration = Duration::from_secs(2);

/// What one `recv` gave.
enum Got {
    Record(StoredRecord),
    /// The consumer reached the end of the partition.
    End,
}

pub(crate) struct Reader {
    topic: String,
    partition: Partition,
    consumer: StreamConsumer<Context>,
    /// Where the consumer delivers next; `None` until assigned.
    pos: Option<Offset>,
    /// A record `wait_for` received and `read` has not returned yet (its offset is the
    /// cursor).
    stash: Option<StoredRecord>,
    /// The consumer reported the end of the partition and delivered nothing since.
    at_end: bool,
}

impl Reader {
    pub(crate) fn new(
        topic: &str,
        partition: Partition,
        consumer: StreamConsumer<Context>,
    ) -> Self {
        Reader {
            topic: topic.to_string(),
            partition,
            consumer,
            pos: None,
            stash: None,
            at_end: false,
        }
    }

    /// The offset the next record handed out will have (or be at or after, across gaps).
    pub(crate) fn cursor(&self) -> Option<Offset> {
        self.stash.as_ref().map(|r| r.offset).or(self.pos)
    }

    /// Assigns the consumer at `from` unless it is already there.
    fn position(&mut self, from: Offset) -> Result<()> {
        if self.cursor() == Some(from) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            self.partition as i32,
            KOffset::Offset(from as i64),
        )
        .map_err(|e| call_error(format!("positioning {}/{}", self.topic, self.partition), &e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| call_error(format!("assigning {}/{}", self.topic, self.partition), &e))?;
        self.pos = Some(from);
        self.stash = None;
        self.at_end = false;
        Ok(())
    }

    /// Forgets the position, so the next call re-assigns (after an error).
    fn reset(&mut self) {
        self.pos = None;
        self.stash = None;
        self.at_end = false;
    }

    fn convert(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> StoredRecord {
        StoredRecord {
            partition: self.partition,
            offset: m.offset().max(0) as Offset,
            key: m.key().map(Bytes::copy_from_slice).unwrap_or_default(),
            value: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        }
    }

    /// One message or end-of-partition event, waiting until `deadline` (`None`: only what is
    /// already fetched). `Ok(None)`: nothing in that time.
    async fn recv(&mut self, deadline: Option<Instant>) -> Result<Option<Got>> {
        loop {
            let got = match deadline {
                None => match self.consumer.recv().now_or_never() {
                    Some(r) => r,
                    None => return Ok(None),
                },
                Some(d) => {
                    let wait = d.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(wait, self.consumer.recv()).await {
                        Ok(r) => r,
                        Err(_) => return Ok(None),
                    }
                }
            };
            let e = match got {
                Ok(m) => {
                    let record = self.convert(&m);
                    let ours = m.partition() == self.partition as i32 && m.topic() == self.topic;
                    drop(m);
                    // Skip what is left over from before a re-assign.
                    if !ours || self.pos.is_some_and(|p| record.offset < p) {
                        continue;
                    }
                    self.pos = Some(record.offset + 1);
                    self.at_end = false;
                    return Ok(Some(Got::Record(record)));
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    if p == self.partition as i32 {
                        self.at_end = true;
                        return Ok(Some(Got::End));
                    }
                    continue;
                }
                // librdkafka queues a connection event (broker down, transport failure) on
                // every consumer and reconnects by itself; it says nothing about this
                // partition's records. Failing the read on it made the caller back off once
                // per queued event, so a consumer took minutes to drain the backlog of events
                // after the brokers came back. Keep waiting instead (bounded by `deadline`).
                Err(e) if is_connection_event(&e) => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "kafka connection event while reading");
                    continue;
                }
                Err(e) => e,
            };
            let context = format!("reading {}/{}", self.topic, self.partition);
            self.reset();
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) {
                // The caller fills in the retained range.
                return Err(Error::OffsetOutOfRange {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: self.cursor().unwrap_or(0),
                    start: 0,
                    end: 0,
                });
            }
            return Err(call_error(context, &e));
        }
    }

    /// Records from `from`: at most `max_records`, roughly `max_bytes`; empty at the end of
    /// the partition. The caller checked `from` against the retained range.
    ///
    /// `known_end`: an end offset the caller knows of (acknowledged appends, watermarks).
    /// Below it the reader waits (bounded) for the fetch rather than calling the partition
    /// ended: an end-of-partition event only says where the consumer was.
    pub(crate) async fn read(
        &mut self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
        known_end: Offset,
    ) -> Result<Vec<StoredRecord>> {
        self.position(from)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if let Some(r) = self.stash.take() {
            bytes += r.key.len() + r.value.len();
            out.push(r);
        }
        let deadline = Instant::now() + FETCH_WAIT;
        while out.len() < max_records.max(1) && bytes < max_bytes {
            // At the end as far as anyone knows: take only what has arrived since.
            let behind = self.pos.is_none_or(|p| p < known_end);
            let wait = (!self.at_end || behind).then_some(deadline);
            match self.recv(wait).await {
                Ok(Some(Got::Record(r))) => {
                    bytes += r.key.len() + r.value.len();
                    out.push(r);
                }
                Ok(Some(Got::End)) => {
                    if !out.is_empty() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "kafka read stopped early");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Waits until a record at `offset` or later exists, or `timeout` passes (not an error).
    pub(crate) async fn wait_for(&mut self, offset: Offset, timeout: Duration) -> Result<()> {
        if self.stash.as_ref().is_some_and(|r| r.offset >= offset) {
            return Ok(());
        }
        if self.cursor() != Some(offset) {
            self.position(offset)?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() >= deadline {
                return Ok(());
            }
            match self.recv(Some(deadline)).await? {
                Some(Got::Record(r)) => {
                    self.stash = Some(r);
                    return Ok(());
                }
                Some(Got::End) => {}
                None => return Ok(()),
            }
        }
    }
}

/// A client-wide connection event delivered through the consumer queue, not a failure of the
/// partition read: librdkafka retries the connection itself.
fn is_connection_event(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    )
}

impl Reader {
    /// Whether the next record `read` hands out is the one at `from` (no re-assign needed).
    pub(crate) fn positioned_at(&self, from: Offset) -> bool {
        self.cursor() == Some(from)
    }
}
