//! The snapshot loop both sources run: every table whose snapshot is not done is read in
//! primary-key chunks, each chunk appended to its topic as reads and then recorded in the
//! state file, so an interrupted snapshot resumes after the last chunk on the bus (a chunk
//! re-read after a crash is an idempotent upsert for the merger).
//!
//! A table's own re-snapshot (`strata cdc resync`, a table added to the config later, a lost
//! position) starts at its own position and puts a truncate on the topic before its first
//! rows, so the ODS table ends holding exactly what the source holds.

use std::path::Path;

use strata_bus::Log;
use strata_core::cdc::{CdcRecord, Change, Op, Row, SourcePosition, TableSchema, Truncate, Value};
use strata_core::config::SourceConfig;
use tokio::sync::watch;

use crate::error::Result;
use crate::state::{self, BinlogPos, SourceState};
use crate::topic;

/// Reads one key-ordered chunk of a table from the source.
pub(crate) trait ChunkReader {
    /// Up to `limit` rows of the `table`-th table with a key greater than `after`, in key
    /// order (a table without a primary key: all of it).
    async fn read_chunk(
        &mut self,
        table: usize,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Row>>;
}

/// One source's snapshot settings.
pub(crate) struct Snapshot<'a> {
    pub log: &'a dyn Log,
    pub config: &'a SourceConfig,
    pub state_path: &'a Path,
    /// The [`SourcePosition::file`] of reads taken at a start position.
    pub position_file: fn(&BinlogPos) -> String,
}

impl Snapshot<'_> {
    /// Loads every table of `schemas` whose snapshot is not done. Returns false when stopped
    /// by shutdown.
    pub async fn run(
        &self,
        schemas: &[&TableSchema],
        reader: &mut impl ChunkReader,
        state: &mut SourceState,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool> {
        let commit_ts = chrono::Utc::now().timestamp_micros();
        let chunk = self.config.snapshot_chunk_rows;
        for (i, schema) in schemas.iter().enumerate() {
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
                let at = |row: u64| SourcePosition {
                    file: (self.position_file)(&start),
                    pos: start.pos,
                    row,
                    snapshot: true,
                };
                let mut records = Vec::new();
                if own_start.is_some() && progress.rows == 0 && progress.last_key.is_none() {
                    // The schema the reads have, then the truncate: the merger rebuilds a
                    // table it had stopped with exactly this schema.
                    records.push(CdcRecord::Schema((*schema).clone()));
                    records.push(CdcRecord::Truncate(Truncate {
                        position: at(0),
                        commit_ts,
                        reason: "resnapshot".to_string(),
                    }));
                }
                let rows = reader
                    .read_chunk(i, progress.last_key.as_deref(), chunk)
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
