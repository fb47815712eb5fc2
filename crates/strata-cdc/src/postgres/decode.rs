//! PostgreSQL text output → exact [`Value`]s. Snapshot reads (`col::text`) and pgoutput
//! (proto v1 sends text) both give the server's text output, in a session with `DateStyle =
//! ISO`, `TimeZone = UTC`, `extra_float_digits = 1` and `bytea_output = hex` (set by
//! `source::connect`), so one decoder serves both paths and they agree by construction.

use strata_core::cdc::{format_time, parse_time, Row, Value};

use super::pgoutput::Datum;
use super::schema::{ElemKind, PgKind, SourceColumn, SourceTable};
use crate::decode::normalize_decimal;
use crate::error::{Error, Result};

const DAYS_TO_EPOCH_FROM_CE: i32 = 719_163;

/// Decodes the text of one value of `col` (`None`: SQL NULL).
pub fn decode(col: &SourceColumn, text: Option<&str>) -> Result<Value, String> {
    let Some(t) = text else {
        return Ok(Value::Null);
    };
    let name = &col.schema.name;
    let bad = |what: &str| format!("column {name} ({}): {what} {t:?}", col.schema.source_type);
    Ok(match col.kind {
        PgKind::Integer => Value::Int(t.parse().map_err(|_| bad("bad integer"))?),
        PgKind::Bool => match t {
            "t" | "true" => Value::Int(1),
            "f" | "false" => Value::Int(0),
            _ => return Err(bad("bad boolean")),
        },
        PgKind::Decimal { scale } => Value::Decimal(
            normalize_decimal(t, scale as u32)
                .ok_or_else(|| bad("decimal that does not fit its scale (NaN/Infinity?)"))?,
        ),
        PgKind::Float4 => {
            let f: f32 = t.parse().map_err(|_| bad("bad real"))?;
            Value::Float(f.to_string())
        }
        PgKind::Float8 => {
            let f: f64 = t.parse().map_err(|_| bad("bad double precision"))?;
            Value::Float(f.to_string())
        }
        PgKind::Bytea => Value::Bytes(parse_bytea(t).ok_or_else(|| bad("bad bytea"))?),
        PgKind::Date => Value::Date(parse_date(t).ok_or_else(|| bad("unsupported date"))?),
        PgKind::Time => Value::Time(parse_time(t).ok_or_else(|| bad("bad time"))?),
        PgKind::Timestamp => {
            Value::DateTime(parse_timestamp(t).ok_or_else(|| bad("unsupported timestamp"))?)
        }
        PgKind::Timestamptz => {
            Value::Timestamp(parse_timestamptz(t).ok_or_else(|| bad("unsupported timestamptz"))?)
        }
        PgKind::Json => Value::Json(t.to_string()),
        PgKind::Array { elem } => {
            Value::Json(array_to_json(t, elem).map_err(|e| bad(&format!("bad array ({e})")))?)
        }
        PgKind::Text => Value::Str(t.to_string()),
    })
}

/// `\x00ff` → bytes.
pub fn parse_bytea(t: &str) -> Option<Vec<u8>> {
    let hex = t.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Splits off a trailing ` BC` (year n BC is the proleptic year 1 − n).
fn era(t: &str) -> (&str, bool) {
    match t.strip_suffix(" BC") {
        Some(r) => (r, true),
        None => (t, false),
    }
}

fn date_of(ymd: &str, bc: bool) -> Option<chrono::NaiveDate> {
    let mut parts = ymd.splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    let y = if bc { 1 - y } else { y };
    chrono::NaiveDate::from_ymd_opt(y, m, d)
}

fn days_of(date: chrono::NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&date) - DAYS_TO_EPOCH_FROM_CE
}

/// `2024-02-29` (or `0044-03-15 BC`) → days since 1970-01-01. `infinity` has no value.
pub fn parse_date(t: &str) -> Option<i32> {
    let (t, bc) = era(t);
    date_of(t, bc).map(days_of)
}

/// `2024-01-31 23:59:59.123456` → microseconds since 1970-01-01 (no zone).
pub fn parse_timestamp(t: &str) -> Option<i64> {
    let (t, bc) = era(t);
    let (date, time) = t.split_once(' ')?;
    let days = days_of(date_of(date, bc)?) as i64;
    let us = parse_time(time)?;
    if us < 0 {
        return None;
    }
    (days * 86_400_000_000).checked_add(us)
}

/// `2024-06-01 12:00:00.654321+00` (any `±HH[:MM[:SS]]` offset) → microseconds since the
/// epoch, UTC.
pub fn parse_timestamptz(t: &str) -> Option<i64> {
    let (t, bc) = era(t);
    let (date, rest) = t.split_once(' ')?;
    // The offset starts at the last sign after the time's digits.
    let at = rest.rfind(['+', '-'])?;
    let (time, offset) = rest.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut parts = offset[1..].split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
    let s: i64 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
    let offset_us = h
        .checked_mul(60)?
        .checked_add(m)?
        .checked_mul(60)?
        .checked_add(s)?
        .checked_mul(1_000_000)?
        .checked_mul(sign)?;
    let local = parse_timestamp(&format!("{date} {time}{}", if bc { " BC" } else { "" }))?;
    local.checked_sub(offset_us)
}

/// A PostgreSQL array literal (`{1,NULL,3}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}`, optionally
/// prefixed by `[1:2]=`) → JSON text (nested arrays, `null` for NULL).
pub fn array_to_json(t: &str, elem: ElemKind) -> Result<String, String> {
    let body = match t.find('=') {
        Some(eq) if t.starts_with('[') => &t[eq + 1..],
        _ => t,
    };
    let chars: Vec<char> = body.chars().collect();
    let mut at = 0;
    let mut out = String::new();
    parse_array(&chars, &mut at, elem, &mut out, 0)?;
    if at != chars.len() {
        return Err(format!("trailing text at {at}"));
    }
    Ok(out)
}

/// Deepest nesting accepted (PostgreSQL's MAXDIM is 6): deeper text is an error, not a stack
/// overflow.
const MAX_ARRAY_DEPTH: usize = 32;

fn parse_array(
    c: &[char],
    at: &mut usize,
    elem: ElemKind,
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
    }
    if c.get(*at) != Some(&'{') {
        return Err(format!("expected {{ at {at}"));
    }
    *at += 1;
    out.push('[');
    if c.get(*at) == Some(&'}') {
        *at += 1;
        out.push(']');
        return Ok(());
    }
    loop {
        match c.get(*at) {
            Some('{') => parse_array(c, at, elem, out, depth + 1)?,
            Some('"') => {
                *at += 1;
                let mut s = String::new();
                loop {
                    match c.get(*at) {
                        Some('\\') => {
                            s.push(*c.get(*at + 1).ok_or("dangling escape")?);
                            *at += 2;
                        }
                        Some('"') => {
                            *at += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            *at += 1;
                        }
                        None => return Err("unterminated quoted element".into()),
                    }
                }
                push_elem(out, &s, elem, true);
            }
            Some(_) => {
                let start = *at;
                while let Some(ch) = c.get(*at) {
                    if *ch == ',' || *ch == '}' {
                        break;
                    }
                    *at += 1;
                }
                let s: String = c[start..*at].iter().collect();
                let s = s.trim();
                if s.eq_ignore_ascii_case("NULL") {
                    out.push_str("null");
                } else {
                    push_elem(out, s, elem, false);
                }
            }
            None => return Err("unterminated array".into()),
        }
        match c.get(*at) {
            Some(',') => {
                *at += 1;
                out.push(',');
            }
            Some('}') => {
                *at += 1;
                out.push(']');
                return Ok(());
            }
            _ => return Err(format!("expected , or }} at {at}")),
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "null".to_string())
}

fn push_elem(out: &mut String, s: &str, elem: ElemKind, quoted: bool) {
    match elem {
        ElemKind::Number if is_json_number(s) => out.push_str(s),
        ElemKind::Bool if s == "t" => out.push_str("true"),
        ElemKind::Bool if s == "f" => out.push_str("false"),
        ElemKind::Json if serde_json::from_str::<serde_json::Value>(s).is_ok() => {
            out.push_str(s.trim())
        }
        _ => {
            let _ = quoted;
            out.push_str(&json_string(s))
        }
    }
}

/// Whether `s` is a number in JSON's grammar (so `NaN`, `Infinity`, `1.` stay strings).
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A key [`Value`] back as PostgreSQL input text (for the snapshot's `WHERE key > …` bound).
pub fn to_text(col: &SourceColumn, value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Int(i) if col.kind == PgKind::Bool => (if *i != 0 { "t" } else { "f" }).into(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Decimal(s) | Value::Float(s) | Value::Str(s) | Value::Json(s) => s.clone(),
        Value::Bytes(b) => format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
        Value::Date(d) => chrono::NaiveDate::from_num_days_from_ce_opt(d + DAYS_TO_EPOCH_FROM_CE)?
            .format("%Y-%m-%d")
            .to_string(),
        Value::Time(t) => format_time(*t),
        Value::DateTime(t) => chrono::DateTime::from_timestamp_micros(*t)?
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        Value::Timestamp(t) => chrono::DateTime::from_timestamp_micros(*t)?
            .format("%Y-%m-%d %H:%M:%S%.6f+00")
            .to_string(),
    })
}

/// A tuple → a row image. With `only`, just the columns flagged there (a `K` old tuple: the
/// replica identity columns). Unchanged TOAST values are taken from `old` (the full old row of
/// REPLICA IDENTITY FULL); without it they are unknown, which is an error.
pub fn image(
    table: &SourceTable,
    tuple: &[Datum],
    only: Option<&[bool]>,
    old: Option<&[Datum]>,
) -> Result<Row> {
    if tuple.len() != table.columns.len() {
        return Err(Error::Unsupported {
            table: table.name().to_string(),
            message: format!(
                "a change has {} columns, the relation the stream described {}",
                tuple.len(),
                table.columns.len()
            ),
        });
    }
    let mut out = Row::new();
    for (i, (col, datum)) in table.columns.iter().zip(tuple).enumerate() {
        if only.is_some_and(|keys| !keys.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let datum = match datum {
            Datum::UnchangedToast => match old.and_then(|o| o.get(i)) {
                Some(d @ (Datum::Text(_) | Datum::Null)) => d,
                _ => {
                    return Err(Error::Unsupported {
                        table: table.name().to_string(),
                        message: format!(
                            "column {} is a TOASTed value the update did not change, and the stream does not carry it: \
                             ALTER TABLE {} REPLICA IDENTITY FULL",
                            col.schema.name,
                            table.qualified()
                        ),
                    })
                }
            },
            d => d,
        };
        let text = match datum {
            Datum::Text(t) => Some(t.as_str()),
            _ => None,
        };
        let value = decode(col, text).map_err(|message| Error::Unsupported {
            table: table.name().to_string(),
            message,
        })?;
        out.insert(col.schema.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::cdc::ColumnSchema;

    fn col(type_name: &str, typmod: i32, elem: &str) -> SourceColumn {
        let (kind, pg) = super::super::schema::classify(type_name, typmod, elem);
        SourceColumn {
            schema: ColumnSchema {
                name: "c".into(),
                source_type: type_name.into(),
                kind,
                nullable: true,
            },
            type_name: type_name.into(),
            kind: pg,
        }
    }

    fn d(type_name: &str, text: &str) -> Value {
        decode(&col(type_name, -1, ""), Some(text)).unwrap()
    }

    #[test]
    fn scalars_decode_exactly() {
        assert_eq!(d("int8", "-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(d("bool", "t"), Value::Int(1));
        let num = col("numeric", (12 << 16 | 4) + 4, "");
        assert_eq!(
            decode(&num, Some("-12.5000")).unwrap(),
            Value::Decimal("-12.5000".into())
        );
        assert!(decode(&num, Some("NaN")).is_err());
        assert_eq!(
            d("numeric", "1234567890123456789012345678901234567890.5"),
            Value::Str("1234567890123456789012345678901234567890.5".into())
        );
        assert_eq!(d("float4", "3.14159"), Value::Float("3.14159".into()));
        assert_eq!(
            d("float8", "-1.7976931348623157e+308"),
            Value::Float((-f64::MAX).to_string())
        );
        assert_eq!(
            d("float8", "Infinity"),
            Value::Float(f64::INFINITY.to_string())
        );
        assert_eq!(d("bytea", "\\x00ff10"), Value::Bytes(vec![0, 255, 16]));
        assert_eq!(d("bytea", "\\x"), Value::Bytes(vec![]));
        assert_eq!(d("date", "1970-01-02"), Value::Date(1));
        assert_eq!(d("date", "0001-12-31 BC"), Value::Date(-719_163));
        assert!(decode(&col("date", -1, ""), Some("infinity")).is_err());
        assert_eq!(d("time", "24:00:00"), Value::Time(86_400_000_000));
        assert_eq!(d("time", "00:00:00.000001"), Value::Time(1));
        assert_eq!(
            d("timestamp", "1970-01-01 00:00:01.5"),
            Value::DateTime(1_500_000)
        );
        assert_eq!(
            d("timestamptz", "2023-11-14 22:13:20.000001+00"),
            Value::Timestamp(1_700_000_000_000_001)
        );
        assert_eq!(
            d("timestamptz", "2023-11-15 03:43:20.000001+05:30"),
            Value::Timestamp(1_700_000_000_000_001)
        );
        assert_eq!(
            d("timestamptz", "1969-12-31 23:59:59-00:00:01"),
            Value::Timestamp(0)
        );
        assert_eq!(d("text", "héllo 😀"), Value::Str("héllo 😀".into()));
        assert_eq!(d("jsonb", "{\"a\": 1}"), Value::Json("{\"a\": 1}".into()));
        assert_eq!(decode(&col("uuid", -1, ""), None).unwrap(), Value::Null);
    }

    #[test]
    fn arrays_become_json() {
        let j = |t: &str, e| array_to_json(t, e).unwrap();
        assert_eq!(j("{1,NULL,-3}", ElemKind::Number), "[1,null,-3]");
        assert_eq!(j("{{1,2},{3,4}}", ElemKind::Number), "[[1,2],[3,4]]");
        assert_eq!(j("{}", ElemKind::Number), "[]");
        assert_eq!(j("{NaN,1.5}", ElemKind::Number), "[\"NaN\",1.5]");
        assert_eq!(
            j(r#"{"a b","c\"d",NULL,"NULL",😀}"#, ElemKind::String),
            r#"["a b","c\"d",null,"NULL","😀"]"#
        );
        assert_eq!(j("{t,f}", ElemKind::Bool), "[true,false]");
        assert_eq!(j("[0:1]={7,8}", ElemKind::Number), "[7,8]");
        assert_eq!(
            j(r#"{"{\"a\": 1}",null}"#, ElemKind::Json),
            r#"[{"a": 1},null]"#
        );
        assert!(array_to_json("{1,2", ElemKind::Number).is_err());
        assert!(array_to_json("{1}x", ElemKind::Number).is_err());
    }

    #[test]
    fn key_values_round_trip_through_text() {
        for (t, text) in [
            ("int4", "42"),
            ("text", "a'b"),
            ("date", "2024-02-29"),
            ("timestamp", "2024-01-31 23:59:59.123456"),
            ("timestamptz", "2024-01-31 23:59:59.123456+00"),
            ("bytea", "\\x00ff"),
            ("bool", "t"),
        ] {
            let c = col(t, -1, "");
            let v = decode(&c, Some(text)).unwrap();
            let back = to_text(&c, &v).unwrap();
            assert_eq!(decode(&c, Some(&back)).unwrap(), v, "{t}");
        }
    }

    #[test]
    fn json_numbers_follow_the_grammar() {
        for ok in ["0", "-1", "1.5", "1e10", "-0.5E-3"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "01", "1.", ".5", "NaN", "Infinity", "1e"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    fn table() -> SourceTable {
        let columns = vec![col("int4", -1, ""), col("text", -1, "")];
        let mut columns = columns;
        columns[0].schema.name = "id".into();
        columns[1].schema.name = "body".into();
        SourceTable {
            entry: "docs".into(),
            namespace: "public".into(),
            table: "docs".into(),
            schema: strata_core::cdc::TableSchema {
                source: "pg".into(),
                database: "public".into(),
                table: "docs".into(),
                columns: columns.iter().map(|c| c.schema.clone()).collect(),
                primary_key: vec!["id".into()],
            },
            columns,
            replica_identity: b'd',
        }
    }

    #[test]
    fn tuples_become_images() {
        let t = table();
        let new = [Datum::Text("1".into()), Datum::Text("x".into())];
        let row = image(&t, &new, None, None).unwrap();
        assert_eq!(row["id"], Value::Int(1));
        assert_eq!(row["body"], Value::Str("x".into()));
        // A `K` old tuple keeps the identity columns only.
        let key = [Datum::Text("1".into()), Datum::Null];
        let row = image(&t, &key, Some(&[true, false]), None).unwrap();
        assert_eq!(row.len(), 1);
        assert_eq!(row["id"], Value::Int(1));
        // An unchanged TOAST value comes from the full old row, and without one is an error
        // that says how to fix it.
        let new = [Datum::Text("1".into()), Datum::UnchangedToast];
        let old = [Datum::Text("1".into()), Datum::Text("big".into())];
        let row = image(&t, &new, None, Some(&old)).unwrap();
        assert_eq!(row["body"], Value::Str("big".into()));
        let err = image(&t, &new, None, None).unwrap_err().to_string();
        assert!(err.contains("REPLICA IDENTITY FULL"), "{err}");
        // A column count that differs from the table's is a schema change.
        assert!(image(&t, &new[..1], None, None).is_err());
    }
}
