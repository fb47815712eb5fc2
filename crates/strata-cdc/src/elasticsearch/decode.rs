//! A search hit → the row it lands as: `_id`, `_index`, `_version`, `_seq_no`,
//! `_primary_term`, the declared fields as typed values, and the whole `_source` as JSON text.
//!
//! A declared field whose value does not convert (text in a `long` field, say) is NULL in its
//! column and counted; the document still lands, its `_source` holding the value as it was.

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value as Json;
use strata_core::cdc::{ColumnSchema, ColumnType, Row, TableSchema, Value};

use super::client::Hit;
use super::config::{
    column_name, EsSourceConfig, FieldType, ID_COLUMN, INDEX_COLUMN, PRIMARY_TERM_COLUMN,
    SEQ_NO_COLUMN, SOURCE_COLUMN, VERSION_COLUMN,
};

/// A declared field: where it is in the document and the column it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The dotted path, split.
    pub path: Vec<String>,
    pub column: String,
    pub kind: FieldType,
}

/// The declared fields of `config`, the timestamp field first (as a `timestamp` column when
/// it is not declared), then the others by path.
pub fn fields(config: &EsSourceConfig) -> Vec<Field> {
    let field = |path: &str, kind| Field {
        path: path.split('.').map(str::to_string).collect(),
        column: column_name(path),
        kind,
    };
    let mut out = vec![field(&config.timestamp_field, FieldType::Timestamp)];
    out.extend(
        config
            .fields
            .iter()
            .filter(|(p, _)| **p != config.timestamp_field)
            .map(|(p, k)| field(p, *k)),
    );
    out
}

fn column_type(kind: FieldType) -> ColumnType {
    match kind {
        FieldType::String => ColumnType::String,
        FieldType::Long => ColumnType::Long,
        FieldType::Integer | FieldType::Boolean => ColumnType::Int,
        FieldType::Double => ColumnType::Double,
        FieldType::Float => ColumnType::Float,
        FieldType::Timestamp => ColumnType::Timestamp,
        FieldType::Date => ColumnType::Date,
        FieldType::Json => ColumnType::Json,
    }
}

/// The table schema an index lands with: keyed by `_id`.
pub fn table_schema(config: &EsSourceConfig, fields: &[Field]) -> TableSchema {
    let meta = |name: &str, source_type: &str, kind, nullable| ColumnSchema {
        name: name.to_string(),
        source_type: source_type.to_string(),
        kind,
        nullable,
    };
    let mut columns = vec![
        meta(ID_COLUMN, "_id", ColumnType::String, false),
        meta(INDEX_COLUMN, "_index", ColumnType::String, true),
        meta(VERSION_COLUMN, "_version", ColumnType::Long, true),
        meta(SEQ_NO_COLUMN, "_seq_no", ColumnType::Long, true),
        meta(PRIMARY_TERM_COLUMN, "_primary_term", ColumnType::Long, true),
    ];
    columns.extend(fields.iter().map(|f| ColumnSchema {
        name: f.column.clone(),
        source_type: format!("{} {}", f.kind.as_str(), f.path.join(".")),
        kind: column_type(f.kind),
        nullable: true,
    }));
    columns.push(meta(SOURCE_COLUMN, "_source", ColumnType::Json, true));
    TableSchema {
        source: config.name.clone(),
        database: config.index().to_string(),
        table: config.tables.first().cloned().unwrap_or_default(),
        columns,
        primary_key: vec![ID_COLUMN.to_string()],
    }
}

/// The value at `path` in `doc`: nested objects by segment, or a key that holds the dots
/// itself (`{"user.id": 7}`, which Elasticsearch indexes the same way).
pub fn lookup<'a>(doc: &'a Json, path: &[String]) -> Option<&'a Json> {
    let mut at = doc;
    for (i, seg) in path.iter().enumerate() {
        match at.get(seg) {
            Some(next) => at = next,
            None => return at.get(path[i..].join(".")),
        }
    }
    Some(at)
}

/// The row of a hit, and how many declared values did not convert.
pub fn hit_row(hit: &Hit, fields: &[Field]) -> (Row, usize) {
    let mut row = Row::new();
    let mut failed = 0;
    row.insert(ID_COLUMN.to_string(), Value::Str(hit.id.clone()));
    row.insert(INDEX_COLUMN.to_string(), Value::Str(hit.index.clone()));
    let num = |v: Option<i64>| v.map(Value::Int).unwrap_or(Value::Null);
    row.insert(VERSION_COLUMN.to_string(), num(hit.version));
    row.insert(SEQ_NO_COLUMN.to_string(), num(hit.seq_no));
    row.insert(PRIMARY_TERM_COLUMN.to_string(), num(hit.primary_term));
    let null = Json::Null;
    let doc = hit.source.as_ref().unwrap_or(&null);
    for f in fields {
        let value = match lookup(doc, &f.path) {
            None | Some(Json::Null) => Value::Null,
            Some(v) => convert(v, f.kind).unwrap_or_else(|| {
                failed += 1;
                Value::Null
            }),
        };
        row.insert(f.column.clone(), value);
    }
    let source = match &hit.source {
        Some(s) => Value::Json(s.to_string()),
        None => Value::Null,
    };
    row.insert(SOURCE_COLUMN.to_string(), source);
    (row, failed)
}

/// A JSON value as a `kind` column's value (None: it does not convert).
pub fn convert(v: &Json, kind: FieldType) -> Option<Value> {
    // A one-element array is the value (Elasticsearch fields are multi-valued).
    let v = match v {
        Json::Array(a) if a.len() == 1 && kind != FieldType::Json => &a[0],
        v => v,
    };
    match kind {
        FieldType::String => Some(Value::Str(match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        })),
        FieldType::Json => Some(Value::Json(v.to_string())),
        FieldType::Long => integer(v).map(Value::Int),
        FieldType::Integer => integer(v)
            .and_then(|i| i32::try_from(i).ok())
            .map(|i| Value::Int(i64::from(i))),
        FieldType::Double => float(v).map(|f| Value::Float(f.to_string())),
        FieldType::Float => float(v).map(|f| Value::Float((f as f32).to_string())),
        FieldType::Boolean => match v {
            Json::Bool(b) => Some(Value::Int(i64::from(*b))),
            Json::String(s) if s == "true" => Some(Value::Int(1)),
            Json::String(s) if s == "false" => Some(Value::Int(0)),
            _ => None,
        },
        FieldType::Timestamp => timestamp_micros(v).map(Value::Timestamp),
        FieldType::Date => match v {
            Json::String(s) if s.len() == 10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| Value::Date(days(d))),
            other => timestamp_micros(other).and_then(|us| {
                chrono::DateTime::from_timestamp_micros(us)
                    .map(|t| Value::Date(days(t.date_naive())))
            }),
        },
    }
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::default()).num_days() as i32
}

fn integer(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn float(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// An Elasticsearch `date` value in epoch microseconds: epoch milliseconds (a number or a
/// numeric string) or ISO-8601 text, with or without a zone (none: UTC), or a bare day.
pub fn timestamp_micros(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => {
            let ms = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
            ms.checked_mul(1000)
        }
        Json::String(s) => {
            let s = s.trim();
            if let Ok(ms) = s.parse::<i64>() {
                return ms.checked_mul(1000);
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_micros());
            }
            for f in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                    return Some(t.and_utc().timestamp_micros());
                }
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
                if let Ok(t) = chrono::DateTime::parse_from_str(s, f) {
                    return Some(t.timestamp_micros());
                }
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_micros())
        }
        _ => None,
    }
}

/// The timestamp of a hit from its first sort value (the server's own reading of the
/// timestamp field, epoch milliseconds; `nanos`: a `date_nanos` field, in nanoseconds). None
/// for a document without one (the server sorts those with `i64::MIN` or `i64::MAX`).
pub fn sort_ts_ms(hit: &Hit, nanos: bool) -> Option<i64> {
    let v = hit.sort.first()?;
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
    if n == i64::MIN || n == i64::MAX {
        return None;
    }
    Some(if nanos { n.div_euclid(1_000_000) } else { n })
}

/// FNV-1a over bytes: stable across builds and processes (the dedup fingerprints are
/// compared with ones computed by an earlier process from the bus).
pub fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// FNV-1a's offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// What tells one version of a document from another: its sequence number and primary term,
/// else its version, else (a server that reports neither) its source text.
pub fn fingerprint(
    version: Option<i64>,
    seq_no: Option<i64>,
    primary_term: Option<i64>,
    source: Option<&str>,
) -> u64 {
    match (seq_no, primary_term, version) {
        (Some(s), Some(t), _) => fnv1a(format!("s{t}:{s}").as_bytes(), FNV_START),
        (_, _, Some(v)) => fnv1a(format!("v{v}").as_bytes(), FNV_START),
        _ => fnv1a(source.unwrap_or("").as_bytes(), FNV_START),
    }
}

/// The fingerprint of a hit (see [`fingerprint`]).
pub fn hit_fingerprint(hit: &Hit, source_text: Option<&str>) -> u64 {
    fingerprint(hit.version, hit.seq_no, hit.primary_term, source_text)
}

/// The fingerprint of a row as it went on the bus.
pub fn row_fingerprint(row: &Row) -> u64 {
    let num = |c: &str| match row.get(c) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    };
    let source = match row.get(SOURCE_COLUMN) {
        Some(Value::Json(s)) => Some(s.as_str()),
        _ => None,
    };
    fingerprint(
        num(VERSION_COLUMN),
        num(SEQ_NO_COLUMN),
        num(PRIMARY_TERM_COLUMN),
        source,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(fields: &str) -> EsSourceConfig {
        let text = format!("name = \"s\"\nkind = \"elasticsearch\"\nurl = \"http://h:9200\"\ntables = [\"p\"]\ntimestamp_field = \"meta.updated\"\n{fields}");
        match toml::from_str::<crate::config::SourceConfig>(&text).unwrap() {
            crate::config::SourceConfig::Elasticsearch(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn hit(source: Json) -> Hit {
        Hit {
            index: "p-1".into(),
            id: "doc-7".into(),
            version: Some(3),
            seq_no: Some(41),
            primary_term: Some(1),
            source: Some(source),
            sort: vec![json!(1_796_083_200_000i64), json!(4)],
        }
    }

    #[test]
    fn a_hit_lands_with_its_metadata_typed_fields_and_source() {
        let c = config("fields = { price = \"double\", qty = \"integer\", \"user.id\" = \"long\", tags = \"json\", ok = \"boolean\", day = \"date\", sku = \"string\", ratio = \"float\" }\n");
        let f = fields(&c);
        assert_eq!(f[0].column, "meta_updated");
        let schema = table_schema(&c, &f);
        assert_eq!(schema.primary_key, ["_id"]);
        let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "_id",
                "_index",
                "_version",
                "_seq_no",
                "_primary_term",
                "meta_updated",
                "day",
                "ok",
                "price",
                "qty",
                "ratio",
                "sku",
                "tags",
                "user_id",
                "_source"
            ]
        );
        let doc = json!({
            "meta": {"updated": "2026-12-01T00:00:00.5Z"},
            "price": 9.99, "qty": "12", "user": {"id": 7}, "tags": ["a", "b"],
            "ok": true, "day": "2026-12-01", "sku": 12345, "ratio": 0.1
        });
        let (row, failed) = hit_row(&hit(doc.clone()), &f);
        assert_eq!(failed, 0);
        assert_eq!(row["_id"], Value::Str("doc-7".into()));
        assert_eq!(row["_index"], Value::Str("p-1".into()));
        assert_eq!(row["_version"], Value::Int(3));
        assert_eq!(row["_seq_no"], Value::Int(41));
        assert_eq!(row["meta_updated"], Value::Timestamp(1_796_083_200_500_000));
        assert_eq!(row["price"], Value::Float("9.99".into()));
        assert_eq!(row["ratio"], Value::Float("0.1".into()));
        assert_eq!(row["qty"], Value::Int(12));
        assert_eq!(row["user_id"], Value::Int(7));
        assert_eq!(row["tags"], Value::Json(r#"["a","b"]"#.into()));
        assert_eq!(row["ok"], Value::Int(1));
        assert_eq!(row["day"], Value::Date(20_788));
        assert_eq!(row["sku"], Value::Str("12345".into()));
        let Value::Json(text) = &row["_source"] else {
            panic!("{:?}", row["_source"])
        };
        assert_eq!(serde_json::from_str::<Json>(text).unwrap(), doc);
        // Values that do not convert are NULL and counted; missing ones are NULL.
        let (row, failed) = hit_row(
            &hit(json!({"price": "cheap", "qty": 3_000_000_000i64, "user.id": 5})),
            &f,
        );
        assert_eq!(failed, 2);
        assert_eq!(
            (&row["price"], &row["qty"], &row["sku"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
        assert_eq!(
            row["user_id"],
            Value::Int(5),
            "a dotted key is the same field"
        );
    }

    #[test]
    fn dates_read_the_way_elasticsearch_writes_them() {
        let us = |v: Json| timestamp_micros(&v);
        assert_eq!(us(json!(1_796_083_200_123i64)), Some(1_796_083_200_123_000));
        assert_eq!(us(json!("1796083200123")), Some(1_796_083_200_123_000));
        assert_eq!(
            us(json!("2026-12-01T00:00:00Z")),
            Some(1_796_083_200_000_000)
        );
        assert_eq!(
            us(json!("2026-12-01T01:00:00+01:00")),
            Some(1_796_083_200_000_000)
        );
        assert_eq!(
            us(json!("2026-12-01T00:00:00.123456")),
            Some(1_796_083_200_123_456)
        );
        assert_eq!(
            us(json!("2026-12-01 00:00:00")),
            Some(1_796_083_200_000_000)
        );
        assert_eq!(
            us(json!("2026-12-01T01:00:00+0100")),
            Some(1_796_083_200_000_000)
        );
        assert_eq!(us(json!("2026-12-01")), Some(1_796_083_200_000_000));
        assert_eq!(us(json!("yesterday")), None);
        let mut h = hit(json!({}));
        assert_eq!(sort_ts_ms(&h, false), Some(1_796_083_200_000));
        h.sort = vec![json!(1_796_083_200_000_123_456i64)];
        assert_eq!(sort_ts_ms(&h, true), Some(1_796_083_200_000));
        h.sort = vec![json!(i64::MIN)];
        assert_eq!(sort_ts_ms(&h, false), None);
    }

    #[test]
    fn fingerprints_follow_the_version() {
        let f = fields(&config(""));
        let h = hit(json!({"a": 1}));
        let (row, _) = hit_row(&h, &f);
        assert_eq!(
            row_fingerprint(&row),
            hit_fingerprint(&h, Some(r#"{"a":1}"#))
        );
        let mut newer = h.clone();
        newer.seq_no = Some(42);
        assert_ne!(hit_fingerprint(&newer, None), hit_fingerprint(&h, None));
        // No version from the server: the source decides.
        let a = fingerprint(None, None, None, Some("{\"a\":1}"));
        assert_eq!(a, fingerprint(None, None, None, Some("{\"a\":1}")));
        assert_ne!(a, fingerprint(None, None, None, Some("{\"a\":2}")));
    }
}
