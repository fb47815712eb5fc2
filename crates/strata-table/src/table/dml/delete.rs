//! Deleting the rows a predicate picks.

use std::collections::HashMap;

use datafusion::logical_expr::{col, Expr};
use datafusion::prelude::SessionContext;
use iceberg::spec::Operation;
use iceberg::TableIdent;

use super::row_level::{collect_locations, row_level, RowChanges};
use super::Outcome;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::read::{FILE_COLUMN, POS_COLUMN};

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
