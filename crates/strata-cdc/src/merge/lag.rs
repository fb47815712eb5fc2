//! How far an ODS table trails its CDC topic: what the warehouse sentinel waits on. [`applied`]
//! (what a table holds of its topic) also serves the merger's resume and `strata cdc status`.
//!
//! The lag is the age of the oldest change on the bus that the table does not hold yet (its
//! source commit time against now), and zero when the table holds everything on the bus. It
//! measures the merger and the bus, not the connector: changes the connector has not read from
//! the database yet are not on the bus to be counted (the source state's last commit time says
//! how far the connector got).

use std::sync::Arc;
use std::time::Duration;

use iceberg::table::Table;
use iceberg::TableIdent;
use strata_bus::{Consumer, Log, OnLost};
use strata_core::cdc::CdcRecord;

use strata_table::error::{Error, Result};
use strata_table::lake::Lake;
use strata_table::position::{carried_properties, table_position};

use super::merger::last_commit_ts_key;

/// Records read past the table's position looking for the first change (schema records in
/// between are skipped).
const PROBE_RECORDS: usize = 64;

/// One ODS table against its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct CdcLag {
    pub topic: String,
    pub table: TableIdent,
    /// Next topic offset the table does not hold (None: the table does not exist yet).
    pub applied: Option<u64>,
    /// Next offset to be written to the topic (0: no topic yet).
    pub end: u64,
    /// Source commit time of the last change the table holds, epoch microseconds.
    pub applied_commit_ts: Option<i64>,
    /// Source commit time of the oldest change the table does not hold yet.
    pub oldest_pending_ts: Option<i64>,
}

impl CdcLag {
    /// Records on the bus the table does not hold.
    pub fn pending(&self) -> u64 {
        self.end.saturating_sub(self.applied.unwrap_or(0))
    }

    /// Age of the oldest change not applied yet, at `now_micros`; zero when nothing is pending.
    /// `None` when records are pending but none of them is a change with a commit time (only
    /// schema records, which the merger applies with the next change).
    pub fn lag(&self, now_micros: i64) -> Option<Duration> {
        if self.pending() == 0 {
            return Some(Duration::ZERO);
        }
        let ts = self.oldest_pending_ts?;
        Some(Duration::from_micros(
            now_micros.saturating_sub(ts).max(0) as u64
        ))
    }
}

/// What an ODS table holds of its topic, from its snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Next offset of the topic (partition 0) the table does not hold; 0 for a table without a
    /// position.
    pub next: u64,
    /// Source commit time of the last change it holds, epoch microseconds.
    pub commit_ts: Option<i64>,
}

/// What the loaded `table` holds of `topic`.
pub fn applied_in(table: &Table, topic: &str) -> Result<Applied> {
    Ok(Applied {
        next: table_position(table, topic)?
            .and_then(|o| o.get(&0).copied())
            .unwrap_or(0),
        commit_ts: carried_properties(table)
            .get(&last_commit_ts_key(topic))
            .and_then(|v| v.parse::<i64>().ok()),
    })
}

/// What `ident` holds of `topic`; `None` when the table does not exist.
pub async fn applied(lake: &Lake, ident: &TableIdent, topic: &str) -> Result<Option<Applied>> {
    let exists = lake
        .catalog()
        .table_exists(ident)
        .await
        .map_err(|e| Error::iceberg(format!("checking {ident}"), e))?;
    if !exists {
        return Ok(None);
    }
    let table = lake.load_table(ident).await?;
    applied_in(&table, topic).map(Some)
}

/// Measures `table` against `topic` (partition 0: CDC topics have one partition so the source
/// order holds).
pub async fn cdc_lag(
    lake: &Lake,
    log: &Arc<dyn Log>,
    topic: &str,
    table: &TableIdent,
) -> Result<CdcLag> {
    let end = match log.end_offsets(topic).await {
        Ok(o) => o.get(&0).copied().unwrap_or(0),
        Err(strata_bus::Error::UnknownTopic(_)) => 0,
        Err(e) => return Err(Error::bus(format!("reading the end of {topic}"), e)),
    };
    let held = applied(lake, table, topic).await?;
    let applied = held.as_ref().map(|a| a.next);
    let applied_commit_ts = held.and_then(|a| a.commit_ts);
    let from = applied.unwrap_or(0);
    let mut oldest_pending_ts = None;
    if from < end {
        // One read. Retention removed what the table has not applied: the merger reports
        // that; here the lag is simply unknown.
        let records = match Consumer::range(log.clone(), topic, 0, from, end)
            .with_limits(PROBE_RECORDS, 4 << 20)
            .on_lost(OnLost::Fail)
            .fetch()
            .await
        {
            Ok(r) => r,
            Err(strata_bus::Error::OffsetOutOfRange { .. }) => Vec::new(),
            Err(e) => return Err(Error::bus(format!("reading {topic} at {from}"), e)),
        };
        oldest_pending_ts = records
            .iter()
            .find_map(|r| match CdcRecord::from_json(&r.value) {
                Ok(CdcRecord::Change(c)) => Some(c.commit_ts),
                _ => None,
            });
    }
    Ok(CdcLag {
        topic: topic.to_string(),
        table: table.clone(),
        applied,
        end,
        applied_commit_ts,
        oldest_pending_ts,
    })
}
