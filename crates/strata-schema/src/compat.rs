//! Compatibility between schema versions, decided on the compiled schemas.
//!
//! The one question asked is *coverage*: does every instance valid under schema A stay valid
//! under schema B? Each mode asks it one way or both:
//!
//! | mode | question |
//! |---|---|
//! | `BACKWARD` | the new version covers the previous one (consumers on the new schema read old events) |
//! | `FORWARD` | the previous version covers the new one (consumers on the old schema read new events) |
//! | `FULL` | both |
//! | `*_TRANSITIVE` | the same, against every earlier version, not only the latest |
//! | `NONE` | nothing is checked |
//!
//! The check is structural and conservative: it answers "covered" only when it can show it,
//! so it may refuse a change that is in fact harmless (a `pattern` changed to an equivalent
//! one, for instance: patterns are compared as text). The rules, for a value of a type A
//! allows:
//! - a type A allows must stay allowed (`number` narrowed to `integer` is not covered);
//! - A's `enum` / `const` values are each checked against B, exactly; B adding an `enum` or
//!   `const` where A had none is not covered;
//! - bounds (`minimum`, `maximum`, exclusive ones, `minLength`, `maxLength`, `minItems`,
//!   `maxItems`) may only widen in B; a `pattern` or `format` B adds or changes is not covered;
//! - a property B requires must be required by A;
//! - each property is compared under both schemas: where a schema does not name it, its
//!   `additionalProperties` (or "anything") stands in. So removing a property from a closed
//!   schema (`additionalProperties: false`) is not covered, and neither is constraining a
//!   property an open schema left free;
//! - `items` and `additionalProperties` are compared recursively; recursive `$ref`s are
//!   compared coinductively (a pair already being compared is assumed covered).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::schema::{escape, Node, Rules, Schema, Types};
use crate::value::Val;

/// A subject's compatibility mode (Confluent's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Compatibility {
    #[serde(rename = "NONE", alias = "none")]
    None,
    #[default]
    #[serde(rename = "BACKWARD", alias = "backward")]
    Backward,
    #[serde(rename = "BACKWARD_TRANSITIVE", alias = "backward_transitive")]
    BackwardTransitive,
    #[serde(rename = "FORWARD", alias = "forward")]
    Forward,
    #[serde(rename = "FORWARD_TRANSITIVE", alias = "forward_transitive")]
    ForwardTransitive,
    #[serde(rename = "FULL", alias = "full")]
    Full,
    #[serde(rename = "FULL_TRANSITIVE", alias = "full_transitive")]
    FullTransitive,
}

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether the check runs against every earlier version (else the latest only).
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Compatibility::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown compatibility {s:?} (NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, \
                     FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)"
                )
            })
    }
}

/// Why `new` is not compatible with the `previous` versions (oldest first) under `mode`;
/// empty when it is. Messages name the version and the schema location.
pub fn check(mode: Compatibility, new: &Schema, previous: &[(u32, &Schema)]) -> Vec<String> {
    let against: &[(u32, &Schema)] = if mode.transitive() {
        previous
    } else {
        previous.last().map_or(&[][..], std::slice::from_ref)
    };
    let mut problems = Vec::new();
    for (version, old) in against {
        if mode.backward() {
            for p in covers(new, old) {
                problems.push(format!(
                    "backward (new schema must read version {version}'s events): {p}"
                ));
            }
        }
        if mode.forward() {
            for p in covers(old, new) {
                problems.push(format!(
                    "forward (version {version} must read the new schema's events): {p}"
                ));
            }
        }
    }
    problems
}

/// Why some instance valid under `narrow` is invalid under `wide` (empty: `wide` covers
/// `narrow`).
pub fn covers(wide: &Schema, narrow: &Schema) -> Vec<String> {
    if wide.canonical == narrow.canonical {
        return Vec::new();
    }
    let mut c = Cover {
        a: narrow,
        b: wide,
        problems: Vec::new(),
        assumed: Vec::new(),
    };
    c.node(&narrow.root, &wide.root, "#");
    c.problems
}

struct Cover<'s> {
    /// The narrower schema (its instances must stay valid).
    a: &'s Schema,
    /// The wider schema.
    b: &'s Schema,
    problems: Vec<String>,
    /// Pairs of `$defs` being compared (recursion: assumed covered).
    assumed: Vec<(usize, usize)>,
}

/// A `$ref` with nothing beside it.
fn pure_ref(node: &Node) -> Option<usize> {
    match node {
        Node::Rules(r) => {
            let mut without = (**r).clone();
            without.reference = None;
            (r.reference.is_some() && Node::Rules(Box::new(without)).accepts_all())
                .then_some(r.reference)
                .flatten()
        }
        Node::Bool(_) => None,
    }
}

/// A node's rules without its `$ref`.
fn siblings(r: &Rules) -> Rules {
    let mut s = r.clone();
    s.reference = None;
    s
}

impl Cover<'_> {
    fn problem(&mut self, at: &str, what: String) {
        self.problems.push(format!("{at}: {what}"));
    }

    /// A sub-comparison's problems, without recording them.
    fn trial(&mut self, an: &Node, bn: &Node, at: &str) -> Vec<String> {
        let saved = std::mem::take(&mut self.problems);
        self.node(an, bn, at);
        std::mem::replace(&mut self.problems, saved)
    }

    fn node(&mut self, an: &Node, bn: &Node, at: &str) {
        if bn.accepts_all() {
            return;
        }
        // Recursive definitions: compare a pair of defs once.
        if let (Some(ia), Some(ib)) = (pure_ref(an), pure_ref(bn)) {
            if self.assumed.contains(&(ia, ib)) {
                return;
            }
            self.assumed.push((ia, ib));
            if let (Some(na), Some(nb)) = (self.a.def(ia), self.b.def(ib)) {
                self.node(na, nb, at);
            }
            self.assumed.pop();
            return;
        }
        match (an, bn) {
            (Node::Bool(false), _) | (_, Node::Bool(true)) => {}
            (_, Node::Bool(false)) => self.problem(at, "no value is allowed any more".to_string()),
            (Node::Bool(true), Node::Rules(rb)) => self.rules(&Rules::default(), an, rb, bn, at),
            (Node::Rules(ra), Node::Rules(rb)) => {
                // B with a $ref and siblings: A must be covered by both.
                if let Some(ib) = rb.reference {
                    if let Some(target) = self.b.def(ib) {
                        self.node(an, target, at);
                    }
                    let rest = Node::Rules(Box::new(siblings(rb)));
                    self.node(an, &rest, at);
                    return;
                }
                // A with a $ref (and maybe siblings): covered when either part is.
                if let Some(ia) = ra.reference {
                    let rest = Node::Rules(Box::new(siblings(ra)));
                    let by_rest = self.trial(&rest, bn, at);
                    if by_rest.is_empty() {
                        return;
                    }
                    if let Some(target) = self.a.def(ia) {
                        self.node(target, bn, at);
                    }
                    return;
                }
                self.rules(ra, an, rb, bn, at)
            }
        }
    }

    fn rules(&mut self, ra: &Rules, an: &Node, rb: &Rules, bn: &Node, at: &str) {
        // A finite set of values: check each exactly.
        if ra.constant.is_some() || ra.enumeration.is_some() {
            let values: Vec<&Val<'static>> = match (&ra.constant, &ra.enumeration) {
                (Some(c), _) => vec![c],
                (None, Some(e)) => e.iter().collect(),
                (None, None) => Vec::new(),
            };
            for v in values {
                if node_accepts(self.a, an, v) && !node_accepts(self.b, bn, v) {
                    self.problem(
                        at,
                        format!("value {} is no longer accepted", v.to_json_text()),
                    );
                }
            }
            return;
        }
        let ta = ra.types.unwrap_or(Types::ALL);
        let tb = rb.types.unwrap_or(Types::ALL);
        // One message for every type the new schema no longer allows.
        let lost: Vec<String> = [
            Types::NULL,
            Types::BOOLEAN,
            Types::INTEGER,
            Types::NUMBER,
            Types::STRING,
            Types::ARRAY,
            Types::OBJECT,
        ]
        .into_iter()
        .filter(|&bit| ta.0 & bit != 0 && !tb.allows(bit))
        .map(|bit| Types(bit).describe())
        .collect();
        if !lost.is_empty() {
            let (noun, verb) = if lost.len() == 1 {
                ("type", "is")
            } else {
                ("types", "are")
            };
            self.problem(
                at,
                format!(
                    "{noun} {} {verb} no longer allowed (was {}, now {})",
                    lost.join(", "),
                    describe(ra.types),
                    describe(rb.types)
                ),
            );
        }
        if rb.constant.is_some() {
            self.problem(
                at,
                "const added: other values that were valid are refused".into(),
            );
        }
        if rb.enumeration.is_some() {
            self.problem(
                at,
                "enum added: values outside it that were valid are refused".into(),
            );
        }
        if ta.any_number() {
            self.bounds(ra, rb, at);
        }
        if ta.0 & Types::STRING != 0 {
            if rb.min_length.unwrap_or(0) > ra.min_length.unwrap_or(0) {
                self.problem(
                    at,
                    format!(
                        "minLength raised from {} to {}",
                        ra.min_length.unwrap_or(0),
                        rb.min_length.unwrap_or(0)
                    ),
                );
            }
            if let Some(max) = rb.max_length {
                if ra.max_length.is_none_or(|a| a > max) {
                    self.problem(
                        at,
                        format!("maxLength lowered to {max} (was {})", show(ra.max_length)),
                    );
                }
            }
            if let Some(p) = &rb.pattern {
                if ra.pattern.as_ref().is_none_or(|a| a.source != p.source) {
                    self.problem(at, format!("pattern {:?} added or changed", p.source));
                }
            }
            if let Some(f) = rb.format {
                if ra.format != Some(f) {
                    self.problem(at, format!("format {:?} added or changed", f.name()));
                }
            }
        }
        if ta.0 & Types::ARRAY != 0 {
            if rb.min_items.unwrap_or(0) > ra.min_items.unwrap_or(0) {
                self.problem(
                    at,
                    format!("minItems raised to {}", rb.min_items.unwrap_or(0)),
                );
            }
            if let Some(max) = rb.max_items {
                if ra.max_items.is_none_or(|a| a > max) {
                    self.problem(at, format!("maxItems lowered to {max}"));
                }
            }
            let any = Node::Bool(true);
            let ai = ra.items.as_ref().unwrap_or(&any);
            let bi = rb.items.as_ref().unwrap_or(&any);
            self.node(ai, bi, &format!("{at}/items"));
        }
        if ta.0 & Types::OBJECT != 0 {
            self.object(ra, rb, at);
        }
    }

    fn bounds(&mut self, ra: &Rules, rb: &Rules, at: &str) {
        // (value, exclusive)
        let low = |r: &Rules| match (r.minimum, r.exclusive_minimum) {
            (Some(m), Some(x)) if x >= m => Some((x, true)),
            (Some(m), _) => Some((m, false)),
            (None, Some(x)) => Some((x, true)),
            (None, None) => None,
        };
        let high = |r: &Rules| match (r.maximum, r.exclusive_maximum) {
            (Some(m), Some(x)) if x <= m => Some((x, true)),
            (Some(m), _) => Some((m, false)),
            (None, Some(x)) => Some((x, true)),
            (None, None) => None,
        };
        if let Some((bv, bx)) = low(rb) {
            let ok = low(ra).is_some_and(|(av, ax)| av > bv || (av == bv && (!bx || ax)));
            if !ok {
                self.problem(at, format!("lower bound raised or added ({bv})"));
            }
        }
        if let Some((bv, bx)) = high(rb) {
            let ok = high(ra).is_some_and(|(av, ax)| av < bv || (av == bv && (!bx || ax)));
            if !ok {
                self.problem(at, format!("upper bound lowered or added ({bv})"));
            }
        }
    }

    fn object(&mut self, ra: &Rules, rb: &Rules, at: &str) {
        for name in &rb.required {
            if !ra.required.contains(name) {
                self.problem(
                    &format!("{at}/properties/{}", escape(name)),
                    "property became required".to_string(),
                );
            }
        }
        let any = Node::Bool(true);
        let a_add = ra.additional.as_ref().unwrap_or(&any);
        let b_add = rb.additional.as_ref().unwrap_or(&any);
        for (name, bn) in &rb.properties {
            let an = ra.property(name).unwrap_or(a_add);
            self.node(an, bn, &format!("{at}/properties/{}", escape(name)));
        }
        for (name, an) in &ra.properties {
            if rb.property(name).is_none() {
                let here = format!("{at}/properties/{}", escape(name));
                if matches!(b_add, Node::Bool(false)) && !matches!(an, Node::Bool(false)) {
                    self.problem(
                        &here,
                        "property removed from a closed schema (additionalProperties: false)"
                            .to_string(),
                    );
                } else {
                    self.node(an, b_add, &here);
                }
            }
        }
        if matches!(b_add, Node::Bool(false)) && !matches!(a_add, Node::Bool(false)) {
            self.problem(
                &format!("{at}/additionalProperties"),
                "the schema was closed: properties it does not name are refused".to_string(),
            );
        } else {
            self.node(a_add, b_add, &format!("{at}/additionalProperties"));
        }
    }
}

fn describe(t: Option<Types>) -> String {
    t.map_or_else(|| "any type".to_string(), Types::describe)
}

fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "none".to_string(), |n| n.to_string())
}

/// Whether `v` is valid under `node` of `schema`.
fn node_accepts(schema: &Schema, node: &Node, v: &Val<'_>) -> bool {
    let sub = Schema {
        root: node.clone(),
        defs: schema.defs.clone(),
        canonical: String::new(),
    };
    sub.is_valid(v)
}
