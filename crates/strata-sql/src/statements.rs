//! Statements that change the lake: namespaces, tables (CREATE / CTAS / DROP / ALTER), and
//! rows (INSERT [OVERWRITE], DELETE, UPDATE, MERGE). Each becomes a call of the Rust API in
//! [`strata_table::table`]; everything else goes on to DataFusion.
//!
//! Write statements return one row: `operation, rows_inserted, rows_updated, rows_deleted,
//! snapshot_id`. DDL returns one `result` row saying what was done.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AlterColumnOperation, AlterTable, AlterTableOperation, AssignmentTarget, ColumnOption,
    CreateTable, CreateTableOptions, Delete, Expr as SqlExpr, FromTable, Insert, Merge,
    MergeAction, MergeClauseKind, MergeInsertKind, ObjectName, ObjectType, SchemaName, SqlOption,
    Statement, TableFactor, TableObject, Update,
};
use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, arrow_type_to_type};
use iceberg::spec::{TableMetadataBuilder, Type};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};

use crate::rewrite::SET_STAR;
use crate::SqlSession;
use strata_table::dialect::TimeTravelDialect;
use strata_table::error::{Error, Result};
use strata_table::retry::Backoff;
use strata_table::table::create::{lake_schema, lake_type, partition_spec};
use strata_table::table::evolve::Evolution;
use strata_table::table::{self, swap_metadata, Match, MergeClause, MergeSpec, Outcome};

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
    async fn lake_table(&self, name: &ObjectName) -> Result<Option<TableIdent>> {
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

    fn namespace_ident(&self, name: &ObjectName) -> Result<NamespaceIdent> {
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

    async fn create_namespace(
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

    async fn drop_namespaces(
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

    async fn create_table(
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
    async fn column_schema(&self, create: &CreateTable) -> Result<ArrowSchema> {
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

    async fn drop_tables(
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

    async fn insert(
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

    async fn delete(&self, delete: &Delete) -> Result<Option<Vec<RecordBatch>>> {
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

    async fn update(&self, update: &Update) -> Result<Option<Vec<RecordBatch>>> {
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

    async fn merge(
        &self,
        merge: &Merge,
        registered: &mut Vec<String>,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let TableFactor::Table { name, alias, .. } = &merge.table else {
            return Err(Error::Sql("MERGE INTO needs a table".to_string()));
        };
        let Some(ident) = self.lake_table(name).await? else {
            return Err(Error::Sql(format!("MERGE INTO {name}: not a lake table")));
        };
        if merge.output.is_some() {
            return Err(Error::Sql("MERGE … OUTPUT is not supported".to_string()));
        }
        let target_alias = alias
            .as_ref()
            .map(|a| normalize(&a.name))
            .unwrap_or_else(|| ident.name().to_string());
        let (source_sql, source_alias) = match &merge.source {
            TableFactor::Derived {
                subquery, alias, ..
            } => (
                subquery.to_string(),
                alias.as_ref().map(|a| normalize(&a.name)),
            ),
            TableFactor::Table {
                name,
                alias,
                version,
                ..
            } => {
                let version = version
                    .as_ref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                let last = name.0.last().map(|p| p.to_string()).unwrap_or_default();
                (
                    format!("SELECT * FROM {name}{version}"),
                    Some(
                        alias
                            .as_ref()
                            .map(|a| normalize(&a.name))
                            .unwrap_or_else(|| last.trim_matches('"').to_lowercase()),
                    ),
                )
            }
            other => {
                return Err(Error::Sql(format!(
                    "MERGE … USING {other}: use a table or a (subquery) AS alias"
                )))
            }
        };
        let source_alias = source_alias
            .ok_or_else(|| Error::Sql("MERGE … USING (subquery) needs an alias".to_string()))?;
        let mut parsed = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
            &source_sql,
            &TimeTravelDialect,
        )
        .map_err(Error::datafusion)?;
        let statement = parsed
            .pop_front()
            .ok_or_else(|| Error::Internal("empty MERGE source".to_string()))?;
        let source = self.dataframe(statement, registered).await?;
        let target_schema = {
            let table = self.lake.load_table(&ident).await?;
            strata_table::table::read::table_arrow_schema(&table)?
        };
        let source_schema: SchemaRef = Arc::new(source.schema().as_arrow().clone());
        // Every expression of the statement, resolved in one plan over both sides.
        let mut exprs: Vec<SqlExpr> = vec![merge.on.as_ref().clone()];
        let mut clauses = Vec::with_capacity(merge.clauses.len());
        for clause in &merge.clauses {
            let condition = clause.predicate.as_ref().map(|p| {
                exprs.push(p.clone());
                exprs.len() - 1
            });
            let c = match (&clause.clause_kind, &clause.action) {
                (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                    PendingClause::Delete { condition }
                }
                (MergeClauseKind::Matched, MergeAction::Update(u)) => {
                    if u.update_predicate.is_some() || u.delete_predicate.is_some() {
                        return Err(Error::Sql(
                            "MERGE … UPDATE … WHERE / DELETE WHERE is not supported; put the condition in WHEN MATCHED AND …".to_string(),
                        ));
                    }
                    let star = matches!(u.assignments.as_slice(), [a] if assignment_column(&a.target).ok().as_deref() == Some(SET_STAR));
                    let assignments = if star {
                        None
                    } else {
                        let mut list = Vec::new();
                        for a in &u.assignments {
                            let column = assignment_column(&a.target)?;
                            if target_schema.field_with_name(&column).is_err() {
                                return Err(Error::Sql(format!(
                                    "MERGE … UPDATE SET: {ident} has no column {column}"
                                )));
                            }
                            exprs.push(a.value.clone());
                            list.push((column, exprs.len() - 1));
                        }
                        Some(list)
                    };
                    PendingClause::Update {
                        condition,
                        assignments,
                    }
                }
                (
                    MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                    MergeAction::Insert(i),
                ) => {
                    if i.insert_predicate.is_some() {
                        return Err(Error::Sql(
                            "MERGE … INSERT … WHERE is not supported; put the condition in WHEN NOT MATCHED AND …".to_string(),
                        ));
                    }
                    let values = match &i.kind {
                        MergeInsertKind::Row => None,
                        MergeInsertKind::Values(values) => {
                            let [row] = values.rows.as_slice() else {
                                return Err(Error::Sql(
                                    "MERGE … INSERT VALUES takes one row".to_string(),
                                ));
                            };
                            let columns: Vec<String> = if i.columns.is_empty() {
                                target_schema
                                    .fields()
                                    .iter()
                                    .map(|f| f.name().clone())
                                    .collect()
                            } else {
                                i.columns
                                    .iter()
                                    .map(|c| {
                                        c.0.last()
                                            .map(|p| p.to_string().trim_matches('"').to_lowercase())
                                            .unwrap_or_default()
                                    })
                                    .collect()
                            };
                            if columns.len() != row.len() {
                                return Err(Error::Sql(format!(
                                    "MERGE … INSERT: {} columns but {} values",
                                    columns.len(),
                                    row.len()
                                )));
                            }
                            let mut list = Vec::new();
                            for (c, v) in columns.into_iter().zip(row.iter()) {
                                if target_schema.field_with_name(&c).is_err() {
                                    return Err(Error::Sql(format!(
                                        "MERGE … INSERT: {ident} has no column {c}"
                                    )));
                                }
                                exprs.push(v.clone());
                                list.push((c, exprs.len() - 1));
                            }
                            Some(list)
                        }
                    };
                    PendingClause::Insert { condition, values }
                }
                (MergeClauseKind::NotMatchedBySource, _) => {
                    return Err(Error::Sql(
                        "WHEN NOT MATCHED BY SOURCE is not supported yet".to_string(),
                    ))
                }
                (kind, action) => {
                    return Err(Error::Sql(format!(
                        "MERGE: {action} is not allowed in a WHEN {kind} clause"
                    )))
                }
            };
            clauses.push(c);
        }
        let resolved = self
            .resolve_exprs(
                &exprs,
                &[
                    (&target_alias, target_schema),
                    (&source_alias, source_schema),
                ],
            )
            .await?;
        let at = |i: usize| resolved[i].clone();
        let pick = |list: Option<Vec<(String, usize)>>| {
            list.map(|l| l.into_iter().map(|(c, i)| (c, at(i))).collect())
        };
        let on = at(0);
        let clauses = clauses
            .into_iter()
            .map(|c| match c {
                PendingClause::Delete { condition } => MergeClause::Delete {
                    condition: condition.map(at),
                },
                PendingClause::Update {
                    condition,
                    assignments,
                } => MergeClause::Update {
                    condition: condition.map(at),
                    assignments: pick(assignments),
                },
                PendingClause::Insert { condition, values } => MergeClause::Insert {
                    condition: condition.map(at),
                    values: pick(values),
                },
            })
            .collect();
        let spec = MergeSpec {
            target_alias,
            source_alias,
            on,
            clauses,
        };
        let out = table::merge(&self.lake, &self.ctx, &ident, source, spec).await?;
        outcome_row("merge", &out).map(Some)
    }

    async fn alter_table(&self, alter: &AlterTable) -> Result<Option<Vec<RecordBatch>>> {
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
    async fn iceberg_type(&self, sql_type: &str) -> Result<Type> {
        let df = self
            .ctx
            .sql(&format!("SELECT CAST(NULL AS {sql_type}) AS c"))
            .await
            .map_err(|e| Error::Sql(format!("type {sql_type}: {e}")))?;
        let data_type = lake_type(df.schema().field(0).data_type());
        arrow_type_to_type(&data_type).map_err(|e| Error::Sql(format!("type {sql_type}: {e}")))
    }

    /// Resolves SQL expressions over the given relations (alias, columns) as DataFusion
    /// expressions, by planning `SELECT e0, e1, … FROM r0 AS a0 CROSS JOIN r1 AS a1` over
    /// empty stand-in tables: the regular statement planner loads every table a subquery in
    /// an expression names, which expression-only planning cannot.
    async fn resolve_exprs(
        &self,
        exprs: &[SqlExpr],
        relations: &[(&str, SchemaRef)],
    ) -> Result<Vec<Expr>> {
        if exprs.is_empty() {
            return Ok(Vec::new());
        }
        let mut registered = Vec::new();
        let mut from = Vec::new();
        for (alias, schema) in relations {
            let name = self.register_temp(Arc::new(
                datafusion::datasource::MemTable::try_new(schema.clone(), vec![vec![]])
                    .map_err(Error::datafusion)?,
            ))?;
            from.push(format!(
                "{}.{}.{name} AS \"{}\"",
                crate::TT_CATALOG,
                crate::TT_SCHEMA,
                alias.replace('"', "\"\"")
            ));
            registered.push(name);
        }
        let select: Vec<String> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| format!("({e}) AS __strata_e{i}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}",
            select.join(", "),
            from.join(" CROSS JOIN ")
        );
        let result = async {
            let mut parsed =
                datafusion::sql::parser::DFParser::parse_sql_with_dialect(&sql, &TimeTravelDialect)
                    .map_err(Error::datafusion)?;
            let statement = parsed
                .pop_front()
                .ok_or_else(|| Error::Internal("empty expression query".to_string()))?;
            let df = self.dataframe(statement, &mut registered).await?;
            match df.logical_plan() {
                datafusion::logical_expr::LogicalPlan::Projection(p) => Ok(p
                    .expr
                    .iter()
                    .map(|e| e.clone().unalias())
                    .collect::<Vec<_>>()),
                other => Err(Error::Sql(format!(
                    "expressions here must be plain row expressions (no aggregates or window functions), got a {} plan",
                    other.display()
                ))),
            }
        }
        .await;
        for name in registered {
            let _ = self.tt_schema.deregister_table(&name);
        }
        result
    }
}

/// A MERGE clause with expressions as indices into the statement's resolved expressions.
enum PendingClause {
    Update {
        condition: Option<usize>,
        assignments: Option<Vec<(String, usize)>>,
    },
    Delete {
        condition: Option<usize>,
    },
    Insert {
        condition: Option<usize>,
        values: Option<Vec<(String, usize)>>,
    },
}

/// Drops the target qualifier from column references (the Rust API's predicates are over the
/// table's own, unqualified columns).
fn unqualify(expr: Expr, qualifier: &str) -> Result<Expr> {
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.as_ref().is_some_and(|r| r.table() == qualifier) => {
                Transformed::yes(Expr::Column(Column::from_name(c.name)))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .map_err(Error::datafusion)
}

fn assignment_column(target: &AssignmentTarget) -> Result<String> {
    match target {
        AssignmentTarget::ColumnName(name) => name
            .0
            .last()
            .map(|p| {
                let s = p.to_string();
                if s.starts_with('"') {
                    s.trim_matches('"').to_string()
                } else {
                    s.to_lowercase()
                }
            })
            .ok_or_else(|| Error::Sql("empty column name".to_string())),
        AssignmentTarget::Tuple(_) => Err(Error::Sql(
            "SET (a, b) = … is not supported; assign columns one by one".to_string(),
        )),
    }
}

use strata_table::dialect::normalize;

fn options_map(options: &[SqlOption]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for o in options {
        match o {
            SqlOption::KeyValue { key, value } => {
                let value = match value {
                    SqlExpr::Value(v) => match &v.value {
                        datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s)
                        | datafusion::sql::sqlparser::ast::Value::DoubleQuotedString(s) => {
                            s.clone()
                        }
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                out.insert(key.value.clone(), value);
            }
            other => return Err(Error::Sql(format!("unsupported table option {other}"))),
        }
    }
    Ok(out)
}

fn table_options(options: &CreateTableOptions) -> Result<HashMap<String, String>> {
    match options {
        CreateTableOptions::None => Ok(HashMap::new()),
        CreateTableOptions::With(o)
        | CreateTableOptions::TableProperties(o)
        | CreateTableOptions::Options(o) => options_map(o),
        CreateTableOptions::Plain(_) => Err(Error::Sql(
            "table options: use TBLPROPERTIES ('key' = 'value', …)".to_string(),
        )),
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

fn result_row(message: &str) -> Result<Vec<RecordBatch>> {
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

fn outcome_row(operation: &str, out: &Outcome) -> Result<Vec<RecordBatch>> {
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
