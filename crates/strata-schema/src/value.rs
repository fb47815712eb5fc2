//! The instance the validator walks: a JSON value parsed once from the event's text, borrowing
//! its strings (only strings with escapes are copied) and keeping objects as a list of pairs
//! (no map is built). An event's `properties` of a few hundred bytes costs one small
//! allocation per object or array, which keeps validation off the collector's critical cost.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON number as it was written: integers stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }

    /// JSON Schema's "integer": any number with a zero fractional part (`1.0` is one).
    pub fn is_integer(self) -> bool {
        match self {
            Num::I(_) | Num::U(_) => true,
            Num::F(f) => f.is_finite() && f.fract() == 0.0,
        }
    }

    /// Numeric equality across representations (`1 == 1.0`).
    pub fn same(self, other: Num) -> bool {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a == b,
            (Num::U(a), Num::U(b)) => a == b,
            (Num::I(a), Num::U(b)) | (Num::U(b), Num::I(a)) => u64::try_from(a) == Ok(b),
            (a, b) => a.as_f64() == b.as_f64(),
        }
    }
}

/// A parsed JSON value borrowing from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<Val<'a>>),
    Obj(Vec<(Cow<'a, str>, Val<'a>)>),
}

impl<'a> Val<'a> {
    /// Parses `text` (one JSON document).
    pub fn parse(text: &'a str) -> Result<Val<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON Schema type name of the value (`integer` for whole numbers).
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(n) if n.is_integer() => "integer",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Arr(_) => "array",
            Val::Obj(_) => "object",
        }
    }

    /// JSON equality as JSON Schema defines it for `enum` and `const`: numbers by value,
    /// objects regardless of key order.
    pub fn same(&self, other: &Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a.same(*b),
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Arr(a), Val::Arr(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Val::Obj(a), Val::Obj(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v.same(v2)))
            }
            _ => false,
        }
    }

    /// An owned copy (for values kept in a compiled schema: `enum`, `const`).
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(n),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Arr(a) => Val::Arr(a.into_iter().map(Val::into_owned).collect()),
            Val::Obj(o) => Val::Obj(
                o.into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// From a `serde_json::Value` (schemas are read as those).
    pub fn from_json(v: &serde_json::Value) -> Val<'static> {
        match v {
            serde_json::Value::Null => Val::Null,
            serde_json::Value::Bool(b) => Val::Bool(*b),
            serde_json::Value::Number(n) => Val::Num(if let Some(i) = n.as_i64() {
                Num::I(i)
            } else if let Some(u) = n.as_u64() {
                Num::U(u)
            } else {
                Num::F(n.as_f64().unwrap_or(f64::NAN))
            }),
            serde_json::Value::String(s) => Val::Str(Cow::Owned(s.clone())),
            serde_json::Value::Array(a) => Val::Arr(a.iter().map(Val::from_json).collect()),
            serde_json::Value::Object(o) => Val::Obj(
                o.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), Val::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Compact JSON text of the value (for messages).
    pub fn to_json_text(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Val::Null => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Num(Num::I(i)) => out.push_str(&i.to_string()),
            Val::Num(Num::U(u)) => out.push_str(&u.to_string()),
            Val::Num(Num::F(f)) => out.push_str(&f.to_string()),
            Val::Str(s) => out.push_str(&serde_json::Value::String(s.to_string()).to_string()),
            Val::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Val::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.to_string()).to_string());
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor(std::marker::PhantomData))
    }
}

/// Builds a [`Val`] from what serde finds (also used by `scan.rs` to take a sub-value whole).
pub(crate) struct ValVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl ValVisitor<'_> {
    pub(crate) fn new() -> Self {
        ValVisitor(std::marker::PhantomData)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ValVisitor<'a> {
    type Value = Val<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Val<'a>, E> {
        Ok(Val::Null)
    }

    fn visit_none<E>(self) -> Result<Val<'a>, E> {
        Ok(Val::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Val<'a>, E> {
        Ok(Val::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Val<'a>, E> {
        Ok(Val::Num(Num::I(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Val<'a>, E> {
        Ok(Val::Num(match i64::try_from(v) {
            Ok(i) => Num::I(i),
            Err(_) => Num::U(v),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Val<'a>, E> {
        Ok(Val::Num(Num::F(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Val<'a>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'a>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Val::Arr(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'a>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(key) = map.next_key::<Key<'a>>()? {
            let value: Val<'a> = map.next_value()?;
            out.push((key.0, value));
        }
        Ok(Val::Obj(out))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_borrowing_and_compares_by_value() {
        let text =
            r#"{"a":1,"b":"x","c":"e\"s","d":[1.0,null,true],"e":{"k":18446744073709551615}}"#;
        let v = Val::parse(text).unwrap();
        let Val::Obj(pairs) = &v else { panic!() };
        assert!(matches!(pairs[1].1, Val::Str(Cow::Borrowed("x"))));
        assert!(matches!(&pairs[2].1, Val::Str(Cow::Owned(s)) if s == "e\"s"));
        assert_eq!(pairs[3].1.type_name(), "array");
        let Val::Arr(items) = &pairs[3].1 else {
            panic!()
        };
        assert_eq!(items[0].type_name(), "integer");
        assert!(items[0].same(&Val::Num(Num::I(1))));
        assert!(matches!(&pairs[4].1, Val::Obj(o) if matches!(o[0].1, Val::Num(Num::U(_)))));
        let text = v.to_json_text();
        let back = Val::parse(&text).unwrap();
        assert!(back.same(&v));
        let reordered = Val::parse(r#"{"b":"x","a":1.0}"#).unwrap();
        assert!(reordered.same(&Val::parse(r#"{"a":1,"b":"x"}"#).unwrap()));
        assert!(!reordered.same(&Val::parse(r#"{"a":2,"b":"x"}"#).unwrap()));
        assert!(Val::parse("{").is_err());
    }
}
