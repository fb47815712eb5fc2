//! Data-quality checks declared in a model's header, run after the model writes:
//!
//! ```toml
//! [[checks]]
//! type = "unique"            # row_count | unique | not_null | null_rate | accepted_range
//! columns = ["user_id", "dt"] # | accepted_values | consistency | freshness
//! severity = "error"         # error (blocks everything downstream) | warn (reported)
//! ```
//!
//! Checks of an incremental model look at the run date's partition unless `scope = "table"`.

use std::time::Duration;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use serde::Deserialize;
use strata_sql::SqlSession;

use crate::project::{render, Materialized, Model};
use crate::repeats::repeated_hashes;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The run date's rows (`date_column = run date`).
    Partition,
    Table,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Check {
    #[serde(flatten)]
    pub kind: CheckKind,
    #[serde(default)]
    pub severity: Severity,
    pub name: Option<String>,
    pub scope: Option<Scope>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    /// Row count within bounds, or equal (± `tolerance`, a fraction) to `compare`'s value.
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
        compare: Option<String>,
        tolerance: Option<f64>,
    },
    Unique {
        columns: Vec<String>,
    },
    NotNull {
        columns: Vec<String>,
    },
    NullRate {
        column: String,
        max: f64,
    },
    AcceptedRange {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
    /// Two queries' first values agree (± `tolerance`, a fraction, when numeric).
    Consistency {
        left: String,
        right: String,
        tolerance: Option<f64>,
    },
    /// The newest `column` value is at most `max_age` before the end of the run date.
    Freshness {
        column: String,
        #[serde(with = "humantime_serde")]
        max_age: Duration,
    },
}

impl Check {
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            CheckKind::RowCount { .. } => "row_count",
            CheckKind::Unique { .. } => "unique",
            CheckKind::NotNull { .. } => "not_null",
            CheckKind::NullRate { .. } => "null_rate",
            CheckKind::AcceptedRange { .. } => "accepted_range",
            CheckKind::AcceptedValues { .. } => "accepted_values",
            CheckKind::Consistency { .. } => "consistency",
            CheckKind::Freshness { .. } => "freshness",
        }
    }

    /// `name`, or the type and its columns.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let what = match &self.kind {
            CheckKind::Unique { columns } | CheckKind::NotNull { columns } => columns.join(","),
            CheckKind::NullRate { column, .. }
            | CheckKind::AcceptedRange { column, .. }
            | CheckKind::AcceptedValues { column, .. }
            | CheckKind::Freshness { column, .. } => column.clone(),
            _ => String::new(),
        };
        if what.is_empty() {
            self.kind_name().to_string()
        } else {
            format!("{}({what})", self.kind_name())
        }
    }

    /// SQL the check runs besides its own table (row_count `compare`, consistency sides).
    pub fn queries(&self) -> Vec<&str> {
        match &self.kind {
            CheckKind::RowCount {
                compare: Some(c), ..
            } => vec![c.as_str()],
            CheckKind::Consistency { left, right, .. } => vec![left.as_str(), right.as_str()],
            _ => Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match &self.kind {
            CheckKind::RowCount {
                min, max, compare, ..
            } if min.is_none() && max.is_none() && compare.is_none() => {
                Err("row_count needs min, max or compare".to_string())
            }
            CheckKind::Unique { columns } | CheckKind::NotNull { columns }
                if columns.is_empty() =>
            {
                Err("needs columns".to_string())
            }
            CheckKind::NullRate { max, .. } if !(0.0..=1.0).contains(max) => {
                Err("null_rate max is a fraction between 0 and 1".to_string())
            }
            CheckKind::AcceptedRange {
                min: None,
                max: None,
                ..
            } => Err("accepted_range needs min or max".to_string()),
            _ => Ok(()),
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub kind: String,
    pub severity: Severity,
    /// `pass`, `fail`, or `error` (the check itself could not run).
    pub status: &'static str,
    pub observed: String,
    pub expected: String,
}

impl CheckResult {
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Error && self.status != "pass"
    }
}

fn q(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// Runs `check` on `model`'s table for `date`.
pub async fn run_check(
    session: &SqlSession,
    model: &Model,
    check: &Check,
    date: NaiveDate,
) -> CheckResult {
    let mut result = CheckResult {
        name: check.label(),
        kind: check.kind_name().to_string(),
        severity: check.severity,
        status: "error",
        observed: String::new(),
        expected: String::new(),
    };
    match evaluate(session, model, check, date).await {
        Ok((pass, observed, expected)) => {
            result.status = if pass { "pass" } else { "fail" };
            result.observed = observed;
            result.expected = expected;
        }
        Err(e) => result.observed = e,
    }
    result
}

async fn evaluate(
    session: &SqlSession,
    model: &Model,
    check: &Check,
    date: NaiveDate,
) -> Result<(bool, String, String), String> {
    let table = model.table();
    let partition_scope = match check.scope {
        Some(Scope::Table) => false,
        Some(Scope::Partition) => true,
        None => model.config.materialized == Materialized::Incremental,
    };
    let scope = if partition_scope {
        format!("{} = DATE '{date}'", q(&model.config.date_column))
    } else {
        "TRUE".to_string()
    };
    let count = |sql: String| async move { first_f64(session, &sql).await };
    match &check.kind {
        CheckKind::RowCount {
            min,
            max,
            compare,
            tolerance,
        } => {
            let n = count(format!("SELECT count(*) FROM {table} WHERE {scope}")).await?;
            let mut expected = Vec::new();
            let mut pass = true;
            if let Some(min) = min {
                pass &= n >= *min as f64;
                expected.push(format!(">= {min}"));
            }
            if let Some(max) = max {
                pass &= n <= *max as f64;
                expected.push(format!("<= {max}"));
            }
            if let Some(compare) = compare {
                let sql = render(compare, date)?;
                let m = count(sql).await?;
                let tol = tolerance.unwrap_or(0.0);
                pass &= (n - m).abs() <= tol * m.abs().max(1.0);
                expected.push(format!("= {m} ± {}%", tol * 100.0));
            }
            Ok((pass, format!("{n}"), expected.join(" and ")))
        }
        CheckKind::Unique { columns } => {
            let cols = columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
            // First pass over one 64-bit hash per row: no shared hash proves no shared key,
            // and sorting integers is far cheaper than grouping wide strings or several
            // columns (ADR 0024). Only when some hash is shared (a duplicate, or a collision:
            // about 1 in 7,000 at 72M rows) are the keys themselves grouped.
            let hashes = format!("SELECT key_hash({cols}) AS h FROM {table} WHERE {scope}");
            let shared = match repeated_hashes(session, &hashes).await? {
                Some(n) => n as f64,
                None => {
                    tracing::info!(table = %table, "unique check: one hash per row does not fit in the query memory pool; grouping the hashes in SQL (it can spill)");
                    count(format!(
                        "SELECT count(*) FROM (SELECT h FROM ({hashes}) k GROUP BY h HAVING count(*) > 1) d"
                    ))
                    .await?
                }
            };
            let n = if shared == 0.0 {
                0.0
            } else {
                count(format!(
                    "SELECT count(*) FROM (SELECT {cols} FROM {table} WHERE {scope} GROUP BY {cols} HAVING count(*) > 1) d"
                ))
                .await?
            };
            Ok((n == 0.0, format!("{n} duplicated keys"), "0".to_string()))
        }
        CheckKind::NotNull { columns } => {
            let any_null: Vec<String> = columns
                .iter()
                .map(|c| format!("{} IS NULL", q(c)))
                .collect();
            let n = count(format!(
                "SELECT count(*) FROM {table} WHERE ({}) AND {scope}",
                any_null.join(" OR ")
            ))
            .await?;
            Ok((n == 0.0, format!("{n} rows with NULL"), "0".to_string()))
        }
        CheckKind::NullRate { column, max } => {
            let rate = count(format!(
                "SELECT COALESCE(CAST(sum(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END) AS DOUBLE) / NULLIF(count(*), 0), 0) FROM {table} WHERE {scope}",
                c = q(column)
            ))
            .await?;
            Ok((rate <= *max, format!("{rate:.4}"), format!("<= {max}")))
        }
        CheckKind::AcceptedRange { column, min, max } => {
            let mut outside = Vec::new();
            if let Some(min) = min {
                outside.push(format!("{} < {min}", q(column)));
            }
            if let Some(max) = max {
                outside.push(format!("{} > {max}", q(column)));
            }
            let n = count(format!(
                "SELECT count(*) FROM {table} WHERE ({}) AND {scope}",
                outside.join(" OR ")
            ))
            .await?;
            Ok((
                n == 0.0,
                format!("{n} rows outside"),
                format!("[{}, {}]", fmt_opt(min), fmt_opt(max)),
            ))
        }
        CheckKind::AcceptedValues { column, values } => {
            let list: Vec<String> = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect();
            let n = count(format!(
                "SELECT count(*) FROM {table} WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({}) AND {scope}",
                list.join(", "),
                c = q(column)
            ))
            .await?;
            Ok((
                n == 0.0,
                format!("{n} rows with other values"),
                values.join(", "),
            ))
        }
        CheckKind::Consistency {
            left,
            right,
            tolerance,
        } => {
            let l = first_text(session, &render(left, date)?).await?;
            let r = first_text(session, &render(right, date)?).await?;
            // SUM over no rows is NULL where COUNT is 0: the same "nothing" when compared
            // with a number.
            let num = |v: &str, other: &str| {
                if v == "NULL" && other.parse::<f64>().is_ok() {
                    Ok(0.0)
                } else {
                    v.parse::<f64>()
                }
            };
            let pass = match (num(&l, &r), num(&r, &l)) {
                (Ok(a), Ok(b)) => (a - b).abs() <= tolerance.unwrap_or(0.0) * b.abs().max(1.0),
                _ => l == r,
            };
            Ok((pass, l, r))
        }
        CheckKind::Freshness { column, max_age } => {
            let newest = first_f64(
                session,
                &format!(
                    "SELECT CAST(to_unixtime(max({c})) AS DOUBLE) FROM {table}",
                    c = q(column)
                ),
            )
            .await?;
            let end = date
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp() as f64)
                .unwrap_or(0.0);
            let age = (end - newest).max(0.0);
            Ok((
                age <= max_age.as_secs_f64(),
                format!("{}s old at the end of {date}", age as i64),
                format!("<= {}", humantime::format_duration(*max_age)),
            ))
        }
    }
}

fn fmt_opt(v: &Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "…".to_string())
}

fn first_cell(batches: &[RecordBatch]) -> Option<std::sync::Arc<dyn Array>> {
    batches
        .iter()
        .find(|b| b.num_rows() > 0 && b.num_columns() > 0)
        .map(|b| b.column(0).slice(0, 1))
}

async fn first_f64(session: &SqlSession, sql: &str) -> Result<f64, String> {
    let batches = session.run(sql).await.map_err(|e| e.to_string())?;
    let Some(cell) = first_cell(&batches) else {
        return Ok(0.0);
    };
    let cast = arrow::compute::cast(&cell, &DataType::Float64).map_err(|e| e.to_string())?;
    let v = cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("not a number")?;
    Ok(if v.is_null(0) { 0.0 } else { v.value(0) })
}

async fn first_text(session: &SqlSession, sql: &str) -> Result<String, String> {
    let batches = session.run(sql).await.map_err(|e| e.to_string())?;
    let Some(cell) = first_cell(&batches) else {
        return Ok("NULL".to_string());
    };
    let cast = arrow::compute::cast(&cell, &DataType::Utf8).map_err(|e| e.to_string())?;
    let v = cast
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("not text")?;
    Ok(if v.is_null(0) {
        "NULL".to_string()
    } else {
        v.value(0).to_string()
    })
}
