//! Feature values and their encoding. A row is the values of a view's features in the order of
//! its schema, each tagged with its kind, so a row decodes without the schema and a schema
//! change never misreads an old row.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A feature's type, as a view's schema records it (and as `/get-online-features` reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    Bool,
    Int64,
    Float64,
    String,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// Days since the Unix epoch.
    Date,
    Int64List,
    Float64List,
    StringList,
    /// A numeric vector (an embedding), f32 elements.
    Vector,
}

impl FeatureType {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureType::Bool => "bool",
            FeatureType::Int64 => "int64",
            FeatureType::Float64 => "float64",
            FeatureType::String => "string",
            FeatureType::Timestamp => "timestamp",
            FeatureType::Date => "date",
            FeatureType::Int64List => "int64_list",
            FeatureType::Float64List => "float64_list",
            FeatureType::StringList => "string_list",
            FeatureType::Vector => "vector",
        }
    }
}

/// One feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int64(i64),
    Float64(f64),
    String(String),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// Days since the Unix epoch.
    Date(i32),
    Int64List(Vec<Option<i64>>),
    Float64List(Vec<Option<f64>>),
    StringList(Vec<Option<String>>),
    Vector(Vec<f32>),
}

impl Value {
    /// The value as JSON, the way Feast's HTTP feature server writes values: numbers, strings,
    /// booleans, arrays; timestamps as RFC 3339 text, dates as `YYYY-MM-DD`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int64(i) => J::from(*i),
            Value::Float64(f) => float_json(*f),
            Value::String(s) => J::String(s.clone()),
            Value::Timestamp(us) => match chrono::DateTime::from_timestamp_micros(*us) {
                Some(t) => J::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                None => J::Null,
            },
            Value::Date(days) => {
                match chrono::NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
                    Some(d) => J::String(d.to_string()),
                    None => J::Null,
                }
            }
            Value::Int64List(v) => J::Array(v.iter().map(|x| x.map_or(J::Null, J::from)).collect()),
            Value::Float64List(v) => {
                J::Array(v.iter().map(|x| x.map_or(J::Null, float_json)).collect())
            }
            Value::StringList(v) => J::Array(
                v.iter()
                    .map(|x| x.as_ref().map_or(J::Null, |s| J::String(s.clone())))
                    .collect(),
            ),
            Value::Vector(v) => J::Array(v.iter().map(|x| float_json(f64::from(*x))).collect()),
        }
    }
}

/// NaN and infinities have no JSON form: they read as null.
fn float_json(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

// Tags of the row encoding. Zero doubles and small integers are common in feature rows (a user
// with no orders has many zero columns), so they get short forms.
const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const FLOAT_ZERO: u8 = 5;
const STRING: u8 = 6;
const TIMESTAMP: u8 = 7;
const DATE: u8 = 8;
const INT_LIST: u8 = 9;
const FLOAT_LIST: u8 = 10;
const STRING_LIST: u8 = 11;
const VECTOR: u8 = 12;

/// Appends `values` to `out`, tagged.
pub fn encode_row(values: &[Value], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    for v in values {
        encode_value(v, out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Int64(i) => {
            out.push(INT);
            put_varint(out, zigzag(*i));
        }
        Value::Float64(f) if f.to_bits() == 0 => out.push(FLOAT_ZERO),
        Value::Float64(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            put_bytes(out, s.as_bytes());
        }
        Value::Timestamp(us) => {
            out.push(TIMESTAMP);
            put_varint(out, zigzag(*us));
        }
        Value::Date(d) => {
            out.push(DATE);
            put_varint(out, zigzag(i64::from(*d)));
        }
        Value::Int64List(v) => {
            out.push(INT_LIST);
            put_varint(out, v.len() as u64);
            for x in v {
                match x {
                    None => out.push(0),
                    Some(i) => {
                        out.push(1);
                        put_varint(out, zigzag(*i));
                    }
                }
            }
        }
        Value::Float64List(v) => {
            out.push(FLOAT_LIST);
            put_varint(out, v.len() as u64);
            for x in v {
                match x {
                    None => out.push(0),
                    Some(f) => {
                        out.push(1);
                        out.extend_from_slice(&f.to_le_bytes());
                    }
                }
            }
        }
        Value::StringList(v) => {
            out.push(STRING_LIST);
            put_varint(out, v.len() as u64);
            for x in v {
                match x {
                    None => out.push(0),
                    Some(s) => {
                        out.push(1);
                        put_bytes(out, s.as_bytes());
                    }
                }
            }
        }
        Value::Vector(v) => {
            out.push(VECTOR);
            put_varint(out, v.len() as u64);
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Decodes a row written by [`encode_row`].
pub fn decode_row(bytes: &[u8]) -> Result<Vec<Value>> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.varint()? as usize;
    // A count larger than the bytes left is damage, not a reason to allocate.
    let mut values = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        values.push(r.value()?);
    }
    Ok(values)
}

/// Decodes only some of a row's values: `out[i]` is the value at position `at[i]` (`Null` for
/// `None` or a position past the row's end). Values not asked for are skipped without being
/// built, so a lookup that needs 4 columns of 16 pays for 4.
pub fn decode_row_at(bytes: &[u8], at: &[Option<usize>], out: &mut Vec<Value>) -> Result<()> {
    out.clear();
    out.resize(at.len(), Value::Null);
    let Some(last) = at.iter().flatten().max().copied() else {
        return Ok(());
    };
    let mut r = Reader { bytes, at: 0 };
    let n = r.varint()? as usize;
    for i in 0..n.min(last + 1) {
        if at.contains(&Some(i)) {
            let v = r.value()?;
            for (slot, want) in out.iter_mut().zip(at) {
                if *want == Some(i) {
                    *slot = v.clone();
                }
            }
        } else {
            r.skip()?;
        }
    }
    Ok(())
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A cursor over encoded bytes; every read checks bounds.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| Error::Corrupt("a row ends early".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("a varint is longer than 10 bytes".into()))
    }

    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.varint()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Corrupt("a string is not UTF-8".into()))
    }

    fn count(&mut self) -> Result<usize> {
        let n = self.varint()? as usize;
        if n > self.bytes.len() - self.at {
            return Err(Error::Corrupt("a list is longer than its row".into()));
        }
        Ok(n)
    }

    /// Steps over one value without building it.
    fn skip(&mut self) -> Result<()> {
        match self.u8()? {
            NULL | FALSE | TRUE | FLOAT_ZERO => {}
            INT | TIMESTAMP | DATE => {
                self.varint()?;
            }
            FLOAT => {
                self.take(8)?;
            }
            STRING => {
                let n = self.varint()? as usize;
                self.take(n)?;
            }
            INT_LIST => {
                for _ in 0..self.count()? {
                    if self.u8()? != 0 {
                        self.varint()?;
                    }
                }
            }
            FLOAT_LIST => {
                for _ in 0..self.count()? {
                    if self.u8()? != 0 {
                        self.take(8)?;
                    }
                }
            }
            STRING_LIST => {
                for _ in 0..self.count()? {
                    if self.u8()? != 0 {
                        let n = self.varint()? as usize;
                        self.take(n)?;
                    }
                }
            }
            VECTOR => {
                let n = self.count()?;
                self.take(n.saturating_mul(4))?;
            }
            tag => return Err(Error::Corrupt(format!("unknown value tag {tag}"))),
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value> {
        Ok(match self.u8()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            INT => Value::Int64(unzigzag(self.varint()?)),
            FLOAT => Value::Float64(self.f64()?),
            FLOAT_ZERO => Value::Float64(0.0),
            STRING => Value::String(self.string()?),
            TIMESTAMP => Value::Timestamp(unzigzag(self.varint()?)),
            DATE => Value::Date(unzigzag(self.varint()?) as i32),
            INT_LIST => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match self.u8()? {
                        0 => None,
                        _ => Some(unzigzag(self.varint()?)),
                    });
                }
                Value::Int64List(v)
            }
            FLOAT_LIST => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match self.u8()? {
                        0 => None,
                        _ => Some(self.f64()?),
                    });
                }
                Value::Float64List(v)
            }
            STRING_LIST => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match self.u8()? {
                        0 => None,
                        _ => Some(self.string()?),
                    });
                }
                Value::StringList(v)
            }
            VECTOR => {
                let n = self.count()?;
                let b = self.take(n.saturating_mul(4))?;
                Value::Vector(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            tag => return Err(Error::Corrupt(format!("unknown value tag {tag}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projected_decode_reads_only_the_positions_asked_for() {
        let row = vec![
            Value::Int64(-7),
            Value::String("skip me".into()),
            Value::Float64List(vec![Some(1.5), None]),
            Value::Float64(0.0),
            Value::StringList(vec![Some("a".into()), None]),
            Value::Vector(vec![1.0, 2.0]),
            Value::Timestamp(99),
        ];
        let mut bytes = Vec::new();
        encode_row(&row, &mut bytes);
        let mut out = Vec::new();
        decode_row_at(
            &bytes,
            &[Some(6), None, Some(0), Some(3), Some(9), Some(6)],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                Value::Timestamp(99),
                Value::Null,
                Value::Int64(-7),
                Value::Float64(0.0),
                Value::Null,
                Value::Timestamp(99)
            ]
        );
        decode_row_at(&bytes, &[], &mut out).unwrap();
        assert!(out.is_empty());
        assert!(decode_row_at(&bytes[..bytes.len() - 1], &[Some(6)], &mut out).is_err());
    }
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int64),
            any::<f64>()
                .prop_filter("NaN != NaN", |f| !f.is_nan())
                .prop_map(Value::Float64),
            ".{0,20}".prop_map(Value::String),
            any::<i64>().prop_map(Value::Timestamp),
            any::<i32>().prop_map(Value::Date),
            proptest::collection::vec(proptest::option::of(any::<i64>()), 0..30)
                .prop_map(Value::Int64List),
            proptest::collection::vec(proptest::option::of(-1e9f64..1e9), 0..30)
                .prop_map(Value::Float64List),
            proptest::collection::vec(proptest::option::of(".{0,5}"), 0..10)
                .prop_map(Value::StringList),
            proptest::collection::vec(-1e3f32..1e3, 0..64).prop_map(Value::Vector),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn rows_round_trip(row in proptest::collection::vec(value(), 0..40)) {
            let mut bytes = Vec::new();
            encode_row(&row, &mut bytes);
            prop_assert_eq!(decode_row(&bytes).unwrap(), row);
        }

        #[test]
        fn damaged_rows_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_row(&bytes);
        }
    }

    #[test]
    fn zero_doubles_take_one_byte() {
        let mut bytes = Vec::new();
        encode_row(&[Value::Float64(0.0), Value::Int64(0)], &mut bytes);
        assert_eq!(bytes.len(), 1 + 1 + 2);
    }

    #[test]
    fn json_matches_feast() {
        assert_eq!(Value::Int64(3).to_json(), serde_json::json!(3));
        assert_eq!(Value::Float64(f64::NAN).to_json(), serde_json::Value::Null);
        assert_eq!(
            Value::Timestamp(1_700_000_000_000_000).to_json(),
            serde_json::json!("2023-11-14T22:13:20Z")
        );
        assert_eq!(Value::Date(0).to_json(), serde_json::json!("1970-01-01"));
        assert_eq!(
            Value::Int64List(vec![Some(1), None]).to_json(),
            serde_json::json!([1, null])
        );
    }
}
