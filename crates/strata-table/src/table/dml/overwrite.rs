//! Replacing rows: dynamic partition overwrite, one identity partition, or the whole table,
//! from batches in memory or from a stream (the warehouse's models).

use std::collections::HashSet;

use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use iceberg::spec::{DataFile, Literal, Operation, Transform};
use iceberg::table::Table;
use iceberg::TableIdent;

use super::{conform, count_written, with_conflict_retry, Match, Outcome};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::commit::{commit_change, Change};
use crate::table::files::{LiveFile, TableFiles};
use crate::write::{write_rows, write_stream};

/// Dynamic partition overwrite: replaces the partitions `batches` write (every live data and
/// delete file of those partitions goes) and leaves the others as they are. On an
/// unpartitioned table it replaces the whole table.
pub async fn overwrite_partitions(
    lake: &Lake,
    ident: &TableIdent,
    batches: Vec<RecordBatch>,
) -> Result<Outcome> {
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let rows = conform(&table, &batches, Match::ByName)?;
        let files = TableFiles::current(&table).await?;
        let data = write_rows(&table, &rows).await?;
        let spec_id = table.metadata().default_partition_spec_id();
        let unpartitioned = table.metadata().default_partition_spec().is_unpartitioned();
        let written: HashSet<_> = data.iter().map(|f| f.partition().clone()).collect();
        let replaced = |f: &LiveFile| {
            unpartitioned || (f.spec_id == spec_id && written.contains(f.file.partition()))
        };
        commit_replacing(lake, &table, &files, inserted(&rows), data, replaced, true).await
    })
    .await
}

/// Replaces the whole table's rows with `batches` in one snapshot (history is kept).
pub async fn replace_all(
    lake: &Lake,
    ident: &TableIdent,
    batches: Vec<RecordBatch>,
) -> Result<Outcome> {
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let rows = conform(&table, &batches, Match::ByName)?;
        let files = TableFiles::current(&table).await?;
        let data = write_rows(&table, &rows).await?;
        commit_replacing(lake, &table, &files, inserted(&rows), data, |_| true, false).await
    })
    .await
}

/// Replaces the partition where identity-partition column `column` equals `value` with
/// `batches` (possibly none: the partition is emptied), in one snapshot. Every row must belong
/// to that partition. Re-running it with the same rows gives the same table: the warehouse's
/// incremental models rely on this.
pub async fn overwrite_partition(
    lake: &Lake,
    ident: &TableIdent,
    column: &str,
    value: Literal,
    batches: Vec<RecordBatch>,
) -> Result<Outcome> {
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let metadata = table.metadata();
        let index = identity_partition_index(&table, column)?;
        let rows = conform(&table, &batches, Match::ByName)?;
        let data = write_rows(&table, &rows).await?;
        let in_partition = |p: &iceberg::spec::Struct| {
            p.fields().get(index).and_then(|v| v.as_ref()) == Some(&value)
        };
        if let Some(outside) = data.iter().find(|f| !in_partition(f.partition())) {
            for f in &data {
                let _ = table.file_io().delete(f.file_path()).await;
            }
            return Err(Error::Sql(format!(
                "rows for {ident} fall outside the partition {column} = {value:?} (e.g. in {:?})",
                outside.partition()
            )));
        }
        let files = TableFiles::current(&table).await?;
        let spec_id = metadata.default_partition_spec_id();
        let replaced = |f: &LiveFile| f.spec_id == spec_id && in_partition(f.file.partition());
        commit_replacing(lake, &table, &files, inserted(&rows), data, replaced, true).await
    })
    .await
}

fn inserted(rows: &[RecordBatch]) -> u64 {
    rows.iter().map(|b| b.num_rows() as u64).sum()
}

/// Position in the default partition spec of the field `identity(column)`.
fn identity_partition_index(table: &Table, column: &str) -> Result<usize> {
    let ident = table.identifier();
    let metadata = table.metadata();
    let field_id = metadata
        .current_schema()
        .field_by_name(column)
        .map(|f| f.id)
        .ok_or_else(|| Error::Sql(format!("{ident} has no column {column}")))?;
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .position(|f| f.source_id == field_id && f.transform == Transform::Identity)
        .ok_or_else(|| Error::Sql(format!("{ident} is not partitioned by identity({column})")))
}

/// [`overwrite_partition`] for rows that arrive as a stream (a warehouse model's query): they
/// are written to data files as they come, never all held in memory, and a commit that meets
/// a concurrent writer is retried against the newer snapshot without rewriting them.
pub async fn overwrite_partition_stream(
    lake: &Lake,
    ident: &TableIdent,
    column: &str,
    value: Literal,
    rows: SendableRecordBatchStream,
) -> Result<Outcome> {
    let table = lake.load_table(ident).await?;
    let index = identity_partition_index(&table, column)?;
    let in_partition =
        |p: &iceberg::spec::Struct| p.fields().get(index).and_then(|v| v.as_ref()) == Some(&value);
    let (data, count) = write_stream(&table, rows, |p| {
        if in_partition(p) {
            Ok(())
        } else {
            Err(Error::Sql(format!(
                "rows for {ident} fall outside the partition {column} = {value:?} (e.g. in {p:?})"
            )))
        }
    })
    .await?;
    let spec_id = table.metadata().default_partition_spec_id();
    let replaced = |f: &LiveFile| f.spec_id == spec_id && in_partition(f.file.partition());
    commit_written(lake, &table, data, count, replaced, true).await
}

/// [`replace_all`] for rows that arrive as a stream (see [`overwrite_partition_stream`]).
pub async fn replace_all_stream(
    lake: &Lake,
    ident: &TableIdent,
    rows: SendableRecordBatchStream,
) -> Result<Outcome> {
    let table = lake.load_table(ident).await?;
    let (data, count) = write_stream(&table, rows, |_| Ok(())).await?;
    commit_written(lake, &table, data, count, |_| true, false).await
}

/// Commits data files written against `written` (the table as loaded before the write),
/// re-reading the table's live files on each conflict. The files stay valid as long as the
/// schema and partition spec they were written with are still current.
async fn commit_written(
    lake: &Lake,
    written: &Table,
    data: Vec<DataFile>,
    rows: u64,
    replaced: impl Fn(&LiveFile) -> bool,
    replace_partitions: bool,
) -> Result<Outcome> {
    let ident = written.identifier();
    let shape = |t: &Table| {
        (
            t.metadata().current_schema_id(),
            t.metadata().default_partition_spec_id(),
        )
    };
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        if shape(&table) != shape(written) {
            for f in &data {
                let _ = table.file_io().delete(f.file_path()).await;
            }
            return Err(Error::Sql(format!(
                "{ident} changed its schema or partitioning while rows were written for it; run again"
            )));
        }
        let files = TableFiles::current(&table).await?;
        commit_replacing(
            lake,
            &table,
            &files,
            rows,
            data.clone(),
            &replaced,
            replace_partitions,
        )
        .await
    })
    .await
}

/// Commits `data` as one overwrite snapshot that also removes every live
/// data and delete file `replaced` picks; `replace_partitions` marks it a partition
/// replacement in the summary. Nothing to add or remove: no commit.
async fn commit_replacing(
    lake: &Lake,
    table: &Table,
    files: &TableFiles,
    inserted: u64,
    data: Vec<DataFile>,
    replaced: impl Fn(&LiveFile) -> bool,
    replace_partitions: bool,
) -> Result<Outcome> {
    let mut change = Change::new(Operation::Overwrite);
    let mut outcome = Outcome {
        inserted,
        ..Default::default()
    };
    for f in files.manifests.iter().flat_map(|m| m.live.iter()) {
        if replaced(f) {
            if f.is_data() {
                outcome.deleted += f.file.record_count();
            }
            change.removed.insert(f.path().to_string());
        }
    }
    count_written(&mut outcome, &data);
    change.added_data = data;
    if change.is_empty() {
        return Ok(outcome);
    }
    // Nothing replaced (an incremental model's first run for a date): by the Iceberg spec this
    // is an append ("only data files were added"), which incremental readers — feature
    // syncs — can take without rereading the table.
    if change.removed.is_empty() {
        change.operation = Operation::Append;
    }
    if replace_partitions {
        change
            .properties
            .insert("replace-partitions".to_string(), "true".to_string());
    }
    let table = commit_change(lake, table, files, change).await?;
    outcome.snapshot_id = table.metadata().current_snapshot_id();
    Ok(outcome)
}
