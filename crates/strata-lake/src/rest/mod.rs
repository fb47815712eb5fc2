//! The Iceberg REST catalog API (the Apache Iceberg REST OpenAPI spec, `/v1/...` paths) over
//! the lake's own SQLite catalog, for `strata serve` to mount under `/iceberg` (ADR 0013), and
//! a client of the same API for a lake whose tables live in a REST catalog (ADR 0018).
//!
//! - `mod.rs`: the router, bearer-token auth, `GET /v1/config`, request-body parsing
//! - `namespaces.rs`: list / create / load / exists / drop / update properties
//! - `tables.rs`: list / create / load / exists / drop / rename
//! - `commit.rs`: `POST /v1/namespaces/{ns}/tables/{table}`: requirements checked, updates
//!   applied, metadata written, and the catalog pointer swapped with the same
//!   compare-and-swap the lake sink uses
//!   (and `POST /v1/transactions/commit`: all tables' pointers swapped in one SQLite
//!   transaction)
//! - `tokens.rs`: the token file (`strata tokens create|list|revoke`)
//! - `error.rs`: the spec's `ErrorModel`
//! - `client.rs`: the client, `[catalog] kind = "rest"`

pub mod client;
mod commit;
mod error;
mod namespaces;
mod tables;
pub mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use iceberg::{NamespaceIdent, TableIdent};
use serde::de::DeserializeOwned;

use crate::lake::Lake;
pub use error::{RestError, RestResult};
pub use tokens::{Token, Tokens};

/// The path prefix `strata serve` mounts the catalog under.
pub const PREFIX: &str = "/iceberg";

/// The `%1F` (unit separator) between levels of a namespace in paths and `parent=`.
const NS_SEP: char = '\u{1f}';

#[derive(Clone)]
pub(crate) struct RestState {
    pub lake: Lake,
    tokens_path: Arc<PathBuf>,
}

/// The REST catalog's routes (paths without the `/iceberg` prefix; nest it there). Every
/// request needs `Authorization: Bearer <token>` with a token in `tokens_path`, which is read
/// on each request so `strata tokens create|revoke` take effect at once.
pub fn router(lake: Lake, tokens_path: PathBuf) -> Router {
    let state = RestState {
        lake,
        tokens_path: Arc::new(tokens_path),
    };
    Router::new()
        .route("/v1/config", get(config))
        .route(
            "/v1/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/v1/namespaces/{ns}",
            get(namespaces::load)
                .head(namespaces::exists)
                .delete(namespaces::drop),
        )
        .route(
            "/v1/namespaces/{ns}/properties",
            post(namespaces::update_properties),
        )
        .route(
            "/v1/namespaces/{ns}/tables",
            get(tables::list).post(tables::create),
        )
        .route(
            "/v1/namespaces/{ns}/tables/{table}",
            get(tables::load)
                .head(tables::exists)
                .delete(tables::drop)
                .post(commit::commit),
        )
        .route("/v1/tables/rename", post(tables::rename))
        .route("/v1/transactions/commit", post(commit::commit_transaction))
        .fallback(|| async {
            RestError::new(
                axum::http::StatusCode::NOT_FOUND,
                "NotFoundException",
                "no such REST catalog endpoint (Strata serves the Iceberg REST spec's /v1 paths \
                 listed by GET /v1/config)",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// 401 `NotAuthorizedException` unless the request carries a known bearer token.
async fn authorize(State(state): State<RestState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return RestError::unauthorized(
            "missing bearer token: send Authorization: Bearer <token> (strata tokens create NAME)",
        )
        .into_response();
    };
    let tokens = match Tokens::load(&state.tokens_path) {
        Ok(t) => t,
        Err(e) => return RestError::server(e.to_string()).into_response(),
    };
    if tokens.verify(presented).is_none() {
        return RestError::unauthorized("unknown or revoked token").into_response();
    }
    next.run(req).await
}

/// The endpoints this server implements, as `GET /v1/config` lists them (the spec's form,
/// with `{prefix}`; this server sets no prefix, so clients drop that segment).
const ENDPOINTS: &[&str] = &[
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
];

async fn config(State(state): State<RestState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "defaults": {},
        "overrides": {
            "warehouse": warehouse_uri(state.lake.warehouse()),
        },
        "endpoints": ENDPOINTS,
    }))
}

/// Parses a JSON request body; anything malformed is 400 `BadRequestException`.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &Bytes) -> RestResult<T> {
    serde_json::from_slice(body).map_err(|e| RestError::bad_request(format!("malformed body: {e}")))
}

/// A namespace from a path segment (levels separated by `%1F`).
pub(crate) fn namespace_ident(text: &str) -> RestResult<NamespaceIdent> {
    let levels: Vec<String> = text.split(NS_SEP).map(str::to_string).collect();
    if levels.iter().any(|l| l.is_empty()) {
        return Err(RestError::bad_request(format!(
            "bad namespace {text:?}: empty level"
        )));
    }
    NamespaceIdent::from_vec(levels).map_err(|e| RestError::bad_request(e.to_string()))
}

pub(crate) fn table_ident(ns: &str, table: &str) -> RestResult<TableIdent> {
    if table.is_empty() {
        return Err(RestError::bad_request("empty table name"));
    }
    Ok(TableIdent::new(namespace_ident(ns)?, table.to_string()))
}

/// `{"namespace": [...], "name": "..."}`
pub(crate) fn ident_json(ident: &TableIdent) -> serde_json::Value {
    serde_json::json!({
        "namespace": ident.namespace().as_ref(),
        "name": ident.name(),
    })
}

/// The warehouse as a URI: `s3://bucket/prefix` as configured, a local directory as `file://`.
fn warehouse_uri(warehouse: &str) -> String {
    if warehouse.contains("://") {
        warehouse.to_string()
    } else {
        format!("file://{warehouse}")
    }
}
