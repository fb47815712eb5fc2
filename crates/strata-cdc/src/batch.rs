//! Committed source transactions on their way to the bus. Both sources collect transactions
//! here and put many of them on the bus at once — one durable append per topic, all topics
//! appended concurrently so the bus group-commits them into one fsync — instead of one fsync
//! per source transaction, which held a source to a few hundred changes a second.
//!
//! One flush is in flight while the next batch gathers: the source goes on reading and
//! decoding while the bus fsyncs, instead of stopping for every flush. The next flush waits
//! for the one before it, so each topic stays in source order.
//!
//! The resume position moves only when a flush has returned: the state file never points past
//! what the bus holds, and a crash re-reads from the last flushed transaction boundary (the
//! sources then drop changes their topic already holds, see `topic.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::Log;
use strata_core::cdc::CdcRecord;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::state::SourceState;
use crate::topic;

/// Buffered changes that force a flush.
pub const MAX_PENDING: usize = 8192;
/// Longest a committed transaction waits for company before it is flushed.
pub const LINGER: Duration = Duration::from_millis(20);

/// Records waiting for one flush, by topic in source order, and the flush before them while
/// the bus still writes it.
pub struct Pending<P> {
    topics: BTreeMap<String, Vec<CdcRecord>>,
    /// Buffered records of every kind, and the row changes among them.
    records: usize,
    changes: usize,
    /// When the oldest buffered change arrived.
    since: Option<Instant>,
    /// Where streaming resumes once the buffer is on the bus: the boundary after the last
    /// complete transaction added (None: no boundary passed since the last flush).
    resume: Option<P>,
    last_commit_ts: Option<i64>,
    in_flight: Option<InFlight<P>>,
}

/// A flush the bus is writing, and what it moves once durable.
struct InFlight<P> {
    task: JoinHandle<Result<()>>,
    changes: usize,
    resume: Option<P>,
    last_commit_ts: Option<i64>,
}

impl<P> Default for Pending<P> {
    fn default() -> Self {
        Pending {
            topics: BTreeMap::new(),
            records: 0,
            changes: 0,
            since: None,
            resume: None,
            last_commit_ts: None,
            in_flight: None,
        }
    }
}

impl<P> Pending<P> {
    /// Adds a transaction's records (changes, and the schema changes and truncates between
    /// them), `(topic, record)` in source order. `boundary` is the position after the
    /// transaction; `None` adds part of a transaction still going on (a huge one flushed
    /// early), which moves no resume position.
    pub fn add(
        &mut self,
        records: impl IntoIterator<Item = (String, CdcRecord)>,
        boundary: Option<P>,
    ) {
        for (topic, record) in records {
            if let CdcRecord::Change(c) = &record {
                self.last_commit_ts = Some(c.commit_ts);
                self.changes += 1;
            }
            self.topics.entry(topic).or_default().push(record);
            self.records += 1;
            self.since.get_or_insert_with(Instant::now);
        }
        if boundary.is_some() {
            self.resume = boundary;
        }
    }

    /// Moves the resume position to `boundary` (a transaction without our changes, a new binlog
    /// file): at once when nothing is buffered or in flight, else once that is on the bus.
    pub fn pass(&mut self, boundary: P, state: &mut SourceState<P>) {
        if self.is_empty() {
            state.resume = boundary;
        } else {
            self.resume = Some(boundary);
        }
    }

    /// Buffered records (not counting a flush in flight).
    pub fn len(&self) -> usize {
        self.records
    }

    /// Nothing buffered and nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.in_flight.is_none()
    }

    /// Whether the buffer should go out now: it is full, or its oldest change has waited
    /// [`LINGER`].
    pub fn due(&self) -> bool {
        self.records >= MAX_PENDING || self.since.is_some_and(|s| s.elapsed() >= LINGER)
    }

    /// When [`Pending::send`] should be called at the latest: the buffer's linger deadline,
    /// or now when only a flush in flight is left to settle (None: nothing to do).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        match (self.since, &self.in_flight) {
            (Some(s), _) => Some((s + LINGER).into()),
            (None, Some(_)) => Some(tokio::time::Instant::now()),
            (None, None) => None,
        }
    }

    /// Waits for the flush in flight (if any), then starts flushing what is buffered without
    /// waiting for it. A flush that finished moves `state` as [`Pending::flush`] does.
    pub async fn send(
        &mut self,
        log: &Arc<dyn Log>,
        source: &str,
        state: &mut SourceState<P>,
    ) -> Result<()> {
        self.settle(source, state).await?;
        if self.records == 0 {
            // Only a boundary passed since: everything before it is on the bus now.
            if let Some(resume) = self.resume.take() {
                state.resume = resume;
            }
            return Ok(());
        }
        let topics = std::mem::take(&mut self.topics);
        let log = log.clone();
        let task = tokio::spawn(async move {
            let log = log.as_ref();
            let appends = topics
                .into_iter()
                .map(|(topic, records)| async move { topic::append(log, &topic, records).await });
            futures::future::try_join_all(appends).await.map(|_| ())
        });
        self.in_flight = Some(InFlight {
            task,
            changes: std::mem::take(&mut self.changes),
            resume: self.resume.take(),
            last_commit_ts: self.last_commit_ts.take(),
        });
        self.records = 0;
        self.since = None;
        Ok(())
    }

    /// Appends everything buffered and waits until the bus holds it (and the flush in flight
    /// before it), then moves `state`'s resume position and counters.
    pub async fn flush(
        &mut self,
        log: &Arc<dyn Log>,
        source: &str,
        state: &mut SourceState<P>,
    ) -> Result<()> {
        self.send(log, source, state).await?;
        self.settle(source, state).await
    }

    /// After the stream failed: waits until the flush in flight (if any) has ended, whatever
    /// its outcome, so the next attempt reads topic tails that no write of this one can still
    /// extend (a tail read too early would let the retry append those changes again).
    /// Nothing else is flushed and no position moves.
    pub async fn abandon(mut self) {
        if let Some(done) = self.in_flight.take() {
            let _ = done.task.await;
        }
    }

    /// Waits for the flush in flight and moves `state` past what it wrote.
    async fn settle(&mut self, source: &str, state: &mut SourceState<P>) -> Result<()> {
        let Some(done) = self.in_flight.take() else {
            return Ok(());
        };
        done.task
            .await
            .map_err(|e| Error::Internal(format!("the bus flush task failed: {e}")))??;
        if let Some(resume) = done.resume {
            state.resume = resume;
        }
        if let Some(ts) = done.last_commit_ts {
            state.last_commit_ts = Some(ts);
        }
        state.changes += done.changes as u64;
        metrics::counter!("strata_cdc_changes_total", "source" => source.to_string())
            .increment(done.changes as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::position::BinlogPos;
    use crate::state::Phase;
    use std::sync::Arc;
    use strata_core::cdc::{Change, Op, SourcePosition};

    fn change(pos: u64) -> CdcRecord {
        CdcRecord::Change(Box::new(Change {
            op: Op::Create,
            before: None,
            after: None,
            position: SourcePosition {
                file: "binlog.000001".into(),
                pos,
                row: 0,
                snapshot: false,
            },
            txid: None,
            commit_ts: pos as i64,
        }))
    }

    fn at(pos: u64) -> BinlogPos {
        BinlogPos::at("binlog.000001", pos)
    }

    #[tokio::test]
    async fn resume_moves_only_with_a_flush_and_only_to_a_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            strata_bus::embedded::EmbeddedLog::open(dir.path(), Default::default())
                .await
                .unwrap();
        for t in ["cdc.s.a", "cdc.s.b"] {
            log.ensure_topic(t, 1).await.unwrap();
        }
        let mut state = SourceState::new(Phase::Stream, at(4));
        let mut p = Pending::default();
        // A boundary with nothing buffered moves the position at once.
        p.pass(at(10), &mut state);
        assert_eq!(state.resume, at(10));
        p.add(
            [
                ("cdc.s.a".to_string(), change(20)),
                ("cdc.s.b".to_string(), change(21)),
            ],
            Some(at(30)),
        );
        // Part of the next transaction, and a boundary passed while changes are buffered.
        p.add([("cdc.s.a".to_string(), change(40))], None);
        p.pass(at(50), &mut state);
        assert_eq!(state.resume, at(10), "nothing is on the bus yet");
        assert_eq!(p.len(), 3);
        assert!(p.deadline().is_some());
        p.flush(&log, "s", &mut state).await.unwrap();
        assert_eq!(state.resume, at(50));
        assert_eq!((state.changes, state.last_commit_ts), (3, Some(40)));
        assert!(p.is_empty() && p.deadline().is_none());
        let ends = |t: &'static str| {
            let log = log.clone();
            async move { log.end_offsets(t).await.unwrap()[&0] }
        };
        assert_eq!((ends("cdc.s.a").await, ends("cdc.s.b").await), (2, 1));
        // A partial transaction flushed alone keeps the last boundary.
        p.add([("cdc.s.a".to_string(), change(60))], None);
        p.flush(&log, "s", &mut state).await.unwrap();
        assert_eq!(state.resume, at(50));
        // A sent batch moves nothing until the next send or flush has seen it on the bus;
        // a boundary passed meanwhile waits for it too.
        p.add([("cdc.s.b".to_string(), change(70))], Some(at(80)));
        p.send(&log, "s", &mut state).await.unwrap();
        // Nothing buffered, but a flush in flight: not empty, and due to be settled now.
        assert_eq!(p.len(), 0);
        assert!(!p.is_empty() && p.deadline().is_some());
        p.pass(at(90), &mut state);
        assert_eq!((state.resume.clone(), state.changes), (at(50), 4));
        p.send(&log, "s", &mut state).await.unwrap();
        assert_eq!((state.resume.clone(), state.changes), (at(90), 5));
        assert!(p.is_empty() && p.deadline().is_none());
        assert_eq!(ends("cdc.s.b").await, 2);
    }
}
