//! Requests and answers of Feast's `POST /get-online-features` as the benchmark sends and
//! checks them: which entities each request asks for (the peers derive the same ids), and an
//! answer's values against the generator's.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::data::{self, GenValue, TableShape};

/// Feast's request body for `features` of `entity` = `ids`.
pub fn feast_body(features: &[String], entity: &str, ids: &[u64]) -> Vec<u8> {
    json!({"features": features, "entities": {entity: ids}})
        .to_string()
        .into_bytes()
}

/// The user of request `i` (the redis-py peer computes the same).
pub fn user_lookup_ids(users: u64) -> impl Fn(u64) -> u64 {
    move |i| data::mix(i ^ 0xb0d1) % users + 1
}

/// The posts of feed request `request` (distinct, sorted; the redis-py peer computes the same).
pub fn feed_ids(posts: u64, n: usize, request: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = (0..n as u64)
        .map(|k| data::mix(request.wrapping_mul(1_000_003) ^ k ^ 0xfeed) % posts + 1)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Compares an answer's values with the generator's; returns the number of wrong ones.
pub fn check_answer(
    body: &[u8],
    shape: &TableShape,
    features: &[String],
    ids: &[u64],
    day_of: &dyn Fn(u64) -> u32,
) -> Result<u64> {
    let v: Value = serde_json::from_slice(body)?;
    let names = v["metadata"]["feature_names"]
        .as_array()
        .context("no metadata.feature_names")?;
    let mut bad = 0;
    for feature in features {
        let short = feature.rsplit(':').next().unwrap_or(feature);
        let Some(j) = names.iter().position(|n| n == short || n == feature) else {
            bad += ids.len() as u64;
            continue;
        };
        let Some(col) = shape.columns.iter().position(|c| c.0 == short) else {
            bad += ids.len() as u64;
            continue;
        };
        let kind = shape.columns[col].1;
        for (e, id) in ids.iter().enumerate() {
            let got = &v["results"][j]["values"][e];
            let ok = match data::value(kind, *id, col, day_of(*id)) {
                GenValue::Int(x) => got.as_i64() == Some(x),
                GenValue::Float(x) => got.as_f64() == Some(x),
                GenValue::Text(x) => got.as_str() == Some(x),
            };
            if !ok || v["results"][j]["statuses"][e] != "PRESENT" {
                bad += 1;
            }
        }
    }
    Ok(bad)
}
