//! `POST /v1/namespaces/{ns}/tables/{table}`: a table commit.
//!
//! The requirements are checked against the table's current metadata, the updates applied
//! on top of it with iceberg's `TableMetadataBuilder`, the new metadata file written, and the
//! catalog row swapped from the metadata file the requirements were checked against to the
//! new one ([`crate::table::swap_metadata`], the compare-and-swap every Strata writer uses).
//! When another writer (the lake sink, compaction, another REST client) moved the pointer in
//! between, the swap fails, the table is reloaded and the requirements are checked again: if
//! they still hold the updates are applied to the newer metadata (that is what requirements
//! are for), otherwise the client gets 409 `CommitFailedException` and retries on its side.
//! Either way no commit is lost.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use serde::Deserialize;
use serde_json::{json, Value};

use super::tables::load_table;
use super::{parse_body, table_ident, RestError, RestResult, RestState};

/// Swaps lost to other writers before the server gives up with 409.
const MAX_ATTEMPTS: usize = 20;

#[derive(Deserialize)]
struct CommitTable {
    #[serde(default)]
    #[allow(dead_code)] // the path names the table; the spec makes this optional there
    identifier: Option<Value>,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

pub(crate) async fn commit(
    State(state): State<RestState>,
    Path((ns, table)): Path<(String, String)>,
    body: Bytes,
) -> RestResult<Json<Value>> {
    let ident = table_ident(&ns, &table)?;
    let req: CommitTable = parse_body(&body)?;
    if req
        .requirements
        .iter()
        .any(|r| matches!(r, TableRequirement::NotExist))
    {
        if state.lake.catalog().table_exists(&ident).await? {
            return Err(RestError::commit_failed(format!(
                "requirement assert-create failed: table {ident} already exists"
            )));
        }
        return Err(RestError::unsupported(
            "create transactions (stage-create + assert-create) are not supported: create the \
             table with POST /v1/namespaces/{ns}/tables",
        ));
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let table = load_table(&state, &ident).await?;
        for r in &req.requirements {
            r.check(Some(table.metadata()))
                .map_err(|e| RestError::commit_failed(e.to_string()))?;
        }
        let next = apply_updates(&table, &req.updates)?;
        match crate::table::swap_metadata(&state.lake, &table, next).await {
            Ok(committed) => {
                tracing::info!(table = %ident, attempt, updates = req.updates.len(), "rest catalog: committed");
                return Ok(Json(json!({
                    "metadata-location": committed.metadata_location(),
                    "metadata": serde_json::to_value(committed.metadata())
                        .map_err(|e| RestError::server(format!("serializing metadata: {e}")))?,
                })));
            }
            Err(crate::Error::Conflict { .. }) => {
                tracing::debug!(table = %ident, attempt, "rest catalog: lost the swap, re-checking requirements");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RestError::commit_failed(format!(
        "{ident}: other writers committed first {MAX_ATTEMPTS} times in a row; retry"
    )))
}

/// The table's metadata with `updates` applied. An update the metadata builder refuses is the
/// client's error (400).
fn apply_updates(
    table: &Table,
    updates: &[TableUpdate],
) -> RestResult<iceberg::spec::TableMetadata> {
    let location = table.metadata_location().map(str::to_string);
    let carried = crate::position::carried_properties(table);
    let current = table.metadata().current_snapshot().map(|s| s.snapshot_id());
    let mut builder = table.metadata().clone().into_builder(location);
    for update in updates {
        let update = carry_positions(update.clone(), current, &carried)?;
        builder = update
            .apply(builder)
            .map_err(|e| RestError::bad_request(format!("applying updates: {e}")))?;
    }
    let built = builder
        .build()
        .map_err(|e| RestError::bad_request(format!("building metadata: {e}")))?;
    Ok(built.metadata)
}

/// Strata keeps its bus and CDC positions (`strata.*` snapshot summary properties) on every
/// snapshot of a table, so they never depend on an ancestor that snapshot expiry may remove
/// (see `position.rs`). A snapshot another engine adds on top of the current one gets the
/// ones it lacks.
fn carry_positions(
    update: TableUpdate,
    current: Option<i64>,
    carried: &HashMap<String, String>,
) -> RestResult<TableUpdate> {
    let TableUpdate::AddSnapshot { snapshot } = &update else {
        return Ok(update);
    };
    if current.is_none() || snapshot.parent_snapshot_id() != current {
        return Ok(update);
    }
    let own = &snapshot.summary().additional_properties;
    let missing: Vec<(&String, &String)> = carried
        .iter()
        .filter(|(k, _)| !own.contains_key(*k))
        .collect();
    if missing.is_empty() {
        return Ok(update);
    }
    let bad = |e: serde_json::Error| RestError::server(format!("carrying positions: {e}"));
    let mut value = serde_json::to_value(&update).map_err(bad)?;
    if let Some(summary) = value
        .get_mut("snapshot")
        .and_then(|s| s.get_mut("summary"))
        .and_then(|s| s.as_object_mut())
    {
        for (k, v) in missing {
            summary.insert(k.clone(), Value::String(v.clone()));
        }
    }
    serde_json::from_value(value).map_err(bad)
}
