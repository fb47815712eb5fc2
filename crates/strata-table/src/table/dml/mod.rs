//! Row-level and partition-level writes as a Rust API: append, dynamic partition overwrite,
//! delete, update and merge. `strata sql` turns statements into these calls; the CDC merger
//! and the warehouse call them directly.
//!
//! Row-level changes (delete, update, merge) are planned with DataFusion over the table's
//! live rows located by `_file` / `_pos`, which gives the rows to delete and the rows to
//! write. They land as Iceberg v2 position delete files (merge-on-read, the default) or by
//! rewriting the touched data files (copy-on-write), per the table properties
//! `write.delete.mode`, `write.update.mode` and `write.merge.mode` — the names Spark and
//! pyiceberg use. Every operation re-plans from the new snapshot when a concurrent writer
//! commits first (bounded backoff), so no change is lost or applied twice.
//!
//! One file per operation: [`append`](append()), the partition overwrites
//! (`overwrite.rs`), [`delete_where`], [`update`](update()) and [`merge`](merge()); the
//! read-plan-commit loop the row-level three share (`row_level.rs`, with [`WriteMode`]); and
//! [`conform`], which casts incoming rows to the table's schema.

mod append;
mod conform;
mod delete;
mod merge;
mod overwrite;
mod row_level;
mod update;

use std::future::Future;

use iceberg::spec::DataFile;
use iceberg::TableIdent;

use crate::error::{Error, Result};
use crate::retry::Backoff;

pub use append::append;
pub use conform::{conform, Match};
pub use delete::delete_where;
pub use merge::{merge, merge_schema, merge_with_properties, MergeClause, MergeSpec};
pub use overwrite::{
    overwrite_partition, overwrite_partition_stream, overwrite_partitions, replace_all,
    replace_all_stream,
};
pub use row_level::WriteMode;
pub use update::update;

/// Commit attempts of one operation under concurrent writers.
pub const CONFLICT_RETRIES: u32 = 10;

/// What an operation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The snapshot committed, or `None` when nothing changed.
    pub snapshot_id: Option<i64>,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub files_written: u64,
    pub bytes_written: u64,
}

/// Runs `attempt` until it commits, re-running it from scratch on conflicts (bounded
/// backoff; [`Error::CommitFailed`] when it still conflicts).
pub async fn with_conflict_retry<T, F, Fut>(ident: &TableIdent, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(CONFLICT_RETRIES);
    loop {
        match attempt().await {
            Err(Error::Conflict { message, .. }) if backoff.can_retry() => {
                tracing::info!(table = %ident, attempt = backoff.attempts(), %message, "concurrent commit, re-planning");
                backoff.wait().await;
            }
            Err(Error::Conflict { table, message }) => {
                return Err(Error::CommitFailed {
                    table,
                    attempts: backoff.attempts(),
                    message: format!("still conflicting: {message}"),
                })
            }
            other => return other,
        }
    }
}

fn count_written(outcome: &mut Outcome, files: &[DataFile]) {
    outcome.files_written += files.len() as u64;
    outcome.bytes_written += files.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
}
