//! The records on the CDC bus topics `cdc.<source>.<table>` (ADR 0007): the table's schema,
//! then one [`Change`] per row change, in source (binlog) order. One partition per topic, so
//! the bus offset order is the source order.
//!
//! Values are exact: integers keep their width and sign, decimals travel as strings with
//! their scale, floats as their shortest round-trip text, bytes as base64, times as integer
//! microseconds. A record's JSON is `{"k":"schema","v":{…}}`, `{"k":"change","v":{…}}` or
//! `{"k":"truncate","v":{…}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `cdc.<source>.<table>`
pub fn topic(source: &str, table: &str) -> String {
    format!("cdc.{source}.{table}")
}

/// What one bus record of a CDC topic holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v", rename_all = "lowercase")]
pub enum CdcRecord {
    /// The table's columns; sent before the first change and whenever they change.
    Schema(TableSchema),
    Change(Box<Change>),
    /// Every row of the table is gone: a source `TRUNCATE`, or the start of a re-snapshot
    /// (`strata cdc resync`, or a source position lost and re-snapshotted), whose reads follow.
    Truncate(Truncate),
}

/// A whole-table removal at a point of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncate {
    pub position: SourcePosition,
    /// Source commit time (epoch µs); the time it was decided for a re-snapshot.
    pub commit_ts: i64,
    /// Why: `truncate` (the source statement) or `resnapshot`.
    pub reason: String,
}

impl CdcRecord {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs of strings and integers always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The logical type of a column: decides its value variant and its Iceberg type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "t")]
pub enum ColumnType {
    /// Fits i32: TINYINT..INT signed, TINYINT..MEDIUMINT unsigned, YEAR. Iceberg `int`.
    Int,
    /// Fits i64: BIGINT, INT UNSIGNED, BIT(1..63). Iceberg `long`.
    Long,
    /// BIGINT UNSIGNED, BIT(64). Iceberg `decimal(20,0)`.
    UnsignedLong,
    /// DECIMAL(p,s) with p ≤ 38. Iceberg `decimal(p,s)`. Wider decimals are `String`.
    Decimal { precision: u8, scale: u8 },
    /// FLOAT. Iceberg `float`.
    Float,
    /// DOUBLE. Iceberg `double`.
    Double,
    /// DATE. Iceberg `date`.
    Date,
    /// TIME (may be negative or past 24 h). Iceberg `string` `[-]HH:MM:SS.ffffff`.
    Time,
    /// DATETIME(n), no time zone. Iceberg `timestamp`.
    DateTime,
    /// TIMESTAMP(n), an instant. Iceberg `timestamptz`.
    Timestamp,
    /// CHAR, VARCHAR, TEXT, ENUM, SET. Iceberg `string`.
    String,
    /// BINARY, VARBINARY, BLOB. Iceberg `binary`.
    Binary,
    /// JSON text. Iceberg `string`.
    Json,
}

/// One source column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The source's own type text, e.g. `bigint(20) unsigned`, `enum('a','b')`.
    pub source_type: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    pub nullable: bool,
}

/// A source table's columns (in table order) and primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub source: String,
    pub database: String,
    pub table: String,
    pub columns: Vec<ColumnSchema>,
    /// Primary key column names in key order; empty: no key (the ODS table is append-only).
    pub primary_key: Vec<String>,
}

impl TableSchema {
    /// The key values of `row`, in key order (NULL for a key column the row lacks).
    pub fn key_of(&self, row: &Row) -> Vec<Value> {
        self.primary_key
            .iter()
            .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
            .collect()
    }
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Read by the initial snapshot.
    #[serde(rename = "r")]
    Read,
    #[serde(rename = "c")]
    Create,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// Where in its source's stream a change comes from: the bus coordinate every connector
/// writes, whatever its own position type (ADR 0033). The connector's resume position lives
/// in its state file; this is what each record carries.
///
/// Ordering rule (derived, field by field): `file` as text, then `pos`, then `row`, then
/// `snapshot` (false first). Positions compare only within one topic (one source): the sources
/// drop streamed changes at or before the last one a topic holds by this order. The ODS merger
/// does not sort by it: it applies records in bus offset order, which is the source order
/// (one partition per topic), and keeps `Display` as the changelog's `_source_pos`.
///
/// - MariaDB/MySQL: `file` is the binlog file name (`binlog.000003`: the zero-padded sequence
///   makes text order file order), `pos` the end offset of the rows event in it.
/// - PostgreSQL: `file` is the commit LSN as fixed-width text (`00000000/016B3748`: text
///   order is LSN order), `pos` the same LSN as a number.
///
/// Snapshot reads carry the position the snapshot started at, with `row` counting the rows
/// read. The field names and JSON keys are kept from the first (binlog) version so records
/// already on the bus read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The segment of the stream, compared as text first: a binlog file name
    /// (`binlog.000003`), or a fixed-width LSN (`00000000/016B3748`).
    pub file: String,
    /// Offset within the segment: the end position of the binlog event, or the LSN.
    pub pos: u64,
    /// Row within the event or transaction (or within the snapshot).
    pub row: u64,
    /// True for snapshot reads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
}

impl std::fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.snapshot {
            write!(f, "snapshot@{}:{}#{}", self.file, self.pos, self.row)
        } else {
            write!(f, "{}:{}#{}", self.file, self.pos, self.row)
        }
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub op: Op,
    /// Row image before the change (updates, deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Row>,
    /// Row image after the change (snapshot reads, inserts, updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Row>,
    pub position: SourcePosition,
    /// Transaction id: the GTID when the server sends one, else `xid:<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
    /// Source commit time, epoch microseconds (second precision from the binlog).
    pub commit_ts: i64,
}

impl Change {
    /// The image that describes the row as it now is (after), or was (before, for deletes).
    pub fn image(&self) -> Option<&Row> {
        self.after.as_ref().or(self.before.as_ref())
    }
}

/// A row image: column name → value.
pub type Row = BTreeMap<String, Value>;

/// An exact column value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    #[serde(rename = "null")]
    Null,
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "u")]
    UInt(u64),
    /// Decimal text with exactly the column's scale, e.g. `-12.50`.
    #[serde(rename = "n")]
    Decimal(String),
    /// Shortest text that parses back to the same f32 / f64.
    #[serde(rename = "f")]
    Float(String),
    #[serde(rename = "s")]
    Str(String),
    #[serde(rename = "b", with = "base64_bytes")]
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    #[serde(rename = "date")]
    Date(i32),
    /// Signed microseconds (MySQL TIME is a duration, −838:59:59 … 838:59:59).
    #[serde(rename = "time")]
    Time(i64),
    /// Microseconds since 1970-01-01 00:00, no time zone (DATETIME).
    #[serde(rename = "dt")]
    DateTime(i64),
    /// Microseconds since the epoch, UTC (TIMESTAMP).
    #[serde(rename = "ts")]
    Timestamp(i64),
    #[serde(rename = "j")]
    Json(String),
}

impl Value {
    /// A canonical text of the value, the same whatever path produced it (snapshot, binlog,
    /// lake read-back). `verify` hashes it.
    pub fn canonical(&self) -> String {
        match self {
            Value::Null => "∅".to_string(),
            Value::Int(v) => v.to_string(),
            Value::UInt(v) => v.to_string(),
            Value::Decimal(s) | Value::Float(s) | Value::Str(s) | Value::Json(s) => s.clone(),
            Value::Bytes(b) => format!(
                "0x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
            Value::Date(d) => format!("date:{d}"),
            Value::Time(t) => format!("time:{t}"),
            Value::DateTime(t) => format!("dt:{t}"),
            Value::Timestamp(t) => format!("ts:{t}"),
        }
    }
}

/// `[-]HH:MM:SS.ffffff` for a TIME value in microseconds.
pub fn format_time(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let secs = m / 1_000_000;
    format!(
        "{sign}{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        m % 1_000_000
    )
}

/// Parses [`format_time`]'s output back.
pub fn parse_time(text: &str) -> Option<i64> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = parts.next()?.parse().ok()?;
    let frac = format!("{frac:0<6}");
    let us: i64 = frac.get(..6)?.parse().ok()?;
    // Checked: the text may come from a corrupt or hostile stream.
    let v = h
        .checked_mul(60)?
        .checked_add(m)?
        .checked_mul(60)?
        .checked_add(s)?
        .checked_mul(1_000_000)?
        .checked_add(us)?;
    if neg {
        v.checked_neg()
    } else {
        Some(v)
    }
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_round_trips_exactly() {
        let mut after = Row::new();
        after.insert("id".into(), Value::UInt(u64::MAX));
        after.insert("amount".into(), Value::Decimal("-12.50".into()));
        after.insert("f".into(), Value::Float(0.1f32.to_string()));
        after.insert("blob".into(), Value::Bytes(vec![0, 255, 10]));
        after.insert("name".into(), Value::Str("héllo 😀".into()));
        after.insert("gone".into(), Value::Null);
        let record = CdcRecord::Change(Box::new(Change {
            op: Op::Update,
            before: None,
            after: Some(after),
            position: SourcePosition {
                file: "binlog.000001".into(),
                pos: 1234,
                row: 2,
                snapshot: false,
            },
            txid: Some("0-1-7".into()),
            commit_ts: 1_700_000_000_000_000,
        }));
        let json = record.to_json();
        assert_eq!(CdcRecord::from_json(&json).unwrap(), record);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""k":"change""#), "{text}");
        assert!(text.contains(r#"{"u":18446744073709551615}"#), "{text}");
        assert!(text.contains(r#""gone":"null""#), "{text}");
    }

    #[test]
    fn time_text_round_trips() {
        for v in [
            0,
            1,
            -1,
            838 * 3_600_000_000 + 59 * 60_000_000 + 59_000_000,
            -3_723_000_001,
        ] {
            assert_eq!(parse_time(&format_time(v)), Some(v), "{v}");
        }
        assert_eq!(format_time(-3_723_000_001), "-01:02:03.000001");
    }

    #[test]
    fn records_already_on_the_bus_read_unchanged() {
        // As written by the sources before connectors had their own positions.
        let binlog = br#"{"k":"change","v":{"op":"c","after":{"id":{"i":1}},"position":{"file":"binlog.000001","pos":2293,"row":0},"txid":"0-1-10","commit_ts":1796559554000000}}"#;
        let pg = br#"{"k":"truncate","v":{"position":{"file":"00000000/01925120","pos":26366240,"row":0,"snapshot":true},"commit_ts":1,"reason":"resnapshot"}}"#;
        for bytes in [&binlog[..], &pg[..]] {
            let record = CdcRecord::from_json(bytes).unwrap();
            assert_eq!(record.to_json(), bytes, "written back byte for byte");
        }
    }

    #[test]
    fn positions_order_by_file_pos_row() {
        let p = |file: &str, pos, row, snapshot| SourcePosition {
            file: file.into(),
            pos,
            row,
            snapshot,
        };
        assert!(p("binlog.000001", 10, 0, false) < p("binlog.000001", 10, 1, false));
        assert!(p("binlog.000001", 11, 0, false) < p("binlog.000002", 4, 0, false));
    }
}
