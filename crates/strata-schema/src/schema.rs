//! The supported subset of JSON Schema, compiled once into a tree of [`Node`]s the validator
//! walks without looking anything up by keyword.
//!
//! Supported (draft 2020-12 meaning): `type` (a name or an array of names; `integer` is a
//! number with no fractional part), `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` (numbers), `minLength`, `maxLength` (in characters),
//! `pattern` (the `regex` crate's syntax, unanchored like ECMA-262's `test`), `format`
//! (`date-time` = RFC 3339, `date` = `YYYY-MM-DD`), `properties`, `required`,
//! `additionalProperties` (a boolean or a schema), `items` (one schema for every element),
//! `minItems`, `maxItems`, `$defs` / `definitions` with local `$ref`s (`#/$defs/<name>`), and
//! the boolean schemas `true` / `false`. Annotations are accepted and do nothing: `$schema`,
//! `$id`, `$comment`, `title`, `description`, `examples`, `default`, `deprecated`,
//! `readOnly`, `writeOnly`.
//!
//! Any other keyword (`anyOf`, `oneOf`, `allOf`, `not`, `if`, `patternProperties`,
//! `multipleOf`, …) refuses the whole schema with its location: a keyword that was silently
//! ignored would accept events the author meant to refuse.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use crate::value::Val;

/// Keywords that constrain instances.
pub const KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "$ref",
    "$defs",
    "definitions",
];

/// Keywords accepted and ignored (they describe, they do not constrain).
pub const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Values of `format` the validator checks.
pub const FORMATS: &[&str] = &["date-time", "date"];

/// A set of JSON Schema types (bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Types(pub u8);

impl Types {
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 2;
    pub const INTEGER: u8 = 4;
    pub const NUMBER: u8 = 8;
    pub const STRING: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
    pub const ALL: Types = Types(127);
    const NAMES: [(u8, &'static str); 7] = [
        (Types::NULL, "null"),
        (Types::BOOLEAN, "boolean"),
        (Types::INTEGER, "integer"),
        (Types::NUMBER, "number"),
        (Types::STRING, "string"),
        (Types::ARRAY, "array"),
        (Types::OBJECT, "object"),
    ];

    pub fn bit(name: &str) -> Option<u8> {
        Types::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(b, _)| *b)
    }

    /// Whether a value of kind `bit` is allowed (`number` admits integers).
    pub fn allows(self, bit: u8) -> bool {
        self.0 & bit != 0 || (bit == Types::INTEGER && self.0 & Types::NUMBER != 0)
    }

    /// Whether any kind of number is allowed.
    pub fn any_number(self) -> bool {
        self.0 & (Types::INTEGER | Types::NUMBER) != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        Types::NAMES
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// `integer`, `integer or null`, …
    pub fn describe(self) -> String {
        self.names().join(" or ")
    }
}

/// The kind bit of a value (`integer` for whole numbers).
pub fn kind_bit(v: &Val<'_>) -> u8 {
    match v {
        Val::Null => Types::NULL,
        Val::Bool(_) => Types::BOOLEAN,
        Val::Num(n) if n.is_integer() => Types::INTEGER,
        Val::Num(_) => Types::NUMBER,
        Val::Str(_) => Types::STRING,
        Val::Arr(_) => Types::ARRAY,
        Val::Obj(_) => Types::OBJECT,
    }
}

/// A checked `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DateTime,
    Date,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::DateTime => "date-time",
            Format::Date => "date",
        }
    }
}

/// A compiled `pattern`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub re: Regex,
}

/// One compiled (sub)schema.
#[derive(Debug, Clone)]
pub enum Node {
    /// `true` / `{}` (accepts everything) or `false` (accepts nothing).
    Bool(bool),
    Rules(Box<Rules>),
}

impl Node {
    pub fn accepts_all(&self) -> bool {
        match self {
            Node::Bool(b) => *b,
            Node::Rules(r) => r.is_empty(),
        }
    }
}

/// The constraints of one schema object; absent keywords are `None` / empty.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub types: Option<Types>,
    pub enumeration: Option<Vec<Val<'static>>>,
    pub constant: Option<Val<'static>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub format: Option<Format>,
    /// Sorted by name (binary search).
    pub properties: Vec<(String, Node)>,
    pub required: Vec<String>,
    pub additional: Option<Node>,
    pub items: Option<Node>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    /// Index into [`Schema::defs`].
    pub reference: Option<usize>,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.types.is_none()
            && self.enumeration.is_none()
            && self.constant.is_none()
            && self.minimum.is_none()
            && self.maximum.is_none()
            && self.exclusive_minimum.is_none()
            && self.exclusive_maximum.is_none()
            && self.min_length.is_none()
            && self.max_length.is_none()
            && self.pattern.is_none()
            && self.format.is_none()
            && self.properties.is_empty()
            && self.required.is_empty()
            && self.additional.as_ref().is_none_or(Node::accepts_all)
            && self.items.as_ref().is_none_or(Node::accepts_all)
            && self.min_items.is_none()
            && self.max_items.is_none()
            && self.reference.is_none()
    }

    pub fn property(&self, name: &str) -> Option<&Node> {
        self.properties
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.properties[i].1)
    }
}

/// A compiled schema: the root, its `$defs`, and its canonical text (keys sorted, no
/// whitespace: two registrations of the same schema compare equal).
#[derive(Debug, Clone)]
pub struct Schema {
    pub root: Node,
    pub defs: Vec<(String, Node)>,
    pub canonical: String,
}

impl Schema {
    /// Parses and compiles schema text; every problem is reported, one line each, with its
    /// location in the schema (`#/properties/x`).
    pub fn parse(text: &str) -> Result<Schema, Vec<String>> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| vec![format!("the schema is not valid JSON: {e}")])?;
        Schema::compile(&json)
    }

    /// Compiles a parsed schema.
    pub fn compile(json: &Value) -> Result<Schema, Vec<String>> {
        let mut c = Compiler::default();
        // $defs first, so that refs resolve to indexes (also from one def to another).
        if let Value::Object(map) = json {
            for key in ["$defs", "definitions"] {
                if let Some(defs) = map.get(key) {
                    match defs {
                        Value::Object(defs) => {
                            for name in defs.keys() {
                                let index = c.def_names.len();
                                c.def_names.insert(format!("#/{key}/{name}"), index);
                                c.def_order.push(name.clone());
                            }
                        }
                        _ => c.problem(&format!("#/{key}"), "must be an object of schemas"),
                    }
                }
            }
        }
        let mut defs = Vec::new();
        if let Value::Object(map) = json {
            for key in ["$defs", "definitions"] {
                if let Some(Value::Object(d)) = map.get(key) {
                    for (name, schema) in d {
                        let node = c.node(schema, &format!("#/{key}/{}", escape(name)));
                        defs.push((name.clone(), node));
                    }
                }
            }
        }
        let root = c.node(json, "#");
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        if let Some(problem) = ref_cycle(&root, &defs) {
            return Err(vec![problem]);
        }
        Ok(Schema {
            root,
            defs,
            canonical: canonical(json),
        })
    }

    /// The node a `$ref` index names.
    pub fn def(&self, index: usize) -> Option<&Node> {
        self.defs.get(index).map(|(_, n)| n)
    }
}

/// Canonical text of a JSON value: object keys sorted, no whitespace.
pub fn canonical(json: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k.as_str()]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(json).to_string()
}

/// `~` → `~0`, `/` → `~1` (a JSON pointer segment).
pub fn escape(segment: &str) -> String {
    if segment.contains(['~', '/']) {
        segment.replace('~', "~0").replace('/', "~1")
    } else {
        segment.to_string()
    }
}

/// A def that only refers (through `$ref`s alone) back to itself never reaches a constraint:
/// validation would loop. Refused at compile time.
fn ref_cycle(root: &Node, defs: &[(String, Node)]) -> Option<String> {
    let only_ref = |node: &Node| match node {
        Node::Rules(r) if r.reference.is_some() => {
            let mut without = (**r).clone();
            without.reference = None;
            without.is_empty().then_some(r.reference).flatten()
        }
        _ => None,
    };
    let mut starts: Vec<Option<usize>> = vec![only_ref(root)];
    starts.extend(defs.iter().map(|(_, n)| only_ref(n)));
    for start in starts.into_iter().flatten() {
        let mut seen = vec![start];
        let mut at = start;
        while let Some(next) = defs.get(at).and_then(|(_, n)| only_ref(n)) {
            if seen.contains(&next) {
                let name = defs.get(next).map_or("?", |(n, _)| n.as_str());
                return Some(format!(
                    "#/$defs/{name}: $ref cycle that never reaches a constraint"
                ));
            }
            seen.push(next);
            at = next;
        }
    }
    None
}

#[derive(Default)]
struct Compiler {
    problems: Vec<String>,
    def_names: HashMap<String, usize>,
    def_order: Vec<String>,
}

impl Compiler {
    fn problem(&mut self, at: &str, what: &str) {
        self.problems.push(format!("{at}: {what}"));
    }

    fn node(&mut self, json: &Value, at: &str) -> Node {
        let map = match json {
            Value::Bool(b) => return Node::Bool(*b),
            Value::Object(map) => map,
            _ => {
                self.problem(at, "a schema must be an object or a boolean");
                return Node::Bool(true);
            }
        };
        let mut r = Rules::default();
        for (key, value) in map {
            let here = format!("{at}/{}", escape(key));
            match key.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                // Compiled by `Schema::compile` (only at the root).
                "$defs" | "definitions" if at == "#" => {}
                "$defs" | "definitions" => {
                    self.problem(&here, "$defs are supported at the root of the schema only")
                }
                "type" => r.types = self.types(value, &here),
                "enum" => match value {
                    Value::Array(items) if !items.is_empty() => {
                        r.enumeration = Some(items.iter().map(Val::from_json).collect())
                    }
                    _ => self.problem(&here, "must be a non-empty array"),
                },
                "const" => r.constant = Some(Val::from_json(value)),
                "minimum" => r.minimum = self.number(value, &here),
                "maximum" => r.maximum = self.number(value, &here),
                "exclusiveMinimum" | "exclusiveMaximum" if value.is_boolean() => self.problem(
                    &here,
                    "must be a number (the draft-4 boolean form is not supported)",
                ),
                "exclusiveMinimum" => r.exclusive_minimum = self.number(value, &here),
                "exclusiveMaximum" => r.exclusive_maximum = self.number(value, &here),
                "minLength" => r.min_length = self.count(value, &here),
                "maxLength" => r.max_length = self.count(value, &here),
                "minItems" => r.min_items = self.count(value, &here),
                "maxItems" => r.max_items = self.count(value, &here),
                "pattern" => match value.as_str().map(Regex::new) {
                    Some(Ok(re)) => {
                        r.pattern = Some(Pattern {
                            source: value.as_str().unwrap_or_default().to_string(),
                            re,
                        })
                    }
                    Some(Err(e)) => self.problem(&here, &format!("not a valid pattern: {e}")),
                    None => self.problem(&here, "must be a string"),
                },
                "format" => match value.as_str() {
                    Some("date-time") => r.format = Some(Format::DateTime),
                    Some("date") => r.format = Some(Format::Date),
                    Some(other) => self.problem(
                        &here,
                        &format!(
                            "format {other:?} is not supported (supported: {})",
                            FORMATS.join(", ")
                        ),
                    ),
                    None => self.problem(&here, "must be a string"),
                },
                "properties" => match value {
                    Value::Object(props) => {
                        let mut list: Vec<(String, Node)> = props
                            .iter()
                            .map(|(name, s)| {
                                (name.clone(), self.node(s, &format!("{here}/{}", escape(name))))
                            })
                            .collect();
                        list.sort_by(|a, b| a.0.cmp(&b.0));
                        r.properties = list;
                    }
                    _ => self.problem(&here, "must be an object of schemas"),
                },
                "required" => match value {
                    Value::Array(names) if names.iter().all(Value::is_string) => {
                        let mut names: Vec<String> = names
                            .iter()
                            .filter_map(|n| n.as_str().map(str::to_string))
                            .collect();
                        names.sort();
                        names.dedup();
                        r.required = names;
                    }
                    _ => self.problem(&here, "must be an array of property names"),
                },
                "additionalProperties" => r.additional = Some(self.node(value, &here)),
                "items" => match value {
                    Value::Array(_) => self.problem(
                        &here,
                        "items as an array (tuple validation) is not supported: give one schema for every element",
                    ),
                    _ => r.items = Some(self.node(value, &here)),
                },
                "$ref" => match value.as_str() {
                    Some(target) => match self.def_names.get(target) {
                        Some(&i) => r.reference = Some(i),
                        None if target.starts_with("#/$defs/")
                            || target.starts_with("#/definitions/") =>
                        {
                            self.problem(&here, &format!("no definition {target:?} in this schema"))
                        }
                        None => self.problem(
                            &here,
                            &format!(
                                "$ref {target:?} is not supported: only local references to #/$defs/<name>"
                            ),
                        ),
                    },
                    None => self.problem(&here, "must be a string"),
                },
                other => self.problem(
                    &here,
                    &format!(
                        "unsupported keyword {other:?} (supported: {}; annotations: {})",
                        KEYWORDS.join(", "),
                        ANNOTATIONS.join(", ")
                    ),
                ),
            }
        }
        if let (Some(min), Some(max)) = (r.minimum, r.maximum) {
            if min > max {
                self.problem(at, "minimum is greater than maximum: no number can match");
            }
        }
        if let (Some(min), Some(max)) = (r.min_length, r.max_length) {
            if min > max {
                self.problem(at, "minLength is greater than maxLength");
            }
        }
        if let (Some(min), Some(max)) = (r.min_items, r.max_items) {
            if min > max {
                self.problem(at, "minItems is greater than maxItems");
            }
        }
        Node::Rules(Box::new(r))
    }

    fn types(&mut self, value: &Value, at: &str) -> Option<Types> {
        let names: Vec<&Value> = match value {
            Value::String(_) => vec![value],
            Value::Array(a) if !a.is_empty() => a.iter().collect(),
            _ => {
                self.problem(at, "must be a type name or a non-empty array of them");
                return None;
            }
        };
        let mut bits = 0u8;
        for n in names {
            match n.as_str().and_then(Types::bit) {
                Some(b) => bits |= b,
                None => self.problem(
                    at,
                    &format!(
                        "unknown type {n} (null, boolean, integer, number, string, array, object)"
                    ),
                ),
            }
        }
        Some(Types(bits))
    }

    fn number(&mut self, value: &Value, at: &str) -> Option<f64> {
        let n = value.as_f64();
        if n.is_none() {
            self.problem(at, "must be a number");
        }
        n
    }

    fn count(&mut self, value: &Value, at: &str) -> Option<u64> {
        let n = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        });
        if n.is_none() {
            self.problem(at, "must be a non-negative integer");
        }
        n
    }
}
