//! What an index is built with: its parameters, the payload schema, and one item's payload.

use serde::{Deserialize, Serialize};

use crate::error::{AnnError, Result};

/// How two vectors are compared. Every metric ranks hits by a score where higher is better
/// (see [`crate::Hit::score`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Maximum inner product, what two-tower embeddings are trained for. Vectors are kept as
    /// given (not normalised); the graph is built on the MIPS-to-L2 reduction (ADR 0042), so
    /// a long vector does not swallow its neighbours' links.
    Dot,
    /// Cosine similarity: vectors and queries are normalised to unit length, then compared by
    /// dot product. A zero vector is refused.
    Cosine,
    /// Euclidean distance; the score is the negative squared distance.
    L2,
}

/// The kind of a declared payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A 64-bit integer: `eq`, `in` and `range` conditions.
    Int,
    /// A string (dictionary-encoded): `eq` and `in` conditions.
    Str,
}

/// One declared payload field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// The field's name, as filters and payloads spell it.
    pub name: String,
    /// Its kind.
    pub kind: FieldKind,
}

/// The payload fields an index stores and indexes besides `created_at`, declared up front.
/// Every declared field gets a payload index (value → ids), so a filter on it can be
/// estimated and, when selective, answered by an exact scan of the matching ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadSchema {
    /// The declared fields, at most 64.
    pub fields: Vec<FieldDef>,
}

impl PayloadSchema {
    /// The position of a field by name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// A payload value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PayloadValue {
    Int(i64),
    Str(String),
}

/// What an item carries besides its vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// When the item was created, in microseconds since the Unix epoch (Iceberg's timestamp
    /// unit). `Filter::created_after` compares with it.
    pub created_at: i64,
    /// Values of declared fields; a declared field left out is missing (no condition on it
    /// matches). An undeclared field or a value of the wrong kind is refused by `add`.
    pub fields: Vec<(String, PayloadValue)>,
}

impl Payload {
    /// A payload with only a creation time.
    pub fn at(created_at: i64) -> Self {
        Payload {
            created_at,
            fields: Vec::new(),
        }
    }

    /// Adds a field value (builder style).
    pub fn with(mut self, name: impl Into<String>, value: PayloadValue) -> Self {
        self.fields.push((name.into(), value));
        self
    }
}

/// How an index is built and searched. `IndexParams::new(dim, metric)` gives the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    /// Vector length (1..=4096).
    pub dim: usize,
    /// How vectors are compared.
    pub metric: Metric,
    /// Links per node on the upper layers; layer 0 keeps twice as many. 16 suits 64-dim
    /// embeddings; more raises recall and memory (4..=128).
    #[serde(default = "default_m")]
    pub m: usize,
    /// Candidate list size while inserting: higher builds slower and a better graph.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: usize,
    /// Candidate list size of a search when the caller gives none; a search uses at least `k`.
    #[serde(default = "default_ef_search")]
    pub ef_search: usize,
    /// Seed of the layer draw: with one build thread the same items give the same graph.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// A filtered search whose estimated matches are at most this many scans them exactly
    /// instead of walking the graph (Qdrant's "full scan threshold"): a selective filter
    /// then costs little and never loses recall. Above it, a filter is still answered exactly
    /// when scanning its matches costs less than the walk would (about `ef` / selectivity
    /// nodes). 0 turns the exact path off: every search walks the graph (for measurements).
    #[serde(default = "default_exact_threshold")]
    pub exact_threshold: usize,
    /// The declared payload fields.
    #[serde(default)]
    pub schema: PayloadSchema,
}

fn default_m() -> usize {
    16
}
fn default_ef_construction() -> usize {
    200
}
fn default_ef_search() -> usize {
    64
}
fn default_seed() -> u64 {
    42
}
fn default_exact_threshold() -> usize {
    20_000
}

impl IndexParams {
    /// Parameters with the defaults: m 16, ef_construction 200, ef_search 64, seed 42,
    /// exact_threshold 20,000, no payload fields.
    pub fn new(dim: usize, metric: Metric) -> Self {
        IndexParams {
            dim,
            metric,
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
            seed: default_seed(),
            exact_threshold: default_exact_threshold(),
            schema: PayloadSchema::default(),
        }
    }

    /// Checks the parameters without building anything; every problem is listed.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if !(1..=4096).contains(&self.dim) {
            problems.push(format!("dim {} is not in 1..=4096", self.dim));
        }
        if !(4..=128).contains(&self.m) {
            problems.push(format!("m {} is not in 4..=128", self.m));
        }
        if self.ef_construction < self.m {
            problems.push(format!(
                "ef_construction {} is smaller than m {}",
                self.ef_construction, self.m
            ));
        }
        if self.ef_search == 0 {
            problems.push("ef_search must be at least 1".to_string());
        }
        if self.schema.fields.len() > 64 {
            problems.push(format!(
                "{} payload fields declared, at most 64",
                self.schema.fields.len()
            ));
        }
        for (i, f) in self.schema.fields.iter().enumerate() {
            if f.name.is_empty() {
                problems.push("a payload field has an empty name".to_string());
            } else if f.name == "created_at" {
                problems.push("payload field created_at is built in; do not declare it".into());
            } else if self.schema.fields[..i].iter().any(|g| g.name == f.name) {
                problems.push(format!("payload field {} is declared twice", f.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AnnError::invalid(format!(
                "bad index parameters: {}",
                problems.join("; ")
            )))
        }
    }
}
