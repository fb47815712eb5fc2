//! DELETE and UPDATE of a lake table's rows (MERGE is in `merge.rs`).

use arrow::array::RecordBatch;
use datafusion::sql::sqlparser::ast::{Delete, Expr as SqlExpr, FromTable, TableFactor, Update};

use super::outcome_row;
use super::resolve::{assignment_column, unqualify};
use crate::SqlSession;
use strata_table::dialect::normalize;
use strata_table::error::{Error, Result};
use strata_table::table;

impl SqlSession {
    pub(super) async fn delete(&self, delete: &Delete) -> Result<Option<Vec<RecordBatch>>> {
        let from = match &delete.from {
            FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
        };
        let [target] = from.as_slice() else {
            return Err(Error::Sql("DELETE works on one table".to_string()));
        };
        let TableFactor::Table { name, alias, .. } = &target.relation else {
            return Ok(None);
        };
        if !target.joins.is_empty() || delete.using.is_some() || !delete.tables.is_empty() {
            return Err(Error::Sql(
                "DELETE … USING / joins are not supported; use MERGE … WHEN MATCHED THEN DELETE"
                    .to_string(),
            ));
        }
        if delete.limit.is_some() || !delete.order_by.is_empty() || delete.returning.is_some() {
            return Err(Error::Sql(
                "DELETE with ORDER BY / LIMIT / RETURNING is not supported".to_string(),
            ));
        }
        let Some(ident) = self.lake_table(name).await? else {
            return Ok(None);
        };
        let qualifier = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .unwrap_or_else(|| ident.name().to_string());
        let table = self.lake.load_table(&ident).await?;
        let schema = strata_table::table::read::table_arrow_schema(&table)?;
        let predicate = match &delete.selection {
            Some(e) => {
                let [p] = self
                    .resolve_exprs(std::slice::from_ref(e), &[(&qualifier, schema)])
                    .await?
                    .try_into()
                    .map_err(|_| Error::Internal("one predicate expected".to_string()))?;
                Some(unqualify(p, &qualifier)?)
            }
            None => None,
        };
        let out = table::delete_where(&self.lake, &self.ctx, &ident, predicate).await?;
        outcome_row("delete", &out).map(Some)
    }

    pub(super) async fn update(&self, update: &Update) -> Result<Option<Vec<RecordBatch>>> {
        let TableFactor::Table { name, alias, .. } = &update.table.relation else {
            return Ok(None);
        };
        if !update.table.joins.is_empty() || update.from.is_some() {
            return Err(Error::Sql(
                "UPDATE … FROM / joins are not supported; use MERGE … WHEN MATCHED THEN UPDATE"
                    .to_string(),
            ));
        }
        if update.limit.is_some() || update.returning.is_some() {
            return Err(Error::Sql(
                "UPDATE with LIMIT / RETURNING is not supported".to_string(),
            ));
        }
        let Some(ident) = self.lake_table(name).await? else {
            return Ok(None);
        };
        let qualifier = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .unwrap_or_else(|| ident.name().to_string());
        let table = self.lake.load_table(&ident).await?;
        let schema = strata_table::table::read::table_arrow_schema(&table)?;
        let mut columns = Vec::with_capacity(update.assignments.len());
        let mut exprs: Vec<SqlExpr> = Vec::with_capacity(update.assignments.len() + 1);
        for a in &update.assignments {
            let column = assignment_column(&a.target)?;
            if schema.field_with_name(&column).is_err() {
                return Err(Error::Sql(format!(
                    "UPDATE: {ident} has no column {column}"
                )));
            }
            columns.push(column);
            exprs.push(a.value.clone());
        }
        exprs.extend(update.selection.clone());
        let mut resolved = self
            .resolve_exprs(&exprs, &[(&qualifier, schema)])
            .await?
            .into_iter()
            .map(|e| unqualify(e, &qualifier))
            .collect::<Result<Vec<_>>>()?;
        let predicate = update.selection.as_ref().and_then(|_| resolved.pop());
        let assignments = columns.into_iter().zip(resolved).collect();
        let out = table::update(&self.lake, &self.ctx, &ident, assignments, predicate).await?;
        outcome_row("update", &out).map(Some)
    }
}
