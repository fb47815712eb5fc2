//! MERGE INTO: the statement's clauses turned into a [`MergeSpec`] for [`table::merge`].

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Merge, MergeAction, MergeClauseKind, MergeInsertKind, TableFactor,
};

use super::outcome_row;
use super::resolve::assignment_column;
use crate::rewrite::SET_STAR;
use crate::SqlSession;
use strata_table::dialect::{normalize, TimeTravelDialect};
use strata_table::error::{Error, Result};
use strata_table::table::{self, MergeClause, MergeSpec};

impl SqlSession {
    pub(super) async fn merge(
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
