//! Training rows from the lake: a model's SQL, cut to a window of days, streamed batch by
//! batch as plain columns (f32 for numbers, u64 for categories) — never a whole table in
//! memory.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float32Type, Int64Type, SchemaRef};
use chrono::NaiveDate;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use strata_sql::SqlSession;
use strata_table::Lake;

use crate::error::{Error, Result};

/// Inclusive range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{} .. {}", self.from, self.to)
        }
    }
}

/// The split of a run date: validation is the `valid_days` ending at `date`, training the
/// `train_days` before it — strictly earlier.
pub fn split(date: NaiveDate, train_days: u32, valid_days: u32) -> (Window, Window) {
    let valid_from = date - chrono::Days::new(u64::from(valid_days.max(1)) - 1);
    let train_to = valid_from - chrono::Days::new(1);
    let train_from = train_to - chrono::Days::new(u64::from(train_days.max(1)) - 1);
    (
        Window {
            from: train_from,
            to: train_to,
        },
        Window {
            from: valid_from,
            to: date,
        },
    )
}

/// `sql` cut to the days of `window` on `column` (a DATE column), optionally ordered.
pub fn windowed(sql: &str, column: &str, window: Window, order_by: Option<&str>) -> String {
    let order = order_by
        .map(|o| format!(" ORDER BY {o}"))
        .unwrap_or_default();
    format!(
        "SELECT * FROM ({sql}) AS strata_training_rows \
         WHERE {column} >= DATE '{}' AND {column} <= DATE '{}'{order}",
        window.from, window.to
    )
}

/// Streams the rows of `sql`.
pub async fn stream(lake: &Lake, sql: &str) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let session = SqlSession::new(lake).await?;
    Ok(session.query_stream(sql).await?)
}

/// The next batch of a stream, or `None` at its end.
pub async fn next(stream: &mut SendableRecordBatchStream) -> Result<Option<RecordBatch>> {
    match stream.next().await {
        None => Ok(None),
        Some(Ok(b)) => Ok(Some(b)),
        Some(Err(e)) => Err(Error::Plan(format!("reading training rows: {e}"))),
    }
}

/// The newest day in `column` of `sql` (the default run date).
pub async fn newest_day(lake: &Lake, sql: &str, column: &str) -> Result<Option<NaiveDate>> {
    let session = SqlSession::new(lake).await?;
    let (_, batches) = session
        .query(&format!(
            "SELECT max(CAST({column} AS DATE)) AS d FROM ({sql}) AS q"
        ))
        .await?;
    for b in &batches {
        if b.num_rows() > 0 {
            let a = b.column(0).as_primitive::<Date32Type>();
            if !a.is_null(0) {
                return Ok(Some(crate::registry::date(a.value(0))));
            }
        }
    }
    Ok(None)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        Error::Plan(format!(
            "column {name} is not in the training rows (they have {})",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Whether a column can be a numeric feature.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// A numeric column as f32; NULL → NaN (missing).
pub fn f32s(batch: &RecordBatch, name: &str, out: &mut Vec<f32>) -> Result<()> {
    let a = column(batch, name)?;
    let a = cast(a, &DataType::Float32)
        .map_err(|e| Error::Plan(format!("column {name} is not numeric: {e}")))?;
    let a = a.as_primitive::<Float32Type>();
    out.extend((0..a.len()).map(|i| if a.is_null(i) { f32::NAN } else { a.value(i) }));
    Ok(())
}

/// A stable 64-bit hash of a string (FNV-1a), for string categories and ids.
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A categorical or id column as u64: integers as they are, strings hashed, NULL → 0.
pub fn u64s(batch: &RecordBatch, name: &str, out: &mut Vec<u64>) -> Result<()> {
    let a = column(batch, name)?;
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a =
                cast(a, &DataType::Utf8).map_err(|e| Error::Plan(format!("column {name}: {e}")))?;
            let a = a.as_string::<i32>();
            out.extend((0..a.len()).map(|i| {
                if a.is_null(i) {
                    0
                } else {
                    hash_str(a.value(i))
                }
            }));
        }
        t if t.is_integer() || matches!(t, DataType::Boolean | DataType::Date32) => {
            let a = cast(a, &DataType::Int64)
                .map_err(|e| Error::Plan(format!("column {name}: {e}")))?;
            let a = a.as_primitive::<Int64Type>();
            out.extend((0..a.len()).map(|i| if a.is_null(i) { 0 } else { a.value(i) as u64 }));
        }
        t => {
            return Err(Error::Plan(format!(
                "column {name} is {t}: a categorical column or id must be an integer or text"
            )))
        }
    }
    Ok(())
}

/// A categorical column as dense codes (f32, for the GBDT), growing `dict` with new values;
/// NULL → NaN (missing).
pub fn codes(
    batch: &RecordBatch,
    name: &str,
    dict: &mut HashMap<String, u32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let a = column(batch, name)?;
    let a = cast(a, &DataType::Utf8).map_err(|e| Error::Plan(format!("column {name}: {e}")))?;
    let a = a.as_string::<i32>();
    for i in 0..a.len() {
        if a.is_null(i) {
            out.push(f32::NAN);
            continue;
        }
        let next = dict.len() as u32;
        let code = *dict.entry(a.value(i).to_string()).or_insert(next);
        out.push(code as f32);
    }
    Ok(())
}

/// A DATE (or timestamp) column as days since 1970-01-01.
pub fn days(batch: &RecordBatch, name: &str, out: &mut Vec<i32>) -> Result<()> {
    let a = column(batch, name)?;
    let a = cast(a, &DataType::Date32)
        .map_err(|e| Error::Plan(format!("split column {name} is not a date: {e}")))?;
    let a = a.as_primitive::<Date32Type>();
    out.extend((0..a.len()).map(|i| if a.is_null(i) { i32::MIN } else { a.value(i) }));
    Ok(())
}

/// A timestamp column as microseconds since the epoch (dates at midnight); NULL → 0.
pub fn micros(batch: &RecordBatch, name: &str, out: &mut Vec<i64>) -> Result<()> {
    let a = column(batch, name)?;
    let t = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
    let a = cast(a, &t).map_err(|e| Error::Plan(format!("column {name} is not a time: {e}")))?;
    let a = a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    out.extend((0..a.len()).map(|i| if a.is_null(i) { 0 } else { a.value(i) }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_strictly_later() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let (train, valid) = split(d, 3, 1);
        assert_eq!(valid.from, d);
        assert_eq!(valid.to, d);
        assert_eq!(train.to, NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        assert_eq!(train.from, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        let (train, valid) = split(d, 2, 2);
        assert!(train.to < valid.from);
        assert_eq!(valid.from, NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        assert_eq!(train.from, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
    }
}
