//! Statements that change the lake: namespaces, tables (CREATE / CTAS / DROP / ALTER), and
//! rows (INSERT [OVERWRITE], DELETE, UPDATE, MERGE, COPY … FROM files). Each becomes a call of the Rust API in
//! [`strata_table::table`]; everything else goes on to DataFusion.
//!
//! Write statements return one row: `operation, rows_inserted, rows_updated, rows_deleted,
//! snapshot_id`. DDL returns one `result` row saying what was done.

mod alter;
mod copy;
mod ddl;
mod dml;
mod merge;
mod options;
mod resolve;
mod write;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement};
use iceberg::TableIdent;

use crate::SqlSession;
pub(crate) use copy::parse as parse_copy;
use strata_table::error::{Error, Result};
use strata_table::table::Outcome;

impl SqlSession {
    /// Runs `statement` if it changes the lake; `None` hands it on to DataFusion.
    pub(super) async fn lake_statement(
        &self,
        statement: &DFStatement,
        partitioned_by: Option<&str>,
        registered: &mut Vec<String>,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let DFStatement::Statement(statement) = statement else {
            return Ok(None);
        };
        if partitioned_by.is_some() && !matches!(statement.as_ref(), Statement::CreateTable(_)) {
            return Err(Error::Sql(
                "PARTITIONED BY belongs to CREATE TABLE".to_string(),
            ));
        }
        match statement.as_ref() {
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self
                .create_namespace(schema_name, *if_not_exists)
                .await
                .map(Some),
            Statement::Drop {
                object_type: ObjectType::Schema,
                names,
                if_exists,
                ..
            } => self.drop_namespaces(names, *if_exists).await.map(Some),
            Statement::CreateTable(create) if !create.temporary && !create.external => self
                .create_table(create, partitioned_by, registered)
                .await
                .map(Some),
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                if_exists,
                purge,
                temporary: false,
                ..
            } => self.drop_tables(names, *if_exists, *purge).await,
            Statement::Insert(insert) => self.insert(insert, registered).await,
            Statement::Delete(delete) => self.delete(delete).await,
            Statement::Update(update) => self.update(update).await,
            Statement::Merge(merge) => self.merge(merge, registered).await,
            Statement::AlterTable(alter) => self.alter_table(alter).await,
            _ => Ok(None),
        }
    }

    /// The lake table `name` names, or `None` for a session-local table.
    pub(super) async fn lake_table(&self, name: &ObjectName) -> Result<Option<TableIdent>> {
        let ident = self.table_ident(name)?;
        let exists = self
            .catalog
            .table_exists(&ident)
            .await
            .map_err(|e| Error::iceberg(format!("looking up {ident}"), e))?;
        if exists {
            return Ok(Some(ident));
        }
        let local = self
            .ctx
            .table_exist(name.to_string().as_str())
            .unwrap_or(false);
        if local {
            Ok(None)
        } else {
            Err(Error::NotFound(format!("table {ident}")))
        }
    }
}

pub(super) fn result_row(message: &str) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(ArrowSchema::new(vec![Field::new(
        "result",
        DataType::Utf8,
        false,
    )]));
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec![message]))],
    )
    .map_err(|e| Error::arrow("result row", e))?])
}

pub(super) fn outcome_row(operation: &str, out: &Outcome) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("operation", DataType::Utf8, false),
        Field::new("rows_inserted", DataType::Int64, false),
        Field::new("rows_updated", DataType::Int64, false),
        Field::new("rows_deleted", DataType::Int64, false),
        Field::new("snapshot_id", DataType::Int64, true),
    ]));
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![operation])),
            Arc::new(Int64Array::from(vec![out.inserted as i64])),
            Arc::new(Int64Array::from(vec![out.updated as i64])),
            Arc::new(Int64Array::from(vec![out.deleted as i64])),
            Arc::new(Int64Array::from(vec![out.snapshot_id])),
        ],
    )
    .map_err(|e| Error::arrow("result row", e))?])
}
