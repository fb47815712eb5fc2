//! `merge` loads: the files' rows are changes to the table by key. Per key the latest change
//! wins — the highest `order_by` value (a change without one is older than any with one),
//! then the later file, then the later row — and is applied with one MERGE (the one SQL and
//! the CDC merger use): a latest `D` deletes the key's row, `I` and `U` update it or insert
//! it. Without an op column every row is an upsert. Columns no file has keep their values on
//! update (and are NULL on insert).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{lit, Expr, ExprFunctionExt, SortExpr};
use iceberg::table::Table;

use super::read::{self, table_column, CsvOptions};
use super::source::SourceFile;
use super::{blocking, FILE_COLUMN, OP_COLUMN, ROW_COLUMN};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::dml::{self, MergeClause, MergeSpec, Outcome};

/// Rank of a change among its key's changes (1 = latest).
const RANK_COLUMN: &str = "__strata_rank";

pub(super) struct MergeOptions<'a> {
    pub key: &'a [String],
    pub op_column: Option<&'a str>,
    pub order_by: Option<&'a str>,
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

fn qualified(alias: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(alias), name))
}

/// Reads every file's changes and merges the latest per key: returns the rows read and the
/// MERGE's outcome.
pub(super) async fn merge(
    lake: &Lake,
    table: &Table,
    table_schema: &SchemaRef,
    files: &[SourceFile],
    columns: &[Schema],
    csv: CsvOptions,
    options: MergeOptions<'_>,
) -> Result<(u64, Outcome)> {
    let ident = table.identifier();
    let name = ident.to_string();
    let resolve = |c: &str, what: &str| -> Result<String> {
        table_column(table_schema, c)
            .map(|f| f.name().clone())
            .ok_or_else(|| Error::Invalid(format!("{what} {c}: {name} has no such column")))
    };
    let key = options
        .key
        .iter()
        .map(|k| resolve(k.trim(), "--key"))
        .collect::<Result<Vec<_>>>()?;
    let order_by = options
        .order_by
        .map(|c| resolve(c.trim(), "--order-by"))
        .transpose()?;
    // The table columns some file has, in table order, then the change columns.
    let mut present: Vec<Field> = Vec::new();
    for field in table_schema.fields() {
        let in_a_file = columns.iter().any(|schema| {
            schema.fields().iter().any(|f| {
                table_column(table_schema, f.name()).is_some_and(|t| t.name() == field.name())
                    && !options
                        .op_column
                        .is_some_and(|op| op.eq_ignore_ascii_case(f.name()))
            })
        });
        if in_a_file {
            present.push(field.as_ref().clone().with_nullable(true));
        }
    }
    if let Some(o) = &order_by {
        if !present.iter().any(|f| f.name() == o) {
            return Err(Error::Invalid(format!(
                "--order-by {o}: no file has this column"
            )));
        }
    }
    let value_columns: Vec<String> = present.iter().map(|f| f.name().clone()).collect();
    let mut fields = present;
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    fields.push(Field::new(FILE_COLUMN, DataType::Int64, false));
    fields.push(Field::new(ROW_COLUMN, DataType::Int64, false));
    let output: SchemaRef = Arc::new(Schema::new(fields));

    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows_read = 0u64;
    for (index, (file, file_columns)) in files.iter().zip(columns).enumerate() {
        let plan = read::plan_file(
            file,
            file_columns,
            table_schema,
            &name,
            options.op_column,
            output.clone(),
            &key,
        )?;
        let content = file.content().await?;
        let f = file.clone();
        let (rows, read) = blocking(move || {
            let mut read = Vec::new();
            let rows = read::read_file(&f, content, &plan, csv, index, &mut |b| {
                read.push(b);
                Ok(())
            })?;
            Ok((rows, read))
        })
        .await?;
        tracing::info!(file = %file.location, rows, "file read");
        rows_read += rows;
        batches.extend(read);
    }
    if rows_read == 0 {
        return Ok((0, Outcome::default()));
    }

    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), lake.runtime());
    let changes = MemTable::try_new(output.clone(), vec![batches]).map_err(Error::datafusion)?;
    let changes = ctx
        .read_table(Arc::new(changes))
        .map_err(Error::datafusion)?;
    // Latest change per key.
    let mut order: Vec<SortExpr> = Vec::new();
    if let Some(o) = &order_by {
        order.push(column(o).sort(false, false));
    }
    order.push(column(FILE_COLUMN).sort(false, false));
    order.push(column(ROW_COLUMN).sort(false, false));
    let rank = row_number()
        .partition_by(key.iter().map(|k| column(k)).collect())
        .order_by(order)
        .build()
        .map_err(Error::datafusion)?
        .alias(RANK_COLUMN);
    let mut keep: Vec<Expr> = value_columns.iter().map(|c| column(c)).collect();
    keep.push(column(OP_COLUMN));
    let latest = changes
        .window(vec![rank])
        .and_then(|df| df.filter(column(RANK_COLUMN).eq(lit(1u64))))
        .and_then(|df| df.select(keep))
        .map_err(Error::datafusion)?;

    let (t, s) = ("t", "s");
    let on = key
        .iter()
        .map(|k| qualified(t, k).eq(qualified(s, k)))
        .reduce(Expr::and)
        .ok_or_else(|| Error::Internal("merge without a key".to_string()))?;
    let is_delete = qualified(s, OP_COLUMN).eq(lit("D"));
    let values: Vec<(String, Expr)> = value_columns
        .iter()
        .map(|c| (c.clone(), qualified(s, c)))
        .collect();
    let spec = MergeSpec {
        target_alias: t.to_string(),
        source_alias: s.to_string(),
        on,
        clauses: vec![
            MergeClause::Delete {
                condition: Some(is_delete),
            },
            MergeClause::Update {
                condition: None,
                assignments: Some(
                    values
                        .iter()
                        .filter(|(c, _)| !key.contains(c))
                        .cloned()
                        .collect(),
                ),
            },
            MergeClause::Insert {
                condition: Some(qualified(s, OP_COLUMN).not_eq(lit("D"))),
                values: Some(values),
            },
        ],
    };
    let outcome = dml::merge(lake, &ctx, ident, latest, spec).await?;
    Ok((rows_read, outcome))
}
