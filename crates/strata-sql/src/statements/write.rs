//! INSERT INTO and INSERT OVERWRITE (dynamic partition overwrite) of a lake table.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema as ArrowSchema};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Insert, Statement, TableObject};

use super::outcome_row;
use crate::SqlSession;
use strata_table::dialect::normalize;
use strata_table::error::{Error, Result};
use strata_table::table::{self, Match};

impl SqlSession {
    pub(super) async fn insert(
        &self,
        insert: &Insert,
        registered: &mut Vec<String>,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let TableObject::TableName(name) = &insert.table else {
            return Ok(None);
        };
        let Some(ident) = self.lake_table(name).await? else {
            return Ok(None);
        };
        let Some(source) = &insert.source else {
            return Err(Error::Sql("INSERT needs a query or VALUES".to_string()));
        };
        if insert.partitioned.is_some() {
            return Err(Error::Sql(
                "INSERT … PARTITION (…) is not supported: partitions come from the rows (dynamic overwrite)".to_string(),
            ));
        }
        let statement = DFStatement::Statement(Box::new(Statement::Query(source.clone())));
        let rows = self
            .dataframe(statement, registered)
            .await?
            .collect()
            .await
            .map_err(Error::datafusion)?;
        let table = self.lake.load_table(&ident).await?;
        let rows = if insert.columns.is_empty() {
            table::conform(&table, &rows, Match::ByPosition)?
        } else {
            let names: Vec<String> = insert.columns.iter().map(normalize).collect();
            let renamed = rows
                .iter()
                .map(|b| rename_columns(b, &names))
                .collect::<Result<Vec<_>>>()?;
            table::conform(&table, &renamed, Match::ByName)?
        };
        let (op, out) = if insert.overwrite {
            (
                "insert overwrite",
                table::overwrite_partitions(&self.lake, &ident, rows).await?,
            )
        } else {
            ("insert", table::append(&self.lake, &ident, rows).await?)
        };
        outcome_row(op, &out).map(Some)
    }
}

fn rename_columns(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch> {
    if names.len() != batch.num_columns() {
        return Err(Error::Sql(format!(
            "INSERT names {} columns but the query gives {}",
            names.len(),
            batch.num_columns()
        )));
    }
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| f.as_ref().clone().with_name(n))
        .collect();
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), batch.columns().to_vec())
        .map_err(|e| Error::arrow("naming insert columns", e))
}
