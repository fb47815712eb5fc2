//! Namespace endpoints.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    check_location_properties, namespace_ident, parse_body, Caller, RestError, RestResult,
    RestState,
};

/// The property the SQL catalog stores to mark that a namespace exists; not a user property.
const EXISTS_PROPERTY: &str = "exists";

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    parent: Option<String>,
}

pub(crate) async fn list(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> RestResult<Json<Value>> {
    let catalog = state.lake.catalog();
    let parent = match q.parent.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            let ns = namespace_ident(p)?;
            caller.check_namespace(&ns)?;
            if !catalog.namespace_exists(&ns).await? {
                return Err(RestError::no_namespace(format!(
                    "namespace {ns} does not exist"
                )));
            }
            Some(ns)
        }
        None => None,
    };
    let namespaces = catalog.list_namespaces(parent.as_ref()).await?;
    // A token with namespace grants sees only those.
    let mut out: Vec<&Vec<String>> = namespaces
        .iter()
        .map(|n| n.as_ref())
        .filter(|levels| caller.0.may_use_namespace(levels))
        .collect();
    out.sort();
    Ok(Json(json!({ "namespaces": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNamespace {
    namespace: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, String>,
}

pub(crate) async fn create(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> RestResult<Json<Value>> {
    let req: CreateNamespace = parse_body(&body)?;
    strata_core::names::check_namespace(&req.namespace).map_err(RestError::bad_request)?;
    let ns = iceberg::NamespaceIdent::from_vec(req.namespace)
        .map_err(|e| RestError::bad_request(e.to_string()))?;
    caller.check_namespace(&ns)?;
    check_location_properties(&state, &req.properties)?;
    let catalog = state.lake.catalog();
    if catalog.namespace_exists(&ns).await? {
        return Err(RestError::exists(format!("namespace {ns} already exists")));
    }
    let created = catalog.create_namespace(&ns, req.properties).await?;
    Ok(Json(json!({
        "namespace": created.name().as_ref(),
        "properties": user_properties(created.properties()),
    })))
}

pub(crate) async fn load(
    State(state): State<RestState>,
    Path(ns): Path<String>,
) -> RestResult<Json<Value>> {
    let ns = namespace_ident(&ns)?;
    let catalog = state.lake.catalog();
    if !catalog.namespace_exists(&ns).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {ns} does not exist"
        )));
    }
    let found = catalog.get_namespace(&ns).await?;
    Ok(Json(json!({
        "namespace": found.name().as_ref(),
        "properties": user_properties(found.properties()),
    })))
}

pub(crate) async fn exists(
    State(state): State<RestState>,
    Path(ns): Path<String>,
) -> RestResult<Response> {
    let ns = namespace_ident(&ns)?;
    if state.lake.catalog().namespace_exists(&ns).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(StatusCode::NOT_FOUND.into_response())
    }
}

/// Drops an empty namespace; one with tables or child namespaces is 409
/// `NamespaceNotEmptyException`.
pub(crate) async fn drop(
    State(state): State<RestState>,
    Path(ns): Path<String>,
) -> RestResult<Response> {
    let ns = namespace_ident(&ns)?;
    let catalog = state.lake.catalog();
    if !catalog.namespace_exists(&ns).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {ns} does not exist"
        )));
    }
    let tables = catalog.list_tables(&ns).await?;
    if !tables.is_empty() {
        return Err(RestError::not_empty(format!(
            "namespace {ns} is not empty: {} table(s)",
            tables.len()
        )));
    }
    let children = catalog.list_namespaces(Some(&ns)).await?;
    if !children.is_empty() {
        return Err(RestError::not_empty(format!(
            "namespace {ns} is not empty: {} child namespace(s)",
            children.len()
        )));
    }
    catalog.drop_namespace(&ns).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProperties {
    #[serde(default)]
    removals: Vec<String>,
    #[serde(default)]
    updates: HashMap<String, String>,
}

pub(crate) async fn update_properties(
    State(state): State<RestState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> RestResult<Json<Value>> {
    let ns = namespace_ident(&ns)?;
    let req: UpdateProperties = parse_body(&body)?;
    if let Some(k) = req.removals.iter().find(|k| req.updates.contains_key(*k)) {
        return Err(RestError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
            format!("property {k:?} is both updated and removed"),
        ));
    }
    if req
        .removals
        .iter()
        .chain(req.updates.keys())
        .any(|k| k == EXISTS_PROPERTY)
    {
        return Err(RestError::bad_request(format!(
            "property {EXISTS_PROPERTY:?} is reserved by the SQL catalog"
        )));
    }
    check_location_properties(&state, &req.updates)?;
    let catalog = state.lake.catalog();
    if !catalog.namespace_exists(&ns).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {ns} does not exist"
        )));
    }
    let current = catalog.get_namespace(&ns).await?.properties().clone();
    let (removed, missing): (Vec<String>, Vec<String>) = req
        .removals
        .into_iter()
        .partition(|k| current.contains_key(k));
    let updated: Vec<String> = req.updates.keys().cloned().collect();
    if !req.updates.is_empty() {
        catalog.update_namespace(&ns, req.updates).await?;
    }
    if !removed.is_empty() {
        let lake = &state.lake;
        for key in &removed {
            sqlx::query(
                "DELETE FROM iceberg_namespace_properties \
                 WHERE catalog_name = ? AND namespace = ? AND property_key = ?",
            )
            .bind(lake.catalog_name())
            .bind(ns.join("."))
            .bind(key)
            .execute(lake.pool()?)
            .await
            .map_err(|e| RestError::server(format!("removing property {key:?} of {ns}: {e}")))?;
        }
    }
    Ok(Json(json!({
        "updated": updated,
        "removed": removed,
        "missing": missing,
    })))
}

fn user_properties(all: &HashMap<String, String>) -> HashMap<&str, &str> {
    all.iter()
        .filter(|(k, _)| k.as_str() != EXISTS_PROPERTY)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
