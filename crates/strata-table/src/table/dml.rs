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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Column;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::functions_aggregate::min_max::{max, min};
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{cast, col, lit, Expr, JoinType, Operator};
use datafusion::prelude::{DataFrame, SessionContext};
use iceberg::spec::{DataFile, Literal, Operation, Transform};
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::retry::Backoff;
use crate::table::commit::{commit_change, Change};
use crate::table::files::{LiveFile, TableFiles};
use crate::table::read::{
    located_schema, position_deletes, read_located, table_arrow_schema, FILE_COLUMN, POS_COLUMN,
};
use crate::table::scan::LocatedTable;
use crate::write::{write_position_deletes, write_rows, write_stream};

/// Commit attempts of one operation under concurrent writers.
pub const CONFLICT_RETRIES: u32 = 10;

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

/// Rows an operation removes (by location) and rows it writes.
#[derive(Default)]
struct RowChanges {
    deleted: HashMap<String, Vec<i64>>,
    inserted: Vec<RecordBatch>,
    counts: (u64, u64, u64),
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
    if replace_partitions {
        change
            .properties
            .insert("replace-partitions".to_string(), "true".to_string());
    }
    let table = commit_change(lake, table, files, change).await?;
    outcome.snapshot_id = table.metadata().current_snapshot_id();
    Ok(outcome)
}

/// Deletes the rows where `predicate` (over the table's columns, unqualified) is true.
pub async fn delete_where(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    predicate: Option<Expr>,
) -> Result<Outcome> {
    row_level(
        lake,
        ctx,
        ident,
        "delete",
        Operation::Delete,
        &HashMap::new(),
        |target, _| {
            let predicate = predicate.clone();
            async move {
                let df = match predicate {
                    Some(p) => target.filter(p).map_err(Error::datafusion)?,
                    None => target,
                };
                let located = df
                    .select(vec![col(FILE_COLUMN), col(POS_COLUMN)])
                    .map_err(Error::datafusion)?
                    .collect()
                    .await
                    .map_err(Error::datafusion)?;
                let mut changes = RowChanges::default();
                collect_locations(&located, 0, 1, &mut changes.deleted)?;
                changes.counts.2 = changes.deleted.values().map(|v| v.len() as u64).sum();
                Ok(changes)
            }
        },
    )
    .await
}

/// `UPDATE … SET column = expr, … [WHERE predicate]`; expressions see the row's old values.
pub async fn update(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    assignments: Vec<(String, Expr)>,
    predicate: Option<Expr>,
) -> Result<Outcome> {
    row_level(
        lake,
        ctx,
        ident,
        "update",
        Operation::Overwrite,
        &HashMap::new(),
        |target, table| {
            let assignments = assignments.clone();
            let predicate = predicate.clone();
            async move {
                let schema = table_arrow_schema(&table)?;
                for (name, _) in &assignments {
                    if schema.field_with_name(name).is_err() {
                        return Err(Error::Sql(format!(
                            "UPDATE: {} has no column {name}",
                            table.identifier()
                        )));
                    }
                }
                let df = match predicate {
                    Some(p) => target.filter(p).map_err(Error::datafusion)?,
                    None => target,
                };
                let mut exprs = Vec::with_capacity(schema.fields().len() + 2);
                for field in schema.fields() {
                    let value = match assignments.iter().find(|(n, _)| n == field.name()) {
                        Some((_, e)) => cast(e.clone(), field.data_type().clone()),
                        None => col(datafusion::common::Column::from_name(field.name())),
                    };
                    exprs.push(value.alias(field.name()));
                }
                exprs.push(col(FILE_COLUMN));
                exprs.push(col(POS_COLUMN));
                let rows = df
                    .select(exprs)
                    .map_err(Error::datafusion)?
                    .collect()
                    .await
                    .map_err(Error::datafusion)?;
                let n = schema.fields().len();
                let mut changes = RowChanges::default();
                collect_locations(&rows, n, n + 1, &mut changes.deleted)?;
                for batch in &rows {
                    changes.inserted.push(
                        batch
                            .project(&(0..n).collect::<Vec<_>>())
                            .map_err(|e| Error::arrow("projecting updated rows", e))?,
                    );
                }
                changes.counts.1 = rows.iter().map(|b| b.num_rows() as u64).sum();
                Ok(changes)
            }
        },
    )
    .await
}

/// One `WHEN` clause of a MERGE.
#[derive(Clone, Debug)]
pub enum MergeClause {
    /// `WHEN MATCHED [AND cond] THEN UPDATE SET …`; `None` assignments = `SET *`.
    Update {
        condition: Option<Expr>,
        assignments: Option<Vec<(String, Expr)>>,
    },
    /// `WHEN MATCHED [AND cond] THEN DELETE`.
    Delete { condition: Option<Expr> },
    /// `WHEN NOT MATCHED [AND cond] THEN INSERT …`; `None` values = `INSERT *`.
    Insert {
        condition: Option<Expr>,
        values: Option<Vec<(String, Expr)>>,
    },
}

/// A MERGE: the source rows, the aliases its expressions use, the join condition and the
/// clauses in order (the first whose condition holds acts on a row).
#[derive(Clone, Debug)]
pub struct MergeSpec {
    pub target_alias: String,
    pub source_alias: String,
    pub on: Expr,
    pub clauses: Vec<MergeClause>,
}

/// Column marking source rows in the merge join.
const SOURCE_MARK: &str = "__strata_source_row";
/// Column with the index of the clause acting on a joined row.
const ACTION: &str = "__strata_action";

/// The schema MERGE expressions are resolved against: target columns qualified by the
/// target alias, source columns by the source alias.
pub async fn merge_schema(
    lake: &Lake,
    ident: &TableIdent,
    source: &DataFrame,
    target_alias: &str,
    source_alias: &str,
) -> Result<DFSchema> {
    let table = lake.load_table(ident).await?;
    let target =
        DFSchema::try_from_qualified_schema(target_alias, table_arrow_schema(&table)?.as_ref())
            .map_err(Error::datafusion)?;
    let source = DFSchema::try_from_qualified_schema(source_alias, source.schema().as_arrow())
        .map_err(Error::datafusion)?;
    let mut joined = target;
    joined.merge(&source);
    Ok(joined)
}

/// `MERGE INTO <table> AS target USING <source> AS source ON … WHEN …`. A target row matched
/// by more than one source row is an error (the SQL standard's cardinality violation) and
/// leaves the table unchanged.
pub async fn merge(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    source: DataFrame,
    spec: MergeSpec,
) -> Result<Outcome> {
    merge_with_properties(lake, ctx, ident, source, spec, HashMap::new()).await
}

/// [`merge`] whose snapshot also carries `properties` in its summary (e.g. the CDC merger's
/// bus offsets, so data and position commit in one catalog swap).
pub async fn merge_with_properties(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    source: DataFrame,
    spec: MergeSpec,
    properties: HashMap<String, String>,
) -> Result<Outcome> {
    row_level(
        lake,
        ctx,
        ident,
        "merge",
        Operation::Overwrite,
        &properties,
        |target, table| {
            let source = source.clone();
            let spec = spec.clone();
            async move { plan_merge(&table, target, source, &spec).await }
        },
    )
    .await
}

async fn plan_merge(
    table: &Table,
    target: DataFrame,
    source: DataFrame,
    spec: &MergeSpec,
) -> Result<RowChanges> {
    let schema = table_arrow_schema(table)?;
    let t = |name: &str| {
        col(datafusion::common::Column::new(
            Some(spec.target_alias.clone()),
            name,
        ))
    };
    let s = |name: &str| {
        col(datafusion::common::Column::new(
            Some(spec.source_alias.clone()),
            name,
        ))
    };
    let source_columns: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let target = narrow_to_source_keys(target, &source, spec).await?;
    let source = source
        .with_column(SOURCE_MARK, lit(true))
        .map_err(Error::datafusion)?
        .alias(&spec.source_alias)
        .map_err(Error::datafusion)?;
    let target = target
        .alias(&spec.target_alias)
        .map_err(Error::datafusion)?;
    // Target rows no source row matches are never touched: source LEFT JOIN target, so the
    // hash join builds on the source and streams the target past it.
    let joined = source
        .join_on(target, JoinType::Left, [spec.on.clone()])
        .map_err(Error::datafusion)?;
    let matched = t(POS_COLUMN).is_not_null();
    let not_matched = t(POS_COLUMN).is_null();

    // Which clause acts on each joined row (NULL: none).
    let mut action_pairs: Vec<(Expr, Expr)> = Vec::new();
    for (i, clause) in spec.clauses.iter().enumerate() {
        let (base, condition) = match clause {
            MergeClause::Update { condition, .. } | MergeClause::Delete { condition } => {
                (matched.clone(), condition)
            }
            MergeClause::Insert { condition, .. } => (not_matched.clone(), condition),
        };
        let when_expr = match condition {
            Some(c) => base.and(c.clone()),
            None => base,
        };
        action_pairs.push((when_expr, lit(i as i64)));
    }
    if action_pairs.is_empty() {
        return Ok(RowChanges::default());
    }
    let action = case_expr(None, action_pairs, lit(ScalarValue::Int64(None)));

    // New values of every target column: CASE <acting clause> WHEN i THEN <value> END.
    let acting = joined
        .with_column(ACTION, action)
        .map_err(Error::datafusion)?
        .filter(col(ACTION).is_not_null())
        .map_err(Error::datafusion)?;
    let mut exprs = vec![
        col(ACTION),
        t(FILE_COLUMN).alias(FILE_COLUMN),
        t(POS_COLUMN).alias(POS_COLUMN),
    ];
    for field in schema.fields() {
        let name = field.name();
        let mut pairs: Vec<(Expr, Expr)> = Vec::new();
        for (i, clause) in spec.clauses.iter().enumerate() {
            let v = match clause {
                MergeClause::Delete { .. } => continue,
                MergeClause::Update { assignments, .. } => match assignments {
                    None => star_value(&source_columns, name, &s, "UPDATE SET *")?,
                    Some(list) => match list.iter().find(|(n, _)| n == name) {
                        Some((_, e)) => e.clone(),
                        None => t(name),
                    },
                },
                MergeClause::Insert { values, .. } => match values {
                    None => star_value(&source_columns, name, &s, "INSERT *")?,
                    Some(list) => match list.iter().find(|(n, _)| n == name) {
                        Some((_, e)) => e.clone(),
                        None => lit(ScalarValue::Null),
                    },
                },
            };
            pairs.push((lit(i as i64), v));
        }
        let e = if pairs.is_empty() {
            lit(ScalarValue::Null)
        } else {
            case_expr(Some(col(ACTION)), pairs, lit(ScalarValue::Null))
        };
        exprs.push(cast(e, field.data_type().clone()).alias(name));
    }
    let rows = acting
        .select(exprs)
        .map_err(Error::datafusion)?
        .collect()
        .await
        .map_err(Error::datafusion)?;

    let mut changes = RowChanges::default();
    // Matched rows acted on (update or delete) lose their old version.
    collect_locations(&rows, 1, 2, &mut changes.deleted)?;
    // Cardinality: one target row modified on behalf of several source rows.
    for (path, positions) in &changes.deleted {
        let unique: HashSet<i64> = positions.iter().copied().collect();
        if unique.len() != positions.len() {
            return Err(Error::Sql(format!(
                "MERGE into {}: a target row matched more than one source row (cardinality violation; in {path}); the table is unchanged",
                table.identifier()
            )));
        }
    }
    let n = schema.fields().len();
    let value_columns: Vec<usize> = (3..3 + n).collect();
    for batch in &rows {
        let actions = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::Internal("merge action is not int64".to_string()))?;
        let mut writes = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let clause = &spec.clauses[actions.value(i) as usize];
            let (ins, upd, del) = &mut changes.counts;
            writes.push(Some(match clause {
                MergeClause::Insert { .. } => {
                    *ins += 1;
                    true
                }
                MergeClause::Update { .. } => {
                    *upd += 1;
                    true
                }
                MergeClause::Delete { .. } => {
                    *del += 1;
                    false
                }
            }));
        }
        let written = arrow::compute::filter_record_batch(batch, &BooleanArray::from(writes))
            .map_err(|e| Error::arrow("merge", e))?
            .project(&value_columns)
            .map_err(|e| Error::arrow("merge", e))?;
        if written.num_rows() > 0 {
            changes.inserted.push(written);
        }
    }
    Ok(changes)
}

/// `CASE [base] WHEN w THEN t … ELSE otherwise END`.
fn case_expr(base: Option<Expr>, pairs: Vec<(Expr, Expr)>, otherwise: Expr) -> Expr {
    Expr::Case(Case::new(
        base.map(Box::new),
        pairs
            .into_iter()
            .map(|(w, t)| (Box::new(w), Box::new(t)))
            .collect(),
        Some(Box::new(otherwise)),
    ))
}

/// For ON conditions with `target.k = source.k` terms, keeps only target rows whose keys lie
/// within the source's key range: the scan then skips files whose key bounds miss it.
async fn narrow_to_source_keys(
    target: DataFrame,
    source: &DataFrame,
    spec: &MergeSpec,
) -> Result<DataFrame> {
    let mut pairs = Vec::new();
    for term in split_conjunction(&spec.on) {
        if let Expr::BinaryExpr(b) = term {
            if b.op != Operator::Eq {
                continue;
            }
            if let (Expr::Column(l), Expr::Column(r)) = (b.left.as_ref(), b.right.as_ref()) {
                let side = |c: &Column| c.relation.as_ref().map(|r| r.table().to_string());
                match (side(l).as_deref(), side(r).as_deref()) {
                    (Some(a), Some(b)) if a == spec.target_alias && b == spec.source_alias => {
                        pairs.push((l.name.clone(), r.name.clone()))
                    }
                    (Some(a), Some(b)) if a == spec.source_alias && b == spec.target_alias => {
                        pairs.push((r.name.clone(), l.name.clone()))
                    }
                    _ => {}
                }
            }
        }
    }
    if pairs.is_empty() {
        return Ok(target);
    }
    let mut aggregates = Vec::new();
    for (i, (_, s)) in pairs.iter().enumerate() {
        let c = col(Column::from_name(s));
        aggregates.push(min(c.clone()).alias(format!("min{i}")));
        aggregates.push(max(c).alias(format!("max{i}")));
    }
    let ranges = source
        .clone()
        .aggregate(vec![], aggregates)
        .map_err(Error::datafusion)?
        .collect()
        .await
        .map_err(Error::datafusion)?;
    let Some(batch) = ranges.iter().find(|b| b.num_rows() > 0) else {
        return Ok(target);
    };
    let mut target = target;
    for (i, (t, _)) in pairs.iter().enumerate() {
        let lo = ScalarValue::try_from_array(batch.column(2 * i), 0).map_err(Error::datafusion)?;
        let hi =
            ScalarValue::try_from_array(batch.column(2 * i + 1), 0).map_err(Error::datafusion)?;
        if lo.is_null() || hi.is_null() {
            continue;
        }
        let c = col(Column::from_name(t));
        target = target
            .filter(c.clone().gt_eq(lit(lo)).and(c.lt_eq(lit(hi))))
            .map_err(Error::datafusion)?;
    }
    Ok(target)
}

fn star_value(
    source_columns: &[String],
    name: &str,
    s: &dyn Fn(&str) -> Expr,
    what: &str,
) -> Result<Expr> {
    if source_columns.iter().any(|c| c == name) {
        Ok(s(name))
    } else {
        Err(Error::Sql(format!(
            "MERGE {what}: the source has no column {name}"
        )))
    }
}

/// Reads the live rows, lets `plan` decide the changes and commits them; re-runs on
/// conflicts.
async fn row_level<F, Fut>(
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

fn collect_locations(
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

fn count_written(outcome: &mut Outcome, files: &[DataFile]) {
    outcome.files_written += files.len() as u64;
    outcome.bytes_written += files.iter().map(|f| f.file_size_in_bytes()).sum::<u64>();
}

/// How incoming columns map to the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The i-th column goes to the i-th table column (INSERT without a column list).
    ByPosition,
    /// Columns go to the table column of the same name; missing ones are NULL.
    ByName,
}

/// Casts `batches` to the table's Arrow schema. Errors name the column: an unknown column, a
/// value that does not fit the column's type, a NULL in a required column.
pub fn conform(table: &Table, batches: &[RecordBatch], by: Match) -> Result<Vec<RecordBatch>> {
    let schema = table_arrow_schema(table)?;
    let ident = table.identifier();
    let mut out = Vec::with_capacity(batches.len());
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    for batch in batches {
        let incoming = batch.schema();
        if by == Match::ByPosition && incoming.fields().len() != schema.fields().len() {
            return Err(Error::Sql(format!(
                "{ident} has {} columns but the query gives {}",
                schema.fields().len(),
                incoming.fields().len()
            )));
        }
        if by == Match::ByName {
            for f in incoming.fields() {
                if schema.field_with_name(f.name()).is_err() {
                    return Err(Error::Sql(format!("{ident} has no column {}", f.name())));
                }
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let source = match by {
                Match::ByPosition => Some(batch.column(i).clone()),
                Match::ByName => batch.column_by_name(field.name()).cloned(),
            };
            let column = match source {
                Some(c) if c.data_type() == field.data_type() => c,
                Some(c) => arrow::compute::cast_with_options(&c, field.data_type(), &options)
                    .map_err(|e| {
                        Error::Sql(format!(
                            "column {} of {ident}: cannot store {} as {}: {e}",
                            field.name(),
                            c.data_type(),
                            field.data_type()
                        ))
                    })?,
                None => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::Sql(format!(
                    "column {} of {ident} is NOT NULL but {} rows give NULL",
                    field.name(),
                    column.null_count()
                )));
            }
            columns.push(column);
        }
        out.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::arrow(format!("conforming rows to {ident}"), e))?,
        );
    }
    Ok(out)
}
