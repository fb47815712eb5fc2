//! BSON → rows, and raw change events → what they do. Pure functions over `bson` values, so
//! they are tested on real BSON bytes without a server (`tests.rs`).
//!
//! A document becomes: `_id` (the key: the `_id` value as canonical Extended JSON text, so
//! `ObjectId("…")`, the string `"a"` and the int `7` stay distinct and read back exactly),
//! `doc` (the whole document as relaxed Extended JSON) and one typed column per declared
//! field.

use bson::{Bson, Document};
use chrono::NaiveDate;
use strata_core::cdc::{ColumnSchema, ColumnType, Op, Row, TableSchema, Value};

use super::config::{FieldType, MongoSourceConfig, DOC_COLUMN, ID_COLUMN};
use super::position::ts_u64;

/// A declared field of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub column: String,
    pub path: Vec<String>,
    pub kind: FieldType,
}

/// The declared fields of `collection`, by column.
pub fn fields(config: &MongoSourceConfig, collection: &str) -> Vec<Field> {
    config
        .fields_of(collection)
        .into_iter()
        .map(|(column, path, kind)| Field {
            column,
            path: path.split('.').map(str::to_string).collect(),
            kind,
        })
        .collect()
}

fn column_type(kind: FieldType) -> ColumnType {
    match kind {
        FieldType::String => ColumnType::String,
        FieldType::Long => ColumnType::Long,
        FieldType::Int | FieldType::Bool => ColumnType::Int,
        FieldType::Double => ColumnType::Double,
        FieldType::Timestamp => ColumnType::Timestamp,
        FieldType::Date => ColumnType::Date,
        FieldType::Binary => ColumnType::Binary,
        FieldType::Json => ColumnType::Json,
    }
}

/// The schema a collection lands with: `_id`, the declared fields, `doc`; keyed by `_id`.
pub fn table_schema(
    source: &str,
    database: &str,
    collection: &str,
    fields: &[Field],
) -> TableSchema {
    let mut columns = vec![ColumnSchema {
        name: ID_COLUMN.to_string(),
        source_type: "_id (canonical extended json)".to_string(),
        kind: ColumnType::String,
        nullable: false,
    }];
    columns.extend(fields.iter().map(|f| ColumnSchema {
        name: f.column.clone(),
        source_type: format!("{} {}", f.kind.as_str(), f.path.join(".")),
        kind: column_type(f.kind),
        nullable: true,
    }));
    columns.push(ColumnSchema {
        name: DOC_COLUMN.to_string(),
        source_type: "document (relaxed extended json)".to_string(),
        kind: ColumnType::Json,
        nullable: true,
    });
    TableSchema {
        source: source.to_string(),
        database: database.to_string(),
        table: collection.to_string(),
        columns,
        primary_key: vec![ID_COLUMN.to_string()],
    }
}

/// Extended JSON text of `value` with every document's fields in their BSON order (a JSON
/// value would sort them: `{region, n}` and `{n, region}` are different `_id`s to MongoDB).
/// Leaves are the `bson` crate's canonical or relaxed form.
pub fn ext_json(value: &Bson, canonical: bool) -> String {
    let mut out = String::new();
    write_ext_json(value, canonical, &mut out);
    out
}

fn write_ext_json(value: &Bson, canonical: bool, out: &mut String) {
    match value {
        Bson::Document(d) => {
            out.push('{');
            for (i, (k, v)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_ext_json(v, canonical, out);
            }
            out.push('}');
        }
        Bson::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ext_json(v, canonical, out);
            }
            out.push(']');
        }
        leaf => {
            let json = if canonical {
                leaf.clone().into_canonical_extjson()
            } else {
                leaf.clone().into_relaxed_extjson()
            };
            out.push_str(&json.to_string());
        }
    }
}

/// Extended JSON text back to BSON, fields in their written order.
pub fn parse_ext_json(text: &str) -> Result<Bson, String> {
    serde_json::from_str::<Bson>(text).map_err(|e| format!("{text:?} is not extended JSON: {e}"))
}

/// The key text of an `_id` value: canonical Extended JSON.
pub fn id_key(id: &Bson) -> String {
    ext_json(id, true)
}

/// The `_id` value of a key text ([`id_key`]'s inverse).
pub fn id_of_key(key: &str) -> Result<Bson, String> {
    parse_ext_json(key).map_err(|e| format!("_id key: {e}"))
}

/// A document as relaxed Extended JSON text.
pub fn doc_json(doc: &Document) -> String {
    let mut out = String::new();
    write_ext_json(&Bson::Document(doc.clone()), false, &mut out);
    out
}

/// The value at `path`: sub-documents by name, arrays by a number segment.
pub fn lookup<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let (first, rest) = path.split_first()?;
    let mut at = doc.get(first)?;
    for seg in rest {
        at = match at {
            Bson::Document(d) => d.get(seg)?,
            Bson::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The row of a document, and how many declared values did not convert (NULL instead).
/// Errors when the document has no `_id`.
pub fn doc_row(doc: &Document, fields: &[Field]) -> Result<(Row, usize), String> {
    let id = doc.get("_id").ok_or("document without _id")?;
    let mut row = Row::new();
    row.insert(ID_COLUMN.to_string(), Value::Str(id_key(id)));
    let mut failed = 0;
    for f in fields {
        let value = match lookup(doc, &f.path) {
            None | Some(Bson::Null) | Some(Bson::Undefined) => Value::Null,
            Some(v) => convert(v, f.kind).unwrap_or_else(|| {
                failed += 1;
                Value::Null
            }),
        };
        row.insert(f.column.clone(), value);
    }
    row.insert(DOC_COLUMN.to_string(), Value::Json(doc_json(doc)));
    Ok((row, failed))
}

/// The key-only row of a deleted document.
pub fn key_row(id: &Bson) -> Row {
    let mut row = Row::new();
    row.insert(ID_COLUMN.to_string(), Value::Str(id_key(id)));
    row
}

fn days(d: NaiveDate) -> Option<i32> {
    i32::try_from((d - NaiveDate::default()).num_days()).ok()
}

fn float_text(f: f64) -> Option<Value> {
    f.is_finite().then(|| Value::Float(f.to_string()))
}

/// A BSON value as a `kind` column's value (None: it does not convert).
pub fn convert(v: &Bson, kind: FieldType) -> Option<Value> {
    match kind {
        FieldType::String => Some(Value::Str(match v {
            Bson::String(s) | Bson::Symbol(s) => s.clone(),
            Bson::ObjectId(o) => o.to_hex(),
            Bson::Int32(i) => i.to_string(),
            Bson::Int64(i) => i.to_string(),
            Bson::Double(f) => f.to_string(),
            Bson::Boolean(b) => b.to_string(),
            Bson::Decimal128(d) => d.to_string(),
            Bson::DateTime(d) => d
                .try_to_rfc3339_string()
                .unwrap_or_else(|_| d.timestamp_millis().to_string()),
            other => ext_json(other, false),
        })),
        FieldType::Json => Some(Value::Json(ext_json(v, false))),
        FieldType::Long => integer(v).map(Value::Int),
        FieldType::Int => integer(v)
            .and_then(|i| i32::try_from(i).ok())
            .map(|i| Value::Int(i64::from(i))),
        FieldType::Double => match v {
            Bson::Double(f) => float_text(*f),
            Bson::Int32(i) => float_text(f64::from(*i)),
            Bson::Int64(i) => float_text(*i as f64),
            Bson::Decimal128(d) => d.to_string().parse::<f64>().ok().and_then(float_text),
            Bson::String(s) => s.trim().parse::<f64>().ok().and_then(float_text),
            _ => None,
        },
        FieldType::Bool => match v {
            Bson::Boolean(b) => Some(Value::Int(i64::from(*b))),
            _ => None,
        },
        FieldType::Timestamp => timestamp_micros(v).map(Value::Timestamp),
        FieldType::Date => match v {
            Bson::String(s) if s.len() == 10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(days)
                .map(Value::Date),
            other => timestamp_micros(other)
                .and_then(chrono::DateTime::from_timestamp_micros)
                .and_then(|t| days(t.date_naive()))
                .map(Value::Date),
        },
        FieldType::Binary => match v {
            Bson::Binary(b) => Some(Value::Bytes(b.bytes.clone())),
            _ => None,
        },
    }
}

fn integer(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Bson::Decimal128(d) => d.to_string().parse().ok(),
        Bson::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An instant in epoch microseconds: a BSON date (ms), a BSON timestamp (its seconds), or
/// RFC 3339 text.
pub fn timestamp_micros(v: &Bson) -> Option<i64> {
    match v {
        Bson::DateTime(d) => d.timestamp_millis().checked_mul(1000),
        Bson::Timestamp(t) => i64::from(t.time).checked_mul(1_000_000),
        Bson::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.timestamp_micros()),
        _ => None,
    }
}

/// One change stream event, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The event's resume token (`_id`).
    pub token: Document,
    /// Cluster time `t << 32 | i` (0 if the event has none).
    pub cluster_time: u64,
    /// Commit time, epoch microseconds: `wallTime` (MongoDB 6.0+), else the cluster time's
    /// seconds.
    pub commit_ts: i64,
    /// `<lsid.id hex>:<txnNumber>` for events of a multi-document transaction.
    pub txid: Option<String>,
    pub kind: EventKind,
}

/// What an event does to the collections.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// insert / replace / update with its full document: the document is now `doc`.
    Upsert {
        collection: String,
        op: Op,
        doc: Document,
    },
    /// An update whose document is gone by the time it was looked up (a delete follows in the
    /// stream): nothing to write.
    UpdateGone {
        collection: String,
        id: Bson,
    },
    Delete {
        collection: String,
        id: Bson,
    },
    /// The collection was dropped, or renamed away (`to`: its new name in the same database).
    Drop {
        collection: String,
        renamed_to: Option<String>,
    },
    /// The database was dropped: every collection is gone.
    DropDatabase,
    /// The stream was invalidated (after `dropDatabase` on a database stream): it resumes
    /// with `startAfter` this token.
    Invalidate,
    /// Any other event (index builds, `create`, …): nothing to write.
    Other(String),
}

fn get_str<'a>(doc: &'a Document, key: &str) -> Option<&'a str> {
    match doc.get(key) {
        Some(Bson::String(s)) => Some(s),
        _ => None,
    }
}

fn coll_of(doc: &Document, key: &str) -> Option<String> {
    match doc.get(key) {
        Some(Bson::Document(ns)) => get_str(ns, "coll").map(str::to_string),
        _ => None,
    }
}

/// A document from its raw BSON bytes.
pub fn doc_from_bytes(bytes: &[u8]) -> Result<Document, String> {
    Document::from_reader(bytes).map_err(|e| format!("not a BSON document: {e}"))
}

/// Decodes a change event from its raw BSON bytes.
pub fn decode_event_bytes(bytes: &[u8]) -> Result<ChangeEvent, String> {
    decode_event(&doc_from_bytes(bytes)?)
}

/// Decodes a change event document.
pub fn decode_event(doc: &Document) -> Result<ChangeEvent, String> {
    let token = match doc.get("_id") {
        Some(Bson::Document(t)) => t.clone(),
        _ => return Err("change event without a resume token (_id)".to_string()),
    };
    let op = get_str(doc, "operationType")
        .ok_or("change event without operationType")?
        .to_string();
    let cluster_time = match doc.get("clusterTime") {
        Some(Bson::Timestamp(t)) => ts_u64(*t),
        _ => 0,
    };
    let commit_ts = match doc.get("wallTime") {
        Some(Bson::DateTime(d)) => d.timestamp_millis().saturating_mul(1000),
        _ => ((cluster_time >> 32) as i64).saturating_mul(1_000_000),
    };
    let txid = match (doc.get("lsid"), doc.get("txnNumber")) {
        (Some(Bson::Document(lsid)), Some(n)) => {
            let id = match lsid.get("id") {
                Some(Bson::Binary(b)) => b.bytes.iter().map(|x| format!("{x:02x}")).collect(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let n = match n {
                Bson::Int64(n) => n.to_string(),
                Bson::Int32(n) => n.to_string(),
                other => other.to_string(),
            };
            Some(format!("{id}:{n}"))
        }
        _ => None,
    };
    let collection = || coll_of(doc, "ns").ok_or_else(|| format!("{op} event without ns.coll"));
    let doc_key_id = || match doc.get("documentKey") {
        Some(Bson::Document(k)) => k
            .get("_id")
            .cloned()
            .ok_or_else(|| format!("{op} event without documentKey._id")),
        _ => Err(format!("{op} event without documentKey")),
    };
    let full = || match doc.get("fullDocument") {
        Some(Bson::Document(d)) => Some(d.clone()),
        _ => None,
    };
    let kind = match op.as_str() {
        "insert" | "replace" | "update" => {
            let collection = collection()?;
            let op_kind = if op == "insert" {
                Op::Create
            } else {
                Op::Update
            };
            match full() {
                Some(d) => EventKind::Upsert {
                    collection,
                    op: op_kind,
                    doc: d,
                },
                None if op == "update" => EventKind::UpdateGone {
                    collection,
                    id: doc_key_id()?,
                },
                None => return Err(format!("{op} event without fullDocument")),
            }
        }
        "delete" => EventKind::Delete {
            collection: collection()?,
            id: doc_key_id()?,
        },
        "drop" => EventKind::Drop {
            collection: collection()?,
            renamed_to: None,
        },
        "rename" => EventKind::Drop {
            collection: collection()?,
            renamed_to: coll_of(doc, "to"),
        },
        "dropDatabase" => EventKind::DropDatabase,
        "invalidate" => EventKind::Invalidate,
        other => EventKind::Other(other.to_string()),
    };
    Ok(ChangeEvent {
        token,
        cluster_time,
        commit_ts,
        txid,
        kind,
    })
}
