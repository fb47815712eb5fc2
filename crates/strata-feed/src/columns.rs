//! Reading query results: one column of a batch as optional values of one type (cast first,
//! so an integer column may be any width and a time any unit).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use strata_sql::SqlSession;

use crate::error::{Error, Result};

/// Runs `sql`, every batch.
pub(crate) async fn query(session: &SqlSession, sql: &str) -> Result<Vec<RecordBatch>> {
    session
        .query(sql)
        .await
        .map(|(_, b)| b)
        .map_err(|e| Error::Catalog(format!("{sql}: {e}")))
}

fn cast(b: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let a = b
        .column_by_name(name)
        .ok_or_else(|| Error::Catalog(format!("the query gives no column {name:?}")))?;
    arrow::compute::cast(a, to).map_err(|e| Error::Catalog(format!("column {name}: {e}")))
}

pub(crate) fn ints(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = cast(b, name, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

pub(crate) fn floats(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = cast(b, name, &DataType::Float64)?;
    let a = a.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

/// Timestamps as µs since the epoch.
pub(crate) fn micros(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = cast(b, name, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let a = a.as_primitive::<TimestampMicrosecondType>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

/// Dates as days since the epoch.
pub(crate) fn days(b: &RecordBatch, name: &str) -> Result<Vec<Option<i32>>> {
    let a = cast(b, name, &DataType::Date32)?;
    let a = a.as_primitive::<Date32Type>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

pub(crate) fn texts(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = cast(b, name, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect())
}
