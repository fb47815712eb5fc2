//! Records → Arrow rows of the pull's table: the window columns, the declared typed fields,
//! the record as JSON text and the time it was pulled.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::config::FieldType;
use crate::error::{Error, Result};
use crate::pull::Field;
use crate::window::Window;

/// The partition column: one window, one partition.
pub const WINDOW_START: &str = "window_start";

const UTC: &str = "+00:00";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// The Arrow type of a declared field.
pub fn arrow_type(kind: FieldType) -> DataType {
    match kind {
        FieldType::String => DataType::Utf8,
        FieldType::Long => DataType::Int64,
        FieldType::Double => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp | FieldType::TimestampMs => timestamp(),
        FieldType::Date => DataType::Date32,
    }
}

/// The table's columns for these fields.
pub fn schema(fields: &[Field]) -> SchemaRef {
    let mut columns = vec![
        ArrowField::new(WINDOW_START, timestamp(), true),
        ArrowField::new("window_end", timestamp(), true),
        ArrowField::new("dt", DataType::Date32, true),
    ];
    columns.extend(
        fields
            .iter()
            .map(|f| ArrowField::new(&f.name, arrow_type(f.kind), true)),
    );
    columns.push(ArrowField::new("record", DataType::Utf8, true));
    columns.push(ArrowField::new("pulled_at", timestamp(), true));
    Arc::new(Schema::new(columns))
}

/// Values of declared fields that did not convert (they are NULL; the JSON keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadValues {
    pub count: u64,
    /// The first one, described.
    pub example: Option<String>,
}

impl BadValues {
    fn add(&mut self, field: &str, value: &Value, kind: FieldType) {
        self.count += 1;
        if self.example.is_none() {
            let mut text = value.to_string();
            if text.len() > 80 {
                text = format!("{}…", text.chars().take(80).collect::<String>());
            }
            self.example = Some(format!("field {field}: {text} is not a {}", kind.as_str()));
        }
    }
}

/// One page's records as a batch of `schema`.
pub fn batch(
    schema: &SchemaRef,
    fields: &[Field],
    window: &Window,
    pulled_at: DateTime<Utc>,
    records: &[Value],
    bad: &mut BadValues,
) -> Result<RecordBatch> {
    let n = records.len();
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    let repeat_ts = |v: i64| {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
        b.append_slice(&vec![v; n]);
        Arc::new(b.finish()) as ArrayRef
    };
    let mut columns: Vec<ArrayRef> = vec![
        repeat_ts(micros(window.start)),
        repeat_ts(micros(window.end)),
        {
            let mut b = Date32Builder::with_capacity(n);
            b.append_slice(&vec![days(window.start.date_naive()); n]);
            Arc::new(b.finish()) as ArrayRef
        },
    ];
    for field in fields {
        columns.push(column(field, records, bad));
    }
    let mut text = StringBuilder::with_capacity(n, n * 256);
    for r in records {
        let json = serde_json::to_string(r)
            .map_err(|e| Error::Response(format!("re-encoding a record: {e}")))?;
        text.append_value(json);
    }
    columns.push(Arc::new(text.finish()));
    columns.push(repeat_ts(micros(pulled_at)));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Lake(strata_table::Error::arrow("building a pull's rows", e)))
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::default()).num_days() as i32
}

fn column(field: &Field, records: &[Value], bad: &mut BadValues) -> ArrayRef {
    let n = records.len();
    let values = records.iter().map(|r| field.path.get(r));
    macro_rules! build {
        ($builder:expr, $convert:expr) => {{
            let mut b = $builder;
            for v in values {
                match v {
                    None | Some(Value::Null) => b.append_null(),
                    Some(v) => match $convert(v) {
                        Some(x) => b.append_value(x),
                        None => {
                            bad.add(&field.name, v, field.kind);
                            b.append_null()
                        }
                    },
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match field.kind {
        FieldType::String => build!(StringBuilder::with_capacity(n, n * 16), as_text),
        FieldType::Long => build!(Int64Builder::with_capacity(n), as_long),
        FieldType::Double => build!(Float64Builder::with_capacity(n), as_double),
        FieldType::Boolean => build!(BooleanBuilder::with_capacity(n), as_bool),
        FieldType::Timestamp => build!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC),
            as_timestamp
        ),
        FieldType::TimestampMs => build!(
            TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC),
            as_timestamp_ms
        ),
        FieldType::Date => build!(Date32Builder::with_capacity(n), as_date),
    }
}

/// Strings as they are; numbers and booleans as text; objects and arrays as JSON text.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Integers, whole floats within range, and strings holding either.
pub fn as_long(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_double(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// RFC 3339 text (or `YYYY-MM-DD HH:MM:SS`, UTC), or epoch seconds: microseconds.
pub fn as_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                        .ok()
                        .map(|t| t.and_utc())
                })
                .map(|t| t.timestamp_micros())
        }
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1_000_000))
            .or_else(|| n.as_f64().map(|f| (f * 1e6).round() as i64)),
        _ => None,
    }
}

/// Epoch milliseconds: microseconds.
pub fn as_timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .or_else(|| n.as_f64().map(|f| (f * 1e3).round() as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok()?.checked_mul(1000),
        _ => None,
    }
}

/// `2026-12-06` (or the date of an RFC 3339 time): days since the epoch.
pub fn as_date(v: &Value) -> Option<i32> {
    let Value::String(s) = v else { return None };
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc).date_naive())
        })
        .map(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonpath::JsonPath;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn field(name: &str, path: &str, kind: FieldType) -> Field {
        Field {
            name: name.into(),
            path: JsonPath::parse(path).unwrap(),
            kind,
        }
    }

    #[test]
    fn records_become_typed_rows_and_json_text() {
        let fields = vec![
            field("id", "$.id", FieldType::Long),
            field("customer", "$.customer.name", FieldType::String),
            field("amount", "$.amount", FieldType::Double),
            field("paid", "$.paid", FieldType::Boolean),
            field("created", "$.created", FieldType::Timestamp),
            field("seen_ms", "$.seen", FieldType::TimestampMs),
            field("day", "$.day", FieldType::Date),
            field("tags", "$.tags", FieldType::String),
        ];
        let schema = schema(&fields);
        let window = Window::parse("2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z").unwrap();
        let records = vec![
            json!({"id": 1, "customer": {"name": "Ann"}, "amount": 9.5, "paid": true,
                   "created": "2026-12-06T10:15:00+01:00", "seen": 1796515200123i64,
                   "day": "2026-12-06", "tags": ["a", "b"]}),
            json!({"id": "2", "amount": "3", "paid": "false", "created": 1796515200,
                   "day": "2026-12-06T23:00:00Z"}),
            json!({"id": "two", "amount": "n/a", "paid": 1, "created": "yesterday", "day": 5}),
        ];
        let mut bad = BadValues::default();
        let pulled = window.end;
        let b = batch(&schema, &fields, &window, pulled, &records, &mut bad).unwrap();
        assert_eq!(b.num_rows(), 3);
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(1), ids.is_null(2)), (1, 2, true));
        let names = b.column_by_name("customer").unwrap().as_string::<i32>();
        assert_eq!((names.value(0), names.is_null(1)), ("Ann", true));
        let amounts = b
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!((amounts.value(0), amounts.value(1)), (9.5, 3.0));
        let created = b
            .column_by_name("created")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(created.value(0), 1_796_548_500_000_000);
        assert_eq!(created.value(1), 1_796_515_200_000_000);
        let seen = b
            .column_by_name("seen_ms")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(seen.value(0), 1_796_515_200_123_000);
        let day = b
            .column_by_name("day")
            .unwrap()
            .as_primitive::<Date32Type>();
        assert_eq!((day.value(0), day.value(1)), (20_793, 20_793));
        let tags = b.column_by_name("tags").unwrap().as_string::<i32>();
        assert_eq!(tags.value(0), "[\"a\",\"b\"]");
        let dt = b.column_by_name("dt").unwrap().as_primitive::<Date32Type>();
        assert_eq!(dt.value(2), 20_793);
        let start = b
            .column_by_name(WINDOW_START)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(start.value(1), window.start.timestamp_micros());
        let record = b.column_by_name("record").unwrap().as_string::<i32>();
        let back: Value = serde_json::from_str(record.value(2)).unwrap();
        assert_eq!(back, records[2]);
        // The third record's id, amount, paid, created and day did not convert.
        assert_eq!(bad.count, 5);
        assert_eq!(
            bad.example.as_deref(),
            Some("field id: \"two\" is not a long")
        );
    }
}
