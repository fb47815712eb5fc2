//! MERGE: the source joined to the target's live rows, each joined row acted on by the first
//! WHEN clause that holds.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::common::Column;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::functions_aggregate::min_max::{max, min};
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{cast, col, lit, Expr, JoinType, Operator};
use datafusion::prelude::{DataFrame, SessionContext};
use iceberg::spec::Operation;
use iceberg::table::Table;
use iceberg::TableIdent;

use super::row_level::{collect_locations, row_level, RowChanges};
use super::Outcome;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::read::{table_arrow_schema, FILE_COLUMN, POS_COLUMN};

/// One `WHEN` clause of a MERGE.
#[derive(Clone, Debug)]
pub enum MergeClause {
    /// `WHEN MATCHED [AND cond] THEN UPDATE SET …`; `None` assignments = `SET *`.
    Update {
        condition: Option<Expr>,
        assignments: Option<Vec<(String, Expr)>>,
    },
    /// `WHEN MATCHED [AND cond] THEN DELETE`.
    Delete { condition: Option<Expr> },
    /// `WHEN NOT MATCHED [AND cond] THEN INSERT …`; `None` values = `INSERT *`.
    Insert {
        condition: Option<Expr>,
        values: Option<Vec<(String, Expr)>>,
    },
}

/// A MERGE: the source rows, the aliases its expressions use, the join condition and the
/// clauses in order (the first whose condition holds acts on a row).
#[derive(Clone, Debug)]
pub struct MergeSpec {
    pub target_alias: String,
    pub source_alias: String,
    pub on: Expr,
    pub clauses: Vec<MergeClause>,
}

/// Column marking source rows in the merge join.
const SOURCE_MARK: &str = "__strata_source_row";
/// Column with the index of the clause acting on a joined row.
const ACTION: &str = "__strata_action";

/// The schema MERGE expressions are resolved against: target columns qualified by the
/// target alias, source columns by the source alias.
pub async fn merge_schema(
    lake: &Lake,
    ident: &TableIdent,
    source: &DataFrame,
    target_alias: &str,
    source_alias: &str,
) -> Result<DFSchema> {
    let table = lake.load_table(ident).await?;
    let target =
        DFSchema::try_from_qualified_schema(target_alias, table_arrow_schema(&table)?.as_ref())
            .map_err(Error::datafusion)?;
    let source = DFSchema::try_from_qualified_schema(source_alias, source.schema().as_arrow())
        .map_err(Error::datafusion)?;
    let mut joined = target;
    joined.merge(&source);
    Ok(joined)
}

/// `MERGE INTO <table> AS target USING <source> AS source ON … WHEN …`. A target row matched
/// by more than one source row is an error (the SQL standard's cardinality violation) and
/// leaves the table unchanged.
pub async fn merge(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    source: DataFrame,
    spec: MergeSpec,
) -> Result<Outcome> {
    merge_with_properties(lake, ctx, ident, source, spec, HashMap::new()).await
}

/// [`merge`] whose snapshot also carries `properties` in its summary (e.g. the CDC merger's
/// bus offsets, so data and position commit in one catalog swap).
pub async fn merge_with_properties(
    lake: &Lake,
    ctx: &SessionContext,
    ident: &TableIdent,
    source: DataFrame,
    spec: MergeSpec,
    properties: HashMap<String, String>,
) -> Result<Outcome> {
    row_level(
        lake,
        ctx,
        ident,
        "merge",
        Operation::Overwrite,
        &properties,
        |target, table| {
            let source = source.clone();
            let spec = spec.clone();
            async move { plan_merge(&table, target, source, &spec).await }
        },
    )
    .await
}

async fn plan_merge(
    table: &Table,
    target: DataFrame,
    source: DataFrame,
    spec: &MergeSpec,
) -> Result<RowChanges> {
    let schema = table_arrow_schema(table)?;
    let t = |name: &str| {
        col(datafusion::common::Column::new(
            Some(spec.target_alias.clone()),
            name,
        ))
    };
    let s = |name: &str| {
        col(datafusion::common::Column::new(
            Some(spec.source_alias.clone()),
            name,
        ))
    };
    let source_columns: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let target = narrow_to_source_keys(target, &source, spec).await?;
    let source = source
        .with_column(SOURCE_MARK, lit(true))
        .map_err(Error::datafusion)?
        .alias(&spec.source_alias)
        .map_err(Error::datafusion)?;
    let target = target
        .alias(&spec.target_alias)
        .map_err(Error::datafusion)?;
    // Target rows no source row matches are never touched: source LEFT JOIN target, so the
    // hash join builds on the source and streams the target past it.
    let joined = source
        .join_on(target, JoinType::Left, [spec.on.clone()])
        .map_err(Error::datafusion)?;
    let matched = t(POS_COLUMN).is_not_null();
    let not_matched = t(POS_COLUMN).is_null();

    // Which clause acts on each joined row (NULL: none).
    let mut action_pairs: Vec<(Expr, Expr)> = Vec::new();
    for (i, clause) in spec.clauses.iter().enumerate() {
        let (base, condition) = match clause {
            MergeClause::Update { condition, .. } | MergeClause::Delete { condition } => {
                (matched.clone(), condition)
            }
            MergeClause::Insert { condition, .. } => (not_matched.clone(), condition),
        };
        let when_expr = match condition {
            Some(c) => base.and(c.clone()),
            None => base,
        };
        action_pairs.push((when_expr, lit(i as i64)));
    }
    if action_pairs.is_empty() {
        return Ok(RowChanges::default());
    }
    let action = case_expr(None, action_pairs, lit(ScalarValue::Int64(None)));

    // New values of every target column: CASE <acting clause> WHEN i THEN <value> END.
    let acting = joined
        .with_column(ACTION, action)
        .map_err(Error::datafusion)?
        .filter(col(ACTION).is_not_null())
        .map_err(Error::datafusion)?;
    let mut exprs = vec![
        col(ACTION),
        t(FILE_COLUMN).alias(FILE_COLUMN),
        t(POS_COLUMN).alias(POS_COLUMN),
    ];
    for field in schema.fields() {
        let name = field.name();
        let mut pairs: Vec<(Expr, Expr)> = Vec::new();
        for (i, clause) in spec.clauses.iter().enumerate() {
            let v = match clause {
                MergeClause::Delete { .. } => continue,
                MergeClause::Update { assignments, .. } => match assignments {
                    None => star_value(&source_columns, name, &s, "UPDATE SET *")?,
                    Some(list) => match list.iter().find(|(n, _)| n == name) {
                        Some((_, e)) => e.clone(),
                        None => t(name),
                    },
                },
                MergeClause::Insert { values, .. } => match values {
                    None => star_value(&source_columns, name, &s, "INSERT *")?,
                    Some(list) => match list.iter().find(|(n, _)| n == name) {
                        Some((_, e)) => e.clone(),
                        None => lit(ScalarValue::Null),
                    },
                },
            };
            pairs.push((lit(i as i64), v));
        }
        let e = if pairs.is_empty() {
            lit(ScalarValue::Null)
        } else {
            case_expr(Some(col(ACTION)), pairs, lit(ScalarValue::Null))
        };
        exprs.push(cast(e, field.data_type().clone()).alias(name));
    }
    let rows = acting
        .select(exprs)
        .map_err(Error::datafusion)?
        .collect()
        .await
        .map_err(Error::datafusion)?;

    let mut changes = RowChanges::default();
    // Matched rows acted on (update or delete) lose their old version.
    collect_locations(&rows, 1, 2, &mut changes.deleted)?;
    // Cardinality: one target row modified on behalf of several source rows.
    for (path, positions) in &changes.deleted {
        let unique: HashSet<i64> = positions.iter().copied().collect();
        if unique.len() != positions.len() {
            return Err(Error::Sql(format!(
                "MERGE into {}: a target row matched more than one source row (cardinality violation; in {path}); the table is unchanged",
                table.identifier()
            )));
        }
    }
    let n = schema.fields().len();
    let value_columns: Vec<usize> = (3..3 + n).collect();
    for batch in &rows {
        let actions = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::Internal("merge action is not int64".to_string()))?;
        let mut writes = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let clause = &spec.clauses[actions.value(i) as usize];
            let (ins, upd, del) = &mut changes.counts;
            writes.push(Some(match clause {
                MergeClause::Insert { .. } => {
                    *ins += 1;
                    true
                }
                MergeClause::Update { .. } => {
                    *upd += 1;
                    true
                }
                MergeClause::Delete { .. } => {
                    *del += 1;
                    false
                }
            }));
        }
        let written = arrow::compute::filter_record_batch(batch, &BooleanArray::from(writes))
            .map_err(|e| Error::arrow("merge", e))?
            .project(&value_columns)
            .map_err(|e| Error::arrow("merge", e))?;
        if written.num_rows() > 0 {
            changes.inserted.push(written);
        }
    }
    Ok(changes)
}

/// `CASE [base] WHEN w THEN t … ELSE otherwise END`.
fn case_expr(base: Option<Expr>, pairs: Vec<(Expr, Expr)>, otherwise: Expr) -> Expr {
    Expr::Case(Case::new(
        base.map(Box::new),
        pairs
            .into_iter()
            .map(|(w, t)| (Box::new(w), Box::new(t)))
            .collect(),
        Some(Box::new(otherwise)),
    ))
}

/// For ON conditions with `target.k = source.k` terms, keeps only target rows whose keys lie
/// within the source's key range: the scan then skips files whose key bounds miss it.
async fn narrow_to_source_keys(
    target: DataFrame,
    source: &DataFrame,
    spec: &MergeSpec,
) -> Result<DataFrame> {
    let mut pairs = Vec::new();
    for term in split_conjunction(&spec.on) {
        if let Expr::BinaryExpr(b) = term {
            if b.op != Operator::Eq {
                continue;
            }
            if let (Expr::Column(l), Expr::Column(r)) = (b.left.as_ref(), b.right.as_ref()) {
                let side = |c: &Column| c.relation.as_ref().map(|r| r.table().to_string());
                match (side(l).as_deref(), side(r).as_deref()) {
                    (Some(a), Some(b)) if a == spec.target_alias && b == spec.source_alias => {
                        pairs.push((l.name.clone(), r.name.clone()))
                    }
                    (Some(a), Some(b)) if a == spec.source_alias && b == spec.target_alias => {
                        pairs.push((r.name.clone(), l.name.clone()))
                    }
                    _ => {}
                }
            }
        }
    }
    if pairs.is_empty() {
        return Ok(target);
    }
    let mut aggregates = Vec::new();
    for (i, (_, s)) in pairs.iter().enumerate() {
        let c = col(Column::from_name(s));
        aggregates.push(min(c.clone()).alias(format!("min{i}")));
        aggregates.push(max(c).alias(format!("max{i}")));
    }
    let ranges = source
        .clone()
        .aggregate(vec![], aggregates)
        .map_err(Error::datafusion)?
        .collect()
        .await
        .map_err(Error::datafusion)?;
    let Some(batch) = ranges.iter().find(|b| b.num_rows() > 0) else {
        return Ok(target);
    };
    let mut target = target;
    for (i, (t, _)) in pairs.iter().enumerate() {
        let lo = ScalarValue::try_from_array(batch.column(2 * i), 0).map_err(Error::datafusion)?;
        let hi =
            ScalarValue::try_from_array(batch.column(2 * i + 1), 0).map_err(Error::datafusion)?;
        if lo.is_null() || hi.is_null() {
            continue;
        }
        let c = col(Column::from_name(t));
        target = target
            .filter(c.clone().gt_eq(lit(lo)).and(c.lt_eq(lit(hi))))
            .map_err(Error::datafusion)?;
    }
    Ok(target)
}

fn star_value(
    source_columns: &[String],
    name: &str,
    s: &dyn Fn(&str) -> Expr,
    what: &str,
) -> Result<Expr> {
    if source_columns.iter().any(|c| c == name) {
        Ok(s(name))
    } else {
        Err(Error::Sql(format!(
            "MERGE {what}: the source has no column {name}"
        )))
    }
}
