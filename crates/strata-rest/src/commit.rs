//! `POST /v1/namespaces/{ns}/tables/{table}`: a table commit.
//!
//! The requirements are checked against the table's current metadata, the updates applied
//! on top of it with iceberg's `TableMetadataBuilder`, the new metadata file written, and the
//! catalog row swapped from the metadata file the requirements were checked against to the
//! new one ([`strata_table::table::swap_metadata`], the compare-and-swap every Strata writer uses).
//! When another writer (the lake sink, compaction, another REST client) moved the pointer in
//! between, the swap fails, the table is reloaded and the requirements are checked again: if
//! they still hold the updates are applied to the newer metadata (that is what requirements
//! are for), otherwise the client gets 409 `CommitFailedException` and retries on its side.
//! Either way no commit is lost.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::Json;
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tables::load_table;
use crate::{check_updates, parse_body, table_ident, Caller, RestError, RestResult, RestState};

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
    Extension(caller): Extension<Caller>,
    Path((ns, table)): Path<(String, String)>,
    body: Bytes,
) -> RestResult<Json<Value>> {
    let ident = table_ident(&ns, &table)?;
    let req: CommitTable = parse_body(&body)?;
    check_updates(&state, &req.updates)?;
    // The answer carries the table's metadata (and so its file locations).
    caller.check_unmasked(&state, &ident)?;
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
        match strata_table::table::swap_metadata(&state.lake, &table, next).await {
            Ok(committed) => {
                tracing::info!(table = %ident, attempt, updates = req.updates.len(), "rest catalog: committed");
                return Ok(Json(json!({
                    "metadata-location": committed.metadata_location(),
                    "metadata": serde_json::to_value(committed.metadata())
                        .map_err(|e| RestError::server(format!("serializing metadata: {e}")))?,
                })));
            }
            Err(strata_table::Error::Conflict { .. }) => {
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
) -> RestResult<iceberg::spec::TableMetadataBuildResult> {
    let location = table.metadata_location().map(str::to_string);
    let carried = strata_table::position::carried_properties(table);
    let current = table.metadata().current_snapshot().map(|s| s.snapshot_id());
    let mut builder = table.metadata().clone().into_builder(location);
    for update in updates {
        let update = carry_positions(update.clone(), current, &carried)?;
        builder = update
            .apply(builder)
            .map_err(|e| RestError::bad_request(format!("applying updates: {e}")))?;
    }
    builder
        .build()
        .map_err(|e| RestError::bad_request(format!("building metadata: {e}")))
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

#[derive(Deserialize)]
struct CommitTransaction {
    #[serde(rename = "table-changes")]
    table_changes: Vec<TableChange>,
}

#[derive(Deserialize)]
struct TableChange {
    identifier: crate::tables::Ident,
    #[serde(default)]
    requirements: Vec<TableRequirement>,
    #[serde(default)]
    updates: Vec<TableUpdate>,
}

/// `POST /v1/transactions/commit`: every table's requirements are checked and its next
/// metadata written, then all catalog pointers are swapped in one SQLite transaction — all
/// tables move or none. A lost swap re-checks everything on fresh loads, as for one table.
pub(crate) async fn commit_transaction(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> RestResult<axum::response::Response> {
    use axum::response::IntoResponse;
    use std::str::FromStr;

    let req: CommitTransaction = parse_body(&body)?;
    if req.table_changes.is_empty() {
        return Err(RestError::bad_request("table-changes is empty"));
    }
    let mut changes = Vec::with_capacity(req.table_changes.len());
    for c in req.table_changes {
        let ident = c.identifier.into_ident()?;
        caller.check_namespace(ident.namespace())?;
        check_updates(&state, &c.updates)?;
        if changes.iter().any(|(i, _, _)| i == &ident) {
            return Err(RestError::bad_request(format!(
                "{ident} appears twice in table-changes"
            )));
        }
        if c.requirements
            .iter()
            .any(|r| matches!(r, TableRequirement::NotExist))
        {
            return Err(RestError::unsupported(
                "create transactions (assert-create) are not supported",
            ));
        }
        changes.push((ident, c.requirements, c.updates));
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let mut swaps = Vec::with_capacity(changes.len());
        let mut written: Vec<(iceberg::io::FileIO, String)> = Vec::new();
        let mut outcome: RestResult<()> = Ok(());
        for (ident, requirements, updates) in &changes {
            let step = async {
                let table = load_table(&state, ident).await?;
                for r in requirements {
                    r.check(Some(table.metadata()))
                        .map_err(|e| RestError::commit_failed(format!("{ident}: {e}")))?;
                }
                let next = apply_updates(&table, updates)?.metadata;
                let current = table
                    .metadata_location()
                    .ok_or_else(|| RestError::server(format!("{ident} has no metadata location")))?
                    .to_string();
                let location = iceberg::MetadataLocation::from_str(&current)?
                    .with_next_version()
                    .with_new_metadata(&next);
                next.write_to(table.file_io(), &location).await?;
                Ok::<_, RestError>((table.file_io().clone(), current, location.to_string()))
            };
            match step.await {
                Ok((io, current, next)) => {
                    written.push((io, next.clone()));
                    swaps.push((ident.clone(), current, next));
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let swapped = match outcome {
            Ok(()) => state.lake.swap_pointers(&swaps).await,
            Err(e) => {
                remove_files(&written).await;
                return Err(e);
            }
        };
        match swapped {
            Ok(true) => {
                tracing::info!(
                    tables = swaps.len(),
                    attempt,
                    "rest catalog: committed a transaction"
                );
                return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
            }
            Ok(false) => {
                remove_files(&written).await;
                tracing::debug!(
                    attempt,
                    "rest catalog: transaction lost a swap, re-checking"
                );
            }
            Err(e) => {
                remove_files(&written).await;
                return Err(e.into());
            }
        }
    }
    Err(RestError::commit_failed(format!(
        "other writers committed first {MAX_ATTEMPTS} times in a row; retry"
    )))
}

/// Deletes metadata files nobody references (best effort).
async fn remove_files(files: &[(iceberg::io::FileIO, String)]) {
    for (io, path) in files {
        let _ = io.delete(path).await;
    }
}
