//! Table endpoints other than commit.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{TableCreation, TableIdent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    check_location_properties, ident_json, namespace_ident, parse_body, table_ident, Caller,
    RestError, RestResult, RestState,
};

pub(crate) async fn list(
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
    let mut tables = catalog.list_tables(&ns).await?;
    tables.sort_by(|a, b| a.name().cmp(b.name()));
    let identifiers: Vec<Value> = tables.iter().map(ident_json).collect();
    Ok(Json(json!({ "identifiers": identifiers })))
}

/// `LoadTableResult`: where the current metadata file is, the metadata itself, and no extra
/// client config (the files are local paths the client opens directly).
pub(crate) fn load_result(table: &Table) -> RestResult<Value> {
    let metadata = serde_json::to_value(table.metadata())
        .map_err(|e| RestError::server(format!("serializing metadata: {e}")))?;
    Ok(json!({
        "metadata-location": table.metadata_location(),
        "metadata": metadata,
        "config": {},
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CreateTable {
    name: String,
    location: Option<String>,
    schema: Schema,
    partition_spec: Option<UnboundPartitionSpec>,
    write_order: Option<SortOrder>,
    #[serde(default)]
    stage_create: bool,
    #[serde(default)]
    properties: HashMap<String, String>,
}

pub(crate) async fn create(
    State(state): State<RestState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> RestResult<Json<Value>> {
    let ns = namespace_ident(&ns)?;
    let req: CreateTable = parse_body(&body)?;
    if req.stage_create {
        return Err(RestError::unsupported(
            "stage-create is not supported by Strata's REST catalog: create the table directly",
        ));
    }
    strata_core::names::check_name("table name", &req.name).map_err(RestError::bad_request)?;
    if let Some(location) = &req.location {
        Caller::check_location(&state, "location", location)?;
    }
    check_location_properties(&state, &req.properties)?;
    let catalog = state.lake.catalog();
    if !catalog.namespace_exists(&ns).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {ns} does not exist"
        )));
    }
    let ident = TableIdent::new(ns.clone(), req.name.clone());
    if catalog.table_exists(&ident).await? {
        return Err(RestError::exists(format!("table {ident} already exists")));
    }
    let creation = TableCreation::builder()
        .name(req.name)
        .location_opt(req.location)
        .schema(req.schema)
        .partition_spec_opt(req.partition_spec)
        .sort_order_opt(req.write_order)
        .properties(req.properties)
        .build();
    let table = catalog.create_table(&ns, creation).await?;
    tracing::info!(table = %ident, "rest catalog: created table");
    Ok(Json(load_result(&table)?))
}

pub(crate) async fn load(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((ns, table)): Path<(String, String)>,
) -> RestResult<Json<Value>> {
    let ident = table_ident(&ns, &table)?;
    let table = load_table(&state, &ident).await?;
    caller.check_unmasked(&state, &ident)?;
    Ok(Json(load_result(&table)?))
}

/// Loads a table; missing namespace or table is the matching 404.
pub(crate) async fn load_table(state: &RestState, ident: &TableIdent) -> RestResult<Table> {
    let catalog = state.lake.catalog();
    if !catalog.namespace_exists(ident.namespace()).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {} does not exist",
            ident.namespace()
        )));
    }
    match state.lake.load_table(ident).await {
        Ok(t) => Ok(t),
        Err(strata_table::Error::NotFound(_)) => {
            Err(RestError::no_table(format!("table {ident} does not exist")))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn exists(
    State(state): State<RestState>,
    Path((ns, table)): Path<(String, String)>,
) -> RestResult<Response> {
    let ident = table_ident(&ns, &table)?;
    if state.lake.catalog().table_exists(&ident).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(StatusCode::NOT_FOUND.into_response())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DropQuery {
    /// `true`/`false` in any case (pyiceberg sends `False`).
    purge_requested: Option<String>,
}

/// Drops a table from the catalog; with `purgeRequested=true` also deletes its data and
/// metadata files.
pub(crate) async fn drop(
    State(state): State<RestState>,
    Path((ns, table)): Path<(String, String)>,
    Query(q): Query<DropQuery>,
) -> RestResult<Response> {
    let ident = table_ident(&ns, &table)?;
    let purge = match q
        .purge_requested
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "purgeRequested must be true or false, not {other:?}"
            )))
        }
    };
    let catalog = state.lake.catalog();
    if !catalog.table_exists(&ident).await? {
        return Err(RestError::no_table(format!("table {ident} does not exist")));
    }
    if purge {
        catalog.purge_table(&ident).await?;
    } else {
        catalog.drop_table(&ident).await?;
    }
    tracing::info!(table = %ident, purge, "rest catalog: dropped table");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct Ident {
    namespace: Vec<String>,
    name: String,
}

impl Ident {
    pub(crate) fn into_ident(self) -> RestResult<TableIdent> {
        if self.namespace.is_empty() || self.name.is_empty() {
            return Err(RestError::bad_request(
                "identifier needs a namespace and a name",
            ));
        }
        let ns = iceberg::NamespaceIdent::from_vec(self.namespace)
            .map_err(|e| RestError::bad_request(e.to_string()))?;
        Ok(TableIdent::new(ns, self.name))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    source: Ident,
    destination: Ident,
}

pub(crate) async fn rename(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> RestResult<Response> {
    let req: Rename = parse_body(&body)?;
    let src = req.source.into_ident()?;
    let dest = req.destination.into_ident()?;
    caller.check_namespace(src.namespace())?;
    caller.check_namespace(dest.namespace())?;
    strata_core::names::check_namespace(dest.namespace().as_ref())
        .map_err(RestError::bad_request)?;
    strata_core::names::check_name("table name", dest.name()).map_err(RestError::bad_request)?;
    let catalog = state.lake.catalog();
    if !catalog.table_exists(&src).await? {
        return Err(RestError::no_table(format!("table {src} does not exist")));
    }
    if !catalog.namespace_exists(dest.namespace()).await? {
        return Err(RestError::no_namespace(format!(
            "namespace {} does not exist",
            dest.namespace()
        )));
    }
    if catalog.table_exists(&dest).await? {
        return Err(RestError::exists(format!("table {dest} already exists")));
    }
    catalog.rename_table(&src, &dest).await?;
    tracing::info!(from = %src, to = %dest, "rest catalog: renamed table");
    Ok(StatusCode::NO_CONTENT.into_response())
}
