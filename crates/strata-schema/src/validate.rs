//! Validation of one instance against a compiled [`Schema`]. Each violation names the
//! instance's location as a JSON pointer (`/properties/post_id`) and what is wrong there
//! (`expected integer, got string`). The walk stops at the first violation unless more are
//! asked for.

use std::fmt;
use std::fmt::Write as _;

use crate::schema::{escape, kind_bit, Format, Node, Rules, Schema, Types};
use crate::value::Val;

/// How deep schemas and instances may nest (refs included) before validation gives up: a
/// guard against recursive `$ref`s over deep instances.
pub(crate) const MAX_DEPTH: usize = 128;

/// One violation: where (a JSON pointer into the validated document) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

impl Schema {
    /// The first violation of `value`, its pointers starting at `base` (e.g. `/properties`
    /// when the value is an event's `properties`).
    pub fn validate(&self, value: &Val<'_>, base: &str) -> Result<(), Violation> {
        let mut out = Vec::new();
        self.collect(value, base, 1, &mut out);
        match out.pop() {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }

    /// Up to `limit` violations (at least one is looked for).
    pub fn violations(&self, value: &Val<'_>, base: &str, limit: usize) -> Vec<Violation> {
        let mut out = Vec::new();
        self.collect(value, base, limit.max(1), &mut out);
        out
    }

    /// Whether `value` is valid (no messages built).
    pub fn is_valid(&self, value: &Val<'_>) -> bool {
        self.validate(value, "").is_ok()
    }

    /// Whether `value` satisfies `node` (of this schema) met at `depth`: the walker's verdict
    /// on one sub-value, for the fast path's cases it does not decide itself (`scan.rs`).
    pub(crate) fn node_is_valid(&self, node: &Node, value: &Val<'_>, depth: usize) -> bool {
        let mut out = Vec::new();
        let mut w = Walker {
            schema: self,
            path: String::new(),
            out: &mut out,
            limit: 1,
        };
        w.node(node, value, depth);
        out.is_empty()
    }

    fn collect(&self, value: &Val<'_>, base: &str, limit: usize, out: &mut Vec<Violation>) {
        let mut w = Walker {
            schema: self,
            path: base.to_string(),
            out,
            limit,
        };
        w.node(&self.root, value, 0);
    }
}

struct Walker<'s, 'o> {
    schema: &'s Schema,
    path: String,
    out: &'o mut Vec<Violation>,
    limit: usize,
}

impl Walker<'_, '_> {
    fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    fn fail(&mut self, message: String) {
        if !self.full() {
            self.out.push(Violation {
                path: self.path.clone(),
                message,
            });
        }
    }

    fn node(&mut self, node: &Node, v: &Val<'_>, depth: usize) {
        if self.full() {
            return;
        }
        if depth > MAX_DEPTH {
            self.fail("the document or the schema nests too deep to validate".to_string());
            return;
        }
        match node {
            Node::Bool(true) => {}
            Node::Bool(false) => self.fail("no value is allowed here".to_string()),
            Node::Rules(r) => self.rules(r, v, depth),
        }
    }

    /// Appends `/segment` (escaped) to the path; returns the length to truncate back to.
    fn push(&mut self, segment: &str) -> usize {
        let len = self.path.len();
        self.path.push('/');
        if segment.contains(['~', '/']) {
            self.path.push_str(&escape(segment));
        } else {
            self.path.push_str(segment);
        }
        len
    }

    fn child(&mut self, segment: &str, node: &Node, v: &Val<'_>, depth: usize) {
        let len = self.push(segment);
        self.node(node, v, depth + 1);
        self.path.truncate(len);
    }

    fn rules(&mut self, r: &Rules, v: &Val<'_>, depth: usize) {
        if let Some(i) = r.reference {
            let schema = self.schema;
            if let Some(target) = schema.def(i) {
                self.node(target, v, depth + 1);
            }
        }
        let kind = kind_bit(v);
        if let Some(types) = r.types {
            if !types.allows(kind) {
                self.fail(format!(
                    "expected {}, got {}",
                    types.describe(),
                    v.type_name()
                ));
                return;
            }
        }
        if let Some(c) = &r.constant {
            if !c.same(v) {
                self.fail(format!(
                    "expected the constant {}, got {}",
                    c.to_json_text(),
                    shown(v)
                ));
                return;
            }
        }
        if let Some(values) = &r.enumeration {
            if !values.iter().any(|e| e.same(v)) {
                let list: Vec<String> = values.iter().map(Val::to_json_text).collect();
                self.fail(format!("{} is not one of [{}]", shown(v), list.join(", ")));
                return;
            }
        }
        match v {
            Val::Num(n) => self.number(r, n.as_f64()),
            Val::Str(s) => self.string(r, s),
            Val::Arr(items) => {
                let len = items.len() as u64;
                if let Some(min) = r.min_items.filter(|m| len < *m) {
                    self.fail(format!(
                        "array of {len} items has fewer than minItems {min}"
                    ));
                }
                if let Some(max) = r.max_items.filter(|m| len > *m) {
                    self.fail(format!("array of {len} items has more than maxItems {max}"));
                }
                if let Some(item) = &r.items {
                    for (i, x) in items.iter().enumerate() {
                        if self.full() {
                            break;
                        }
                        let len = self.path.len();
                        let _ = write!(self.path, "/{i}");
                        self.node(item, x, depth + 1);
                        self.path.truncate(len);
                    }
                }
            }
            Val::Obj(pairs) => self.object(r, pairs, depth),
            Val::Null | Val::Bool(_) => {}
        }
    }

    fn number(&mut self, r: &Rules, n: f64) {
        if let Some(min) = r.minimum.filter(|m| n < *m) {
            self.fail(format!("{n} is less than the minimum {min}"));
        }
        if let Some(max) = r.maximum.filter(|m| n > *m) {
            self.fail(format!("{n} is greater than the maximum {max}"));
        }
        if let Some(min) = r.exclusive_minimum.filter(|m| n <= *m) {
            self.fail(format!(
                "{n} is not greater than the exclusive minimum {min}"
            ));
        }
        if let Some(max) = r.exclusive_maximum.filter(|m| n >= *m) {
            self.fail(format!("{n} is not less than the exclusive maximum {max}"));
        }
    }

    fn string(&mut self, r: &Rules, s: &str) {
        if r.min_length.is_some() || r.max_length.is_some() {
            let chars = s.chars().count() as u64;
            if let Some(min) = r.min_length.filter(|m| chars < *m) {
                self.fail(format!(
                    "string of {chars} characters is shorter than minLength {min}"
                ));
            }
            if let Some(max) = r.max_length.filter(|m| chars > *m) {
                self.fail(format!(
                    "string of {chars} characters is longer than maxLength {max}"
                ));
            }
        }
        if let Some(p) = &r.pattern {
            if !p.re.is_match(s) {
                self.fail(format!(
                    "{} does not match the pattern {:?}",
                    short(s),
                    p.source
                ));
            }
        }
        if let Some(f) = r.format {
            if !format_ok(f, s) {
                let what = match f {
                    Format::DateTime => "an RFC 3339 date-time",
                    Format::Date => "a date (YYYY-MM-DD)",
                };
                self.fail(format!("{} is not {what}", short(s)));
            }
        }
    }

    fn object(&mut self, r: &Rules, pairs: &[(std::borrow::Cow<'_, str>, Val<'_>)], depth: usize) {
        for name in &r.required {
            if !pairs.iter().any(|(k, _)| k == name) {
                let len = self.push(name);
                self.fail("required property is missing".to_string());
                self.path.truncate(len);
            }
        }
        for (key, value) in pairs {
            if self.full() {
                return;
            }
            match r.property(key) {
                Some(node) => self.child(key, node, value, depth),
                None => match &r.additional {
                    None | Some(Node::Bool(true)) => {}
                    Some(Node::Bool(false)) => {
                        let len = self.push(key);
                        self.fail(
                            "property is not allowed (additionalProperties is false)".to_string(),
                        );
                        self.path.truncate(len);
                    }
                    Some(node) => self.child(key, node, value, depth),
                },
            }
        }
    }
}

/// Whether `s` has `format`.
pub fn format_ok(f: Format, s: &str) -> bool {
    match f {
        Format::DateTime => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        Format::Date => s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
    }
}

/// A value for a message: strings quoted and cut, containers by their type.
fn shown(v: &Val<'_>) -> String {
    match v {
        Val::Str(s) => short(s),
        Val::Arr(_) => "an array".to_string(),
        Val::Obj(_) => "an object".to_string(),
        other => other.to_json_text(),
    }
}

fn short(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

/// For messages: the type set of a node (`any` when unconstrained).
pub fn describe_types(types: Option<Types>) -> String {
    types.map_or_else(|| "any".to_string(), Types::describe)
}
