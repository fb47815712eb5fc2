//! Property tests of binlog / binary-protocol value decoding (fixed seed and case count): any
//! value of any shape, for every column type the schema reader produces, decodes to a value or
//! an error — never a panic.

use mysql_async::Value as My;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use strata_core::cdc::{ColumnSchema, ColumnType};

use super::decode::{decode, Origin};
use super::schema::{parse_members, SourceColumn};
use crate::decode::normalize_decimal;

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x4d59_5351),
        ..Config::default()
    }
}

/// The columns `schema.rs` builds, one per type family (kind and bits as it classifies them).
fn columns() -> Vec<SourceColumn> {
    let col = |data_type: &str, column_type: &str, kind: ColumnType, bits: u32| SourceColumn {
        schema: ColumnSchema {
            name: "c".into(),
            source_type: column_type.into(),
            kind,
            nullable: true,
        },
        data_type: data_type.into(),
        unsigned: column_type.contains("unsigned"),
        bits,
        scale: match kind {
            ColumnType::Decimal { scale, .. } => scale.into(),
            _ => 0,
        },
        members: parse_members(column_type),
    };
    let members64: Vec<String> = (0..64).map(|i| format!("'m{i}'")).collect();
    let set64 = format!("set({})", members64.join(","));
    vec![
        col("tinyint", "tinyint(4)", ColumnType::Int, 8),
        col("tinyint", "tinyint(3) unsigned", ColumnType::Int, 8),
        col("mediumint", "mediumint(8) unsigned", ColumnType::Int, 24),
        col("int", "int(10) unsigned", ColumnType::Long, 32),
        col("bigint", "bigint(20)", ColumnType::Long, 64),
        col(
            "bigint",
            "bigint(20) unsigned",
            ColumnType::UnsignedLong,
            64,
        ),
        col("year", "year(4)", ColumnType::Int, 16),
        col("bit", "bit(1)", ColumnType::Long, 1),
        col("bit", "bit(64)", ColumnType::UnsignedLong, 64),
        col(
            "decimal",
            "decimal(10,2)",
            ColumnType::Decimal {
                precision: 10,
                scale: 2,
            },
            0,
        ),
        col("float", "float", ColumnType::Float, 0),
        col("double", "double", ColumnType::Double, 0),
        col("date", "date", ColumnType::Date, 0),
        col("time", "time(6)", ColumnType::Time, 0),
        col("datetime", "datetime(6)", ColumnType::DateTime, 0),
        col("timestamp", "timestamp(6)", ColumnType::Timestamp, 0),
        col("varchar", "varchar(20)", ColumnType::String, 0),
        col("enum", "enum('a','b''c')", ColumnType::String, 0),
        col("set", "set('x','y','z')", ColumnType::String, 0),
        col("set", &set64, ColumnType::String, 0),
        col("binary", "binary(16)", ColumnType::Binary, 0),
        col("json", "json", ColumnType::Json, 0),
    ]
}

/// Text that looks like what the binlog sends for numbers, times and decimals, mutated.
fn numeric_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "-?[0-9]{0,25}(\\.[0-9]{0,9})?".prop_map(String::into_bytes),
        "[0-9.+\\-eE é€😀]{0,30}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn value() -> impl Strategy<Value = My> {
    prop_oneof![
        Just(My::NULL),
        numeric_text().prop_map(My::Bytes),
        any::<i64>().prop_map(My::Int),
        any::<u64>().prop_map(My::UInt),
        any::<f32>().prop_map(My::Float),
        any::<f64>().prop_map(My::Double),
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>()
        )
            .prop_map(|(y, mo, d, h, mi, s, us)| My::Date(y, mo, d, h, mi, s, us)),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>()
        )
            .prop_map(|(neg, d, h, m, s, us)| My::Time(neg, d, h, m, s, us)),
    ]
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn any_value_of_any_column_decodes_or_errs(
        which in any::<prop::sample::Index>(),
        value in value(),
        binlog in any::<bool>(),
    ) {
        let columns = columns();
        let col = &columns[which.index(columns.len())];
        let origin = if binlog { Origin::Binlog } else { Origin::Query };
        let _ = decode(col, value, origin);
    }

    #[test]
    fn decimal_text_normalises_or_is_refused(text in "[-+]?[0-9]{0,30}(\\.[0-9]{0,12})?", scale in 0u32..20) {
        if let Some(n) = normalize_decimal(&text, scale) {
            // Normalising is idempotent and keeps exactly `scale` digits.
            let again = normalize_decimal(&n, scale);
            prop_assert_eq!(again.as_deref(), Some(n.as_str()));
            let frac = n.split_once('.').map_or(0, |(_, f)| f.len());
            prop_assert_eq!(frac, scale as usize);
        }
    }
}
