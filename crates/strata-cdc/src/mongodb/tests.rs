//! BSON → columns and change-event decoding on real BSON bytes: documents and events are
//! built with the `bson` crate, serialised to bytes (what the server sends) and decoded
//! through the source's own conversion. No server runs here (see `tests/mongodb.rs` for the
//! gated integration test).

use std::sync::Arc;

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, DateTime, Decimal128, Document, Regex, Timestamp};
use strata_core::cdc::{CdcRecord, Op, SourcePosition, Value};

use super::config::{FieldType, MongoSourceConfig};
use super::decode::{self, EventKind, Field};
use super::position::{ts_u64, ResumePoint};
use super::source::{self, MongoSource};
use crate::config::SourceConfig;
use crate::connector::{Context, Position};

const OID: &str = "65a1b2c3d4e5f60718293a4b";
/// 2026-12-01T00:00:00Z in epoch milliseconds.
const DEC_1_MS: i64 = 1_796_083_200_000;

fn field(column: &str, path: &str, kind: FieldType) -> Field {
    Field {
        column: column.to_string(),
        path: path.split('.').map(str::to_string).collect(),
        kind,
    }
}

/// A document with one value of every BSON type the source maps.
fn every_type() -> Document {
    let oid = bson::oid::ObjectId::parse_str(OID).unwrap();
    doc! {
        "_id": oid,
        "double": 1.5,
        "string": "héllo",
        "document": { "a": { "b": 7 } },
        "array": [10, "x", { "k": true }],
        "binary": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 255] },
        "object_id": oid,
        "bool": true,
        "date": DateTime::from_millis(DEC_1_MS),
        "null": Bson::Null,
        "regex": Regex { pattern: "a.*b".to_string().try_into().unwrap(), options: "i".to_string().try_into().unwrap() },
        "int32": 42i32,
        "timestamp": Timestamp { time: 1_796_083_200, increment: 3 },
        "int64": 9_007_199_254_740_993i64,
        "decimal": "12.50".parse::<Decimal128>().unwrap(),
        "min": Bson::MinKey,
        "max": Bson::MaxKey,
        "day": "2026-12-01",
    }
}

/// `doc` as the bytes the server sends, read back.
fn through_bytes(doc: &Document) -> Document {
    let bytes = doc.to_vec().unwrap();
    decode::doc_from_bytes(&bytes).unwrap()
}

fn row_of(doc: &Document, fields: &[Field]) -> (strata_core::cdc::Row, usize) {
    decode::doc_row(&through_bytes(doc), fields).unwrap()
}

#[test]
fn every_bson_type_lands_in_doc_as_relaxed_extended_json() {
    let (row, failed) = row_of(&every_type(), &[]);
    assert_eq!(failed, 0);
    assert_eq!(
        row["_id"],
        Value::Str(format!(r#"{{"$oid":"{OID}"}}"#)),
        "the key is canonical extended json"
    );
    let Value::Json(text) = &row["doc"] else {
        panic!("{:?}", row["doc"])
    };
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let want = serde_json::json!({
        "_id": {"$oid": OID},
        "double": 1.5,
        "string": "héllo",
        "document": {"a": {"b": 7}},
        "array": [10, "x", {"k": true}],
        "binary": {"$binary": {"base64": "AAH/", "subType": "00"}},
        "object_id": {"$oid": OID},
        "bool": true,
        "date": {"$date": "2026-12-01T00:00:00Z"},
        "null": null,
        "regex": {"$regularExpression": {"pattern": "a.*b", "options": "i"}},
        "int32": 42,
        "timestamp": {"$timestamp": {"t": 1_796_083_200u32, "i": 3}},
        "int64": 9_007_199_254_740_993i64,
        "decimal": {"$numberDecimal": "12.50"},
        "min": {"$minKey": 1},
        "max": {"$maxKey": 1},
        "day": "2026-12-01",
    });
    assert_eq!(json, want);
    // The int64 past 2^53 keeps every digit in the text.
    assert!(text.contains("9007199254740993"), "{text}");
    // The text reads back to the same BSON document (relaxed extended json is lossless
    // for these values).
    let back = Bson::try_from(json).unwrap();
    let Bson::Document(back) = back else { panic!() };
    assert_eq!(back.get("decimal"), every_type().get("decimal"));
    assert_eq!(back.get("timestamp"), every_type().get("timestamp"));
    assert_eq!(back.get("binary"), every_type().get("binary"));
}

#[test]
fn declared_fields_convert_each_bson_type() {
    use FieldType::*;
    let fields = vec![
        field("double_d", "double", Double),
        field("double_s", "double", String),
        field("string_s", "string", String),
        field("nested_l", "document.a.b", Long),
        field("nested_j", "document", Json),
        field("arr_first", "array.0", Long),
        field("arr_flag", "array.2.k", Bool),
        field("arr_j", "array", Json),
        field("bin", "binary", Binary),
        field("oid_s", "object_id", String),
        field("flag", "bool", Bool),
        field("date_ts", "date", Timestamp),
        field("date_day", "date", Date),
        field("date_s", "date", String),
        field("null_s", "null", String),
        field("missing", "no.such.path", Long),
        field("regex_s", "regex", String),
        field("int32_i", "int32", Int),
        field("int32_d", "int32", Double),
        field("ts_ts", "timestamp", Timestamp),
        field("int64_l", "int64", Long),
        field("int64_i", "int64", Int),
        field("dec_d", "decimal", Double),
        field("dec_s", "decimal", String),
        field("min_j", "min", Json),
        field("max_j", "max", Json),
        field("day_d", "day", Date),
    ];
    let (row, failed) = row_of(&every_type(), &fields);
    let want: Vec<(&str, Value)> = vec![
        ("double_d", Value::Float("1.5".into())),
        ("double_s", Value::Str("1.5".into())),
        ("string_s", Value::Str("héllo".into())),
        ("nested_l", Value::Int(7)),
        ("nested_j", Value::Json(r#"{"a":{"b":7}}"#.into())),
        ("arr_first", Value::Int(10)),
        ("arr_flag", Value::Int(1)),
        ("arr_j", Value::Json(r#"[10,"x",{"k":true}]"#.into())),
        ("bin", Value::Bytes(vec![0, 1, 255])),
        ("oid_s", Value::Str(OID.into())),
        ("flag", Value::Int(1)),
        ("date_ts", Value::Timestamp(DEC_1_MS * 1000)),
        ("date_day", Value::Date(20_788)),
        ("date_s", Value::Str("2026-12-01T00:00:00Z".into())),
        ("null_s", Value::Null),
        ("missing", Value::Null),
        (
            "regex_s",
            Value::Str(r#"{"$regularExpression":{"options":"i","pattern":"a.*b"}}"#.into()),
        ),
        ("int32_i", Value::Int(42)),
        ("int32_d", Value::Float("42".into())),
        ("ts_ts", Value::Timestamp(1_796_083_200_000_000)),
        ("int64_l", Value::Int(9_007_199_254_740_993)),
        ("int64_i", Value::Null),
        ("dec_d", Value::Float("12.5".into())),
        ("dec_s", Value::Str("12.50".into())),
        ("min_j", Value::Json(r#"{"$minKey":1}"#.into())),
        ("max_j", Value::Json(r#"{"$maxKey":1}"#.into())),
        ("day_d", Value::Date(20_788)),
    ];
    for (column, value) in &want {
        assert_eq!(&row[*column], value, "{column}");
    }
    // int64 past i32 is the one value that did not convert.
    assert_eq!(failed, 1);
    // Types that do not convert are NULL and counted.
    let wrong = vec![
        field("a", "string", Long),
        field("b", "min", Double),
        field("c", "bool", Timestamp),
        field("d", "string", Binary),
        field("e", "double", Long),
        field("f", "int32", Bool),
    ];
    let (row, failed) = row_of(&every_type(), &wrong);
    assert_eq!(failed, 6);
    assert!(["a", "b", "c", "d", "e", "f"]
        .iter()
        .all(|c| row[*c] == Value::Null));
}

#[test]
fn keys_are_canonical_extended_json_and_read_back() {
    let ids = [
        Bson::ObjectId(bson::oid::ObjectId::parse_str(OID).unwrap()),
        Bson::String("a".into()),
        Bson::Int32(7),
        Bson::Int64(7),
        Bson::Double(7.5),
        Bson::Document(doc! { "region": "eu", "n": 3 }),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![1; 16],
        }),
    ];
    let keys: Vec<String> = ids.iter().map(decode::id_key).collect();
    assert_eq!(keys[1], r#""a""#);
    assert_eq!(keys[2], r#"{"$numberInt":"7"}"#);
    assert_eq!(keys[3], r#"{"$numberLong":"7"}"#);
    assert_eq!(keys[5], r#"{"region":"eu","n":{"$numberInt":"3"}}"#);
    for (id, key) in ids.iter().zip(&keys) {
        assert_eq!(&decode::id_of_key(key).unwrap(), id, "{key}");
    }
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
    assert!(decode::id_of_key("not json").is_err());
    // The whole document keeps its field order too.
    let (row, _) =
        decode::doc_row(&doc! { "_id": 1, "z": 1, "a": { "y": 2, "b": 3 } }, &[]).unwrap();
    assert_eq!(
        row["doc"],
        Value::Json(r#"{"_id":1,"z":1,"a":{"y":2,"b":3}}"#.into())
    );
    // A document without _id is an error, not a row.
    assert!(decode::doc_row(&doc! { "a": 1 }, &[]).is_err());
}

/// A change event as the server sends it: `_id` token, operation, cluster and wall time,
/// namespace.
fn event(op: &str, coll: &str, extra: Document) -> Document {
    let mut e = doc! {
        "_id": { "_data": format!("8267{op}0001") },
        "operationType": op,
        "clusterTime": Timestamp { time: 1_796_083_200, increment: 4 },
        "wallTime": DateTime::from_millis(DEC_1_MS + 5),
        "ns": { "db": "shop", "coll": coll },
    };
    e.extend(extra);
    e
}

fn decoded(e: &Document) -> decode::ChangeEvent {
    decode::decode_event_bytes(&e.to_vec().unwrap()).unwrap()
}

#[test]
fn change_events_of_each_operation_type_decode_from_bytes() {
    let id = Bson::Int32(1);
    let full = doc! { "_id": 1, "total": 9.5 };
    let insert = decoded(&event(
        "insert",
        "orders",
        doc! { "documentKey": { "_id": 1 }, "fullDocument": full.clone() },
    ));
    assert_eq!(insert.token, doc! { "_data": "8267insert0001" });
    assert_eq!(
        insert.cluster_time,
        ts_u64(Timestamp {
            time: 1_796_083_200,
            increment: 4
        })
    );
    assert_eq!(insert.commit_ts, (DEC_1_MS + 5) * 1000);
    assert_eq!(insert.txid, None);
    assert_eq!(
        insert.kind,
        EventKind::Upsert {
            collection: "orders".into(),
            op: Op::Create,
            doc: full.clone()
        }
    );
    // An update with its looked-up document, and one whose document is gone since.
    let update = decoded(&event(
        "update",
        "orders",
        doc! {
            "documentKey": { "_id": 1 },
            "updateDescription": { "updatedFields": { "total": 9.5 }, "removedFields": [] },
            "fullDocument": full.clone(),
            "lsid": { "id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![0xab; 16] } },
            "txnNumber": 12i64,
        },
    ));
    assert!(matches!(&update.kind, EventKind::Upsert { op: Op::Update, doc, .. } if doc == &full));
    assert_eq!(
        update.txid.as_deref(),
        Some("abababababababababababababababab:12")
    );
    let gone = decoded(&event(
        "update",
        "orders",
        doc! { "documentKey": { "_id": 1 }, "fullDocument": Bson::Null },
    ));
    assert_eq!(
        gone.kind,
        EventKind::UpdateGone {
            collection: "orders".into(),
            id: id.clone()
        }
    );
    let replace = decoded(&event(
        "replace",
        "orders",
        doc! { "documentKey": { "_id": 1 }, "fullDocument": full.clone() },
    ));
    assert!(matches!(
        replace.kind,
        EventKind::Upsert { op: Op::Update, .. }
    ));
    let delete = decoded(&event(
        "delete",
        "orders",
        doc! { "documentKey": { "_id": 1 } },
    ));
    assert_eq!(
        delete.kind,
        EventKind::Delete {
            collection: "orders".into(),
            id
        }
    );
    let drop = decoded(&event("drop", "orders", doc! {}));
    assert_eq!(
        drop.kind,
        EventKind::Drop {
            collection: "orders".into(),
            renamed_to: None
        }
    );
    let rename = decoded(&event(
        "rename",
        "staging",
        doc! { "to": { "db": "shop", "coll": "orders" } },
    ));
    assert_eq!(
        rename.kind,
        EventKind::Drop {
            collection: "staging".into(),
            renamed_to: Some("orders".into())
        }
    );
    let mut drop_db = event("dropDatabase", "", doc! {});
    drop_db.insert("ns", doc! { "db": "shop" });
    assert_eq!(decoded(&drop_db).kind, EventKind::DropDatabase);
    // An invalidate has no namespace and (before 6.0) no wall time.
    let invalidate = doc! {
        "_id": { "_data": "8267inv" },
        "operationType": "invalidate",
        "clusterTime": Timestamp { time: 1_796_083_201, increment: 1 },
    };
    let inv = decoded(&invalidate);
    assert_eq!(inv.kind, EventKind::Invalidate);
    assert_eq!(inv.commit_ts, 1_796_083_201_000_000);
    let other = decoded(&event("createIndexes", "orders", doc! {}));
    assert_eq!(other.kind, EventKind::Other("createIndexes".into()));
    // Broken events say what is missing.
    let errs = [
        (doc! { "operationType": "insert" }, "resume token"),
        (doc! { "_id": { "_data": "x" } }, "operationType"),
        (
            event("insert", "orders", doc! { "documentKey": { "_id": 1 } }),
            "without fullDocument",
        ),
        (event("delete", "orders", doc! {}), "without documentKey"),
    ];
    for (e, want) in errs {
        let err = decode::decode_event_bytes(&e.to_vec().unwrap()).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
    assert!(decode::decode_event_bytes(b"\x05\x00").is_err());
}

#[test]
fn a_resume_point_saves_orders_and_converts_for_the_driver() {
    let token = doc! { "_data": "826570A1B2000000012B022C0100296E5A1004" };
    let ts = Timestamp {
        time: 1_796_083_200,
        increment: 4,
    };
    let p = ResumePoint::start(ts, Some(&token));
    let text = serde_json::to_string(&p).unwrap();
    assert_eq!(
        text,
        r#"{"cluster_time":7714118604895027204,"seen":0,"token":"{\"_data\":\"826570A1B2000000012B022C0100296E5A1004\"}"}"#
    );
    assert_eq!(serde_json::from_str::<ResumePoint>(&text).unwrap(), p);
    assert_eq!(p.token_doc(), Some(token.clone()));
    assert_eq!(
        p.to_string(),
        "cluster time 1796083200.4, resume token {\"_data\":\"826570A1B2000000012B022C0100296E5A1004…"
    );
    // Ordered by cluster time, then the events seen at it.
    let later = ResumePoint {
        seen: 1,
        ..p.clone()
    };
    let next_tick = ResumePoint::start(
        Timestamp {
            time: 1_796_083_200,
            increment: 5,
        },
        None,
    );
    assert!(p < later && later < next_tick);
    let bus = |ts: u64, row| ResumePoint::bus_position(ts, row, false);
    assert_eq!(bus(p.cluster_time, 2).file, "6b0e0e00/00000004");
    assert!(bus(p.cluster_time, 9) < bus(next_tick.cluster_time, 0));
    let read = p.snapshot_read(3);
    assert_eq!(
        (read.pos, read.row, read.snapshot),
        (p.cluster_time, 3, true)
    );
    assert!(ResumePoint::from_legacy(&serde_json::json!({"file": "x", "pos": 1})).is_err());
    // The token goes to the driver and back unchanged.
    let driver = source::resume_token(&token).unwrap();
    assert_eq!(source::token_document(&driver), Some(token));
}

fn config() -> MongoSourceConfig {
    let text = "name = \"shop\"\nkind = \"mongodb\"\nurl = \"mongodb://127.0.0.1:1/\"\ndatabase = \"shop\"\ntables = [\"orders\", \"customers\"]\n[fields.orders]\ntotal = { type = \"double\" }\n";
    match toml::from_str::<SourceConfig>(text).unwrap() {
        SourceConfig::Mongodb(c) => c,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn events_become_bus_records_once() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn strata_bus::Log> =
        strata_bus::embedded::EmbeddedLog::open(dir.path(), Default::default())
            .await
            .unwrap();
    let src = MongoSource {
        config: config(),
        context: Context {
            log,
            state_path: dir.path().join("shop.json"),
        },
    };
    let tables = src.tables();
    assert_eq!(tables[0].schema.primary_key, ["_id"]);
    let names: Vec<&str> = tables[0]
        .schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["_id", "total", "doc"]);
    let index = std::collections::HashMap::from([("orders", 0), ("customers", 1)]);
    let at = |row| ResumePoint::bus_position(5 << 32, row, false);
    let mut skip = std::collections::HashMap::new();
    let insert = decoded(&event(
        "insert",
        "orders",
        doc! { "documentKey": { "_id": 1 }, "fullDocument": { "_id": 1, "total": 9.5 } },
    ));
    let (records, renamed) = src.records(&insert, at(0), &tables, &index, &mut skip);
    assert_eq!(renamed, None);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, "cdc.shop.orders");
    let CdcRecord::Change(c) = &records[0].1 else {
        panic!()
    };
    let after = c.after.as_ref().unwrap();
    assert_eq!(
        (c.op, &after["_id"], &after["total"]),
        (
            Op::Create,
            &Value::Str(r#"{"$numberInt":"1"}"#.into()),
            &Value::Float("9.5".into())
        )
    );
    // A delete is keyed by _id alone.
    let delete = decoded(&event(
        "delete",
        "orders",
        doc! { "documentKey": { "_id": 1 } },
    ));
    let (records, _) = src.records(&delete, at(1), &tables, &index, &mut skip);
    let CdcRecord::Change(c) = &records[0].1 else {
        panic!()
    };
    assert_eq!(c.op, Op::Delete);
    assert_eq!(c.before.as_ref().unwrap().len(), 1);
    // Other collections' events and updates of gone documents write nothing.
    let other = decoded(&event(
        "insert",
        "audit",
        doc! { "documentKey": { "_id": 1 }, "fullDocument": { "_id": 1 } },
    ));
    assert!(src
        .records(&other, at(2), &tables, &index, &mut skip)
        .0
        .is_empty());
    // A drop empties its table; a rename onto a mirrored collection asks for its snapshot;
    // a dropped database empties them all.
    let drop = decoded(&event("drop", "customers", doc! {}));
    let (records, _) = src.records(&drop, at(3), &tables, &index, &mut skip);
    assert!(
        matches!(&records[..], [(t, CdcRecord::Truncate(tr))] if t == "cdc.shop.customers" && tr.reason == "drop")
    );
    let rename = decoded(&event(
        "rename",
        "staging",
        doc! { "to": { "db": "shop", "coll": "orders" } },
    ));
    let (records, renamed) = src.records(&rename, at(4), &tables, &index, &mut skip);
    assert!(records.is_empty());
    assert_eq!(renamed.as_deref(), Some("orders"));
    let mut drop_db = event("dropDatabase", "", doc! {});
    drop_db.insert("ns", doc! { "db": "shop" });
    let (records, _) = src.records(&decoded(&drop_db), at(5), &tables, &index, &mut skip);
    assert_eq!(records.len(), 2);
    // After a restart, changes the topic already holds are not appended again.
    let mut skip: std::collections::HashMap<usize, SourcePosition> =
        std::collections::HashMap::from([(0, at(1))]);
    assert!(src
        .records(&insert, at(0), &tables, &index, &mut skip)
        .0
        .is_empty());
    assert!(src
        .records(&delete, at(1), &tables, &index, &mut skip)
        .0
        .is_empty());
    assert_eq!(
        src.records(&insert, at(2), &tables, &index, &mut skip)
            .0
            .len(),
        1
    );
    assert!(
        skip.is_empty(),
        "past the tail, nothing is skipped any more"
    );
}

#[test]
fn the_key_list_is_the_structs_fields() {
    let mut c = config();
    c.uri_env = Some("X".into());
    let value = serde_json::to_value(SourceConfig::Mongodb(c)).unwrap();
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    let mut want: Vec<String> = [
        &["kind"][..],
        crate::config::SourceCommon::KEYS,
        MongoSourceConfig::KEYS,
    ]
    .concat()
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(keys, want);
}
