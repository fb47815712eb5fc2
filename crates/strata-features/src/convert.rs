//! Arrow batches → online rows: entity keys as text, the row's event time, feature values.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use strata_online::store::SyncRow;
use strata_online::{entity_key, FeatureType, Value};

use crate::error::{Error, Result};
use crate::view::ResolvedView;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One column cast to the form its values are read from.
enum Col {
    Bool(BooleanArray),
    Int(Int64Array),
    Float(Float64Array),
    Text(StringArray),
    Timestamp(TimestampMicrosecondArray),
    Date(Date32Array),
    List(ArrayRef, FeatureType),
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    arrow::compute::cast(array, to)
        .map_err(|e| Error::Plan(format!("reading a feature column: {e}")))
}

fn prepare(array: &ArrayRef, ty: FeatureType) -> Result<Col> {
    Ok(match ty {
        FeatureType::Bool => Col::Bool(cast(array, &DataType::Boolean)?.as_boolean().clone()),
        FeatureType::Int64 => Col::Int(
            cast(array, &DataType::Int64)?
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone(),
        ),
        FeatureType::Float64 => Col::Float(
            cast(array, &DataType::Float64)?
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone(),
        ),
        FeatureType::String => Col::Text(cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
        FeatureType::Timestamp => Col::Timestamp(
            cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .clone(),
        ),
        FeatureType::Date => Col::Date(
            cast(array, &DataType::Date32)?
                .as_primitive::<arrow::datatypes::Date32Type>()
                .clone(),
        ),
        list => Col::List(array.clone(), list),
    })
}

fn list_value(array: &ArrayRef, row: usize, ty: FeatureType) -> Result<Value> {
    let items: ArrayRef = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(row),
        other => return Err(Error::Plan(format!("a list feature is {other}"))),
    };
    Ok(match ty {
        FeatureType::Int64List => {
            let a = cast(&items, &DataType::Int64)?;
            Value::Int64List(
                a.as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .collect(),
            )
        }
        FeatureType::Float64List => {
            let a = cast(&items, &DataType::Float64)?;
            Value::Float64List(
                a.as_primitive::<arrow::datatypes::Float64Type>()
                    .iter()
                    .collect(),
            )
        }
        FeatureType::StringList => {
            let a = cast(&items, &DataType::Utf8)?;
            Value::StringList(
                a.as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_string))
                    .collect(),
            )
        }
        FeatureType::Vector => {
            let a = cast(&items, &DataType::Float32)?;
            let a: &Float32Array = a.as_primitive::<arrow::datatypes::Float32Type>();
            Value::Vector(a.iter().map(|x| x.unwrap_or(f32::NAN)).collect())
        }
        other => {
            return Err(Error::Plan(format!(
                "{} is not a list type",
                other.as_str()
            )))
        }
    })
}

fn value(col: &Col, row: usize) -> Result<Value> {
    let null = match col {
        Col::Bool(a) => a.is_null(row),
        Col::Int(a) => a.is_null(row),
        Col::Float(a) => a.is_null(row),
        Col::Text(a) => a.is_null(row),
        Col::Timestamp(a) => a.is_null(row),
        Col::Date(a) => a.is_null(row),
        Col::List(a, _) => a.is_null(row),
    };
    if null {
        return Ok(Value::Null);
    }
    Ok(match col {
        Col::Bool(a) => Value::Bool(a.value(row)),
        Col::Int(a) => Value::Int64(a.value(row)),
        Col::Float(a) => Value::Float64(a.value(row)),
        Col::Text(a) => Value::String(a.value(row).to_string()),
        Col::Timestamp(a) => Value::Timestamp(a.value(row)),
        Col::Date(a) => Value::Date(a.value(row)),
        Col::List(a, ty) => list_value(a, row, *ty)?,
    })
}

/// The event time (µs) of each row from the timestamp column: a DATE counts as of the end of
/// its day.
fn event_times(array: &ArrayRef, field: &Field) -> Result<Vec<Option<i64>>> {
    Ok(match field.data_type() {
        DataType::Date32 | DataType::Date64 => cast(array, &DataType::Date32)?
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .map(|d| d.map(|d| (i64::from(d) + 1) * MICROS_PER_DAY))
            .collect(),
        _ => cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .iter()
            .collect(),
    })
}

/// What converting a batch gave: rows, and rows left out (with why).
#[derive(Debug, Default)]
pub struct Converted {
    pub rows: Vec<SyncRow>,
    /// Rows without an entity key or event time: not servable, counted.
    pub skipped: u64,
}

/// Converts `batch` (its columns named like the view's) to sync rows. `default_ts` is the
/// event time of rows of a view without a timestamp column.
pub fn convert(view: &ResolvedView, batch: &RecordBatch, default_ts: i64) -> Result<Converted> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| {
            Error::Plan(format!(
                "feature view {}: the source gave no column {name}",
                view.view.name
            ))
        })
    };
    let keys: Vec<StringArray> = view
        .entity
        .iter()
        .map(|f| {
            column(f.name()).and_then(|a| Ok(cast(&a, &DataType::Utf8)?.as_string::<i32>().clone()))
        })
        .collect::<Result<_>>()?;
    let times = match &view.timestamp {
        Some(f) => Some(event_times(&column(f.name())?, f)?),
        None => None,
    };
    let features: Vec<Col> = view
        .features
        .iter()
        .map(|(c, _)| column(&c.name).and_then(|a| prepare(&a, c.ty)))
        .collect::<Result<_>>()?;
    let mut out = Converted {
        rows: Vec::with_capacity(batch.num_rows()),
        skipped: 0,
    };
    let mut parts: Vec<&str> = Vec::with_capacity(keys.len());
    for row in 0..batch.num_rows() {
        parts.clear();
        if keys.iter().any(|k| k.is_null(row)) {
            out.skipped += 1;
            continue;
        }
        parts.extend(keys.iter().map(|k| k.value(row)));
        let event_ts = match &times {
            Some(t) => match t.get(row).copied().flatten() {
                Some(ts) => ts,
                None => {
                    out.skipped += 1;
                    continue;
                }
            },
            None => default_ts,
        };
        let mut values = Vec::with_capacity(features.len());
        for col in &features {
            values.push(value(col, row)?);
        }
        out.rows.push(SyncRow {
            key: entity_key(&parts),
            event_ts,
            values: Some(values),
        });
    }
    Ok(out)
}
