//! ODS tables for CDC: source column types → Iceberg types, change images → Arrow columns,
//! and ODS rows read back as exact values (for `strata cdc verify`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Date32Builder, Decimal128Array, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::table::Table;
use strata_core::cdc::{format_time, parse_time, ColumnType, Row, TableSchema, Value};

use strata_table::error::{Error, Result};
use strata_table::table::evolve::Evolution;

/// Metadata columns every ODS CDC table ends with.
pub const OP_COLUMN: &str = "_op";
pub const SOURCE_POS_COLUMN: &str = "_source_pos";
pub const COMMIT_TS_COLUMN: &str = "_commit_ts";
pub const INGEST_TS_COLUMN: &str = "_ingest_ts";
/// Table property holding the primary key column names, comma-separated.
pub const PRIMARY_KEY_PROPERTY: &str = "strata.cdc.primary-key";
/// Table property naming the source table, `<source>.<database>.<table>`.
pub const SOURCE_PROPERTY: &str = "strata.cdc.source";

fn iceberg_type(kind: ColumnType) -> PrimitiveType {
    match kind {
        ColumnType::Int => PrimitiveType::Int,
        ColumnType::Long => PrimitiveType::Long,
        ColumnType::UnsignedLong => PrimitiveType::Decimal {
            precision: 20,
            scale: 0,
        },
        ColumnType::Decimal { precision, scale } => PrimitiveType::Decimal {
            precision: precision.max(1) as u32,
            scale: scale as u32,
        },
        ColumnType::Float => PrimitiveType::Float,
        ColumnType::Double => PrimitiveType::Double,
        ColumnType::Date => PrimitiveType::Date,
        ColumnType::DateTime => PrimitiveType::Timestamp,
        ColumnType::Timestamp => PrimitiveType::Timestamptz,
        ColumnType::Binary => PrimitiveType::Binary,
        ColumnType::Time | ColumnType::String | ColumnType::Json => PrimitiveType::String,
    }
}

/// The ODS table schema: the source columns (all optional), then the metadata columns.
pub fn ods_schema(source: &TableSchema) -> Result<Schema> {
    let mut fields = Vec::new();
    let mut id = 0;
    for c in &source.columns {
        id += 1;
        fields.push(Arc::new(NestedField::optional(
            id,
            &c.name,
            Type::Primitive(iceberg_type(c.kind)),
        )));
    }
    for (name, t) in [
        (OP_COLUMN, PrimitiveType::String),
        (SOURCE_POS_COLUMN, PrimitiveType::String),
        (COMMIT_TS_COLUMN, PrimitiveType::Timestamptz),
        (INGEST_TS_COLUMN, PrimitiveType::Timestamptz),
    ] {
        id += 1;
        fields.push(Arc::new(NestedField::optional(
            id,
            name,
            Type::Primitive(t),
        )));
    }
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| Error::iceberg(format!("schema of {}", source.table), e))
}

/// The primary key an ODS table was created with (empty: append-only).
pub fn primary_key_of(table: &Table) -> Vec<String> {
    table
        .metadata()
        .properties()
        .get(PRIMARY_KEY_PROPERTY)
        .map(|k| {
            k.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The schema `table` must take to hold `source`'s columns, or None when it already does.
/// Columns the source added are added (optional, in source order, before the metadata
/// columns), columns it dropped are dropped, and types are widened the way Iceberg allows
/// (int → long, float → double, decimal precision up). Any other change — a type changed or
/// narrowed, a column renamed, a different primary key — is an error that names it, unless
/// `reset` (the table is about to be emptied): then a changed column is replaced by a new one
/// and the key may change (the caller records it).
pub fn evolved_schema(table: &Table, source: &TableSchema, reset: bool) -> Result<Option<Schema>> {
    let key = primary_key_of(table);
    if key != source.primary_key && !reset {
        return Err(Error::Invalid(format!(
            "the primary key changed from {key:?} to {:?}",
            source.primary_key
        )));
    }
    let unsupported = |e: Error| match e {
        Error::Sql(m) => Error::Invalid(m),
        other => other,
    };
    let mut evolution = Evolution::new(table.metadata())?;
    let have: Vec<String> = evolution
        .names()
        .filter(|n| !is_meta(n))
        .map(str::to_string)
        .collect();
    let wanted = |name: &str| source.columns.iter().any(|c| c.name == name);
    if !reset {
        // A column gone and a new one in its place: a rename (or a drop and an add the stream
        // cannot tell from one). Iceberg could rename, but guessing wrong would mix two
        // columns' values.
        let gone: Vec<&String> = have.iter().filter(|n| !wanted(n)).collect();
        let new: Vec<&str> = source
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !have.iter().any(|h| h == n))
            .collect();
        if let (Some(old), Some(new)) = (gone.first(), new.first()) {
            let old_at = have.iter().position(|h| h == *old);
            let new_at = source.columns.iter().position(|c| c.name == *new);
            if old_at == new_at {
                return Err(Error::Invalid(format!(
                    "column {old} was replaced by {new} in the same place (a rename?); renames are not followed"
                )));
            }
        }
    }
    for name in &have {
        if !wanted(name) {
            evolution.drop(name, false).map_err(unsupported)?;
        }
    }
    for (i, c) in source.columns.iter().enumerate() {
        let ty = Type::Primitive(iceberg_type(c.kind));
        if evolution.position(&c.name).is_some() {
            match evolution.widen(&c.name, &ty) {
                Ok(()) => continue,
                Err(e) if !reset => return Err(unsupported(e)),
                Err(_) => evolution.drop(&c.name, false)?,
            }
        }
        // Before the next source column the table has, else before the metadata columns.
        let at = source.columns[i + 1..]
            .iter()
            .find_map(|next| evolution.position(&next.name))
            .or_else(|| evolution.position(OP_COLUMN))
            .unwrap_or(usize::MAX);
        evolution
            .insert(&c.name, ty, false, at)
            .map_err(unsupported)?;
    }
    evolution.finish()
}

fn is_meta(name: &str) -> bool {
    [
        OP_COLUMN,
        SOURCE_POS_COLUMN,
        COMMIT_TS_COLUMN,
        INGEST_TS_COLUMN,
    ]
    .contains(&name)
}

/// One ODS row to write: the image plus metadata.
pub struct OdsRow<'a> {
    pub image: Option<&'a Row>,
    pub op: &'a str,
    pub source_pos: String,
    pub commit_ts: i64,
}

fn bad(column: &str, v: &Value, t: &DataType) -> Error {
    Error::Internal(format!("column {column}: value {v:?} does not fit {t}"))
}

fn decimal_units(v: &Value, scale: i8) -> Option<i128> {
    match v {
        Value::Int(i) => Some(*i as i128 * 10i128.pow(scale as u32)),
        Value::UInt(u) => Some(*u as i128 * 10i128.pow(scale as u32)),
        Value::Decimal(s) => {
            let (neg, digits) = match s.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, s.as_str()),
            };
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let mut frac = frac.to_string();
            while frac.len() < scale as usize {
                frac.push('0');
            }
            let v: i128 = format!("{int}{frac}").parse().ok()?;
            Some(if neg { -v } else { v })
        }
        _ => None,
    }
}

/// Builds one column of `rows` for a field of type `t`.
fn column(name: &str, t: &DataType, rows: &[OdsRow<'_>], now: i64) -> Result<ArrayRef> {
    let value = |r: &OdsRow<'_>| -> Value {
        match name {
            OP_COLUMN => Value::Str(r.op.to_string()),
            SOURCE_POS_COLUMN => Value::Str(r.source_pos.clone()),
            COMMIT_TS_COLUMN => Value::Timestamp(r.commit_ts),
            INGEST_TS_COLUMN => Value::Timestamp(now),
            _ => r
                .image
                .and_then(|i| i.get(name))
                .cloned()
                .unwrap_or(Value::Null),
        }
    };
    let array: ArrayRef = match t {
        DataType::Int32 => {
            let mut b = Int32Builder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Int(i) => b.append_value(i as i32),
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Int(i) => b.append_value(i),
                    Value::UInt(u) => b.append_value(u as i64),
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Decimal128(p, s) => {
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => out.push(None),
                    v => out.push(Some(decimal_units(&v, *s).ok_or_else(|| bad(name, &v, t))?)),
                }
            }
            let a = Decimal128Array::from(out)
                .with_precision_and_scale(*p, *s)
                .map_err(|e| Error::arrow(format!("column {name}"), e))?;
            Arc::new(a)
        }
        DataType::Float32 => {
            let mut b = Float32Builder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Float(f) => {
                        b.append_value(f.parse().map_err(|_| bad(name, &Value::Float(f), t))?)
                    }
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Float(f) => {
                        b.append_value(f.parse().map_err(|_| bad(name, &Value::Float(f), t))?)
                    }
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Date32 => {
            let mut b = Date32Builder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Date(d) => b.append_value(d),
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::DateTime(v) | Value::Timestamp(v) => b.append_value(v),
                    v => return Err(bad(name, &v, t)),
                }
            }
            Arc::new(b.finish().with_timezone_opt(tz.clone()))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Str(s) | Value::Json(s) | Value::Decimal(s) => b.append_value(s),
                    Value::Time(v) => b.append_value(format_time(v)),
                    v => b.append_value(v.canonical()),
                }
            }
            cast(Arc::new(b.finish()), t)?
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 16);
            for r in rows {
                match value(r) {
                    Value::Null => b.append_null(),
                    Value::Bytes(v) => b.append_value(v),
                    v => return Err(bad(name, &v, t)),
                }
            }
            cast(Arc::new(b.finish()), t)?
        }
        other => {
            return Err(Error::Internal(format!(
                "column {name}: arrow type {other} is not produced by the CDC merger"
            )))
        }
    };
    Ok(array)
}

fn cast(a: ArrayRef, t: &DataType) -> Result<ArrayRef> {
    if a.data_type() == t {
        return Ok(a);
    }
    arrow::compute::cast(&a, t).map_err(|e| Error::arrow("casting a CDC column", e))
}

/// A batch in the table's Arrow schema holding `rows`.
pub fn ods_batch(schema: &SchemaRef, rows: &[OdsRow<'_>]) -> Result<RecordBatch> {
    let now = chrono::Utc::now().timestamp_micros();
    let columns = schema
        .fields()
        .iter()
        .map(|f| column(f.name(), f.data_type(), rows, now))
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::arrow("building CDC rows", e))
}

/// Every live row of an ODS table as exact values of the source columns in `source` (for
/// verify). Column kinds that share an Iceberg type (TIME as text) are told apart by `source`.
pub async fn read_ods_rows(table: &Table, source: &TableSchema) -> Result<Vec<Row>> {
    let kinds: HashMap<&str, ColumnType> = source
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.kind))
        .collect();
    if table.metadata().current_snapshot().is_none() {
        return Ok(Vec::new());
    }
    let stream = table
        .scan()
        .select_all()
        .build()
        .map_err(|e| Error::iceberg("planning the ODS scan", e))?
        .to_arrow()
        .await
        .map_err(|e| Error::iceberg("scanning the ODS table", e))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| Error::iceberg("reading the ODS table", e))?;
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let mut rows: Vec<Row> = vec![Row::new(); batch.num_rows()];
        for (i, field) in schema.fields().iter().enumerate() {
            let Some(kind) = kinds.get(field.name().as_str()) else {
                continue;
            };
            let col = batch.column(i);
            for (r, row) in rows.iter_mut().enumerate() {
                row.insert(field.name().clone(), value_at(col, r, *kind)?);
            }
        }
        out.extend(rows);
    }
    Ok(out)
}

/// `v / 10^scale` as text with exactly `scale` digits after the point.
pub fn format_decimal(v: i128, scale: i8) -> String {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let text = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}

fn value_at(col: &ArrayRef, i: usize, kind: ColumnType) -> Result<Value> {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    };
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match col.data_type() {
        DataType::Int32 => Value::Int(col.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Int64 => Value::Int(col.as_primitive::<Int64Type>().value(i)),
        DataType::Decimal128(_, s) => {
            let v = col
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(i);
            if kind == ColumnType::UnsignedLong {
                Value::UInt(v as u64)
            } else {
                Value::Decimal(format_decimal(v, *s))
            }
        }
        DataType::Float32 => Value::Float(col.as_primitive::<Float32Type>().value(i).to_string()),
        DataType::Float64 => Value::Float(col.as_primitive::<Float64Type>().value(i).to_string()),
        DataType::Date32 => Value::Date(col.as_primitive::<Date32Type>().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let v = col.as_primitive::<TimestampMicrosecondType>().value(i);
            if tz.is_some() {
                Value::Timestamp(v)
            } else {
                Value::DateTime(v)
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = arrow::compute::cast(col, &DataType::Utf8)
                .map_err(|e| Error::arrow("reading text", e))?;
            let s = s.as_string::<i32>().value(i).to_string();
            match kind {
                ColumnType::Time => Value::Time(parse_time(&s).ok_or_else(|| {
                    Error::Internal(format!("bad TIME text {s:?} in the ODS table"))
                })?),
                ColumnType::Json => Value::Json(s),
                _ => Value::Str(s),
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let b = arrow::compute::cast(col, &DataType::Binary)
                .map_err(|e| Error::arrow("reading bytes", e))?;
            Value::Bytes(b.as_binary::<i32>().value(i).to_vec())
        }
        other => {
            return Err(Error::Internal(format!(
                "ODS column of arrow type {other} cannot be read back"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_format_with_scale() {
        assert_eq!(format_decimal(-1250, 2), "-12.50");
        assert_eq!(format_decimal(5, 3), "0.005");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(
            decimal_units(&Value::Decimal("-12.50".into()), 2),
            Some(-1250)
        );
        assert_eq!(
            decimal_units(&Value::UInt(u64::MAX), 0),
            Some(u64::MAX as i128)
        );
    }
}
