//! What a search may return: the filter a caller gives (plain data, deserialisable from the
//! JSON of a kNN request).

use serde::{Deserialize, Serialize};

use crate::params::PayloadValue;

/// A search filter. Every part must hold for a hit (AND); the default filter lets everything
/// through. It is applied inside the search: filtered-out items still route the graph walk
/// but are never returned, and a selective filter is answered by an exact scan of the items
/// the payload index says match (see [`crate::SearchPath`]).
///
/// JSON: `{"exclude_ids": [1, 2], "created_after": 1700000000000000,
/// "must": [{"field": "lang", "eq": "en"}, {"field": "author", "in": [7, 9]},
/// {"field": "likes", "range": {"min": 10}}]}`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Ids never returned (seen posts, the user's own, blocked authors' posts). Ids not in the
    /// index are ignored.
    pub exclude_ids: Vec<u64>,
    /// Only items with `created_at` strictly greater than this (epoch microseconds).
    pub created_after: Option<i64>,
    /// Conditions on declared payload fields, all of which must hold.
    pub must: Vec<FieldCondition>,
}

impl Filter {
    /// Whether the filter lets every item through.
    pub fn is_empty(&self) -> bool {
        self.exclude_ids.is_empty() && self.created_after.is_none() && self.must.is_empty()
    }
}

/// A condition on one declared payload field. An item missing the field never matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldCondition {
    /// The declared field's name.
    pub field: String,
    /// What its value must be.
    #[serde(flatten)]
    pub matches: Match,
}

impl FieldCondition {
    pub fn eq(field: impl Into<String>, value: PayloadValue) -> Self {
        FieldCondition {
            field: field.into(),
            matches: Match::Eq(value),
        }
    }

    pub fn one_of(field: impl Into<String>, values: Vec<PayloadValue>) -> Self {
        FieldCondition {
            field: field.into(),
            matches: Match::In(values),
        }
    }

    pub fn range(field: impl Into<String>, min: Option<i64>, max: Option<i64>) -> Self {
        FieldCondition {
            field: field.into(),
            matches: Match::Range(IntRange { min, max }),
        }
    }
}

/// How a field's value is matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Equal to the value (of the field's kind).
    Eq(PayloadValue),
    /// Equal to one of the values; an empty list matches nothing.
    In(Vec<PayloadValue>),
    /// Within the bounds, both inclusive (integer fields only).
    Range(IntRange),
}

/// Inclusive bounds; a missing bound is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntRange {
    pub min: Option<i64>,
    pub max: Option<i64>,
}
