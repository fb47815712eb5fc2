//! The Iceberg REST catalog API (the Apache Iceberg REST OpenAPI spec, `/v1/...` paths) over
//! the lake's own SQLite catalog, for `strata serve` to mount under `/iceberg` (ADR 0013).
//!
//! - `lib.rs`: the router, bearer-token auth, `GET /v1/config`, request-body parsing
//! - `namespaces.rs`: list / create / load / exists / drop / update properties
//! - `tables.rs`: list / create / load / exists / drop / rename
//! - `commit.rs`: `POST /v1/namespaces/{ns}/tables/{table}`: requirements checked, updates
//!   applied, metadata written, and the catalog pointer swapped with the same
//!   compare-and-swap the lake sink uses
//!   (and `POST /v1/transactions/commit`: all tables' pointers swapped in one SQLite
//!   transaction)
//! - `error.rs`: the spec's `ErrorModel`
//!
//! The bearer tokens live in `strata_core::tokens` (also used by serving and the access log);
//! the client of this API, for `[catalog] kind = "rest"`, is `strata_table::catalog_client`.

mod commit;
pub mod config;
mod error;
mod namespaces;
mod tables;

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

use axum::http::Method;
pub use error::{RestError, RestResult};
use strata_core::governance::GovernanceConfig;
use strata_core::names::LocationPolicy;
pub use strata_core::tokens::{NewToken, Scope, Token, Tokens};
use strata_sql::audit::{AccessRecord, AuditLog};
use strata_table::Lake;

/// The path prefix `strata serve` mounts the catalog under.
pub const PREFIX: &str = "/iceberg";

use strata_table::catalog_client::{ident_json, NS_SEP};

/// What the catalog server needs besides the lake.
#[derive(Clone)]
pub struct RestSettings {
    /// `<data>/catalog_tokens.json`, read on every request.
    pub tokens_path: PathBuf,
    /// Where clients may place tables.
    pub locations: LocationPolicy,
    /// Column tags and roles: a token whose role masks a column of a table cannot load it.
    pub governance: GovernanceConfig,
    /// Where every call is recorded (`audit.access_log`).
    pub audit: AuditLog,
}

#[derive(Clone)]
pub(crate) struct RestState {
    pub lake: Lake,
    settings: Arc<RestSettings>,
}

/// The token a request was authorized with (a request extension every handler can read).
#[derive(Clone)]
pub(crate) struct Caller(pub Arc<Token>);

impl Caller {
    /// 403 unless the token may touch namespace `ns`.
    pub(crate) fn check_namespace(&self, ns: &NamespaceIdent) -> RestResult<()> {
        if self.0.may_use_namespace(ns.as_ref()) {
            Ok(())
        } else {
            Err(RestError::forbidden(format!(
                "token {:?} is not granted namespace {}",
                self.0.name,
                ns.join(".")
            )))
        }
    }

    /// 403 when the token's role reads a column of `ident` masked: the catalog hands out file
    /// locations, and files cannot be masked.
    pub(crate) fn check_unmasked(&self, state: &RestState, ident: &TableIdent) -> RestResult<()> {
        let Some(role) = self.0.role.as_deref() else {
            return Ok(());
        };
        if self.0.has(Scope::Admin) {
            return Ok(());
        }
        let ns = ident.namespace().join(".");
        match state.settings.governance.masks(Some(role), &ns, ident.name()) {
            Ok(masks) if masks.is_empty() => Ok(()),
            Ok(masks) => Err(RestError::forbidden(format!(
                "role {role:?} may not read {} unmasked ({}): the REST catalog vends raw files, \
                 so it does not load this table for this token; query it with `strata sql --role {role}`",
                ident,
                masks.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            Err(e) => Err(RestError::forbidden(e.to_string())),
        }
    }

    /// 403 unless `location` is inside the warehouse or an allowed location.
    pub(crate) fn check_location(state: &RestState, what: &str, location: &str) -> RestResult<()> {
        state
            .settings
            .locations
            .check(location)
            .map_err(|e| RestError::forbidden(format!("{what}: {e}")))
    }
}

/// The REST catalog's routes (paths without the `/iceberg` prefix; nest it there). Every
/// request needs `Authorization: Bearer <token>` with a token in `settings.tokens_path`, which
/// is read on each request so `strata tokens create|revoke` take effect at once. GET and HEAD
/// need the `catalog:read` scope, everything else `catalog:write`; a token with namespace
/// grants sees and touches only those namespaces.
pub fn router(lake: Lake, settings: RestSettings) -> Router {
    let state = RestState {
        lake,
        settings: Arc::new(settings),
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

/// Authenticates the bearer token (401), checks the scope the method needs and the namespace
/// the path names (403), then runs the handler and records the call in the access log.
async fn authorize(State(state): State<RestState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let action = format!("{method} {path}");
    let object = path_object(&path);
    let audit = &state.settings.audit;
    let deny = |actor: Option<&Token>, e: RestError| {
        audit.record(AccessRecord::catalog(
            actor,
            &action,
            object.clone(),
            e.status.as_u16(),
            Some(e.message.clone()),
        ));
        e.into_response()
    };
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
        return deny(
            None,
            RestError::unauthorized(
                "missing bearer token: send Authorization: Bearer <token> (strata tokens create NAME)",
            ),
        );
    };
    let tokens = match Tokens::load(&state.settings.tokens_path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "rest catalog: reading the token file failed");
            return deny(
                None,
                RestError::server("the server cannot read its token file"),
            );
        }
    };
    let token = match tokens.verify(presented, chrono::Utc::now()) {
        Ok(t) => Arc::new(t.clone()),
        Err(refused) => return deny(None, RestError::unauthorized(refused.to_string())),
    };
    let needed = if method == Method::GET || method == Method::HEAD {
        Scope::CatalogRead
    } else {
        Scope::CatalogWrite
    };
    if !token.has(needed) {
        return deny(
            Some(&token),
            RestError::forbidden(format!(
                "token {:?} lacks the {needed} scope that {method} needs (it has: {})",
                token.name,
                token
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    if let Some(levels) = path_namespace(&path) {
        if !token.may_use_namespace(&levels) {
            return deny(
                Some(&token),
                RestError::forbidden(format!(
                    "token {:?} is not granted namespace {}",
                    token.name,
                    levels.join(".")
                )),
            );
        }
    }
    req.extensions_mut().insert(Caller(token.clone()));
    let response = next.run(req).await;
    let status = response.status();
    audit.record(AccessRecord::catalog(
        Some(&token),
        &action,
        object,
        status.as_u16(),
        None,
    ));
    response
}

/// Properties that place a table's or namespace's files.
const LOCATION_PROPERTIES: &[&str] = &[
    "location",
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
];

/// 403 when a property that places files points outside the allowed locations.
pub(crate) fn check_location_properties(
    state: &RestState,
    properties: &std::collections::HashMap<String, String>,
) -> RestResult<()> {
    for key in LOCATION_PROPERTIES {
        if let Some(value) = properties.get(*key) {
            Caller::check_location(state, key, value)?;
        }
    }
    Ok(())
}

/// 403 when a commit's updates would move the table's files, or point a snapshot at a
/// manifest list, outside the allowed locations.
pub(crate) fn check_updates(state: &RestState, updates: &[iceberg::TableUpdate]) -> RestResult<()> {
    use iceberg::TableUpdate as U;
    for update in updates {
        match update {
            U::SetLocation { location } => Caller::check_location(state, "location", location)?,
            U::SetProperties { updates } => check_location_properties(state, updates)?,
            U::AddSnapshot { snapshot } => {
                Caller::check_location(state, "manifest-list", snapshot.manifest_list())?
            }
            _ => {}
        }
    }
    Ok(())
}

/// The namespace levels a `/v1/namespaces/{ns}…` path names (percent-decoded, split at `%1F`).
fn path_namespace(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("/v1/namespaces/")?;
    let segment = rest.split('/').next().filter(|s| !s.is_empty())?;
    let decoded = percent_decode(segment);
    Some(decoded.split(NS_SEP).map(str::to_string).collect())
}

/// `namespace` or `namespace.table` for the access log, from the path.
fn path_object(path: &str) -> Option<String> {
    let levels = path_namespace(path)?;
    let ns = levels.join(".");
    let rest = path.strip_prefix("/v1/namespaces/")?;
    let mut segments = rest.split('/').skip(1);
    match (segments.next(), segments.next()) {
        (Some("tables"), Some(table)) if !table.is_empty() => {
            Some(format!("{ns}.{}", percent_decode(table)))
        }
        _ => Some(ns),
    }
}

/// Decodes `%XX` escapes as the path extractor does (invalid escapes stay as they are; bytes
/// that are not UTF-8 become U+FFFD).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// The warehouse as a URI: `s3://bucket/prefix` as configured, a local directory as `file://`.
fn warehouse_uri(warehouse: &str) -> String {
    if warehouse.contains("://") {
        warehouse.to_string()
    } else {
        format!("file://{warehouse}")
    }
}

#[cfg(test)]
mod tests_props;
