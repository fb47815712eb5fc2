//! Appending rows to a table.

use arrow::array::RecordBatch;
use iceberg::spec::Operation;
use iceberg::TableIdent;

use super::{conform, count_written, with_conflict_retry, Match, Outcome};
use crate::error::Result;
use crate::lake::Lake;
use crate::table::commit::{commit_change, Change};
use crate::table::files::TableFiles;
use crate::write::write_rows;

/// Appends rows (any batch schema that [`conform`]s to the table by column name).
pub async fn append(lake: &Lake, ident: &TableIdent, batches: Vec<RecordBatch>) -> Result<Outcome> {
    with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let rows = conform(&table, &batches, Match::ByName)?;
        let files = TableFiles::manifests_only(&table).await?;
        let data = write_rows(&table, &rows).await?;
        let mut outcome = Outcome {
            inserted: rows.iter().map(|b| b.num_rows() as u64).sum(),
            ..Default::default()
        };
        if data.is_empty() {
            return Ok(outcome);
        }
        count_written(&mut outcome, &data);
        let mut change = Change::new(Operation::Append);
        change.added_data = data;
        let table = commit_change(lake, &table, &files, change).await?;
        outcome.snapshot_id = table.metadata().current_snapshot_id();
        Ok(outcome)
    })
    .await
}
