//! Why a re-read window writes nothing twice: every increment reads again the documents
//! stamped within `overlap` of the watermark, and a restart from an older position reads
//! further back still. Each document read is compared with the version last put on the bus
//! for its `_id` (its `_seq_no`/`_primary_term`, else `_version`, else its source text) and
//! passed over when they are the same.
//!
//! The versions live in memory for the documents stamped after `watermark − overlap` (older
//! ones are never read again) and are rebuilt on start from the topic itself: walking back
//! from its end to where the documents get older than the position it resumes from. The
//! topic is written in timestamp order (the export and every increment sort by it), so the
//! walk stops soon after the resume point; a re-snapshot's truncate ends it too.

use std::collections::HashMap;
use std::sync::Arc;

use strata_bus::{Consumer, Log, OnLost};
use strata_core::cdc::{CdcRecord, Value};

use super::config::ID_COLUMN;
use super::decode::row_fingerprint;
use crate::error::{Error, Result};

/// Records read back per step of the walk.
const WINDOW: u64 = 4096;

/// The version of each recent document on the bus, by `_id`.
#[derive(Debug, Default)]
pub struct Recent {
    /// `_id` → (fingerprint, timestamp in epoch ms when known).
    seen: HashMap<String, (u64, Option<i64>)>,
}

impl Recent {
    /// Whether the bus already holds this version of `id`.
    pub fn holds(&self, id: &str, fingerprint: u64) -> bool {
        self.seen.get(id).is_some_and(|(f, _)| *f == fingerprint)
    }

    /// Records that `id` went on the bus with this version.
    pub fn insert(&mut self, id: &str, fingerprint: u64, ts_ms: Option<i64>) {
        self.seen.insert(id.to_string(), (fingerprint, ts_ms));
    }

    /// Forgets the documents stamped before `from_ms` (no increment reads them again).
    pub fn prune(&mut self, from_ms: i64) {
        self.seen
            .retain(|_, (_, ts)| ts.is_some_and(|t| t >= from_ms));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Rebuilds the versions of the documents stamped at or after `from_ms` from `topic`
    /// (None: every document the topic holds since its last truncate). `ts_column` is the
    /// row column holding the document's timestamp.
    pub async fn from_topic(
        log: &Arc<dyn Log>,
        topic: &str,
        ts_column: &str,
        from_ms: Option<i64>,
        overlap_ms: i64,
    ) -> Result<Recent> {
        let end = log
            .end_offsets(topic)
            .await
            .map_err(|e| Error::bus(format!("end offsets of {topic}"), e))?;
        let mut hi = end.get(&0).copied().unwrap_or(0);
        let mut recent = Recent::default();
        // Documents get older going back; out-of-order ones are at most `overlap` older than
        // their neighbours (late arrivals), so the walk stops a further `overlap` back.
        let stop_below = from_ms.map(|f| f.saturating_sub(overlap_ms));
        let mut ended = false;
        while hi > 0 && !ended {
            let lo = hi.saturating_sub(WINDOW);
            let mut records = Vec::new();
            let mut window = Consumer::range(log.clone(), topic, 0, lo, hi)
                .with_limits(WINDOW as usize, 64 << 20)
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
                let change = match CdcRecord::from_json(&r.value) {
                    Ok(CdcRecord::Change(c)) => c,
                    Ok(CdcRecord::Truncate(_)) => {
                        ended = true;
                        break;
                    }
                    _ => continue,
                };
                let Some(row) = change.after.as_ref() else {
                    continue;
                };
                // An increment's change carries the server's reading of the timestamp (its
                // sort value) in its position; an export read has only its column.
                let ts_ms = if change.position.snapshot {
                    match row.get(ts_column) {
                        Some(Value::Timestamp(us)) => Some(us.div_euclid(1000)),
                        _ => None,
                    }
                } else {
                    i64::try_from(change.position.pos).ok()
                };
                if let (Some(t), Some(stop)) = (ts_ms, stop_below) {
                    if t < stop {
                        ended = true;
                        break;
                    }
                }
                if ts_ms.is_some_and(|t| from_ms.is_some_and(|f| t < f)) {
                    continue;
                }
                let Some(Value::Str(id)) = row.get(ID_COLUMN) else {
                    continue;
                };
                // Newest first: the first version met is the one the bus ends with.
                if !recent.seen.contains_key(id) {
                    recent.insert(id, row_fingerprint(row), ts_ms);
                }
            }
            hi = lo;
        }
        Ok(recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::cdc::{Change, Op, Row, Truncate};

    use crate::elasticsearch::position::bus_position;

    fn doc(id: &str, ts_ms: i64, seq: i64) -> CdcRecord {
        let mut row = Row::new();
        row.insert("_id".into(), Value::Str(id.into()));
        row.insert("_seq_no".into(), Value::Int(seq));
        row.insert("_primary_term".into(), Value::Int(1));
        row.insert("ts".into(), Value::Timestamp(ts_ms * 1000));
        CdcRecord::Change(Box::new(Change {
            op: Op::Update,
            before: None,
            after: Some(row),
            position: bus_position(Some(ts_ms), 0, false),
            txid: None,
            commit_ts: ts_ms * 1000,
        }))
    }

    #[tokio::test]
    async fn the_versions_are_rebuilt_from_the_topic_back_to_the_resume_point() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            strata_bus::embedded::EmbeddedLog::open(dir.path(), Default::default())
                .await
                .unwrap();
        let topic = "cdc.s.p";
        log.ensure_topic(topic, 1).await.unwrap();
        let truncate = CdcRecord::Truncate(Truncate {
            position: bus_position(None, 0, true),
            commit_ts: 0,
            reason: "resnapshot".into(),
        });
        // A document before the last re-snapshot, then "a" at 50s, timestamps 10s..100s one
        // a second, and "a" again at 95s with a newer version.
        let mut records = vec![doc("gone", 5_000, 1), truncate, doc("a", 50_000, 1)];
        for i in 10..=100 {
            records.push(doc(&format!("d{i}"), i * 1000, i));
        }
        records.push(doc("a", 95_000, 2));
        crate::topic::append(log.as_ref(), topic, records)
            .await
            .unwrap();

        let recent = Recent::from_topic(&log, topic, "ts", Some(90_000), 10_000)
            .await
            .unwrap();
        let fp = |seq: i64| {
            let CdcRecord::Change(c) = doc("x", 0, seq) else {
                unreachable!()
            };
            row_fingerprint(c.after.as_ref().unwrap())
        };
        assert!(recent.holds("d95", fp(95)) && recent.holds("d90", fp(90)));
        assert!(!recent.holds("d89", fp(89)), "older than the resume point");
        assert!(
            recent.holds("a", fp(2)) && !recent.holds("a", fp(1)),
            "the newest version counts"
        );
        assert_eq!(recent.len(), 12);
        // From the start: everything since the truncate, nothing before it.
        let all = Recent::from_topic(&log, topic, "ts", None, 10_000)
            .await
            .unwrap();
        assert_eq!(all.len(), 92);
        assert!(!all.holds("gone", fp(1)));
        let mut all = all;
        all.prune(99_000);
        assert_eq!(all.len(), 2);
    }
}
