//! The handlers. Each authenticates the bearer token, does its work, and whatever the
//! outcome records one access-log row (surface `serve`) and its metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_core::tokens::Token;
use strata_sql::audit::{AccessRecord, Outcome, Surface};

use super::auth::{authenticate, require_serve};
use super::feast::{self, Entities, GetOnlineFeaturesRequest};
use super::lookup::Wanted;
use super::{metrics, FeatureServer};
use crate::error::{Error, Result};
use crate::view::KeyKind;

/// What a request's access-log row says, filled in as the request goes.
struct Audit {
    action: &'static str,
    token: Option<Token>,
    object: Option<String>,
    rows: Option<i64>,
}

impl Audit {
    fn new(action: &'static str) -> Audit {
        Audit {
            action,
            token: None,
            object: None,
            rows: None,
        }
    }

    /// The caller's token, checked for the `serve` scope.
    fn caller(&mut self, server: &FeatureServer, headers: &HeaderMap) -> Result<Token> {
        let token = authenticate(headers, &server.tokens_path)?;
        self.token = Some(token.clone());
        require_serve(&token)?;
        Ok(token)
    }
}

/// Records the request and turns its result into the answer.
fn finish(
    server: &FeatureServer,
    started: Instant,
    audit: Audit,
    result: Result<Vec<u8>>,
) -> Response {
    let (response, detail) = match result {
        Ok(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (response, None)
        }
        Err(e) => {
            metrics::error(e.code());
            let detail = e.public_message();
            (e.into_response(), Some(detail))
        }
    };
    let status = response.status().as_u16();
    server.audit.record(AccessRecord {
        ts: chrono::Utc::now(),
        actor: audit
            .token
            .as_ref()
            .map_or_else(|| "-".to_string(), |t| t.name.clone()),
        role: audit.token.as_ref().and_then(|t| t.role.clone()),
        surface: Surface::Serve,
        action: audit.action.to_string(),
        object: audit.object,
        outcome: Outcome::from_status(status),
        status: Some(status),
        rows: audit.rows,
        detail,
    });
    metrics::duration(audit.action, started.elapsed());
    response
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding the answer: {e}")))
}

/// `POST /get-online-features`: Feast's protocol.
pub(super) async fn get_online_features(
    State(server): State<Arc<FeatureServer>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new("get_online_features");
    let result = online_features(&server, &headers, body, &mut audit).await;
    finish(&server, started, audit, result)
}

async fn online_features(
    server: &FeatureServer,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
    audit: &mut Audit,
) -> Result<Vec<u8>> {
    let token = audit.caller(server, headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(format!(
            "the request body is larger than {} bytes: split the request",
            super::MAX_BODY_BYTES
        )),
        _ => Error::BadRequest(format!("reading the request body: {e}")),
    })?;
    let request: GetOnlineFeaturesRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("malformed request body: {e}")))?;
    let refs = references(server, &request)?;
    let wanted = group(&refs);
    audit.object = Some(
        wanted
            .iter()
            .map(|w| w.view.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let answers = server.read(&token, &wanted, &request.entities).await?;
    let n = request.entities.0.first().map_or(0, |(_, v)| v.len());
    let response = feast::respond(&request, &refs, answers)?;
    audit.rows = Some(n as i64);
    to_json(&response)
}

/// The request's features as `(view, feature)`, `None` for every feature of the view.
fn references(
    server: &FeatureServer,
    request: &GetOnlineFeaturesRequest,
) -> Result<Vec<(String, Option<String>)>> {
    match (&request.feature_service, request.features.is_empty()) {
        (Some(_), false) => Err(Error::BadRequest(
            "give features or feature_service, not both".to_string(),
        )),
        (None, true) => Err(Error::BadRequest(
            "give features (e.g. [\"user_features:ctr_7d\"]) or feature_service".to_string(),
        )),
        (Some(name), true) => {
            let service = server.services.get(name).ok_or_else(|| {
                let mut known: Vec<&str> = server.services.keys().map(String::as_str).collect();
                known.sort_unstable();
                Error::BadRequest(format!(
                    "unknown feature service {name} (services: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
            Ok(service
                .features
                .iter()
                .map(|f| (f.view.clone(), f.feature.clone()))
                .collect())
        }
        (None, false) => request
            .features
            .iter()
            .map(|r| {
                feast::parse_reference(r)
                    .map(|(v, f)| (v.to_string(), Some(f.to_string())))
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "feature reference {r:?} must be view:feature (e.g. user_features:ctr_7d)"
                        ))
                    })
            })
            .collect(),
    }
}

/// The views of `refs`, each with its features, in order of first mention.
fn group(refs: &[(String, Option<String>)]) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = Vec::new();
    for (view, feature) in refs {
        let at = match wanted.iter().position(|w| w.view == *view) {
            Some(i) => i,
            None => {
                wanted.push(Wanted {
                    view: view.clone(),
                    features: Some(Vec::new()),
                });
                wanted.len() - 1
            }
        };
        let w = &mut wanted[at];
        match (feature, &mut w.features) {
            (None, _) => w.features = None,
            (Some(f), Some(list)) if !list.contains(f) => list.push(f.clone()),
            _ => {}
        }
    }
    wanted
}

/// `GET /v1/features/{view}/{key}`: one entity of a view with a one-column entity.
pub(super) async fn get_feature(
    State(server): State<Arc<FeatureServer>>,
    headers: HeaderMap,
    Path((view, key)): Path<(String, String)>,
) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new("get_feature");
    audit.object = Some(view.clone());
    let result = async {
        let token = audit.caller(&server, &headers)?;
        let served = server.served(&token, &view)?;
        let [column] = served.view.entity.as_slice() else {
            return Err(Error::BadRequest(format!(
                "feature view {view} has a composite entity ({}): ask /v1/features/{view}?{}",
                served.view.entity.join(", "),
                served
                    .view
                    .entity
                    .iter()
                    .map(|c| format!("{c}=…"))
                    .collect::<Vec<_>>()
                    .join("&")
            )));
        };
        let kind = served.kinds.as_ref().and_then(|k| k.first().copied());
        let entities = Entities(vec![(column.clone(), vec![path_value(&key, kind)])]);
        one_entity(&server, &token, &view, entities, &mut audit).await
    }
    .await;
    finish(&server, started, audit, result)
}

/// `GET /v1/features/{view}?col=value&…`: one entity, any entity columns.
pub(super) async fn get_feature_by_query(
    State(server): State<Arc<FeatureServer>>,
    headers: HeaderMap,
    Path(view): Path<String>,
    query: std::result::Result<
        Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new("get_feature");
    audit.object = Some(view.clone());
    let result = async {
        let token = audit.caller(&server, &headers)?;
        let served = server.served(&token, &view)?;
        let Query(pairs) =
            query.map_err(|e| Error::BadRequest(format!("malformed query string: {e}")))?;
        if pairs.is_empty() {
            return Err(Error::BadRequest(format!(
                "give the entity as query parameters: /v1/features/{view}?{}",
                served
                    .view
                    .entity
                    .iter()
                    .map(|c| format!("{c}=…"))
                    .collect::<Vec<_>>()
                    .join("&")
            )));
        }
        let mut columns = Vec::new();
        for (name, value) in pairs {
            if columns.iter().any(|(n, _): &(String, _)| *n == name) {
                return Err(Error::BadRequest(format!("entity {name} is given twice")));
            }
            let kind = served
                .view
                .entity
                .iter()
                .position(|c| *c == name)
                .and_then(|i| served.kinds.as_ref().and_then(|k| k.get(i).copied()));
            columns.push((name, vec![path_value(&value, kind)]));
        }
        one_entity(&server, &token, &view, Entities(columns), &mut audit).await
    }
    .await;
    finish(&server, started, audit, result)
}

/// A key from a URL as the JSON value a request body would give: an integer when the key
/// column is an integer (or unknown and the text is one), else text.
fn path_value(text: &str, kind: Option<KeyKind>) -> serde_json::Value {
    match kind {
        Some(KeyKind::Text) => serde_json::Value::String(text.to_string()),
        _ => text
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
    }
}

async fn one_entity(
    server: &FeatureServer,
    token: &Token,
    view: &str,
    entities: Entities,
    audit: &mut Audit,
) -> Result<Vec<u8>> {
    let wanted = [Wanted {
        view: view.to_string(),
        features: None,
    }];
    let answers = server.read(token, &wanted, &entities).await?;
    let answer = answers
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("a read answered no view".to_string()))?;
    let status = answer
        .rows
        .first()
        .copied()
        .unwrap_or(feast::Status::NotFound);
    let mut features = serde_json::Map::new();
    for (name, mut column) in answer.features.iter().zip(answer.values) {
        features.insert(name.clone(), column.pop().unwrap_or_default());
    }
    let entity: serde_json::Map<String, serde_json::Value> = entities
        .0
        .into_iter()
        .map(|(name, mut values)| (name, values.pop().unwrap_or_default()))
        .collect();
    audit.rows = Some(1);
    to_json(&serde_json::json!({
        "view": view,
        "entity": entity,
        "status": status.as_str(),
        "event_timestamp": answer.event_ts.first().copied().flatten().map(feast::event_timestamp),
        "features": features,
        "version": answer.published.version,
    }))
}

/// `GET /v1/features`: the views the token may read, with what is published of each.
pub(super) async fn list_views(
    State(server): State<Arc<FeatureServer>>,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new("list_features");
    let result = async {
        let token = audit.caller(&server, &headers)?;
        let mut names: Vec<&String> = server.views.keys().collect();
        names.sort_unstable();
        let mut out = Vec::new();
        let mut readable = Vec::new();
        for name in names {
            let Ok(served) = server.served(&token, name) else {
                continue;
            };
            readable.push(name.as_str());
            let meta = server.store.meta(name).await?;
            let published = meta.as_ref().and_then(|m| m.published.clone());
            let features = match (&meta, &published) {
                (Some(m), Some(p)) => m
                    .schemas
                    .get(&p.schema)
                    .map(|cols| {
                        cols.iter()
                            .map(|c| serde_json::json!({"name": c.name, "type": c.ty.as_str()}))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let view = &served.view;
            out.push(serde_json::json!({
                "name": view.name,
                "description": view.description,
                "entity": view.entity,
                "source": view.source.describe(),
                "ttl_seconds": view.ttl.map(|t| t.as_secs()),
                "features": features,
                "published": published.map(|p| serde_json::json!({
                    "version": p.version,
                    "snapshots": p.sources,
                    "rows": p.entities,
                    "mode": p.mode,
                    "published_at": p.published_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })),
                "hint": meta.as_ref().and_then(|m| m.published.as_ref()).is_none().then(|| {
                    format!("not materialized yet: run `strata features materialize {}`", view.name)
                }),
            }));
        }
        let mut services: Vec<_> = server
            .services
            .values()
            .filter(|s| s.features.iter().all(|f| readable.contains(&f.view.as_str())))
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description,
                    "features": s.features.iter().map(|f| format!("{}:{}", f.view, f.feature.as_deref().unwrap_or("*"))).collect::<Vec<_>>(),
                })
            })
            .collect();
        services.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        audit.rows = Some(out.len() as i64);
        to_json(&BTreeMap::from([
            ("views", serde_json::Value::Array(out)),
            ("feature_services", serde_json::Value::Array(services)),
        ]))
    }
    .await;
    finish(&server, started, audit, result)
}
