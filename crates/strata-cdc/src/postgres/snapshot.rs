//! Reading table rows as text: the snapshot's key-ordered chunks and `verify`'s full reads.

use strata_core::cdc::{Row, Value};
use tokio_postgres::{Client, GenericClient};

use super::decode::{decode, to_text};
use super::schema::{quote_ident, SourceTable};
use crate::error::{Error, Result};

fn select_list(table: &SourceTable) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(&c.schema.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes one result row (every column selected as text) into a row image.
pub fn decode_row(table: &SourceTable, row: &tokio_postgres::Row) -> Result<Row> {
    let mut out = Row::new();
    for (i, col) in table.columns.iter().enumerate() {
        let text: Option<&str> = row.try_get(i).map_err(|e| {
            Error::Internal(format!(
                "{}: column {} did not come back as text: {e}",
                table.name(),
                col.schema.name
            ))
        })?;
        let value = decode(col, text).map_err(|message| Error::Unsupported {
            table: table.name().to_string(),
            message,
        })?;
        out.insert(col.schema.name.clone(), value);
    }
    Ok(out)
}

/// The key values of `row`, in key order.
pub fn key_of(table: &SourceTable, row: &Row) -> Vec<Value> {
    table
        .schema
        .primary_key
        .iter()
        .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Up to `limit` rows with a key greater than `after`, in key order. Tables without a
/// primary key are read whole in one go (`limit` ignored). `client` may be a transaction.
pub async fn read_chunk(
    client: &impl GenericClient,
    table: &SourceTable,
    after: Option<&[Value]>,
    limit: usize,
) -> Result<Vec<Row>> {
    let key = &table.schema.primary_key;
    let mut sql = format!("SELECT {} FROM {}", select_list(table), table.qualified());
    let mut params: Vec<Option<String>> = Vec::new();
    if !key.is_empty() {
        let order = key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(after) = after {
            let mut marks = Vec::new();
            for (i, (k, v)) in key.iter().zip(after).enumerate() {
                let col = table
                    .columns
                    .iter()
                    .find(|c| &c.schema.name == k)
                    .ok_or_else(|| Error::Internal(format!("key column {k} not in the table")))?;
                params.push(to_text(col, v));
                marks.push(format!("${}::text::{}", i + 1, col.schema.source_type));
            }
            sql.push_str(&format!(" WHERE ({order}) > ({})", marks.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    }
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let rows = client
        .query(sql.as_str(), &refs)
        .await
        .map_err(|e| Error::Source {
            source_name: table.schema.source.clone(),
            host: String::new(),
            message: format!("reading {}: {e}", table.name()),
        })?;
    rows.iter().map(|r| decode_row(table, r)).collect()
}

/// Every row of the table (for `verify`), in key order.
pub async fn read_all(client: &Client, table: &SourceTable) -> Result<Vec<Row>> {
    read_chunk(client, table, None, i64::MAX as usize).await
}
