//! Property tests of pgoutput parsing and text-output decoding (fixed seed and case count):
//! arbitrary, cut and mutated messages parse or fail, never panic; messages as PostgreSQL
//! writes them round-trip; any text in a column of any type decodes or fails.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use strata_core::cdc::{ColumnSchema, TableSchema};

use super::decode::{array_to_json, decode, image};
use super::pgoutput::{
    parse, Datum, Message, OldTuple, Relation, RelationColumn, PG_EPOCH_OFFSET_MICROS,
};
use super::schema::{classify, ElemKind, SourceColumn, SourceTable};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5047_4f55),
        ..Config::default()
    }
}

/// pgoutput's wire form of `msg` (protocol version 1), as the server writes it.
fn encode(msg: &Message) -> Vec<u8> {
    fn string(b: &mut Vec<u8>, s: &str) {
        b.extend(s.as_bytes());
        b.push(0);
    }
    fn tuple(b: &mut Vec<u8>, t: &[Datum]) {
        b.extend((t.len() as i16).to_be_bytes());
        for d in t {
            match d {
                Datum::Null => b.push(b'n'),
                Datum::UnchangedToast => b.push(b'u'),
                Datum::Text(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
    }
    let ts = |t: i64| (t - PG_EPOCH_OFFSET_MICROS).to_be_bytes();
    let mut b = Vec::new();
    match msg {
        Message::Begin {
            final_lsn,
            commit_ts,
            xid,
        } => {
            b.push(b'B');
            b.extend(final_lsn.to_be_bytes());
            b.extend(ts(*commit_ts));
            b.extend(xid.to_be_bytes());
        }
        Message::Commit {
            commit_lsn,
            end_lsn,
            commit_ts,
        } => {
            b.extend([b'C', 0]);
            b.extend(commit_lsn.to_be_bytes());
            b.extend(end_lsn.to_be_bytes());
            b.extend(ts(*commit_ts));
        }
        Message::Origin => b.push(b'O'),
        Message::Type => b.push(b'Y'),
        Message::Message => b.push(b'M'),
        Message::Relation(r) => {
            b.push(b'R');
            b.extend(r.id.to_be_bytes());
            string(&mut b, &r.namespace);
            string(&mut b, &r.name);
            b.push(r.replica_identity);
            b.extend((r.columns.len() as i16).to_be_bytes());
            for c in &r.columns {
                b.push(u8::from(c.key));
                string(&mut b, &c.name);
                b.extend(c.type_oid.to_be_bytes());
                b.extend(c.type_modifier.to_be_bytes());
            }
        }
        Message::Insert { relation, new } => {
            b.push(b'I');
            b.extend(relation.to_be_bytes());
            b.push(b'N');
            tuple(&mut b, new);
        }
        Message::Update { relation, old, new } => {
            b.push(b'U');
            b.extend(relation.to_be_bytes());
            match old {
                Some(OldTuple::Key(t)) => {
                    b.push(b'K');
                    tuple(&mut b, t);
                }
                Some(OldTuple::Full(t)) => {
                    b.push(b'O');
                    tuple(&mut b, t);
                }
                None => {}
            }
            b.push(b'N');
            tuple(&mut b, new);
        }
        Message::Delete { relation, old } => {
            b.push(b'D');
            b.extend(relation.to_be_bytes());
            let (tag, t) = match old {
                OldTuple::Key(t) => (b'K', t),
                OldTuple::Full(t) => (b'O', t),
            };
            b.push(tag);
            tuple(&mut b, t);
        }
        Message::Truncate {
            relations,
            cascade,
            restart_identity,
        } => {
            b.push(b'T');
            b.extend((relations.len() as i32).to_be_bytes());
            b.push(u8::from(*cascade) | (u8::from(*restart_identity) << 1));
            for r in relations {
                b.extend(r.to_be_bytes());
            }
        }
    }
    b
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

/// A name: any chars but NUL (pgoutput strings are NUL-terminated).
fn name() -> impl Strategy<Value = String> {
    text().prop_map(|s| s.replace('\0', ""))
}

fn datum() -> impl Strategy<Value = Datum> {
    prop_oneof![
        Just(Datum::Null),
        Just(Datum::UnchangedToast),
        text().prop_map(Datum::Text),
    ]
}

fn tuple() -> impl Strategy<Value = Vec<Datum>> {
    proptest::collection::vec(datum(), 0..6)
}

fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

/// A commit time that survives the epoch shift both ways.
fn commit_ts() -> impl Strategy<Value = i64> {
    i64::MIN + PG_EPOCH_OFFSET_MICROS..=i64::MAX
}

fn message() -> impl Strategy<Value = Message> {
    let column = (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(key, name, type_oid, type_modifier)| RelationColumn {
            key,
            name,
            type_oid,
            type_modifier,
        },
    );
    prop_oneof![
        (any::<u64>(), commit_ts(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
            Message::Begin {
                final_lsn,
                commit_ts,
                xid,
            }
        }),
        (any::<u64>(), any::<u64>(), commit_ts()).prop_map(|(commit_lsn, end_lsn, commit_ts)| {
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_ts,
            }
        }),
        Just(Message::Origin),
        Just(Message::Type),
        Just(Message::Message),
        (
            any::<u32>(),
            name(),
            name(),
            prop::sample::select(&b"dnfi"[..]),
            proptest::collection::vec(column, 0..5)
        )
            .prop_map(|(id, namespace, name, replica_identity, columns)| {
                Message::Relation(Relation {
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (any::<u32>(), tuple()).prop_map(|(relation, new)| Message::Insert { relation, new }),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple())
            .prop_map(|(relation, old, new)| Message::Update { relation, old, new }),
        (any::<u32>(), old_tuple()).prop_map(|(relation, old)| Message::Delete { relation, old }),
        (
            proptest::collection::vec(any::<u32>(), 0..6),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(relations, cascade, restart_identity)| Message::Truncate {
                relations,
                cascade,
                restart_identity,
            }),
    ]
}

/// Columns of every kind `classify` gives, as `schema.rs` builds them.
fn columns() -> Vec<SourceColumn> {
    [
        ("int4", -1, ""),
        ("int8", -1, ""),
        ("bool", -1, ""),
        ("numeric", (12 << 16 | 4) + 4, ""),
        ("numeric", -1, ""),
        ("float4", -1, ""),
        ("float8", -1, ""),
        ("bytea", -1, ""),
        ("date", -1, ""),
        ("time", -1, ""),
        ("timestamp", -1, ""),
        ("timestamptz", -1, ""),
        ("jsonb", -1, ""),
        ("_int4", -1, "int4"),
        ("_text", -1, "text"),
        ("_bool", -1, "bool"),
        ("_jsonb", -1, "jsonb"),
        ("text", -1, ""),
    ]
    .into_iter()
    .map(|(type_name, typmod, elem)| {
        let (kind, pg) = classify(type_name, typmod, elem);
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
    })
    .collect()
}

/// Text shaped like PostgreSQL's output for numbers, dates, times, arrays and bytea, mutated.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,20}(\\.[0-9]{0,8})?(e[+-]?[0-9]{1,3})?",
        "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}( BC)?",
        "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2} -?[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}(\\.[0-9]{0,8})?([+-][0-9]{1,20}(:[0-9]{1,20})?)?( BC)?",
        "-?[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}(\\.[0-9]{0,8})?",
        "\\\\x[0-9a-fA-Fé]{0,9}",
        "(\\[[0-9]:[0-9]\\]=)?[{}\",\\\\a-z0-9 NUL.é]{0,30}",
        "[tf]|true|false|NaN|-?Infinity|infinity",
        text(),
    ]
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_messages_never_panic(
        tag in prop::sample::select(&b"BCOYMRIUDTX"[..]),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(rest);
        let _ = parse(&bytes);
    }

    #[test]
    fn any_text_of_any_column_decodes_or_errs(
        which in any::<prop::sample::Index>(),
        text in value_text(),
    ) {
        let columns = columns();
        let col = &columns[which.index(columns.len())];
        let _ = decode(col, Some(&text));
    }

    #[test]
    fn array_literals_become_json_or_errors(
        text in value_text(),
        elem in prop::sample::select(vec![ElemKind::Number, ElemKind::Bool, ElemKind::Json, ElemKind::String]),
    ) {
        if let Ok(json) = array_to_json(&text, elem) {
            prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok(), "{json}");
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn messages_round_trip(msg in message()) {
        prop_assert_eq!(parse(&encode(&msg)).unwrap(), msg);
    }

    #[test]
    fn cut_and_mutated_messages_never_panic(
        msg in message(),
        cut in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = encode(&msg);
        let cut = cut.index(bytes.len() + 1);
        bytes.truncate(cut);
        if !bytes.is_empty() {
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
        }
        let _ = parse(&bytes);
    }

    #[test]
    fn any_tuple_decodes_to_a_row_or_an_error(
        texts in proptest::collection::vec((any::<prop::sample::Index>(), proptest::option::of(value_text())), 0..6),
    ) {
        let all = columns();
        let columns: Vec<SourceColumn> = texts.iter().map(|(i, _)| all[i.index(all.len())].clone()).collect();
        let tuple: Vec<Datum> = texts
            .into_iter()
            .map(|(_, t)| t.map_or(Datum::Null, Datum::Text))
            .collect();
        let table = SourceTable {
            entry: "t".into(),
            namespace: "public".into(),
            table: "t".into(),
            schema: TableSchema {
                source: "pg".into(),
                database: "db".into(),
                table: "t".into(),
                columns: columns.iter().map(|c| c.schema.clone()).collect(),
                primary_key: Vec::new(),
            },
            columns,
            replica_identity: b'd',
        };
        let _ = image(&table, &tuple, None, None);
    }
}

/// Inputs that crashed the decoders before (found by the properties above or by reading them):
/// each is now an error.
#[test]
fn former_crashes_are_errors() {
    // Overflow in the time of day (strata_core::cdc::parse_time) and in the zone offset.
    let col = |name: &str| columns().into_iter().find(|c| c.type_name == name).unwrap();
    assert!(decode(&col("time"), Some("2562000000:0:200000000")).is_err());
    assert!(decode(&col("timestamptz"), Some("0-0-0 -0:200000000000:0")).is_err());
    assert!(decode(
        &col("timestamptz"),
        Some("2024-01-01 00:00:00+9999999999999")
    )
    .is_err());
    // Nesting deep enough to overflow the stack.
    let deep = "{".repeat(100_000);
    assert!(array_to_json(&deep, ElemKind::Number)
        .unwrap_err()
        .contains("nested deeper"));
    // A truncate claiming 2^31 relations in a 6-byte message: an error, not an 8 GiB reservation.
    let mut t = vec![b'T'];
    t.extend(i32::MAX.to_be_bytes());
    t.push(0);
    assert!(parse(&t).is_err());
}
