//! Column masking for served features, the same rules and the same masks as SQL sessions run
//! as a role (`strata_sql::masking`):
//!
//! - a view whose source is a lake table masks the features named like the table's tagged
//!   columns (`ads.ads_user_features.phone` tags feature `phone` of a view over that table);
//! - a view whose source is a query is the pseudo table `features.<view>`: tag its features as
//!   `features.<view>.<feature>`;
//! - `null` → null; `hash` → `mask:` + the HMAC of the value's text, keyed with the lake's mask
//!   key; `partial` → `*` but the last four characters. The text of a value is what SQL's cast
//!   to text gives for the served type (so a string or an integer masks exactly as in SQL); a
//!   value that has no text masks to null.
//!
//! A token without a role reads everything; an admin token too (as on the REST catalog); a
//! token whose role `[governance]` does not define is refused (403).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float32Array, Float64Array, ListArray, ListBuilder, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};
use strata_core::governance::{GovernanceConfig, MaskKind};
use strata_core::tokens::{Scope, Token};
use strata_online::Value;

use crate::error::{Error, Result};
use crate::view::{FeatureView, Source};

/// The namespace of the pseudo tables of query-sourced views.
pub const QUERY_VIEW_NAMESPACE: &str = "features";

/// The masks `token`'s role reads `view`'s features with, by feature name.
pub(crate) fn masks_for(
    governance: &GovernanceConfig,
    token: &Token,
    view: &FeatureView,
) -> Result<BTreeMap<String, MaskKind>> {
    let Some(role) = token.role.as_deref() else {
        return Ok(BTreeMap::new());
    };
    if token.has(Scope::Admin) {
        return Ok(BTreeMap::new());
    }
    let (namespace, table) = match &view.source {
        Source::Table { namespace, table } => (namespace.as_str(), table.as_str()),
        Source::Query(_) | Source::Stream(_) => (QUERY_VIEW_NAMESPACE, view.name.as_str()),
    };
    governance
        .masks(Some(role), namespace, table)
        .map_err(|e| Error::Forbidden(format!("token {:?}: {e}", token.name)))
}

/// `value` as a role with `mask` reads it.
pub(crate) fn apply(mask: MaskKind, key: &[u8], value: &Value) -> serde_json::Value {
    if matches!(value, Value::Null) {
        return serde_json::Value::Null;
    }
    let text = match mask {
        MaskKind::Null => None,
        MaskKind::Hash => value_text(value).map(|t| strata_sql::masking::hash_value(key, &t)),
        MaskKind::Partial => value_text(value).map(|t| strata_sql::masking::partial_value(&t)),
    };
    text.map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// A value's text as SQL's cast to text writes it (`None`: it has none).
pub(crate) fn value_text(value: &Value) -> Option<String> {
    let array: ArrayRef = match value {
        Value::Null => return None,
        Value::String(s) => return Some(s.clone()),
        Value::Int64(i) => return Some(i.to_string()),
        Value::Bool(b) => return Some(b.to_string()),
        Value::Float64(f) => Arc::new(Float64Array::from(vec![*f])),
        Value::Timestamp(us) => Arc::new(TimestampMicrosecondArray::from(vec![*us])),
        Value::Date(d) => Arc::new(Date32Array::from(vec![*d])),
        Value::Int64List(v) => Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(v.clone()),
        ])),
        Value::Float64List(v) => {
            Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
                Some(v.clone()),
            ]))
        }
        Value::StringList(v) => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for s in v {
                b.values().append_option(s.as_deref());
            }
            b.append(true);
            Arc::new(b.finish())
        }
        Value::Vector(v) => {
            let values: ArrayRef = Arc::new(Float32Array::from(v.clone()));
            let field = Arc::new(Field::new("item", DataType::Float32, true));
            let offsets = arrow::buffer::OffsetBuffer::from_lengths([v.len()]);
            Arc::new(ListArray::try_new(field, offsets, values, None).ok()?)
        }
    };
    let text = arrow::compute::cast(&array, &DataType::Utf8).ok()?;
    let text = text.as_any().downcast_ref::<StringArray>()?;
    (text.len() == 1 && !text.is_null(0)).then(|| text.value(0).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_sql_text() {
        assert_eq!(value_text(&Value::Int64(-42)).as_deref(), Some("-42"));
        assert_eq!(value_text(&Value::Float64(1.5)).as_deref(), Some("1.5"));
        assert_eq!(value_text(&Value::Bool(true)).as_deref(), Some("true"));
        assert_eq!(value_text(&Value::Date(0)).as_deref(), Some("1970-01-01"));
        assert_eq!(
            value_text(&Value::Timestamp(1_000_000)).as_deref(),
            Some("1970-01-01T00:00:01")
        );
        assert_eq!(
            value_text(&Value::Int64List(vec![Some(1), None])).as_deref(),
            Some("[1, ]")
        );
        assert_eq!(value_text(&Value::Null), None);
    }

    #[test]
    fn masks_match_sql() {
        let key = b"0123456789abcdef0123456789abcdef";
        let phone = Value::String("+1 555 0100".into());
        assert_eq!(apply(MaskKind::Null, key, &phone), serde_json::Value::Null);
        assert_eq!(
            apply(MaskKind::Partial, key, &phone),
            serde_json::json!("*******0100")
        );
        let hashed = apply(MaskKind::Hash, key, &phone);
        assert_eq!(
            hashed,
            serde_json::json!(strata_sql::masking::hash_value(key, "+1 555 0100"))
        );
        assert!(hashed.as_str().unwrap().starts_with("mask:"));
        assert_eq!(
            apply(MaskKind::Hash, key, &Value::Null),
            serde_json::Value::Null
        );
    }
}
