//! ALTER TABLE: column evolution (ADD / DROP / RENAME COLUMN, ALTER COLUMN … TYPE / DROP NOT
//! NULL) and SET TBLPROPERTIES, committed as one metadata swap.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnOption,
};
use iceberg::arrow::arrow_type_to_type;
use iceberg::spec::{TableMetadataBuilder, Type};

use super::options::options_map;
use super::result_row;
use crate::SqlSession;
use strata_table::dialect::normalize;
use strata_table::error::{Error, Result};
use strata_table::retry::Backoff;
use strata_table::table::create::lake_type;
use strata_table::table::evolve::Evolution;
use strata_table::table::{self, swap_metadata};

impl SqlSession {
    pub(super) async fn alter_table(&self, alter: &AlterTable) -> Result<Option<Vec<RecordBatch>>> {
        let ident = self.table_ident(&alter.name)?;
        let exists = self
            .catalog
            .table_exists(&ident)
            .await
            .map_err(|e| Error::iceberg(format!("looking up {ident}"), e))?;
        if !exists {
            if alter.if_exists {
                return result_row(&format!("table {ident} does not exist")).map(Some);
            }
            return Err(Error::NotFound(format!("table {ident}")));
        }
        // Types of added / changed columns, resolved once.
        let mut new_types = HashMap::new();
        for op in &alter.operations {
            let (name, data_type) = match op {
                AlterTableOperation::AddColumn { column_def, .. } => (
                    normalize(&column_def.name),
                    column_def.data_type.to_string(),
                ),
                AlterTableOperation::AlterColumn {
                    column_name,
                    op: AlterColumnOperation::SetDataType { data_type, .. },
                } => (normalize(column_name), data_type.to_string()),
                _ => continue,
            };
            new_types.insert(name, self.iceberg_type(&data_type).await?);
        }
        let mut backoff = Backoff::new(8);
        loop {
            let table = self.lake.load_table(&ident).await?;
            let metadata = table.metadata();
            let mut evolution = Evolution::new(metadata)?;
            let mut properties = HashMap::new();
            for op in &alter.operations {
                match op {
                    AlterTableOperation::AddColumn {
                        column_def,
                        if_not_exists,
                        ..
                    } => {
                        let name = normalize(&column_def.name);
                        let required = column_def
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull));
                        if required {
                            return Err(Error::Sql(format!(
                                "ADD COLUMN {name} NOT NULL: existing rows have no value; add it nullable"
                            )));
                        }
                        evolution.add(&name, new_types[&name].clone(), *if_not_exists)?;
                    }
                    AlterTableOperation::DropColumn {
                        column_names,
                        if_exists,
                        ..
                    } => {
                        for c in column_names {
                            evolution.drop(&normalize(c), *if_exists)?;
                        }
                    }
                    AlterTableOperation::RenameColumn {
                        old_column_name,
                        new_column_name,
                    } => evolution.rename(&normalize(old_column_name), &normalize(new_column_name))?,
                    AlterTableOperation::AlterColumn { column_name, op } => {
                        let name = normalize(column_name);
                        match op {
                            AlterColumnOperation::SetDataType { using: None, .. } => {
                                evolution.widen(&name, &new_types[&name])?
                            }
                            AlterColumnOperation::DropNotNull => evolution.make_optional(&name)?,
                            other => {
                                return Err(Error::Sql(format!(
                                    "ALTER COLUMN {name} {other} is not supported"
                                )))
                            }
                        }
                    }
                    AlterTableOperation::SetTblProperties { table_properties } => {
                        properties.extend(options_map(table_properties)?);
                    }
                    other => {
                        return Err(Error::Sql(format!(
                            "ALTER TABLE … {other} is not supported (ADD / DROP / RENAME COLUMN, ALTER COLUMN … TYPE, SET TBLPROPERTIES are)"
                        )))
                    }
                }
            }
            let mut builder = TableMetadataBuilder::new_from_metadata(
                metadata.clone(),
                table.metadata_location().map(str::to_string),
            );
            if let Some(schema) = evolution.finish()? {
                builder = builder
                    .add_current_schema(schema)
                    .map_err(|e| Error::Sql(format!("ALTER TABLE {ident}: {e}")))?;
            }
            if !properties.is_empty() {
                builder = builder
                    .set_properties(properties)
                    .map_err(|e| Error::Sql(format!("ALTER TABLE {ident}: {e}")))?;
            }
            let next = builder
                .build()
                .map_err(|e| Error::Sql(format!("ALTER TABLE {ident}: {e}")))?;
            match swap_metadata(&self.lake, &table, next).await {
                Ok(_) => break,
                Err(Error::Conflict { .. }) if backoff.can_retry() => backoff.wait().await,
                Err(e) => return Err(e),
            }
        }
        table::snapshot_current_schema(&self.lake, &ident).await?;
        self.refresh().await?;
        result_row(&format!("altered table {ident}")).map(Some)
    }

    /// An Iceberg type for a SQL type name.
    pub(super) async fn iceberg_type(&self, sql_type: &str) -> Result<Type> {
        let df = self
            .ctx
            .sql(&format!("SELECT CAST(NULL AS {sql_type}) AS c"))
            .await
            .map_err(|e| Error::Sql(format!("type {sql_type}: {e}")))?;
        let data_type = lake_type(df.schema().field(0).data_type());
        arrow_type_to_type(&data_type).map_err(|e| Error::Sql(format!("type {sql_type}: {e}")))
    }
}
