//! What every source does with its bus topics `cdc.<source>.<table>`: read back the tail on
//! start (the last schema sent and the last streamed change, so a restart drops what the
//! topic already holds) and append records with a bounded retry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_bus::{Consumer, Log, OnLost, Record};
use strata_core::cdc::{CdcRecord, SourcePosition, TableSchema};

use crate::error::{Error, Result};

/// Per-topic facts read back from the bus tail on start.
#[derive(Debug, Default)]
pub struct TopicTail {
    pub schema: Option<TableSchema>,
    pub last_streamed: Option<SourcePosition>,
    /// The txids of the streamed changes read at the tail, newest first (one per change; a
    /// change without a txid ends the list). Binlog sources compare GTIDs with them, which
    /// hold across servers where binlog positions do not.
    pub txids: Vec<String>,
    /// How many changes at the very end of the topic carry the newest txid (a huge
    /// transaction can be on the topic in part).
    pub last_txid_changes: u64,
}

/// Reads the topic's last records: the last schema, the last streamed position and the txids
/// of the streamed changes before it.
pub async fn read_tail(log: &Arc<dyn Log>, topic: &str) -> Result<TopicTail> {
    let end = log
        .end_offsets(topic)
        .await
        .map_err(|e| Error::bus(format!("end offsets of {topic}"), e))?;
    let end = end.get(&0).copied().unwrap_or(0);
    let mut tail = TopicTail::default();
    let mut hi = end;
    // Walk back in windows until both facts are known or the topic's start is reached.
    // Snapshot reads precede every streamed change, so the walk stops at the first one;
    // a schema not found on the way is simply sent again.
    let mut seen_snapshot = false;
    // Whether every streamed change read so far carries the newest txid: the walk goes on
    // until it has counted them all.
    let mut trailing = true;
    let mut txids_open = true;
    while hi > 0 && (tail.last_streamed.is_none() || trailing) && !seen_snapshot {
        let lo = hi.saturating_sub(4096);
        let mut records = Vec::new();
        // Retention may have passed the window's start: what is left of it is read.
        let mut window = Consumer::range(log.clone(), topic, 0, lo, hi)
            .with_limits(4096, 64 << 20)
            .on_lost(OnLost::SkipQuietly);
        while !window.done() {
            let batch = window
                .fetch()
                .await
                .map_err(|e| Error::bus(format!("reading {topic}"), e))?;
            if batch.is_empty() {
                break;
            }
            records.extend(batch);
        }
        for r in records.iter().rev() {
            match CdcRecord::from_json(&r.value) {
                Ok(CdcRecord::Schema(s)) if tail.schema.is_none() => tail.schema = Some(s),
                Ok(CdcRecord::Change(c)) if c.position.snapshot => {
                    seen_snapshot = true;
                    break;
                }
                Ok(CdcRecord::Change(c)) => {
                    if tail.last_streamed.is_none() {
                        tail.last_streamed = Some(c.position.clone());
                    }
                    match (&c.txid, txids_open) {
                        (Some(txid), true) => {
                            if trailing && tail.txids.first().is_none_or(|t| t == txid) {
                                tail.last_txid_changes += 1;
                            } else {
                                trailing = false;
                            }
                            tail.txids.push(txid.clone());
                        }
                        _ => {
                            txids_open = false;
                            trailing = false;
                        }
                    }
                }
                // A re-snapshot starts with its truncate; a source TRUNCATE is streamed.
                Ok(CdcRecord::Truncate(t)) if t.position.snapshot => {
                    seen_snapshot = true;
                    break;
                }
                Ok(CdcRecord::Truncate(t)) => {
                    if tail.last_streamed.is_none() {
                        tail.last_streamed = Some(t.position.clone());
                    }
                    trailing = false;
                }
                _ => {}
            }
        }
        hi = lo;
    }
    Ok(tail)
}

/// Appends `records` in order; returns once they are durable. Retryable bus errors are retried
/// with backoff for up to ~10 s.
pub async fn append(log: &dyn Log, topic: &str, records: Vec<CdcRecord>) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: Bytes::new(),
            value: Bytes::from(r.to_json()),
            timestamp_ms: now,
        })
        .collect();
    let mut delay = Duration::from_millis(10);
    loop {
        match log.append(topic, records.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.retryable() && delay < Duration::from_secs(10) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(Error::bus(format!("appending to {topic}"), e)),
        }
    }
}
