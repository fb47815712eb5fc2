//! `strata cdc verify`: compares a source table with its ODS table — row counts, a checksum
//! per row over every source column's canonical value, and the keys that differ.

use std::collections::{BTreeMap, HashMap};

use strata_core::cdc::{Row, TableSchema, Value};

/// How many differing keys a report lists (the counts are always complete).
pub const MAX_LISTED: usize = 20;

/// The result for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub table: String,
    pub source_rows: u64,
    pub ods_rows: u64,
    /// Keys in the source but not in the ODS.
    pub missing: Vec<String>,
    /// Keys in the ODS but not in the source.
    pub extra: Vec<String>,
    /// Keys whose values differ.
    pub different: Vec<String>,
    pub missing_count: u64,
    pub extra_count: u64,
    pub different_count: u64,
    /// Checksum over all source rows (order-independent), and over all ODS rows.
    pub source_checksum: u64,
    pub ods_checksum: u64,
}

impl Report {
    pub fn equal(&self) -> bool {
        self.source_rows == self.ods_rows
            && self.missing_count == 0
            && self.extra_count == 0
            && self.different_count == 0
    }
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Checksum of one row over `columns` (canonical values; a missing column counts as NULL).
pub fn row_checksum(columns: &[String], row: &Row) -> u64 {
    let mut h = FNV_OFFSET;
    for c in columns {
        let v = row
            .get(c)
            .map(Value::canonical)
            .unwrap_or_else(|| Value::Null.canonical());
        h = fnv1a(v.as_bytes(), h);
        h = fnv1a(&[0x1f], h);
    }
    h
}

fn key_text(schema: &TableSchema, row: &Row) -> String {
    schema
        .primary_key
        .iter()
        .map(|k| {
            let v = row.get(k).map(Value::canonical).unwrap_or_default();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Compares source rows with ODS rows. Tables with a primary key compare row by key; tables
/// without one compare the multisets of row checksums (the "key" listed is the checksum).
pub fn compare(schema: &TableSchema, source: &[Row], ods: &[Row]) -> Report {
    let columns: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    let keyed = !schema.primary_key.is_empty();
    let index = |rows: &[Row]| -> BTreeMap<String, (u64, u64)> {
        let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in rows {
            let sum = row_checksum(&columns, r);
            let k = if keyed {
                key_text(schema, r)
            } else {
                format!("row#{sum:016x}")
            };
            let e = m.entry(k).or_insert((sum, 0));
            e.1 += 1;
        }
        m
    };
    let source_rows = by_key(schema, source);
    let ods_rows = by_key(schema, ods);
    // `id=2 (vc: "a" ≠ "b")`: the key and the columns that differ.
    let describe = |k: &str| -> String {
        let (Some(a), Some(b)) = (source_rows.get(k), ods_rows.get(k)) else {
            return k.to_string();
        };
        let cols: Vec<String> = columns
            .iter()
            .filter_map(|c| {
                let x = a.get(c).map(Value::canonical).unwrap_or_default();
                let y = b.get(c).map(Value::canonical).unwrap_or_default();
                (x != y).then(|| format!("{c}: {x:?} ≠ {y:?}"))
            })
            .collect();
        format!("{k} ({})", cols.join(", "))
    };
    let s = index(source);
    let o = index(ods);
    let mut report = Report {
        table: schema.table.clone(),
        source_rows: source.len() as u64,
        ods_rows: ods.len() as u64,
        missing: Vec::new(),
        extra: Vec::new(),
        different: Vec::new(),
        missing_count: 0,
        extra_count: 0,
        different_count: 0,
        source_checksum: s
            .values()
            .fold(0u64, |a, (h, n)| a.wrapping_add(h.wrapping_mul(*n))),
        ods_checksum: o
            .values()
            .fold(0u64, |a, (h, n)| a.wrapping_add(h.wrapping_mul(*n))),
    };
    let push = |list: &mut Vec<String>, count: &mut u64, k: &str, n: u64| {
        *count += n;
        if list.len() < MAX_LISTED {
            list.push(k.to_string());
        }
    };
    for (k, (sum, n)) in &s {
        match o.get(k) {
            None => push(&mut report.missing, &mut report.missing_count, k, *n),
            Some((osum, on)) => {
                if osum != sum || (keyed && *on > 1) {
                    let d = if keyed { describe(k) } else { k.clone() };
                    push(&mut report.different, &mut report.different_count, &d, 1);
                } else if on < n {
                    push(&mut report.missing, &mut report.missing_count, k, n - on);
                } else if on > n {
                    push(&mut report.extra, &mut report.extra_count, k, on - n);
                }
            }
        }
    }
    for (k, (_, n)) in &o {
        if !s.contains_key(k) {
            push(&mut report.extra, &mut report.extra_count, k, *n);
        }
    }
    report
}

/// Rows per key for callers that want to show a differing row.
pub fn by_key<'a>(schema: &TableSchema, rows: &'a [Row]) -> HashMap<String, &'a Row> {
    rows.iter().map(|r| (key_text(schema, r), r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::cdc::{ColumnSchema, ColumnType};

    fn schema(pk: bool) -> TableSchema {
        TableSchema {
            source: "app".into(),
            database: "app".into(),
            table: "t".into(),
            columns: ["id", "v"]
                .iter()
                .map(|n| ColumnSchema {
                    name: n.to_string(),
                    source_type: "int".into(),
                    kind: ColumnType::Int,
                    nullable: false,
                })
                .collect(),
            primary_key: if pk { vec!["id".into()] } else { vec![] },
        }
    }

    fn row(id: i64, v: i64) -> Row {
        [
            ("id".to_string(), Value::Int(id)),
            ("v".to_string(), Value::Int(v)),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn finds_missing_extra_and_different_keys() {
        let r = compare(
            &schema(true),
            &[row(1, 1), row(2, 2), row(3, 3)],
            &[row(1, 1), row(2, 9), row(4, 4)],
        );
        assert!(!r.equal());
        assert_eq!(r.missing, vec!["id=3"]);
        assert_eq!(r.extra, vec!["id=4"]);
        assert_eq!(r.different, vec!["id=2 (v: \"2\" ≠ \"9\")"]);
        let r = compare(&schema(true), &[row(1, 1)], &[row(1, 1)]);
        assert!(r.equal());
        assert_eq!(r.source_checksum, r.ods_checksum);
    }

    #[test]
    fn keyless_tables_compare_as_multisets() {
        let r = compare(&schema(false), &[row(1, 1), row(1, 1)], &[row(1, 1)]);
        assert!(!r.equal());
        assert_eq!(r.missing_count, 1);
        assert!(compare(
            &schema(false),
            &[row(1, 1), row(2, 2)],
            &[row(2, 2), row(1, 1)]
        )
        .equal());
    }
}
