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
    let mut fresh = Vec::new();
    for t in Table::ALL {
        let topic = strata_core::cdc::topic(SIM_SOURCE, t.name());
        log.ensure_topic(&topic, 1).await?;
        let end = log.end_offsets(&topic).await?.get(&0).copied().unwrap_or(0);
        if end == 0 {
            // The merger's group holds the topic from its start: bus retention deletes only
            // what every group has read, and the simulated history (a follow graph years
            // old) is past the retention age before the merger below has read any of it.
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

pub(super) fn record(r: &CdcRecord) -> Record {
    Record {
        key: Default::default(),
        value: r.to_json().into(),
        timestamp_ms: chrono::Utc::now().timestamp_millis(),
    }
}
