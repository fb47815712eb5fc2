//! ALTER TABLE: column evolution (ADD / DROP / RENAME COLUMN, ALTER COLUMN … TYPE / DROP NOT
//! NULL) and SET TBLPROPERTIES, committed as one metadata swap.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, ColumnOption,
};
use iceberg::arrow::arrow_type_to_type;
use iceberg::spec::Type;

use super::options::options_map;
use super::result_row;
use crate::SqlSession;
use strata_table::dialect::normalize;
use strata_table::error::{Error, Result};
use strata_table::table::create::lake_type;
use strata_table::table::evolve::{commit_metadata_change, Evolution, MetadataChange};

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
        let what = format!("ALTER TABLE {ident}");
        commit_metadata_change(&self.lake, &ident, &what, |table| {
            let mut evolution = Evolution::new(table.metadata())?;
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
            let change = MetadataChange {
                schema: evolution.finish()?,
                set_properties: properties,
                requested: true,
                ..Default::default()
            };
            Ok((change, ()))
        })
        .await?;
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
