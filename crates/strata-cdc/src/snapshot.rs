//! The snapshot loop every source runs (called by `runtime.rs`): every table whose snapshot is not done is read in
//! primary-key chunks, each chunk appended to its topic as reads and then recorded in the
//! state file, so an interrupted snapshot resumes after the last chunk on the bus (a chunk
//! re-read after a crash is an idempotent upsert for the merger).
//!
//! A table's own re-snapshot (`strata cdc resync`, a table added to the config later, a lost
//! position) starts at its own position and puts a truncate on the topic before its first
//! rows, so the ODS table ends holding exactly what the source holds.

use std::path::Path;

use crate::config::SourceCommon;
use strata_bus::Log;
use strata_core::cdc::{CdcRecord, Change, Op, Truncate};
use tokio::sync::watch;

use crate::connector::{CatalogTable, Connector, Position};
use crate::error::Result;
use crate::state::{self, SourceState};
use crate::topic;

/// One source's snapshot settings.
pub(crate) struct Snapshot<'a> {
    pub log: &'a dyn Log,
    pub config: &'a SourceCommon,
    pub state_path: &'a Path,
}

impl Snapshot<'_> {
    /// Loads every table of `schemas` whose snapshot is not done. Returns false when stopped
    /// by shutdown.
    pub async fn run<C: Connector>(
        &self,
        source: &C,
        session: &mut C::Session,
        tables: &[C::Table],
        state: &mut SourceState<C::Position>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool> {
        let commit_ts = chrono::Utc::now().timestamp_micros();
        let chunk = self.config.snapshot_chunk_rows;
        for table in tables {
            let schema = table.schema();
            let name = schema.table.as_str();
            if !state.snapshotting(name) {
                continue;
            }
            let topic = self.config.topic(name);
            tracing::info!(source = %self.config.name, table = name, "snapshotting table");
            loop {
                if *shutdown.borrow() {
                    return Ok(false);
                }
                let snapshot_start = state.snapshot_start.clone();
                let progress = state.tables.entry(name.to_string()).or_default();
                let own_start = progress.start.clone();
                let start = own_start.clone().unwrap_or(snapshot_start);
                let at = |row: u64| start.snapshot_read(row);
                let mut records = Vec::new();
                if own_start.is_some() && progress.rows == 0 && progress.last_key.is_none() {
                    // The schema the reads have, then the truncate: the merger rebuilds a
                    // table it had stopped with exactly this schema.
                    records.push(CdcRecord::Schema(schema.clone()));
                    records.push(CdcRecord::Truncate(Truncate {
                        position: at(0),
                        commit_ts,
                        reason: "resnapshot".to_string(),
                    }));
                }
                let rows = source
                    .read_chunk(session, table, progress.last_key.as_deref(), chunk)
                    .await?;
                let n = rows.len();
                let last_key = rows.last().map(|r| schema.key_of(r));
                let first_row = progress.rows;
                records.extend(rows.into_iter().enumerate().map(|(j, row)| {
                    CdcRecord::Change(Box::new(Change {
                        op: Op::Read,
                        before: None,
                        after: Some(row),
                        position: at(first_row + j as u64),
                        txid: None,
                        commit_ts,
                    }))
                }));
                topic::append(self.log, &topic, records).await?;
                state.changes += n as u64;
                let progress = state.tables.entry(name.to_string()).or_default();
                progress.rows += n as u64;
                if n < chunk || schema.primary_key.is_empty() {
                    progress.done = true;
                } else {
                    progress.last_key = last_key;
                }
                let (done, rows) = (progress.done, progress.rows);
                state::save(self.state_path, state)?;
                if done {
                    tracing::info!(source = %self.config.name, table = name, rows, "table snapshot done");
                    break;
                }
            }
        }
        Ok(true)
    }
}
