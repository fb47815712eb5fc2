//! Reading table rows with prepared statements: the snapshot's key-ordered chunks and
//! `verify`'s full reads.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row as MyRow};
use strata_core::cdc::{Row, Value};

use super::decode::{decode, to_param, Origin};
use super::schema::SourceTable;
use crate::error::{Error, Result};

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

fn select_list(table: &SourceTable) -> String {
    table
        .columns
        .iter()
        .map(|c| quote(&c.schema.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes one result row into a row image.
pub fn decode_row(table: &SourceTable, row: MyRow) -> Result<Row> {
    let values = row.unwrap();
    let mut out = Row::new();
    for (col, v) in table.columns.iter().zip(values) {
        let value = decode(col, v, Origin::Query).map_err(|message| Error::Unsupported {
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
    conn: &mut Conn,
    table: &SourceTable,
    after: Option<&[Value]>,
    limit: usize,
) -> Result<Vec<Row>> {
    let name = format!(
        "{}.{}",
        quote(&table.schema.database),
        quote(&table.schema.table)
    );
    let key = &table.schema.primary_key;
    let (sql, params) = if key.is_empty() {
        (
            format!("SELECT {} FROM {name}", select_list(table)),
            Params::Empty,
        )
    } else {
        let order = key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
        match after {
            None => (
                format!(
                    "SELECT {} FROM {name} ORDER BY {order} LIMIT {limit}",
                    select_list(table)
                ),
                Params::Empty,
            ),
            Some(after) => {
                let marks = vec!["?"; key.len()].join(", ");
                (
                    format!(
                        "SELECT {} FROM {name} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT {limit}",
                        select_list(table)
                    ),
                    Params::Positional(after.iter().map(to_param).collect()),
                )
            }
        }
    };
    let rows: Vec<MyRow> = conn.exec(sql, params).await.map_err(|e| Error::Source {
        source_name: table.schema.source.clone(),
        host: String::new(),
        message: format!("reading {}: {e}", table.name()),
    })?;
    rows.into_iter().map(|r| decode_row(table, r)).collect()
}

/// Every row of the table (for `verify`), in key order.
pub async fn read_all(conn: &mut Conn, table: &SourceTable) -> Result<Vec<Row>> {
    read_chunk(conn, table, None, usize::MAX >> 1).await
}
