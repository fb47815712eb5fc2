//! The built-in path of the business rows: the simulated change log onto bus topics
//! `cdc.sim.<table>`, then the ODS merger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use anyhow::Result;
use iceberg::{NamespaceIdent, TableIdent};
use strata_bus::{Log, Offsets, Record};
use strata_cdc::merge::{CdcMerger, CdcTable, CDC_GROUP};
use strata_core::cdc::{CdcRecord, Change as CdcChange, Op as CdcOp, SourcePosition};
use strata_sim::{Op, Table, World};
use strata_sql::SqlSession;
use strata_table::Lake;

use super::report::{bar, count, progress};
use super::sim_db::{image, sim_schema, SIM_SOURCE};

/// The business rows take the path a real CDC source's changes take: the simulated app
/// database's change log (inserts, updates, deletes, in commit order) goes onto bus topics
/// `cdc.sim.<table>` (a schema record first), and the ODS merger applies it to
/// `ods.ods_<table>`, latest row per primary key, with the CDC metadata columns.
pub(super) async fn land_rows(
    config: &Config,
    lake: &Lake,
    world: &World,
) -> Result<Vec<(String, u64)>> {
    let log: Arc<dyn Log> = crate::bus::open(config).await?;
    let fresh = open_topics(log.as_ref()).await?;
    let total = world.changes().filter(|c| fresh.contains(&c.table)).count() as u64;
    let mut pending: HashMap<Table, Vec<Record>> = HashMap::new();
    let mut sent = 0u64;
    for (seq, c) in world.changes().enumerate() {
        if !fresh.contains(&c.table) {
            continue;
        }
        let change = CdcRecord::Change(Box::new(CdcChange {
            op: match c.op {
                Op::Insert => CdcOp::Create,
                Op::Update => CdcOp::Update,
                Op::Delete => CdcOp::Delete,
            },
            before: c.before.as_ref().map(image),
            after: c.after.as_ref().map(image),
            position: SourcePosition {
                file: "sim-binlog.000001".to_string(),
                pos: seq as u64,
                row: 0,
                snapshot: false,
            },
            txid: None,
            commit_ts: c.ts,
        }));
        let batch = pending.entry(c.table).or_default();
        batch.push(record(&change));
        if batch.len() >= 5_000 {
            let topic = strata_core::cdc::topic(SIM_SOURCE, c.table.name());
            sent += batch.len() as u64;
            log.append(&topic, std::mem::take(batch)).await?;
            progress(&bar(sent, total, "changes"));
        }
    }
    for (t, batch) in pending {
        if !batch.is_empty() {
            sent += batch.len() as u64;
            log.append(&strata_core::cdc::topic(SIM_SOURCE, t.name()), batch)
                .await?;
        }
    }
    progress(&bar(sent, total, "changes"));
    eprintln!();
    println!("    {sent} changes on cdc.{SIM_SOURCE}.*; the ODS merger applies them");
    let tables = Table::ALL
        .iter()
        .map(|t| CdcTable {
            source: SIM_SOURCE.to_string(),
            table: t.name().to_string(),
            topic: strata_core::cdc::topic(SIM_SOURCE, t.name()),
            target: TableIdent::new(
                NamespaceIdent::new("ods".into()),
                format!("ods_{}", t.name()),
            ),
            changelog: None,
            commit_interval: Duration::from_secs(1),
        })
        .collect();
    // A merger that is told to stop applies everything on the bus first.
    let (_stop, stopped) = tokio::sync::watch::channel(true);
    CdcMerger::new(lake, log.clone(), tables)
        .run(stopped)
        .await?;
    log.close().await?;

    let session = SqlSession::new(lake).await?;
    let mut out = Vec::new();
    for t in Table::ALL {
        let n = count(
            &session,
            &format!("SELECT count(*) FROM ods.ods_{}", t.name()),
        )
        .await?;
        out.push((t.name().to_string(), n));
    }
    Ok(out)
}

/// Creates the `cdc.sim.<table>` topics and returns the tables whose topic is new (a topic
/// already holding records is from an earlier demo run and is left as it is). A new topic gets
/// its schema record, and the merger's group [`CDC_GROUP`] is committed at its start first:
/// bus retention deletes only what every group has read, and the simulated history (a follow
/// graph years old, millions of changes in a large world) would otherwise be past retention
/// before the merger has read any of it.
async fn open_topics(log: &dyn Log) -> Result<Vec<Table>> {
    let mut fresh = Vec::new();
    for t in Table::ALL {
        let topic = strata_core::cdc::topic(SIM_SOURCE, t.name());
        log.ensure_topic(&topic, 1).await?;
        let end = log.end_offsets(&topic).await?.get(&0).copied().unwrap_or(0);
        if end == 0 {
            log.commit(CDC_GROUP, &topic, &Offsets::from([(0, 0)]))
                .await?;
            let schema = CdcRecord::Schema(sim_schema(t));
            log.append(&topic, vec![record(&schema)]).await?;
            fresh.push(t);
        } else {
            println!(
                "    cdc.{SIM_SOURCE}.{}: on the bus from an earlier demo run",
                t.name()
            );
        }
    }
    Ok(fresh)
}

pub(super) fn record(r: &CdcRecord) -> Record {
    Record {
        key: Default::default(),
        value: r.to_json().into(),
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};

    /// The demo's history would be lost without the group commit: with segments this small
    /// and a byte budget this tight, retention deletes every closed segment no group holds.
    #[tokio::test]
    async fn new_sim_topics_are_held_from_their_start_until_the_merger_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            segment_bytes: 512,
            retention_bytes: 1,
            ..Default::default()
        };
        let log = EmbeddedLog::open(dir.path(), options).await.unwrap();
        let fresh = open_topics(log.as_ref()).await.unwrap();
        assert_eq!(fresh, Table::ALL.to_vec());

        let follows = strata_core::cdc::topic(SIM_SOURCE, Table::Follows.name());
        let held = strata_core::cdc::topic(SIM_SOURCE, Table::Users.name());
        let unheld = "cdc.sim.unheld";
        log.ensure_topic(unheld, 1).await.unwrap();
        let history = || {
            (0..40)
                .map(|i| Record {
                    key: Default::default(),
                    value: format!("{{\"change\": {i}, \"pad\": \"{}\"}}", "x".repeat(60)).into(),
                    timestamp_ms: 0,
                })
                .collect::<Vec<_>>()
        };
        for topic in [follows.as_str(), held.as_str(), unheld] {
            for r in history() {
                log.append(topic, vec![r]).await.unwrap();
            }
        }
        let deleted = log.enforce_retention().await.unwrap();
        assert!(deleted > 0, "retention deletes the topic no group holds");
        assert!(log.start_offsets(unheld).await.unwrap()[&0] > 0);
        for topic in [&follows, &held] {
            assert_eq!(log.start_offsets(topic).await.unwrap()[&0], 0, "{topic}");
        }

        // A second demo run on the same bus leaves the topics (and their history) alone.
        assert!(open_topics(log.as_ref()).await.unwrap().is_empty());
        assert_eq!(log.end_offsets(&follows).await.unwrap()[&0], 41);
    }
}
