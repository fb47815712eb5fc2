//! Feast's feature-server protocol (`POST /get-online-features`), as Feast's Python feature
//! server speaks it (`sdk/python/feast/feature_server.py`, `feature_server_utils.py`):
//!
//! - request: `{"features": ["view:feature", …]}` or `{"feature_service": "name"}`, with
//!   `"entities": {"join_key": [v1, v2, …], …}` (columns of equal length: one entity per
//!   position) and optional `"full_feature_names": bool`. Other fields Feast clients send
//!   (`include_feature_view_version_metadata`) are accepted and ignored, as Feast ignores
//!   fields it does not know;
//! - response: column-major. `metadata.feature_names` names the columns (the entity columns
//!   first, as the request gave them, then the features in the order asked; `view__feature`
//!   with `full_feature_names`); `results[i]` is column `i`: `values` (one per entity),
//!   `statuses` (`PRESENT`, `NOT_FOUND`, `OUTSIDE_MAX_AGE`) and `event_timestamps` (RFC 3339
//!   UTC, `Z`, with 0, 3 or 6 fractional digits; `1970-01-01T00:00:00Z` for entity columns
//!   and entities not found).
//!
//! A found row whose feature is null is `PRESENT` with a null value, as in Feast; a row
//! written before a feature existed answers that feature `NOT_FOUND`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lookup::ViewAnswer;
use crate::error::{Error, Result};

/// The body of `POST /get-online-features`.
#[derive(Debug, Clone, Deserialize)]
pub struct GetOnlineFeaturesRequest {
    /// `view:feature` references.
    #[serde(default)]
    pub features: Vec<String>,
    /// A feature service's name, instead of `features`.
    #[serde(default)]
    pub feature_service: Option<String>,
    pub entities: Entities,
    /// Name feature columns `view__feature` instead of `feature`.
    #[serde(default)]
    pub full_feature_names: bool,
}

/// The request's entity columns, in the order the request gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entities(pub Vec<(String, Vec<serde_json::Value>)>);

impl<'de> Deserialize<'de> for Entities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Columns;
        impl<'de> Visitor<'de> for Columns {
            type Value = Entities;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of entity columns, e.g. {\"user_id\": [1, 2]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entities, A::Error> {
                let mut out: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
                while let Some((name, values)) =
                    map.next_entry::<String, Vec<serde_json::Value>>()?
                {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "entity {name} is given twice"
                        )));
                    }
                    out.push((name, values));
                }
                Ok(Entities(out))
            }
        }
        d.deserialize_map(Columns)
    }
}

/// What was found for one entity and feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Present,
    NotFound,
    /// Found, but older than the view's TTL: the value is not served.
    OutsideMaxAge,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::NotFound => "NOT_FOUND",
            Status::OutsideMaxAge => "OUTSIDE_MAX_AGE",
        }
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Feast's zero timestamp, for entity columns and entities not found.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// An event time (µs since the epoch) as Feast writes it: RFC 3339 UTC with `Z`, no fraction
/// on whole seconds, else milliseconds or microseconds, whichever is exact.
pub fn event_timestamp(us: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(us) else {
        return EPOCH.to_string();
    };
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    let micros = us.rem_euclid(1_000_000);
    if micros == 0 {
        format!("{base}Z")
    } else if micros % 1000 == 0 {
        format!("{base}.{:03}Z", micros / 1000)
    } else {
        format!("{base}.{micros:06}Z")
    }
}

/// A feature reference `view:feature`.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let (view, feature) = reference.split_once(':')?;
    (!view.is_empty() && !feature.is_empty() && !feature.contains(':')).then_some((view, feature))
}

/// The body of a `/get-online-features` answer.
#[derive(Debug, Serialize)]
pub struct GetOnlineFeaturesResponse {
    pub metadata: Metadata,
    pub results: Vec<FeatureColumn>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub feature_names: Vec<String>,
}

/// One column of the answer: a value, a status and an event time per entity.
#[derive(Debug)]
pub struct FeatureColumn {
    pub values: Vec<serde_json::Value>,
    pub statuses: Vec<Status>,
    pub event_timestamps: Timestamps,
}

/// The event times of a column: every feature of a view shares its view's.
#[derive(Debug, Clone)]
pub enum Timestamps {
    /// `n` times the zero timestamp (entity columns).
    Epoch(usize),
    /// One per entity, shared by the view's columns.
    Shared(Arc<Vec<String>>),
}

impl Serialize for Timestamps {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Timestamps::Epoch(n) => {
                let mut seq = s.serialize_seq(Some(*n))?;
                for _ in 0..*n {
                    seq.serialize_element(EPOCH)?;
                }
                seq.end()
            }
            Timestamps::Shared(v) => v.serialize(s),
        }
    }
}

impl Serialize for FeatureColumn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FeatureColumn", 3)?;
        st.serialize_field("values", &self.values)?;
        st.serialize_field("statuses", &self.statuses)?;
        st.serialize_field("event_timestamps", &self.event_timestamps)?;
        st.end()
    }
}

/// The answer to `request`: the entity columns as the request gave them, then the features of
/// `refs` (`None`: every feature of the view) from the views' `answers`.
pub(crate) fn respond(
    request: &GetOnlineFeaturesRequest,
    refs: &[(String, Option<String>)],
    mut answers: Vec<ViewAnswer>,
) -> Result<GetOnlineFeaturesResponse> {
    let n = request.entities.0.first().map_or(0, |(_, v)| v.len());
    let mut names = Vec::new();
    let mut results = Vec::new();
    for (name, values) in &request.entities.0 {
        names.push(name.clone());
        results.push(FeatureColumn {
            values: values.clone(),
            statuses: vec![Status::Present; n],
            event_timestamps: Timestamps::Epoch(n),
        });
    }
    // Where each output name came from, to name both sides of a collision.
    let mut origin: HashMap<String, String> = HashMap::new();
    for (view, feature) in refs {
        let Some(answer) = answers.iter_mut().find(|a| a.view == *view) else {
            return Err(Error::Internal(format!("view {view} was not read")));
        };
        let indexes: Vec<usize> = match feature {
            None => (0..answer.features.len()).collect(),
            Some(f) => answer
                .features
                .iter()
                .position(|x| x == f)
                .into_iter()
                .collect(),
        };
        for i in indexes {
            let feature = &answer.features[i];
            let name = if request.full_feature_names {
                format!("{view}__{feature}")
            } else {
                feature.clone()
            };
            let reference = format!("{view}:{feature}");
            if let Some(first) = origin.insert(name.clone(), reference.clone()) {
                return Err(Error::BadRequest(if first == reference {
                    format!("{reference} is asked for twice")
                } else {
                    format!(
                        "{first} and {reference} would both answer as {name}: \
                         set \"full_feature_names\": true"
                    )
                }));
            }
            if names.contains(&name) {
                return Err(Error::BadRequest(format!(
                    "feature {reference} has the name of an entity column: set \"full_feature_names\": true"
                )));
            }
            names.push(name);
            results.push(FeatureColumn {
                values: std::mem::take(&mut answer.values[i]),
                statuses: std::mem::take(&mut answer.statuses[i]),
                event_timestamps: Timestamps::Shared(answer.timestamps.clone()),
            });
        }
    }
    Ok(GetOnlineFeaturesResponse {
        metadata: Metadata {
            feature_names: names,
        },
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_use_feasts_adaptive_precision() {
        assert_eq!(event_timestamp(0), EPOCH);
        assert_eq!(
            event_timestamp(1_640_991_600_000_000),
            "2021-12-31T23:00:00Z"
        );
        assert_eq!(
            event_timestamp(1_640_991_600_250_000),
            "2021-12-31T23:00:00.250Z"
        );
        assert_eq!(
            event_timestamp(1_640_991_600_000_007),
            "2021-12-31T23:00:00.000007Z"
        );
        assert_eq!(event_timestamp(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn entities_keep_their_order_and_refuse_duplicates() {
        let r: GetOnlineFeaturesRequest = serde_json::from_str(
            r#"{"features": ["v:f"], "entities": {"b": [1], "a": ["x"]}, "include_feature_view_version_metadata": false}"#,
        )
        .unwrap();
        let names: Vec<&str> = r.entities.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        let e = serde_json::from_str::<GetOnlineFeaturesRequest>(
            r#"{"features": [], "entities": {"a": [1], "a": [2]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("entity a is given twice"), "{e}");
    }

    #[test]
    fn references_are_view_colon_feature() {
        assert_eq!(
            parse_reference("driver_hourly_stats:conv_rate"),
            Some(("driver_hourly_stats", "conv_rate"))
        );
        for bad in ["conv_rate", ":x", "v:", "a:b:c"] {
            assert_eq!(parse_reference(bad), None, "{bad}");
        }
    }
}
