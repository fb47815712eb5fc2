//! SQL expressions of DELETE / UPDATE / MERGE resolved into DataFusion expressions over the
//! target (and source) columns, and the column names of `SET` assignments.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::SchemaProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::ast::{AssignmentTarget, Expr as SqlExpr};

use crate::SqlSession;
use strata_table::dialect::TimeTravelDialect;
use strata_table::error::{Error, Result};

impl SqlSession {
    /// Resolves SQL expressions over the given relations (alias, columns) as DataFusion
    /// expressions, by planning `SELECT e0, e1, … FROM r0 AS a0 CROSS JOIN r1 AS a1` over
    /// empty stand-in tables: the regular statement planner loads every table a subquery in
    /// an expression names, which expression-only planning cannot.
    pub(super) async fn resolve_exprs(
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

/// Drops the target qualifier from column references (the Rust API's predicates are over the
/// table's own, unqualified columns).
pub(super) fn unqualify(expr: Expr, qualifier: &str) -> Result<Expr> {
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

pub(super) fn assignment_column(target: &AssignmentTarget) -> Result<String> {
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
