//! Updating the rows a predicate picks with new column values.

use std::collections::HashMap;

use datafusion::logical_expr::{cast, col, Expr};
use datafusion::prelude::SessionContext;
use iceberg::spec::Operation;
use iceberg::TableIdent;

use super::row_level::{collect_locations, row_level, RowChanges};
use super::Outcome;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::read::{table_arrow_schema, FILE_COLUMN, POS_COLUMN};

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
