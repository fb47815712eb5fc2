//! The MERGE benchmark's data: a users table and a CDC change set, the same on every run.
//!
//! Row `i` of the target is user `i` (ids `0..rows`, appended in id order). Change `j` is an
//! update when `j % 10 < 7`, an insert when `j % 10` is 7 or 8 and a delete when it is 9 —
//! exactly 70/20/10 % for change counts that are multiples of 10. Updates and deletes hit
//! existing ids spread over the whole table (`j * stride mod rows`, a permutation), so they
//! touch every data file as real CDC does; inserts get new ids `rows + j`. Every value is a
//! pure function of the id and `j`, so [`Expected`] is computed without a database and each
//! engine's result is checked against it.

use std::ops::Range;
use std::sync::Arc;

use anyhow::{bail, Result};
use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// ISO country codes, chosen per user.
const COUNTRIES: [&str; 20] = [
    "US", "IN", "BR", "ID", "CN", "DE", "GB", "FR", "JP", "MX", "NG", "PH", "VN", "TR", "IT", "ES",
    "KR", "CA", "PL", "AR",
];
const FIRST_NAMES: [&str; 16] = [
    "Ada", "Bruno", "Chen", "Dmitri", "Elif", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya",
];
const LAST_NAMES: [&str; 16] = [
    "Almeida", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nguyen", "Okafor", "Petrov",
];
/// 2025-01-01T00:00:00Z in epoch microseconds: `updated_at` of the target spans the year after.
const TARGET_EPOCH_US: i64 = 1_735_689_600_000_000;
const YEAR_US: u64 = 365 * 86_400 * 1_000_000;
/// 2026-05-10T00:00:00Z: the day of the change set; change `j` is `j` ms later.
const CHANGE_EPOCH_US: i64 = 1_778_371_200_000_000;

/// How big the benchmark is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Rows in the target table before the MERGE.
    pub rows: u64,
    /// Rows in the change set.
    pub changes: u64,
}

impl Sizes {
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.changes == 0 {
            bail!("rows and changes must be positive");
        }
        if self.changes > self.rows {
            bail!(
                "changes ({}) must not exceed rows ({}): updates and deletes need distinct existing keys",
                self.changes,
                self.rows
            );
        }
        Ok(())
    }

    /// A step coprime with `rows` near the golden ratio of it, so `j * stride mod rows` visits
    /// distinct ids spread over the whole table.
    fn stride(&self) -> u64 {
        let mut s = ((self.rows as f64 * 0.618_033_988_75) as u64).max(1);
        while gcd(s, self.rows) != 1 {
            s += 1;
        }
        s
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What change `j` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Update,
    Insert,
    Delete,
}

impl Op {
    /// The `op` column's value, as in the DMS change records of the reference design.
    pub fn code(self) -> &'static str {
        match self {
            Op::Update => "U",
            Op::Insert => "I",
            Op::Delete => "D",
        }
    }
}

/// Change `j`: what it does and to which user id.
pub fn change(sizes: &Sizes, j: u64) -> (Op, u64) {
    let op = match j % 10 {
        0..=6 => Op::Update,
        7 | 8 => Op::Insert,
        _ => Op::Delete,
    };
    let id = match op {
        Op::Insert => sizes.rows + j,
        Op::Update | Op::Delete => {
            ((j as u128 * sizes.stride() as u128) % sizes.rows as u128) as u64
        }
    };
    (op, id)
}

/// splitmix64: a cheap, well-mixed hash of the id.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One user's column values.
struct User {
    name_first: &'static str,
    name_last: &'static str,
    score: i32,
    updated_at: i64,
    country: &'static str,
}

/// User `id` as the target table holds it.
fn original(id: u64) -> User {
    user(
        mix(id),
        TARGET_EPOCH_US + (mix(id ^ 0x5555) % YEAR_US) as i64,
    )
}

/// User `id` as change `j` writes it.
fn changed(id: u64, j: u64) -> User {
    user(
        mix(id ^ 0xC0FF_EE00_0000_0000),
        CHANGE_EPOCH_US + j as i64 * 1000,
    )
}

fn user(h: u64, updated_at: i64) -> User {
    User {
        name_first: FIRST_NAMES[(h & 15) as usize],
        name_last: LAST_NAMES[((h >> 4) & 15) as usize],
        score: ((h >> 8) % 1000) as i32,
        updated_at,
        country: COUNTRIES[((h >> 20) % COUNTRIES.len() as u64) as usize],
    }
}

fn fields() -> Vec<Field> {
    vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Int32, true),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("country", DataType::Utf8, true),
    ]
}

/// The target table's columns.
pub fn target_schema() -> SchemaRef {
    Arc::new(Schema::new(fields()))
}

/// The change set's columns: the target's plus `op` ('U', 'I' or 'D').
pub fn changes_schema() -> SchemaRef {
    let mut f = fields();
    f.push(Field::new("op", DataType::Utf8, false));
    Arc::new(Schema::new(f))
}

struct Columns {
    id: Int64Builder,
    name: StringBuilder,
    score: Int32Builder,
    updated_at: TimestampMicrosecondBuilder,
    country: StringBuilder,
}

impl Columns {
    fn with_capacity(n: usize) -> Columns {
        Columns {
            id: Int64Builder::with_capacity(n),
            name: StringBuilder::with_capacity(n, n * 14),
            score: Int32Builder::with_capacity(n),
            updated_at: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("+00:00"),
            country: StringBuilder::with_capacity(n, n * 2),
        }
    }

    fn push(&mut self, id: u64, u: &User, name: &mut String) {
        name.clear();
        name.push_str(u.name_first);
        name.push(' ');
        name.push_str(u.name_last);
        self.id.append_value(id as i64);
        self.name.append_value(name.as_str());
        self.score.append_value(u.score);
        self.updated_at.append_value(u.updated_at);
        self.country.append_value(u.country);
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.updated_at.finish()),
            Arc::new(self.country.finish()),
        ]
    }
}

/// Target rows for user ids `ids`.
pub fn target_batch(ids: Range<u64>) -> Result<RecordBatch> {
    let mut cols = Columns::with_capacity((ids.end - ids.start) as usize);
    let mut name = String::new();
    for id in ids {
        cols.push(id, &original(id), &mut name);
    }
    Ok(RecordBatch::try_new(target_schema(), cols.finish())?)
}

/// Changes `js` of the change set (with `op`).
pub fn changes_batch(sizes: &Sizes, js: Range<u64>) -> Result<RecordBatch> {
    let n = (js.end - js.start) as usize;
    let mut cols = Columns::with_capacity(n);
    let mut ops = StringBuilder::with_capacity(n, n);
    let mut name = String::new();
    for j in js {
        let (op, id) = change(sizes, j);
        let u = match op {
            // A delete record carries the row as it was (as DMS sends it).
            Op::Delete => original(id),
            Op::Update | Op::Insert => changed(id, j),
        };
        cols.push(id, &u, &mut name);
        ops.append_value(op.code());
    }
    let mut columns = cols.finish();
    columns.push(Arc::new(ops.finish()));
    Ok(RecordBatch::try_new(changes_schema(), columns)?)
}

/// The whole change set in batches of `batch_rows`.
pub fn changes_batches(sizes: &Sizes, batch_rows: u64) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sizes.changes {
        let end = (start + batch_rows).min(sizes.changes);
        out.push(changes_batch(sizes, start..end)?);
        start = end;
    }
    Ok(out)
}

/// What a correct MERGE leaves, computed from the generator alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub updates: u64,
    pub inserts: u64,
    pub deletes: u64,
    /// `count(*)` after the MERGE.
    pub rows_after: u64,
    /// `sum(score)` before and after the MERGE.
    pub score_sum_before: i64,
    pub score_sum_after: i64,
}

pub fn expected(sizes: &Sizes) -> Expected {
    let score_sum_before: i64 = (0..sizes.rows).map(|id| original(id).score as i64).sum();
    let mut e = Expected {
        updates: 0,
        inserts: 0,
        deletes: 0,
        rows_after: sizes.rows,
        score_sum_before,
        score_sum_after: score_sum_before,
    };
    for j in 0..sizes.changes {
        let (op, id) = change(sizes, j);
        match op {
            Op::Update => {
                e.updates += 1;
                e.score_sum_after += changed(id, j).score as i64 - original(id).score as i64;
            }
            Op::Insert => {
                e.inserts += 1;
                e.rows_after += 1;
                e.score_sum_after += changed(id, j).score as i64;
            }
            Op::Delete => {
                e.deletes += 1;
                e.rows_after -= 1;
                e.score_sum_after -= original(id).score as i64;
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use arrow::array::{Array, Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn change_mix_and_keys() {
        let sizes = Sizes {
            rows: 1000,
            changes: 100,
        };
        sizes.validate().unwrap();
        let e = expected(&sizes);
        assert_eq!((e.updates, e.inserts, e.deletes), (70, 20, 10));
        assert_eq!(e.rows_after, 1010);
        let mut existing = HashSet::new();
        for j in 0..sizes.changes {
            let (op, id) = change(&sizes, j);
            match op {
                Op::Insert => assert!(id >= sizes.rows),
                _ => assert!(id < sizes.rows && existing.insert(id), "id {id} reused"),
            }
        }
        // Spread over the table, not bunched at its start.
        assert!(existing.iter().any(|&id| id > 900) && existing.iter().any(|&id| id < 100));
    }

    #[test]
    fn batches_match_expected_sums() {
        let sizes = Sizes {
            rows: 5000,
            changes: 1000,
        };
        let target = target_batch(0..sizes.rows).unwrap();
        let scores = target
            .column(2)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let sum: i64 = scores.iter().map(|v| v.unwrap() as i64).sum();
        let e = expected(&sizes);
        assert_eq!(sum, e.score_sum_before);

        // Apply the changes by hand to the target and compare with the expected figures.
        let ids = target
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let mut rows: std::collections::HashMap<i64, i64> = ids
            .values()
            .iter()
            .zip(scores.values().iter())
            .map(|(&id, &s)| (id, s as i64))
            .collect();
        for batch in changes_batches(&sizes, 300).unwrap() {
            let id = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let score = batch
                .column(2)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap();
            let op = batch
                .column(5)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                match op.value(i) {
                    "D" => assert!(rows.remove(&id.value(i)).is_some()),
                    "U" => assert!(rows.insert(id.value(i), score.value(i) as i64).is_some()),
                    "I" => assert!(rows.insert(id.value(i), score.value(i) as i64).is_none()),
                    other => panic!("op {other}"),
                }
            }
            assert_eq!(batch.column(1).null_count(), 0);
        }
        assert_eq!(rows.len() as u64, e.rows_after);
        assert_eq!(rows.values().sum::<i64>(), e.score_sum_after);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(Sizes {
            rows: 10,
            changes: 11
        }
        .validate()
        .is_err());
    }
}
