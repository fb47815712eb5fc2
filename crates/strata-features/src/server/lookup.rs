//! Reading features for a request: which views, the entities' keys, one online-store lookup
//! per view for every entity at once (the views' lookups run concurrently), then per entity
//! and feature the value, its status (TTL applied) and the role's masks.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use strata_core::governance::MaskKind;
use strata_core::tokens::Token;
use strata_online::meta::{Column, Published};
use strata_online::{entity_key, LookupStatus};

use super::feast::{event_timestamp, Entities, Status, EPOCH};
use super::{mask, metrics, FeatureServer, ServedView};
use crate::error::{Error, Result};
use crate::view::KeyKind;

/// What a request reads from one view.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub view: String,
    /// These features, in order; `None`: every feature of the published schema.
    pub features: Option<Vec<String>>,
}

/// What one view answered for every entity of a request.
#[derive(Debug)]
pub(crate) struct ViewAnswer {
    pub view: String,
    pub published: Published,
    /// The features read, in order.
    pub features: Vec<String>,
    /// Per entity: what its row was (the statuses of its features may still say `NOT_FOUND`
    /// for a feature its row was written without).
    pub rows: Vec<Status>,
    /// Per entity: the row's event time as Feast writes it.
    pub timestamps: Arc<Vec<String>>,
    /// Per entity: the row's event time (µs), when found.
    pub event_ts: Vec<Option<i64>>,
    /// `[feature][entity]`.
    pub values: Vec<Vec<serde_json::Value>>,
    /// `[feature][entity]`.
    pub statuses: Vec<Vec<Status>>,
}

impl FeatureServer {
    /// The declared, online view `name` that `token` may read.
    pub(crate) fn served(&self, token: &Token, name: &str) -> Result<&ServedView> {
        let Some(served) = self.views.get(name) else {
            let mut known: Vec<&str> = self
                .views
                .values()
                .filter(|v| v.view.online)
                .map(|v| v.view.name.as_str())
                .collect();
            known.sort_unstable();
            return Err(Error::BadRequest(format!(
                "unknown feature view {name} (views served: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !served.view.online {
            return Err(Error::BadRequest(format!(
                "feature view {name} is not served online (online = false in {})",
                served.view.file
            )));
        }
        super::auth::check_reads(token, name, &served.reads)?;
        Ok(served)
    }

    /// Reads `wanted` for every entity of `entities`: one lookup per view, concurrently.
    pub(crate) async fn read(
        &self,
        token: &Token,
        wanted: &[Wanted],
        entities: &Entities,
    ) -> Result<Vec<ViewAnswer>> {
        let mut views = Vec::with_capacity(wanted.len());
        for w in wanted {
            views.push(self.served(token, &w.view)?);
        }
        let n = check_entities(entities, &views, self.max_entities)?;
        let mut keys = Vec::with_capacity(views.len());
        for served in &views {
            keys.push(view_keys(served, entities, n)?);
        }
        let lookups = views.iter().zip(&keys).map(|(served, keys)| {
            metrics::lookup(&served.view.name);
            self.store.lookup(&served.view.name, keys)
        });
        let results = join_all(lookups).await;
        let now = chrono::Utc::now().timestamp_micros();
        let mut answers = Vec::with_capacity(views.len());
        for ((served, w), result) in views.iter().zip(wanted).zip(results) {
            let rows = result?;
            let name = &served.view.name;
            let Some(published) = rows.published else {
                return Err(Error::NotMaterialized(name.clone()));
            };
            let schema = self.published_schema(name, &published).await?;
            let features = match &w.features {
                None => schema.iter().map(|c| c.name.clone()).collect(),
                Some(list) => {
                    for f in list {
                        if !schema.iter().any(|c| c.name == *f) {
                            return Err(Error::BadRequest(unknown_feature(name, f, &schema)));
                        }
                    }
                    list.clone()
                }
            };
            let masks = mask::masks_for(&self.governance, token, &served.view)?;
            let answer = answer(
                name,
                published,
                features,
                rows.rows,
                &masks,
                &self.mask_key,
                served
                    .view
                    .ttl
                    .map(|t| i64::try_from(t.as_micros()).unwrap_or(i64::MAX)),
                now,
            );
            metrics::entities(name, &answer.rows);
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The columns of the published version's schema (cached per published version: one
    /// metadata read after each sync).
    pub(crate) async fn published_schema(
        &self,
        view: &str,
        published: &Published,
    ) -> Result<Arc<Vec<Column>>> {
        let stamp = (published.version, published.published_at, published.schema);
        if let Ok(cache) = self.schemas.lock() {
            if let Some((s, columns)) = cache.get(view) {
                if *s == stamp {
                    return Ok(columns.clone());
                }
            }
        }
        let meta = self
            .store
            .meta(view)
            .await?
            .ok_or_else(|| Error::NotMaterialized(view.to_string()))?;
        let columns = meta
            .schemas
            .get(&published.schema)
            .cloned()
            .map(Arc::new)
            .ok_or_else(|| {
                Error::Online(strata_online::Error::Corrupt(format!(
                    "view {view}: the published version names unknown schema {}",
                    published.schema
                )))
            })?;
        if let Ok(mut cache) = self.schemas.lock() {
            cache.insert(view.to_string(), (stamp, columns.clone()));
        }
        Ok(columns)
    }
}

fn unknown_feature(view: &str, feature: &str, schema: &[Column]) -> String {
    const SHOWN: usize = 20;
    let mut names: Vec<&str> = schema.iter().take(SHOWN).map(|c| c.name.as_str()).collect();
    if schema.len() > SHOWN {
        names.push("…");
    }
    format!(
        "feature view {view} has no feature {feature} (it has {} features: {})",
        schema.len(),
        names.join(", ")
    )
}

/// Checks the request's entity columns against the views: every view's entity columns are
/// given, every column given is some view's, all have the same length, at most `max`.
/// The number of entities.
pub(crate) fn check_entities(
    entities: &Entities,
    views: &[&ServedView],
    max: usize,
) -> Result<usize> {
    let Some((first, values)) = entities.0.first() else {
        return Err(Error::BadRequest(
            "entities is empty: give the entity columns, e.g. {\"user_id\": [1, 2]}".to_string(),
        ));
    };
    let n = values.len();
    for (name, values) in &entities.0 {
        if values.len() != n {
            return Err(Error::BadRequest(format!(
                "entity columns must have the same length: {first} has {n}, {name} has {}",
                values.len()
            )));
        }
        if !views.iter().any(|v| v.view.entity.contains(name)) {
            let expected: Vec<String> = views
                .iter()
                .map(|v| format!("{}: {}", v.view.name, v.view.entity.join(", ")))
                .collect();
            return Err(Error::BadRequest(format!(
                "{name} is not the entity of any feature view asked for ({})",
                expected.join("; ")
            )));
        }
    }
    if n > max {
        return Err(Error::BadRequest(format!(
            "{n} entities in one request; the most is {max} (split the request)"
        )));
    }
    for v in views {
        for column in &v.view.entity {
            if !entities.0.iter().any(|(name, _)| name == column) {
                return Err(Error::BadRequest(format!(
                    "feature view {} needs entity {column} (its entity: {})",
                    v.view.name,
                    v.view.entity.join(", ")
                )));
            }
        }
    }
    Ok(n)
}

/// The store keys of the request's entities for one view.
fn view_keys(served: &ServedView, entities: &Entities, n: usize) -> Result<Vec<Vec<u8>>> {
    let mut columns: Vec<(&str, &Vec<serde_json::Value>, Option<KeyKind>)> = Vec::new();
    for (i, column) in served.view.entity.iter().enumerate() {
        let values = entities
            .0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::BadRequest(format!("entity {column} is missing")))?;
        let kind = served.kinds.as_ref().and_then(|k| k.get(i).copied());
        columns.push((column, values, kind));
    }
    let mut keys = Vec::with_capacity(n);
    let mut parts: Vec<String> = Vec::with_capacity(columns.len());
    for i in 0..n {
        parts.clear();
        for (column, values, kind) in &columns {
            let value = values.get(i).unwrap_or(&serde_json::Value::Null);
            parts.push(key_text(column, value, *kind)?);
        }
        keys.push(entity_key(&parts));
    }
    Ok(keys)
}

/// One entity column value as key text: integers in decimal, text as it is.
fn key_text(column: &str, value: &serde_json::Value, kind: Option<KeyKind>) -> Result<String> {
    use serde_json::Value as J;
    let bad = |what: &str| {
        Error::BadRequest(format!(
            "entity {column}: {value} is not {what}",
            value = truncate(&value.to_string())
        ))
    };
    match (value, kind) {
        (J::Number(n), None | Some(KeyKind::Integer)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(i.to_string()),
            (None, Some(u)) => Ok(u.to_string()),
            _ => Err(bad("an integer")),
        },
        (J::String(s), None | Some(KeyKind::Text)) => {
            if s.contains('\u{1f}') {
                Err(Error::BadRequest(format!(
                    "entity {column}: a key must not contain U+001F"
                )))
            } else {
                Ok(s.clone())
            }
        }
        (_, Some(KeyKind::Integer)) => Err(bad("an integer")),
        (_, Some(KeyKind::Text)) => Err(bad("a string")),
        (_, None) => Err(bad("an integer or a string")),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

/// Turns one view's lookup into per-feature columns.
#[allow(clippy::too_many_arguments)]
fn answer(
    view: &str,
    published: Published,
    features: Vec<String>,
    rows: Vec<strata_online::Lookup>,
    masks: &BTreeMap<String, MaskKind>,
    key: &[u8],
    ttl_us: Option<i64>,
    now_us: i64,
) -> ViewAnswer {
    let n = rows.len();
    let f = features.len();
    let feature_masks: Vec<Option<MaskKind>> = features
        .iter()
        .map(|name| masks.get(name).copied())
        .collect();
    let mut values = vec![Vec::with_capacity(n); f];
    let mut statuses = vec![Vec::with_capacity(n); f];
    let mut row_status = Vec::with_capacity(n);
    let mut timestamps = Vec::with_capacity(n);
    let mut event_ts = Vec::with_capacity(n);
    let mut last_formatted: Option<(i64, String)> = None;
    // Where each feature sits in a row, per schema the rows were written with.
    let mut layouts: Vec<(*const Vec<Column>, Vec<Option<usize>>)> = Vec::new();
    for row in rows {
        let status = match (row.status, row.event_ts, ttl_us) {
            (LookupStatus::NotFound, _, _) => Status::NotFound,
            (LookupStatus::Present, Some(ts), Some(ttl)) if now_us.saturating_sub(ts) > ttl => {
                Status::OutsideMaxAge
            }
            (LookupStatus::Present, _, _) => Status::Present,
        };
        row_status.push(status);
        event_ts.push(row.event_ts);
        timestamps.push(match row.event_ts {
            Some(ts) if status != Status::NotFound => match &last_formatted {
                // Rows of one sync mostly share their event time: format it once.
                Some((at, text)) if *at == ts => text.clone(),
                _ => {
                    let text = event_timestamp(ts);
                    last_formatted = Some((ts, text.clone()));
                    text
                }
            },
            _ => EPOCH.to_string(),
        });
        if status != Status::Present {
            for i in 0..f {
                values[i].push(serde_json::Value::Null);
                statuses[i].push(status);
            }
            continue;
        }
        let ptr = Arc::as_ptr(&row.columns);
        let layout = match layouts.iter().position(|(p, _)| *p == ptr) {
            Some(i) => &layouts[i].1,
            None => {
                let positions = features
                    .iter()
                    .map(|name| row.columns.iter().position(|c| c.name == *name))
                    .collect();
                layouts.push((ptr, positions));
                &layouts[layouts.len() - 1].1
            }
        };
        for i in 0..f {
            match layout[i].and_then(|at| row.values.get(at)) {
                Some(v) => {
                    values[i].push(match feature_masks[i] {
                        Some(m) => mask::apply(m, key, v),
                        None => v.to_json(),
                    });
                    statuses[i].push(Status::Present);
                }
                None => {
                    values[i].push(serde_json::Value::Null);
                    statuses[i].push(Status::NotFound);
                }
            }
        }
    }
    ViewAnswer {
        view: view.to_string(),
        published,
        features,
        rows: row_status,
        timestamps: Arc::new(timestamps),
        event_ts,
        values,
        statuses,
    }
}
