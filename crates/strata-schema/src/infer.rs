//! Proposes a schema per subject from events already seen (`strata schemas infer`): for each
//! top-level key of the validated part (`properties` or `traits`), the JSON types it had,
//! `required` when it was present in at least 99 % of the events (all of them below 100
//! events), and up to three example values. Nested objects and arrays are typed, not
//! described further. The proposal is open (`additionalProperties` is not set): closing a
//! schema is a decision for its owner.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::schema::Types;
use crate::value::Val;

/// Share of events a key must be present in to be proposed as required.
pub const REQUIRED_SHARE: f64 = 0.99;
const EXAMPLES: usize = 3;

#[derive(Debug, Default, Clone)]
struct KeyStats {
    present: u64,
    types: u8,
    examples: Vec<Value>,
}

#[derive(Debug, Default, Clone)]
struct SubjectStats {
    events: u64,
    not_objects: u64,
    keys: BTreeMap<String, KeyStats>,
}

/// Accumulates events, subject by subject.
#[derive(Debug, Default)]
pub struct Inferrer {
    subjects: BTreeMap<String, SubjectStats>,
}

/// A proposal for one subject.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub subject: String,
    pub events: u64,
    pub schema: Value,
}

impl Inferrer {
    /// One event of `subject` whose validated part is `json` (None: absent).
    pub fn add(&mut self, subject: &str, json: Option<&str>) {
        let stats = self.subjects.entry(subject.to_string()).or_default();
        stats.events += 1;
        let Some(text) = json else {
            return;
        };
        let Ok(Val::Obj(pairs)) = Val::parse(text) else {
            stats.not_objects += 1;
            return;
        };
        for (k, v) in pairs {
            let key = stats.keys.entry(k.into_owned()).or_default();
            key.present += 1;
            key.types |= match &v {
                Val::Null => Types::NULL,
                Val::Bool(_) => Types::BOOLEAN,
                Val::Num(n) if n.is_integer() => Types::INTEGER,
                Val::Num(_) => Types::NUMBER,
                Val::Str(_) => Types::STRING,
                Val::Arr(_) => Types::ARRAY,
                Val::Obj(_) => Types::OBJECT,
            };
            let example = match &v {
                Val::Str(s) if s.chars().count() <= 64 => Some(Value::String(s.to_string())),
                Val::Num(_) | Val::Bool(_) => serde_json::from_str(&v.to_json_text()).ok(),
                _ => None,
            };
            if let Some(e) = example {
                if key.examples.len() < EXAMPLES && !key.examples.contains(&e) {
                    key.examples.push(e);
                }
            }
        }
    }

    /// One proposal per subject seen, by name.
    pub fn proposals(&self, description: &str) -> Vec<Proposal> {
        self.subjects
            .iter()
            .map(|(subject, s)| Proposal {
                subject: subject.clone(),
                events: s.events,
                schema: propose(s, description),
            })
            .collect()
    }
}

fn propose(s: &SubjectStats, description: &str) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (key, k) in &s.keys {
        let mut bits = k.types;
        // Integers and fractions seen: a number.
        if bits & Types::NUMBER != 0 {
            bits &= !Types::INTEGER;
        }
        let names = Types(bits).names();
        let ty = match names.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        let mut p = serde_json::Map::new();
        p.insert("type".into(), ty);
        if !k.examples.is_empty() {
            p.insert("examples".into(), Value::Array(k.examples.clone()));
        }
        properties.insert(key.clone(), Value::Object(p));
        let share = k.present as f64 / s.events.max(1) as f64;
        let needed = if s.events < 100 {
            k.present == s.events
        } else {
            share >= REQUIRED_SHARE
        };
        if needed {
            required.push(json!(key));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": format!("{description} ({} events)", s.events),
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn types_required_and_examples() {
        let mut inf = Inferrer::default();
        inf.add(
            "Post Clicked",
            Some(r#"{"post_id":1,"feed":"home","score":1}"#),
        );
        inf.add(
            "Post Clicked",
            Some(r#"{"post_id":2,"feed":"following","score":0.5}"#),
        );
        inf.add(
            "Post Clicked",
            Some(r#"{"post_id":3,"feed":"home","extra":null}"#),
        );
        inf.add("identify", None);
        let p = inf.proposals("inferred");
        assert_eq!(p.len(), 2);
        let s = &p[0].schema;
        assert_eq!(p[0].subject, "Post Clicked");
        assert_eq!(s["properties"]["post_id"]["type"], "integer");
        assert_eq!(s["properties"]["score"]["type"], "number");
        assert_eq!(s["properties"]["extra"]["type"], "null");
        assert_eq!(
            s["properties"]["feed"]["examples"],
            json!(["home", "following"])
        );
        assert_eq!(s["required"], json!(["feed", "post_id"]));
        // The proposal is a schema the registry takes.
        Schema::compile(s).unwrap();
        assert_eq!(p[1].schema["required"], json!([]));
    }
}
