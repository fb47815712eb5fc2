//! An in-memory `Log` for sink tests that must not depend on the embedded log's timing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use strata_bus::{Error, Log, Offset, Offsets, Partition, Position, Record, Result, StoredRecord};
use tokio::sync::Notify;

#[derive(Default)]
pub struct MemLog {
    topics: Mutex<HashMap<String, Vec<Vec<StoredRecord>>>>,
    groups: Mutex<HashMap<(String, String), Offsets>>,
    notify: Notify,
}

impl MemLog {
    fn with_partition<T>(
        &self,
        topic: &str,
        partition: Partition,
        f: impl FnOnce(&mut Vec<StoredRecord>) -> T,
    ) -> Result<T> {
        let mut topics = self.topics.lock().unwrap();
        let parts = topics
            .get_mut(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        let p = parts
            .get_mut(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        Ok(f(p))
    }
}

#[async_trait]
impl Log for MemLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.topics
            .lock()
            .unwrap()
            .entry(topic.to_string())
            .or_insert_with(|| vec![Vec::new(); partitions as usize]);
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.topics
            .lock()
            .unwrap()
            .get(topic)
            .map(|p| p.len() as u32)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        let n = self.partitions(topic).await?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let partition = strata_bus::partition_for(&r.key, n);
            let offset = self.with_partition(topic, partition, |p| {
                let offset = p.len() as u64;
                p.push(StoredRecord {
                    partition,
                    offset,
                    key: r.key,
                    value: r.value,
                    timestamp_ms: r.timestamp_ms,
                });
                offset
            })?;
            out.push(Position { partition, offset });
        }
        self.notify.notify_waiters();
        Ok(out)
    }

    async fn read(
        &self,
        topic: &str,
        partition: Partition,
        from: Offset,
        max_records: usize,
        _max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.with_partition(topic, partition, |p| {
            p.iter()
                .skip(from as usize)
                .take(max_records)
                .cloned()
                .collect()
        })
    }

    async fn wait_for(
        &self,
        topic: &str,
        partition: Partition,
        offset: Offset,
        timeout: Duration,
    ) -> Result<()> {
        let notified = self.notify.notified();
        if self.with_partition(topic, partition, |p| p.len() as u64 > offset)? {
            return Ok(());
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }

    async fn end_offsets(&self, topic: &str) -> Result<Offsets> {
        let topics = self.topics.lock().unwrap();
        let parts = topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.len() as u64))
            .collect())
    }

    async fn start_offsets(&self, topic: &str) -> Result<Offsets> {
        let n = self.partitions(topic).await?;
        Ok((0..n).map(|p| (p, 0)).collect())
    }

    async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()> {
        self.groups
            .lock()
            .unwrap()
            .insert((group.to_string(), topic.to_string()), offsets.clone());
        Ok(())
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Offsets> {
        Ok(self
            .groups
            .lock()
            .unwrap()
            .get(&(group.to_string(), topic.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
