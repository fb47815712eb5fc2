//! The fast path of validation: the instance's text checked while it is parsed, with no tree
//! built and no JSON pointer kept. It answers only "valid" or "not valid"; the collector asks it
//! first and runs the tree walker of `validate.rs` only when it says no (a rare event), so the
//! messages and pointers stay the walker's.
//!
//! A serde [`DeserializeSeed`] carries the compiled node to apply to the value being parsed:
//! scalars are checked as they are read, an object's keys pick the child node (or skip the
//! value, parsed all the same) and mark the `required` names they satisfy, an array's elements
//! get `items`. The semantics are the walker's, check for check, including its depth guard
//! (`MAX_DEPTH`, counted the same way: one per property, element or `$ref`). Two cases the
//! stream cannot decide on its own fall back to the walker for that sub-value only (parsed
//! into a [`Val`], as the tree path would): `enum` / `const` met by an object or an array
//! (equality needs the whole value), and a `$ref` with sibling keywords (two nodes apply to
//! one value). A `$ref` alone is followed.
//!
//! The first failed check stops the parse (a serde error); text that is not JSON is "not
//! valid" too, and the walker then reports it as it always has. Values no keyword looks at are
//! still parsed as `Val::parse` would ([`Skip`]), not passed over with serde's `IgnoredAny`:
//! serde_json's skipping accepts numbers out of range (`1e400`) and lone surrogate escapes
//! (`"\ud800"`) that the parse refuses, and the two paths must accept the same texts.
//! `tests/scan.rs` runs both paths on many instances and asserts they agree; a keyword added to
//! the walker must be added here too (`ref_only` names every field of [`Rules`], so a new one
//! does not compile until it is looked at).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;

use crate::schema::{Node, Rules, Schema, Types};
use crate::validate::{format_ok, MAX_DEPTH};
use crate::value::{Num, Val, ValVisitor};

impl Schema {
    /// Whether `text` is one JSON document this schema accepts, decided while parsing it.
    /// Agrees with [`Schema::is_valid`] on the parsed document; `false` when `text` is not JSON.
    pub fn accepts(&self, text: &str) -> bool {
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = Scan {
            schema: self,
            node: &self.root,
            depth: 0,
        };
        seed.deserialize(&mut de).is_ok() && de.end().is_ok()
    }
}

/// The error that stops the parse at the first failed check (its text is never shown: the
/// walker reports the violation).
fn invalid<E: serde::de::Error>() -> E {
    E::custom("invalid")
}

fn check<E: serde::de::Error>(ok: bool) -> Result<(), E> {
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// The node to apply to the next value, at the walker's depth for it.
#[derive(Clone, Copy)]
struct Scan<'s> {
    schema: &'s Schema,
    node: &'s Node,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let mut node = self.node;
        let mut depth = self.depth;
        loop {
            // The walker checks the depth before anything else, `true` included.
            if depth > MAX_DEPTH {
                return Err(invalid());
            }
            let r = match node {
                Node::Bool(true) => return Skip.deserialize(d),
                Node::Bool(false) => return Err(invalid()),
                Node::Rules(r) => r,
            };
            let Some(target) = r.reference else {
                return d.deserialize_any(RulesVisitor {
                    scan: Scan {
                        schema: self.schema,
                        node,
                        depth,
                    },
                    r,
                });
            };
            if !ref_only(r) {
                // The def and the siblings both apply to this value: the walker decides.
                let v = Val::deserialize(d)?;
                return check(self.schema.node_is_valid(node, &v, depth));
            }
            match self.schema.def(target) {
                Some(next) => {
                    node = next;
                    depth += 1;
                }
                // Compilation resolves every ref; the walker ignores one that is not.
                None => return Skip.deserialize(d),
            }
        }
    }
}

/// Whether `r` does nothing but send its value to its `$ref` (the walker's own pass over `r`
/// then checks nothing and visits no child).
fn ref_only(r: &Rules) -> bool {
    let Rules {
        types,
        enumeration,
        constant,
        minimum,
        maximum,
        exclusive_minimum,
        exclusive_maximum,
        min_length,
        max_length,
        pattern,
        format,
        properties,
        required,
        additional,
        items,
        min_items,
        max_items,
        reference: _,
    } = r;
    types.is_none()
        && enumeration.is_none()
        && constant.is_none()
        && minimum.is_none()
        && maximum.is_none()
        && exclusive_minimum.is_none()
        && exclusive_maximum.is_none()
        && min_length.is_none()
        && max_length.is_none()
        && pattern.is_none()
        && format.is_none()
        && properties.is_empty()
        && required.is_empty()
        && matches!(additional, None | Some(Node::Bool(true)))
        && items.is_none()
        && min_items.is_none()
        && max_items.is_none()
}

/// Applies one schema object without a `$ref` to the value serde finds.
struct RulesVisitor<'s> {
    scan: Scan<'s>,
    r: &'s Rules,
}

impl<'s> RulesVisitor<'s> {
    /// `type`, `const`, `enum` and the number and string keywords, for a scalar.
    fn scalar(&self, v: &Val<'_>, kind: u8) -> bool {
        let r = self.r;
        if r.types.is_some_and(|t| !t.allows(kind)) {
            return false;
        }
        if r.constant.as_ref().is_some_and(|c| !c.same(v)) {
            return false;
        }
        if let Some(values) = &r.enumeration {
            if !values.iter().any(|e| e.same(v)) {
                return false;
            }
        }
        match v {
            Val::Num(n) => number_ok(r, n.as_f64()),
            Val::Str(s) => string_ok(r, s),
            _ => true,
        }
    }

    fn num<E: serde::de::Error>(self, n: Num) -> Result<(), E> {
        let kind = if n.is_integer() {
            Types::INTEGER
        } else {
            Types::NUMBER
        };
        check(self.scalar(&Val::Num(n), kind))
    }

    /// `type` for a container; whether `enum` / `const` need the whole value.
    fn container(&self, kind: u8) -> Result<bool, ()> {
        if self.r.types.is_some_and(|t| !t.allows(kind)) {
            return Err(());
        }
        Ok(self.r.constant.is_some() || self.r.enumeration.is_some())
    }

    /// The walker's verdict on a container parsed whole.
    fn whole<E: serde::de::Error>(&self, v: &Val<'_>) -> Result<(), E> {
        check(
            self.scan
                .schema
                .node_is_valid(self.scan.node, v, self.scan.depth),
        )
    }

    fn child(&self, node: &'s Node) -> Scan<'s> {
        Scan {
            schema: self.scan.schema,
            node,
            depth: self.scan.depth + 1,
        }
    }
}

fn number_ok(r: &Rules, n: f64) -> bool {
    !(r.minimum.is_some_and(|m| n < m)
        || r.maximum.is_some_and(|m| n > m)
        || r.exclusive_minimum.is_some_and(|m| n <= m)
        || r.exclusive_maximum.is_some_and(|m| n >= m))
}

fn string_ok(r: &Rules, s: &str) -> bool {
    if r.min_length.is_some() || r.max_length.is_some() {
        // A string has at most as many characters as bytes: most need no count.
        let bytes = s.len() as u64;
        let short_enough = r.max_length.is_none_or(|m| bytes <= m);
        let chars = if short_enough && r.min_length.is_none() {
            0
        } else {
            s.chars().count() as u64
        };
        if r.min_length.is_some_and(|m| chars < m) {
            return false;
        }
        if !short_enough && r.max_length.is_some_and(|m| chars > m) {
            return false;
        }
    }
    if r.pattern.as_ref().is_some_and(|p| !p.re.is_match(s)) {
        return false;
    }
    r.format.is_none_or(|f| format_ok(f, s))
}

impl<'de> Visitor<'de> for RulesVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        check(self.scalar(&Val::Null, Types::NULL))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        check(self.scalar(&Val::Bool(v), Types::BOOLEAN))
    }

    // Numbers as `Val` reads them (value.rs), so `integer` and equality agree.
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.num(Num::I(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.num(match i64::try_from(v) {
            Ok(i) => Num::I(i),
            Err(_) => Num::U(v),
        })
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.num(Num::F(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        check(self.scalar(&Val::Str(Cow::Borrowed(v)), Types::STRING))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.container(Types::ARRAY) {
            Err(()) => return Err(invalid()),
            Ok(true) => {
                let v = ValVisitor::new().visit_seq(seq)?;
                return self.whole(&v);
            }
            Ok(false) => {}
        }
        let mut len = 0u64;
        match &self.r.items {
            Some(item) => {
                let seed = self.child(item);
                while seq.next_element_seed(seed)?.is_some() {
                    len += 1;
                }
            }
            None => {
                while seq.next_element_seed(Skip)?.is_some() {
                    len += 1;
                }
            }
        }
        check(
            !(self.r.min_items.is_some_and(|m| len < m)
                || self.r.max_items.is_some_and(|m| len > m)),
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.container(Types::OBJECT) {
            Err(()) => return Err(invalid()),
            Ok(true) => {
                let v = ValVisitor::new().visit_map(map)?;
                return self.whole(&v);
            }
            Ok(false) => {}
        }
        let mut seen = Seen::new(self.r.required.len());
        while let Some(key) = map.next_key_seed(KeySeed(self.r))? {
            if let Some(i) = key.required {
                seen.mark(i);
            }
            match key.node {
                Some(node) => map.next_value_seed(self.child(node))?,
                None => map.next_value_seed(Skip)?,
            }
        }
        check(seen.all())
    }
}

/// What an object's key means under its rules: the `required` name it satisfies, the node its
/// value gets (`None`: not checked).
struct KeyFound<'s> {
    required: Option<usize>,
    node: Option<&'s Node>,
}

struct KeySeed<'s>(&'s Rules);

impl<'de, 's> DeserializeSeed<'de> for KeySeed<'s> {
    type Value = KeyFound<'s>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyFound<'s>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 's> Visitor<'de> for KeySeed<'s> {
    type Value = KeyFound<'s>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<KeyFound<'s>, E> {
        let r = self.0;
        let required = r
            .required
            .binary_search_by(|name| name.as_str().cmp(key))
            .ok();
        let node = match r.property(key) {
            Some(node) => Some(node),
            None => match &r.additional {
                None | Some(Node::Bool(true)) => None,
                Some(Node::Bool(false)) => return Err(invalid()),
                Some(node) => Some(node),
            },
        };
        Ok(KeyFound { required, node })
    }
}

/// The `required` names an object has shown (a bit each; a list past 64 names).
struct Seen {
    count: usize,
    bits: u64,
    more: Vec<bool>,
}

impl Seen {
    fn new(count: usize) -> Seen {
        Seen {
            count,
            bits: 0,
            more: if count > 64 {
                vec![false; count]
            } else {
                Vec::new()
            },
        }
    }

    fn mark(&mut self, i: usize) {
        if self.count > 64 {
            if let Some(b) = self.more.get_mut(i) {
                *b = true;
            }
        } else {
            self.bits |= 1 << i;
        }
    }

    fn all(&self) -> bool {
        if self.count > 64 {
            self.more.iter().all(|b| *b)
        } else {
            self.bits.count_ones() as usize == self.count
        }
    }
}

/// A value no keyword constrains: parsed exactly as [`Val`] parses it (strings unescaped and
/// checked, numbers converted), nothing kept.
#[derive(Clone, Copy)]
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(SkipKey)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// An object key no keyword looks at, read as [`Val`] reads keys.
struct SkipKey;

impl<'de> DeserializeSeed<'de> for SkipKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(Skip)
    }
}
