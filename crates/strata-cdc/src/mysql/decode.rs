//! MySQL values → exact [`Value`]s. The same column can arrive two ways: from a prepared
//! statement (binary protocol: the snapshot and `verify`) or from a binlog row event, which
//! encodes some types differently (ENUM as its index, SET as a bit mask, TIMESTAMP as epoch
//! seconds, YEAR as text, unsigned integers possibly as signed). Both end in the same value.

use mysql_async::Value as My;
use strata_core::cdc::{ColumnType, Value};

use super::schema::SourceColumn;
use crate::decode::normalize_decimal;

/// Where a MySQL value was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Binary protocol result set (session time zone +00:00).
    Query,
    /// A binlog row event.
    Binlog,
}

const DAYS_TO_EPOCH_FROM_CE: i32 = 719_163;

fn days(y: u16, m: u8, d: u8) -> Option<i32> {
    chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
        .map(|date| chrono::Datelike::num_days_from_ce(&date) - DAYS_TO_EPOCH_FROM_CE)
}

fn micros_of_datetime(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Option<i64> {
    let days = days(y, mo, d)? as i64;
    Some(((days * 24 + h as i64) * 60 + mi as i64) * 60_000_000 + s as i64 * 1_000_000 + us as i64)
}

fn text(bytes: Vec<u8>, col: &SourceColumn) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "column {} holds bytes that are not UTF-8 ({e}); only utf8/utf8mb4 text is supported",
            col.schema.name
        )
    })
}

fn as_i128(v: &My) -> Option<i128> {
    match v {
        My::Int(i) => Some(*i as i128),
        My::UInt(u) => Some(*u as i128),
        My::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A value for an error message. Not `{:?}`: mysql_common's `Debug` of a `Time` multiplies
/// its days without a check, which panics (debug builds) on a corrupt value.
fn shown(v: &My) -> String {
    match v {
        My::NULL => "NULL".into(),
        My::Bytes(b) => {
            let text = String::from_utf8_lossy(b);
            let cut: String = text.chars().take(64).collect();
            if cut.len() < text.len() {
                format!("{cut:?}…")
            } else {
                format!("{cut:?}")
            }
        }
        My::Int(i) => format!("Int({i})"),
        My::UInt(u) => format!("UInt({u})"),
        My::Float(f) => format!("Float({f})"),
        My::Double(d) => format!("Double({d})"),
        My::Date(y, mo, d, h, mi, s, us) => {
            format!("Date({y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06})")
        }
        My::Time(neg, d, h, m, s, us) => format!(
            "Time({}{d} days {h:02}:{m:02}:{s:02}.{us:06})",
            if *neg { "-" } else { "" }
        ),
    }
}

/// Decodes one value of `col`. An error says why (the record then goes nowhere silently: the
/// caller reports it with the table and position).
pub fn decode(col: &SourceColumn, value: My, origin: Origin) -> Result<Value, String> {
    if value == My::NULL {
        return Ok(Value::Null);
    }
    let bad = |v: &My| format!("column {}: unexpected value {}", col.schema.name, shown(v));
    let kind = col.schema.kind;
    match (kind, col.data_type.as_str()) {
        (ColumnType::String, "enum") if origin == Origin::Binlog => {
            let idx = as_i128(&value).ok_or_else(|| bad(&value))?;
            if idx == 0 {
                return Ok(Value::Str(String::new()));
            }
            usize::try_from(idx)
                .ok()
                .and_then(|i| col.members.get(i - 1))
                .map(|m| Value::Str(m.clone()))
                .ok_or_else(|| format!("column {}: enum index {idx} out of range", col.schema.name))
        }
        (ColumnType::String, "set") if origin == Origin::Binlog => {
            let My::Bytes(b) = &value else {
                return Err(bad(&value));
            };
            // A SET has at most 64 members: at most 8 bytes, little-endian.
            if b.len() > 8 {
                return Err(format!(
                    "column {}: a SET value of {} bytes (at most 8)",
                    col.schema.name,
                    b.len()
                ));
            }
            let mut mask: u64 = 0;
            for (i, byte) in b.iter().enumerate() {
                mask |= (*byte as u64) << (8 * i);
            }
            let picked: Vec<&str> = col
                .members
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    u32::try_from(*i)
                        .ok()
                        .and_then(|i| 1u64.checked_shl(i))
                        .is_some_and(|bit| mask & bit != 0)
                })
                .map(|(_, m)| m.as_str())
                .collect();
            Ok(Value::Str(picked.join(",")))
        }
        (ColumnType::Int | ColumnType::Long | ColumnType::UnsignedLong, "bit") => {
            let My::Bytes(b) = &value else {
                return Ok(match as_i128(&value) {
                    Some(v) if kind == ColumnType::UnsignedLong => Value::UInt(v as u64),
                    Some(v) => Value::Int(v as i64),
                    None => return Err(bad(&value)),
                });
            };
            let mut v: u64 = 0;
            for byte in b {
                v = (v << 8) | *byte as u64;
            }
            Ok(if kind == ColumnType::UnsignedLong {
                Value::UInt(v)
            } else {
                Value::Int(v as i64)
            })
        }
        (ColumnType::Int, "year") => {
            let y = as_i128(&value).ok_or_else(|| bad(&value))?;
            // The binlog sends 1900 + raw byte; raw 0 is the zero year.
            Ok(Value::Int(if y == 1900 { 0 } else { y as i64 }))
        }
        (ColumnType::Int | ColumnType::Long | ColumnType::UnsignedLong, _) => {
            let mut v = as_i128(&value).ok_or_else(|| bad(&value))?;
            // The binlog's signedness metadata can be missing or misaligned (MariaDB): the
            // column's declared sign decides, reinterpreting the value's bits.
            if col.unsigned && v < 0 {
                v += 1i128 << col.bits;
            } else if !col.unsigned && col.bits > 0 && v >= 1i128 << (col.bits - 1) {
                v -= 1i128 << col.bits;
            }
            Ok(if kind == ColumnType::UnsignedLong {
                Value::UInt(v as u64)
            } else {
                Value::Int(v as i64)
            })
        }
        (ColumnType::Decimal { scale, .. }, _) => {
            let My::Bytes(b) = value else {
                return Err(bad(&value));
            };
            let t = text(b, col)?;
            normalize_decimal(&t, scale as u32)
                .map(Value::Decimal)
                .ok_or_else(|| format!("column {}: bad decimal {t:?}", col.schema.name))
        }
        (ColumnType::Float, _) => match value {
            My::Float(f) => Ok(Value::Float(f.to_string())),
            My::Double(d) => Ok(Value::Float((d as f32).to_string())),
            My::Bytes(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<f32>().ok())
                .map(|f| Value::Float(f.to_string()))
                .ok_or_else(|| bad(&value)),
            other => Err(bad(&other)),
        },
        (ColumnType::Double, _) => match value {
            My::Double(d) => Ok(Value::Float(d.to_string())),
            My::Float(f) => Ok(Value::Float((f as f64).to_string())),
            My::Bytes(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .map(|f| Value::Float(f.to_string()))
                .ok_or_else(|| bad(&value)),
            other => Err(bad(&other)),
        },
        (ColumnType::Date, _) => match value {
            // The zero date (allowed without NO_ZERO_DATE) has no calendar value.
            My::Date(0, _, _, _, _, _, _) => Ok(Value::Null),
            My::Date(y, m, d, ..) => days(y, m, d)
                .map(Value::Date)
                .ok_or_else(|| format!("column {}: invalid date {y}-{m}-{d}", col.schema.name)),
            other => Err(bad(&other)),
        },
        (ColumnType::DateTime, _) => match value {
            My::Date(0, _, _, _, _, _, _) => Ok(Value::Null),
            My::Date(y, mo, d, h, mi, s, us) => micros_of_datetime(y, mo, d, h, mi, s, us)
                .map(Value::DateTime)
                .ok_or_else(|| format!("column {}: invalid datetime", col.schema.name)),
            other => Err(bad(&other)),
        },
        (ColumnType::Timestamp, _) => match value {
            // Binary protocol with the session in UTC.
            My::Date(0, _, _, _, _, _, _) => Ok(Value::Null),
            My::Date(y, mo, d, h, mi, s, us) => micros_of_datetime(y, mo, d, h, mi, s, us)
                .map(Value::Timestamp)
                .ok_or_else(|| format!("column {}: invalid timestamp", col.schema.name)),
            // Binlog: epoch seconds, optionally `.ffffff`.
            My::Bytes(ref b) => {
                let t = std::str::from_utf8(b).map_err(|_| bad(&value))?;
                let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
                let secs: i64 = secs.parse().map_err(|_| bad(&value))?;
                let frac = format!("{frac:0<6}");
                let us: i64 = frac
                    .get(..6)
                    .and_then(|f| f.parse().ok())
                    .filter(|us| *us >= 0)
                    .ok_or_else(|| bad(&value))?;
                if secs == 0 && us == 0 {
                    return Ok(Value::Null);
                }
                secs.checked_mul(1_000_000)
                    .and_then(|s| s.checked_add(us))
                    .map(Value::Timestamp)
                    .ok_or_else(|| bad(&value))
            }
            My::Int(secs) => match secs {
                0 => Ok(Value::Null),
                _ => secs
                    .checked_mul(1_000_000)
                    .map(Value::Timestamp)
                    .ok_or_else(|| bad(&value)),
            },
            other => Err(bad(&other)),
        },
        (ColumnType::Time, _) => match value {
            My::Time(neg, d, h, m, s, us) => {
                // Every part is unsigned and at most u32: i128 cannot overflow.
                let v = (((d as i128 * 24 + h as i128) * 60 + m as i128) * 60 + s as i128)
                    * 1_000_000
                    + us as i128;
                let v = i64::try_from(v).map_err(|_| bad(&value))?;
                Ok(Value::Time(if neg { -v } else { v }))
            }
            other => Err(bad(&other)),
        },
        (ColumnType::Binary, _) => match value {
            My::Bytes(b) => Ok(Value::Bytes(pad_binary(b, col))),
            other => Err(bad(&other)),
        },
        (ColumnType::Json, _) => match value {
            My::Bytes(b) => Ok(Value::Json(text(b, col)?)),
            other => Err(bad(&other)),
        },
        (ColumnType::String, _) => match value {
            My::Bytes(b) => Ok(Value::Str(text(b, col)?)),
            other => Err(bad(&other)),
        },
    }
}

/// BINARY(n) is right-padded with zero bytes on the server; the binlog strips them.
fn pad_binary(mut b: Vec<u8>, col: &SourceColumn) -> Vec<u8> {
    if col.data_type == "binary" {
        if let Some(n) = col
            .schema
            .source_type
            .strip_prefix("binary(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.parse::<usize>().ok())
        {
            if b.len() < n {
                b.resize(n, 0);
            }
        }
    }
    b
}

/// A [`Value`] as a statement parameter (for the snapshot's key bound).
pub fn to_param(value: &Value) -> My {
    match value {
        Value::Null => My::NULL,
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Decimal(s) | Value::Float(s) | Value::Str(s) | Value::Json(s) => {
            My::Bytes(s.clone().into_bytes())
        }
        Value::Bytes(b) => My::Bytes(b.clone()),
        Value::Date(d) => {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(d + DAYS_TO_EPOCH_FROM_CE)
                .unwrap_or_default();
            My::Bytes(date.format("%Y-%m-%d").to_string().into_bytes())
        }
        Value::DateTime(t) | Value::Timestamp(t) => {
            let dt = chrono::DateTime::from_timestamp_micros(*t).unwrap_or_default();
            My::Bytes(dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string().into_bytes())
        }
        Value::Time(t) => My::Bytes(strata_core::cdc::format_time(*t).into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::cdc::ColumnSchema;

    fn col(data_type: &str, source_type: &str, kind: ColumnType) -> SourceColumn {
        SourceColumn {
            schema: ColumnSchema {
                name: "c".into(),
                source_type: source_type.into(),
                kind,
                nullable: true,
            },
            data_type: data_type.into(),
            unsigned: source_type.contains("unsigned"),
            bits: match data_type {
                "tinyint" => 8,
                "bigint" => 64,
                _ => 32,
            },
            scale: 2,
            members: super::super::schema::parse_members(source_type),
        }
    }

    #[test]
    fn decimals_normalise() {}

    #[test]
    fn binlog_quirks_decode_like_queries() {
        let u64c = col("bigint", "bigint(20) unsigned", ColumnType::UnsignedLong);
        assert_eq!(
            decode(&u64c, My::Int(-1), Origin::Binlog).unwrap(),
            Value::UInt(u64::MAX)
        );
        let u8c = col("tinyint", "tinyint(3) unsigned", ColumnType::Int);
        assert_eq!(
            decode(&u8c, My::Int(-1), Origin::Binlog).unwrap(),
            Value::Int(255)
        );
        let i8c = col("tinyint", "tinyint(4)", ColumnType::Int);
        assert_eq!(
            decode(&i8c, My::UInt(128), Origin::Binlog).unwrap(),
            Value::Int(-128)
        );
        assert_eq!(
            decode(&i8c, My::Int(127), Origin::Binlog).unwrap(),
            Value::Int(127)
        );
        let e = col("enum", "enum('a','b')", ColumnType::String);
        assert_eq!(
            decode(&e, My::Int(2), Origin::Binlog).unwrap(),
            Value::Str("b".into())
        );
        let s = col("set", "set('x','y','z')", ColumnType::String);
        assert_eq!(
            decode(&s, My::Bytes(vec![5]), Origin::Binlog).unwrap(),
            Value::Str("x,z".into())
        );
        let ts = col("timestamp", "timestamp(6)", ColumnType::Timestamp);
        assert_eq!(
            decode(
                &ts,
                My::Bytes(b"1700000000.000001".to_vec()),
                Origin::Binlog
            )
            .unwrap(),
            decode(&ts, My::Date(2023, 11, 14, 22, 13, 20, 1), Origin::Query).unwrap()
        );
        let y = col("year", "year(4)", ColumnType::Int);
        assert_eq!(
            decode(&y, My::Bytes(b"2024".to_vec()), Origin::Binlog).unwrap(),
            Value::Int(2024)
        );
        assert_eq!(
            decode(&y, My::Int(2024), Origin::Query).unwrap(),
            Value::Int(2024)
        );
        let f = col("float", "float", ColumnType::Float);
        assert_eq!(
            decode(&f, My::Float(0.1), Origin::Binlog).unwrap(),
            Value::Float("0.1".into())
        );
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        // Each of these panicked (overflow, shift, slicing) before; found by `props.rs`.
        let time = col("time", "time(6)", ColumnType::Time);
        let huge = My::Time(false, u32::MAX, 255, 255, 255, u32::MAX);
        assert!(decode(&time, huge.clone(), Origin::Binlog).is_err());
        // Formatting the value for an error must not panic either (mysql_common's Debug does).
        let text = col("varchar", "varchar(5)", ColumnType::String);
        let e = decode(&text, huge, Origin::Binlog).unwrap_err();
        assert!(e.contains("Time(4294967295 days"), "{e}");
        let ts = col("timestamp", "timestamp(6)", ColumnType::Timestamp);
        for bytes in ["1.aaaaaé".as_bytes(), b"99999999999999999.0", b"1.-5"] {
            assert!(
                decode(&ts, My::Bytes(bytes.to_vec()), Origin::Binlog).is_err(),
                "{bytes:?}"
            );
        }
        assert!(decode(&ts, My::Int(i64::MAX), Origin::Binlog).is_err());
        let set = col("set", "set('x','y','z')", ColumnType::String);
        assert!(decode(&set, My::Bytes(vec![1; 9]), Origin::Binlog).is_err());
        let e = col("enum", "enum('a','b')", ColumnType::String);
        for idx in [&b"18446744073709551616"[..], b"-1", b"3"] {
            assert!(
                decode(&e, My::Bytes(idx.to_vec()), Origin::Binlog).is_err(),
                "{idx:?}"
            );
        }
    }
}
