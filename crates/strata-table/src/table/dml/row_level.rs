//! The loop delete, update and merge share: read the live rows with their `_file` / `_pos`,
//! let the operation plan which rows go and which are written, then write them as position
//! deletes (merge-on-read) or by rewriting the touched files (copy-on-write) and commit,
//! re-planning on conflicts.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::{DataFrame, SessionContext};
use iceberg::spec::Operation;
use iceberg::table::Table;
use iceberg::TableIdent;

use super::{conform, count_written, with_conflict_retry, Match, Outcome};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::commit::{commit_change, Change};
use crate::table::files::{LiveFile, TableFiles};
use crate::table::read::{located_schema, position_deletes, read_located};
use crate::table::scan::LocatedTable;
use crate::write::{write_position_deletes, write_rows};

/// How row-level changes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Position delete files next to the data (cheap writes; compaction folds them in).
    MergeOnRead,
    /// Rewrite every data file a change touches.
    CopyOnWrite,
}

impl WriteMode {
    /// The mode table property `write.<op>.mode` selects (`merge-on-read` by default).
    pub fn of(table: &Table, op: &str) -> Result<WriteMode> {
        let key = format!("write.{op}.mode");
        match table.metadata().properties().get(&key).map(String::as_str) {
            None | Some("merge-on-read") => Ok(WriteMode::MergeOnRead),
            Some("copy-on-write") => Ok(WriteMode::CopyOnWrite),
            Some(other) => Err(Error::Sql(format!(
                "table property {key} = {other:?}: expected merge-on-read or copy-on-write"
            ))),
        }
    }
}

/// Rows an operation removes (by location) and rows it writes.
#[derive(Default)]
pub(super) struct RowChanges {
    pub(super) deleted: HashMap<String, Vec<i64>>,
    pub(super) inserted: Vec<RecordBatch>,
    pub(super) counts: (u64, u64, u64),
}

/// Reads the live rows, lets `plan` decide the changes and commits them; re-runs on
/// conflicts.
pub(super) async fn row_level<F, Fut>(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    op: &str,
    operation: Operation,
    properties: &HashMap<String, String>,
    plan: F,
) -> Result<Outcome>
where
    F: Fn(DataFrame, Table) -> Fut,
    Fut: Future<Output = Result<RowChanges>>,
{
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let mode = WriteMode::of(&table, op)?;
        let files = TableFiles::current(&table).await?;
        let provider = LocatedTable::new(&table, &files).await?;
        let target = ctx
            .read_table(Arc::new(provider))
            .map_err(Error::datafusion)?;
        let changes = plan(target, table.clone()).await?;
        let (inserted, updated, deleted) = changes.counts;
        let mut outcome = Outcome {
            inserted,
            updated,
            deleted,
            ..Default::default()
        };
        let mut rows = conform(&table, &changes.inserted, Match::ByPosition)?;
        let mut change = Change::new(operation.clone());
        change.properties = properties.clone();
        match mode {
            WriteMode::MergeOnRead => {
                let deleted: Vec<(&LiveFile, Vec<i64>)> = changes
                    .deleted
                    .iter()
                    .map(|(path, pos)| {
                        files
                            .find(path)
                            .map(|f| (f, pos.clone()))
                            .ok_or_else(|| Error::Internal(format!("{path} is not live")))
                    })
                    .collect::<Result<_>>()?;
                change.added_deletes = write_position_deletes(&table, deleted).await?;
            }
            WriteMode::CopyOnWrite => {
                // Rewrite every touched file with its untouched rows.
                let schema = located_schema(&table)?;
                let deletes = position_deletes(&table, &files).await?;
                for (path, positions) in &changes.deleted {
                    let gone: HashSet<i64> = positions.iter().copied().collect();
                    let file = files
                        .find(path)
                        .ok_or_else(|| Error::Internal(format!("{path} is not live")))?;
                    for batch in read_located(&table, file, deletes.get(path), &schema).await? {
                        let kept = keep_untouched(&batch, &gone, &schema)?;
                        if kept.num_rows() > 0 {
                            rows.push(kept);
                        }
                    }
                }
                change.removed = changes.deleted.keys().cloned().collect();
            }
        }
        change.added_data = write_rows(&table, &rows).await?;
        if change.is_empty() {
            return Ok(outcome);
        }
        count_written(&mut outcome, &change.added_data);
        count_written(
            &mut outcome,
            &change
                .added_deletes
                .iter()
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>(),
        );
        let table = commit_change(lake, &table, &files, change).await?;
        outcome.snapshot_id = table.metadata().current_snapshot_id();
        Ok(outcome)
    })
    .await
}

/// The rows of `batch` whose file is touched by `deleted` but whose position is not deleted,
/// without `_file` / `_pos`.
fn keep_untouched(
    batch: &RecordBatch,
    gone: &HashSet<i64>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = schema.fields().len() - 2;
    let positions = batch
        .column(n + 1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Internal("_pos is not an int64 column".to_string()))?;
    let keep: BooleanArray = positions
        .values()
        .iter()
        .map(|p| Some(!gone.contains(p)))
        .collect();
    let kept = arrow::compute::filter_record_batch(batch, &keep)
        .map_err(|e| Error::arrow("copy-on-write", e))?;
    kept.project(&(0..n).collect::<Vec<_>>())
        .map_err(|e| Error::arrow("copy-on-write", e))
}

pub(super) fn collect_locations(
    batches: &[RecordBatch],
    file_col: usize,
    pos_col: usize,
    into: &mut HashMap<String, Vec<i64>>,
) -> Result<()> {
    for batch in batches {
        // `_file` is dictionary-encoded (one value per data file); only the matched rows
        // are expanded here.
        let files = arrow::compute::cast(batch.column(file_col), &DataType::Utf8)
            .map_err(|e| Error::arrow("reading _file", e))?;
        let files = files
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Internal("_file is not a string column".to_string()))?;
        let positions = batch
            .column(pos_col)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::Internal("_pos is not an int64 column".to_string()))?;
        for i in 0..batch.num_rows() {
            if files.is_null(i) {
                continue;
            }
            into.entry(files.value(i).to_string())
                .or_default()
                .push(positions.value(i));
        }
    }
    Ok(())
}
