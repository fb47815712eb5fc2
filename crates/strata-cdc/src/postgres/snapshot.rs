//! Reading table rows as text: the snapshot's key-ordered chunks and `verify`'s full reads.
//!
//! The simple query protocol returns every column through its type's output function, the
//! same text pgoutput sends (a `::text` cast would not: it trims `char(n)`, adds `inet`
//! masks, spells booleans out), so snapshot and stream values agree for every type.

use strata_core::cdc::{Row, Value};
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::config::SourceCommon;

use super::config::Connect;
use super::decode::{decode, to_text};
use super::schema::load_table;
use super::schema::{quote_ident, SourceTable};
use crate::error::{Error, Result};

fn select_list(table: &SourceTable) -> String {
    table
        .columns
        .iter()
        .map(|c| quote_ident(&c.schema.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `'text'` as a literal (`standard_conforming_strings` is on in our sessions).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Decodes one result row (text format) into a row image.
pub fn decode_row(table: &SourceTable, row: &SimpleQueryRow) -> Result<Row> {
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

/// Up to `limit` rows with a key greater than `after`, in key order. Tables without a
/// primary key are read whole in one go (`limit` ignored).
pub async fn read_chunk(
    client: &Client,
    table: &SourceTable,
    after: Option<&[Value]>,
    limit: usize,
) -> Result<Vec<Row>> {
    let key = &table.schema.primary_key;
    let mut sql = format!("SELECT {} FROM {}", select_list(table), table.qualified());
    if !key.is_empty() {
        let order = key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(after) = after {
            let mut bounds = Vec::new();
            for (k, v) in key.iter().zip(after) {
                let col = table
                    .columns
                    .iter()
                    .find(|c| &c.schema.name == k)
                    .ok_or_else(|| Error::Internal(format!("key column {k} not in the table")))?;
                let text = to_text(col, v).ok_or_else(|| {
                    Error::Internal(format!("{}: key column {k} has no value", table.name()))
                })?;
                bounds.push(format!(
                    "{}::{}",
                    quote_literal(&text),
                    col.schema.source_type
                ));
            }
            sql.push_str(&format!(" WHERE ({order}) > ({})", bounds.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    }
    let messages = client.simple_query(&sql).await.map_err(|e| Error::Source {
        source_name: table.schema.source.clone(),
        host: String::new(),
        message: format!(
            "reading {}: {}",
            table.name(),
            super::config::error_text(&e)
        ),
    })?;
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(decode_row(table, r)),
            _ => None,
        })
        .collect()
}

/// Every row of the table (for `verify`), in key order.
pub async fn read_all(client: &Client, table: &SourceTable) -> Result<Vec<Row>> {
    read_chunk(client, table, None, i64::MAX as usize).await
}

/// Reads the current schema and every row of `tables` (all configured tables when empty),
/// for `strata cdc verify`.
pub async fn read_tables(
    config: &SourceCommon,
    tables: &[String],
) -> Result<Vec<(SourceTable, Vec<Row>)>> {
    let connect = Connect::new(config)?;
    let client = connect.connect().await?;
    let names = if tables.is_empty() {
        &config.tables[..]
    } else {
        tables
    };
    let mut out = Vec::new();
    for t in names {
        let table = load_table(&client, &config.name, t).await?;
        let rows = read_all(&client, &table).await.map_err(|e| match e {
            Error::Source {
                source_name,
                message,
                ..
            } => Error::Source {
                source_name,
                host: connect.host.clone(),
                message,
            },
            other => other,
        })?;
        out.push((table, rows));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(super::quote_literal("it's"), "'it''s'");
    }
}
