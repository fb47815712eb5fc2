//! The feature benchmark's data: `ads.ads_user_features` and `ads.ads_post_features` with the
//! reference models' columns (read from their SQL files, so the benchmark follows the models),
//! every value a pure function of (entity, column, day), written into a real lake through
//! `table::append` as Iceberg tables partitioned by `dt`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iceberg::TableIdent;
use strata_sql::SqlSession;
use strata_table::table;
use strata_table::Lake;

/// Rows per generated Arrow batch.
pub const BATCH_ROWS: u64 = 65_536;
/// Batches per `append` call (one commit each).
const BATCHES_PER_COMMIT: usize = 4;

/// A column's type, as the model's SQL makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BigInt,
    Double,
    Text,
    Date,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::BigInt => "BIGINT",
            Kind::Double => "DOUBLE",
            Kind::Text => "STRING",
            Kind::Date => "DATE",
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Kind::BigInt => DataType::Int64,
            Kind::Double => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Date => DataType::Date32,
        }
    }
}

/// One generated table: its columns (the key first, `dt` last).
#[derive(Debug, Clone)]
pub struct TableShape {
    pub namespace: String,
    pub name: String,
    pub columns: Vec<(String, Kind)>,
}

impl TableShape {
    pub fn ident(&self) -> Result<TableIdent> {
        Ok(TableIdent::from_strs([&self.namespace, &self.name])?)
    }

    /// The feature columns (neither the key nor `dt`), in table order.
    pub fn features(&self) -> Vec<&str> {
        self.columns[1..]
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|&n| n != "dt")
            .collect()
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, k)| Field::new(n, k.arrow(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// The output columns of a model's final SELECT (`models/<project>/ads/<name>.sql`): each
/// line's alias (after its last ` AS `) or, without one, the column after the table alias
/// (`p.post_id`). Types follow the SQL: `CAST(… AS DOUBLE)` and `revenue` (a DOUBLE in
/// `dws_user_daily`) are DOUBLE, `kind` a string, `dt` a DATE, every count/sum/max BIGINT.
pub fn shape_from_model(sql_path: &Path, namespace: &str, name: &str) -> Result<TableShape> {
    let text = std::fs::read_to_string(sql_path)
        .with_context(|| format!("reading {}", sql_path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim() == "SELECT")
        .with_context(|| format!("{}: no final SELECT", sql_path.display()))?;
    let mut columns = Vec::new();
    for line in &lines[start + 1..] {
        let line = line.trim();
        if line.starts_with("FROM") {
            break;
        }
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        let expr = line.trim_end_matches(',');
        let col = match expr.rfind(" AS ") {
            Some(i) => &expr[i + 4..],
            None => expr.rsplit('.').next().unwrap_or(expr),
        };
        if col.is_empty() || !col.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("{}: cannot tell the column of {line:?}", sql_path.display());
        }
        let kind = if col == "dt" {
            Kind::Date
        } else if col == "kind" {
            Kind::Text
        } else if expr.contains("AS DOUBLE") || col.contains("revenue") {
            Kind::Double
        } else {
            Kind::BigInt
        };
        columns.push((col.to_string(), kind));
    }
    // Columns added later come after `dt` (the warehouse appends them to existing tables).
    if columns.len() < 3 || columns[0].0 == "dt" || !columns.iter().any(|c| c.0 == "dt") {
        bail!(
            "{}: expected a key, features and dt, got {} columns",
            sql_path.display(),
            columns.len()
        );
    }
    Ok(TableShape {
        namespace: namespace.to_string(),
        name: name.to_string(),
        columns,
    })
}

/// SplitMix64: a well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value of column `col` (index in the table) for entity `id` on day `day` (0 = the first
/// day written). Every generator and every check uses this one function.
pub fn value(kind: Kind, id: u64, col: usize, day: u32) -> GenValue {
    let h = mix(id.wrapping_mul(0x1000_0000_01b3) ^ ((col as u64) << 40) ^ u64::from(day));
    match kind {
        Kind::BigInt => GenValue::Int((h % 10_000) as i64),
        Kind::Double => GenValue::Float((h % 1_000_000) as f64 / 1_000_000.0),
        Kind::Text => GenValue::Text(["text", "image", "video", "link"][(h % 4) as usize]),
        Kind::Date => GenValue::Int(0),
    }
}

/// A generated value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GenValue {
    Int(i64),
    Float(f64),
    Text(&'static str),
}

impl GenValue {
    /// As Redis stores it for the peer (and as a text comparison in checks).
    pub fn to_text(self) -> String {
        match self {
            GenValue::Int(v) => v.to_string(),
            GenValue::Float(v) => v.to_string(),
            GenValue::Text(v) => v.to_string(),
        }
    }
}

/// Whether entity `id` has a new row on `day` (> 0): `changed_pct` % of entities each day.
pub fn changed_on(id: u64, day: u32, changed_pct: u64) -> bool {
    mix(id ^ (u64::from(day) << 56) ^ 0x5eed) % 100 < changed_pct
}

/// One batch: the rows of `ids` on `day` (`dt` = `dt_days`, days since the epoch).
pub fn batch(shape: &TableShape, ids: &[u64], day: u32, dt_days: i32) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(shape.columns.len());
    for (col, (_, kind)) in shape.columns.iter().enumerate() {
        let array: ArrayRef =
            if col == 0 {
                Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64)))
            } else {
                match kind {
                    Kind::Date => Arc::new(Date32Array::from(vec![dt_days; ids.len()])),
                    Kind::BigInt => {
                        Arc::new(Int64Array::from_iter_values(ids.iter().map(
                            |&id| match value(*kind, id, col, day) {
                                GenValue::Int(v) => v,
                                _ => 0,
                            },
                        )))
                    }
                    Kind::Double => Arc::new(Float64Array::from_iter_values(ids.iter().map(
                        |&id| match value(*kind, id, col, day) {
                            GenValue::Float(v) => v,
                            _ => 0.0,
                        },
                    ))),
                    Kind::Text => {
                        Arc::new(StringArray::from_iter_values(ids.iter().map(
                            |&id| match value(*kind, id, col, day) {
                                GenValue::Text(v) => v,
                                _ => "",
                            },
                        )))
                    }
                }
            };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(shape.schema(), arrays)?)
}

/// Creates the namespace and the tables (`PARTITIONED BY (dt)`) through Strata's SQL, in a
/// new lake.
pub async fn create_tables(lake: &Lake, shapes: &[&TableShape]) -> Result<()> {
    let session = SqlSession::new(lake).await?;
    let mut namespaces: Vec<&str> = shapes.iter().map(|s| s.namespace.as_str()).collect();
    namespaces.dedup();
    for ns in namespaces {
        session
            .run(&format!("CREATE NAMESPACE {ns}"))
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
    }
    for shape in shapes {
        let cols: Vec<String> = shape
            .columns
            .iter()
            .map(|(n, k)| format!("{n} {}", k.sql()))
            .collect();
        session
            .run(&format!(
                "CREATE TABLE {}.{} ({}) PARTITIONED BY (dt)",
                shape.namespace,
                shape.name,
                cols.join(", ")
            ))
            .await
            .with_context(|| format!("creating {}.{}", shape.namespace, shape.name))?;
    }
    Ok(())
}

/// Appends the rows of `ids` on `day` (several commits of [`BATCHES_PER_COMMIT`] batches).
/// Returns the rows written.
pub async fn append_day(
    lake: &Lake,
    shape: &TableShape,
    ids: &[u64],
    day: u32,
    dt_days: i32,
) -> Result<u64> {
    let ident = shape.ident()?;
    let mut pending = Vec::new();
    for chunk in ids.chunks(BATCH_ROWS as usize) {
        pending.push(batch(shape, chunk, day, dt_days)?);
        if pending.len() == BATCHES_PER_COMMIT {
            table::append(lake, &ident, std::mem::take(&mut pending)).await?;
        }
    }
    if !pending.is_empty() {
        table::append(lake, &ident, pending).await?;
    }
    Ok(ids.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/social/ads")
    }

    #[test]
    fn reference_models_give_the_issue_column_counts() {
        let user = shape_from_model(
            &models().join("ads_user_features.sql"),
            "ads",
            "ads_user_features",
        )
        .unwrap();
        assert_eq!(user.columns.len(), 137, "{:?}", user.columns);
        assert_eq!(user.columns[0], ("user_id".to_string(), Kind::BigInt));
        assert_eq!(user.features().len(), 135);
        let kind_of = |n: &str| user.columns.iter().find(|c| c.0 == n).unwrap().1;
        assert_eq!(kind_of("ctr_7d"), Kind::Double);
        assert_eq!(kind_of("revenue_max_30d"), Kind::Double);
        assert_eq!(kind_of("clicks_sum_7d"), Kind::BigInt);
        let post = shape_from_model(
            &models().join("ads_post_features.sql"),
            "ads",
            "ads_post_features",
        )
        .unwrap();
        assert_eq!(post.columns[0].0, "post_id");
        assert!(post.columns.contains(&("kind".to_string(), Kind::Text)));
        assert!(post.columns.contains(&("ctr_7d".to_string(), Kind::Double)));
    }

    #[test]
    fn values_depend_on_entity_column_and_day() {
        let a = value(Kind::BigInt, 7, 3, 0);
        assert_eq!(a, value(Kind::BigInt, 7, 3, 0));
        let differs = (0..50).any(|d| value(Kind::BigInt, 7, 3, d) != a);
        assert!(differs);
        let changed = (0..10_000).filter(|&i| changed_on(i, 1, 30)).count();
        assert!((2_500..3_500).contains(&changed), "{changed}");
    }
}
