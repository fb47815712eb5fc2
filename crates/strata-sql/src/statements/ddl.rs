//! CREATE / DROP NAMESPACE (SCHEMA) and CREATE TABLE [AS SELECT] / DROP TABLE [PURGE].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema as ArrowSchema, SchemaRef};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, ObjectName, SchemaName, Statement,
};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::{NamespaceIdent, TableCreation};

use super::options::table_options;
use super::{outcome_row, result_row};
use crate::SqlSession;
use strata_table::dialect::normalize;
use strata_table::error::{Error, Result};
use strata_table::table;
use strata_table::table::create::{lake_schema, partition_spec};

impl SqlSession {
    pub(super) fn namespace_ident(&self, name: &ObjectName) -> Result<NamespaceIdent> {
        let mut parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().trim_matches('"').to_string())
            .collect();
        if parts.len() == 2 && parts[0] == self.catalog_name {
            parts.remove(0);
        }
        if parts.len() != 1 {
            return Err(Error::Sql(format!(
                "namespace {name}: Strata namespaces have one level (e.g. dwd)"
            )));
        }
        Ok(NamespaceIdent::new(parts[0].to_lowercase()))
    }

    pub(super) async fn create_namespace(
        &self,
        name: &SchemaName,
        if_not_exists: bool,
    ) -> Result<Vec<RecordBatch>> {
        let SchemaName::Simple(name) = name else {
            return Err(Error::Sql(format!("unsupported schema name {name}")));
        };
        let ns = self.namespace_ident(name)?;
        strata_core::names::check_namespace(ns.as_ref()).map_err(Error::Invalid)?;
        let exists = self
            .catalog
            .namespace_exists(&ns)
            .await
            .map_err(|e| Error::iceberg("checking namespace", e))?;
        let message = if exists {
            if !if_not_exists {
                return Err(Error::Sql(format!(
                    "namespace {} already exists",
                    ns.join(".")
                )));
            }
            format!("namespace {} exists", ns.join("."))
        } else {
            self.catalog
                .create_namespace(&ns, HashMap::new())
                .await
                .map_err(|e| Error::iceberg(format!("creating namespace {}", ns.join(".")), e))?;
            format!("created namespace {}", ns.join("."))
        };
        self.refresh().await?;
        result_row(&message)
    }

    pub(super) async fn drop_namespaces(
        &self,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<Vec<RecordBatch>> {
        let mut done = Vec::new();
        for name in names {
            let ns = self.namespace_ident(name)?;
            let exists = self
                .catalog
                .namespace_exists(&ns)
                .await
                .map_err(|e| Error::iceberg("checking namespace", e))?;
            if !exists {
                if if_exists {
                    continue;
                }
                return Err(Error::NotFound(format!("namespace {}", ns.join("."))));
            }
            let tables = self
                .catalog
                .list_tables(&ns)
                .await
                .map_err(|e| Error::iceberg("listing tables", e))?;
            if !tables.is_empty() {
                return Err(Error::Sql(format!(
                    "namespace {} still has {} tables; drop them first",
                    ns.join("."),
                    tables.len()
                )));
            }
            self.catalog
                .drop_namespace(&ns)
                .await
                .map_err(|e| Error::iceberg(format!("dropping namespace {}", ns.join(".")), e))?;
            done.push(ns.join("."));
        }
        self.refresh().await?;
        result_row(&format!("dropped namespace {}", done.join(", ")))
    }

    pub(super) async fn create_table(
        &self,
        create: &CreateTable,
        partitioned_by: Option<&str>,
        registered: &mut Vec<String>,
    ) -> Result<Vec<RecordBatch>> {
        let ident = self.table_ident(&create.name)?;
        strata_core::names::check_name("table name", ident.name()).map_err(Error::Invalid)?;
        let ns = ident.namespace().clone();
        let ns_exists = self
            .catalog
            .namespace_exists(&ns)
            .await
            .map_err(|e| Error::iceberg("checking namespace", e))?;
        if !ns_exists {
            return Err(Error::NotFound(format!(
                "namespace {} (CREATE NAMESPACE {} first)",
                ns.join("."),
                ns.join(".")
            )));
        }
        let exists = self
            .catalog
            .table_exists(&ident)
            .await
            .map_err(|e| Error::iceberg(format!("looking up {ident}"), e))?;
        if exists {
            if create.if_not_exists {
                return result_row(&format!("table {ident} exists"));
            }
            if !create.or_replace {
                return Err(Error::Sql(format!("table {ident} already exists")));
            }
        }
        // The rows of CREATE TABLE … AS SELECT, planned before anything changes.
        let (arrow_schema, rows) = match &create.query {
            Some(query) => {
                if !create.columns.is_empty() {
                    return Err(Error::Sql(
                        "CREATE TABLE … AS SELECT takes its columns from the query; drop the column list"
                            .to_string(),
                    ));
                }
                let statement = DFStatement::Statement(Box::new(Statement::Query(query.clone())));
                let df = self.dataframe(statement, registered).await?;
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let rows = df.collect().await.map_err(Error::datafusion)?;
                (lake_schema(&schema, true)?, rows)
            }
            None => (self.column_schema(create).await?, Vec::new()),
        };
        let schema = arrow_schema_to_schema_auto_assign_ids(&arrow_schema)
            .map_err(|e| Error::Sql(format!("columns of {ident}: {e}")))?;
        let spec = match partitioned_by {
            Some(text) => Some(partition_spec(text, &schema)?),
            None => None,
        };
        let properties = table_options(&create.table_options)?;
        if exists {
            // CREATE OR REPLACE: a new table under the same name (history starts over).
            self.catalog
                .drop_table(&ident)
                .await
                .map_err(|e| Error::iceberg(format!("replacing {ident}"), e))?;
        }
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .schema(schema)
            .partition_spec_opt(spec)
            .properties(properties)
            .build();
        self.catalog
            .create_table(&ns, creation)
            .await
            .map_err(|e| Error::iceberg(format!("creating {ident}"), e))?;
        self.refresh().await?;
        if create.query.is_some() {
            let out = table::append(&self.lake, &ident, rows).await?;
            return outcome_row("create table as select", &out);
        }
        result_row(&format!("created table {ident}"))
    }

    /// Arrow schema of a CREATE TABLE column list: each type as DataFusion reads it, made
    /// Iceberg-compatible; `NOT NULL` columns are required.
    pub(super) async fn column_schema(&self, create: &CreateTable) -> Result<ArrowSchema> {
        if create.columns.is_empty() {
            return Err(Error::Sql(format!(
                "CREATE TABLE {} needs columns",
                create.name
            )));
        }
        let casts: Vec<String> = create
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(NULL AS {}) AS c{i}", c.data_type))
            .collect();
        let df = self
            .ctx
            .sql(&format!("SELECT {}", casts.join(", ")))
            .await
            .map_err(|e| Error::Sql(format!("column types: {e}")))?;
        let fields: Vec<Field> = create
            .columns
            .iter()
            .zip(df.schema().fields().iter())
            .map(|(c, f)| {
                let required = c
                    .options
                    .iter()
                    .any(|o| matches!(o.option, ColumnOption::NotNull));
                Field::new(normalize(&c.name), f.data_type().clone(), !required)
            })
            .collect();
        lake_schema(&Arc::new(ArrowSchema::new(fields)), false)
    }

    pub(super) async fn drop_tables(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        purge: bool,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let mut dropped = Vec::new();
        for name in names {
            let ident = self.table_ident(name)?;
            let exists = self
                .catalog
                .table_exists(&ident)
                .await
                .map_err(|e| Error::iceberg(format!("looking up {ident}"), e))?;
            if !exists {
                if self
                    .ctx
                    .table_exist(name.to_string().as_str())
                    .unwrap_or(false)
                {
                    // A session-local table: DataFusion drops it.
                    return Ok(None);
                }
                if if_exists {
                    continue;
                }
                return Err(Error::NotFound(format!("table {ident}")));
            }
            if strata_table::schema::OdsTable::ALL
                .iter()
                .any(|t| t.ident() == ident)
            {
                return Err(Error::Sql(format!(
                    "{ident} is written by the lake sink and cannot be dropped"
                )));
            }
            let table = self.lake.load_table(&ident).await?;
            self.catalog
                .drop_table(&ident)
                .await
                .map_err(|e| Error::iceberg(format!("dropping {ident}"), e))?;
            if purge {
                iceberg::drop_table_data(&table)
                    .await
                    .map_err(|e| Error::iceberg(format!("deleting the files of {ident}"), e))?;
            }
            dropped.push(ident.to_string());
        }
        self.refresh().await?;
        let what = if purge {
            "dropped and purged"
        } else {
            "dropped"
        };
        result_row(&format!("{what} table {}", dropped.join(", "))).map(Some)
    }
}
