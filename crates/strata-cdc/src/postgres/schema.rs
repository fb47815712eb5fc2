//! Table schemas from `pg_catalog`: columns in table order with their logical type, the
//! primary key and the replica identity.

use strata_core::cdc::{ColumnSchema, ColumnType, TableSchema};
use tokio_postgres::Client;

use super::pgoutput::Relation;
use crate::error::{Error, Result};

/// How a column's text output is turned into a value (finer than [`ColumnType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgKind {
    /// int2, int4, int8, oid.
    Integer,
    /// `t` / `f` → 1 / 0 (an `int` column, as MySQL's BOOLEAN).
    Bool,
    /// numeric(p,s) with p ≤ 38: exactly `s` digits after the point.
    Decimal {
        scale: u8,
    },
    Float4,
    Float8,
    /// `\x…` hex.
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    /// json, jsonb: the text as is.
    Json,
    /// An array: its text literal becomes a JSON array; elements typed by `elem`.
    Array {
        elem: ElemKind,
    },
    /// Everything else (text, varchar, char, uuid, wide or unconstrained numeric, enums,
    /// interval, inet, timetz, …): the server's text output, exactly.
    Text,
}

/// How array elements are written into the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemKind {
    /// Written as a JSON number (ints, floats, numeric; NaN/Infinity become strings).
    Number,
    /// `t`/`f` → true/false.
    Bool,
    /// JSON values embedded as they are.
    Json,
    /// A JSON string.
    String,
}

/// What decoding needs beyond the public [`ColumnSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    pub schema: ColumnSchema,
    /// `pg_type.typname` (`int4`, `_text`, …).
    pub type_name: String,
    pub kind: PgKind,
}

/// A source table as the connector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTable {
    /// The entry in the config's `tables` (`users` or `sales.orders`): topic and target key.
    pub entry: String,
    pub namespace: String,
    pub table: String,
    pub columns: Vec<SourceColumn>,
    pub schema: TableSchema,
    /// `pg_class.relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
}

impl SourceTable {
    /// The config entry: `cdc.<source>.<name>` and `ods.ods_<name>`.
    pub fn name(&self) -> &str {
        &self.entry
    }

    /// `"schema"."table"` for SQL.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.namespace),
            quote_ident(&self.table)
        )
    }
}

/// A double-quoted identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `users` → (`public`, `users`); `sales.orders` → (`sales`, `orders`).
pub fn split_entry(entry: &str) -> (&str, &str) {
    entry.split_once('.').unwrap_or(("public", entry))
}

/// Reads the table's columns, primary key and replica identity.
pub async fn load_table(client: &Client, source: &str, entry: &str) -> Result<SourceTable> {
    let (namespace, table) = split_entry(entry);
    let unsupported = |message: String| Error::Unsupported {
        table: format!("{namespace}.{table}"),
        message,
    };
    let rel = client
        .query_opt(
            "SELECT c.oid::int8, c.relreplident::text, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&namespace, &table],
        )
        .await
        .map_err(|e| unsupported(format!("reading pg_class: {e}")))?;
    let Some(rel) = rel else {
        return Err(unsupported(
            "table not found (or the user cannot see it)".to_string(),
        ));
    };
    let oid: i64 = rel.try_get(0).map_err(|e| unsupported(e.to_string()))?;
    let ident: String = rel.try_get(1).map_err(|e| unsupported(e.to_string()))?;
    let relkind: String = rel.try_get(2).map_err(|e| unsupported(e.to_string()))?;
    if relkind != "r" && relkind != "p" {
        return Err(unsupported(format!(
            "relation kind {relkind:?} is not a table (views and others cannot be replicated)"
        )));
    }
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
             a.attnotnull, a.atttypmod, COALESCE(et.typname::text, '') \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| unsupported(format!("reading pg_attribute: {e}")))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let get = |i: usize| -> Result<String> {
            row.try_get::<_, String>(i)
                .map_err(|e| unsupported(e.to_string()))
        };
        let name = get(0)?;
        let source_type = get(1)?;
        let type_name = get(2)?;
        let not_null: bool = row.try_get(3).map_err(|e| unsupported(e.to_string()))?;
        let typmod: i32 = row.try_get(4).map_err(|e| unsupported(e.to_string()))?;
        let elem = get(5)?;
        let (column_type, kind) = classify(&type_name, typmod, &elem);
        columns.push(SourceColumn {
            schema: ColumnSchema {
                name,
                source_type,
                kind: column_type,
                nullable: !not_null,
            },
            type_name,
            kind,
        });
    }
    let key_rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::int8::oid AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&oid],
        )
        .await
        .map_err(|e| unsupported(format!("reading the primary key: {e}")))?;
    let mut key = Vec::new();
    for r in key_rows {
        key.push(
            r.try_get::<_, String>(0)
                .map_err(|e| unsupported(e.to_string()))?,
        );
    }
    Ok(SourceTable {
        entry: entry.to_string(),
        namespace: namespace.to_string(),
        table: table.to_string(),
        schema: TableSchema {
            source: source.to_string(),
            database: namespace.to_string(),
            table: entry.to_string(),
            columns: columns.iter().map(|c| c.schema.clone()).collect(),
            primary_key: key,
        },
        columns,
        replica_identity: ident.bytes().next().unwrap_or(b'd'),
    })
}

/// A column of a relation message as `(name, type oid, type modifier)`: what tells one
/// relation shape from another.
pub type Shape = Vec<(String, u32, i32)>;

/// The shape of a relation message.
pub fn shape_of(rel: &Relation) -> Shape {
    rel.columns
        .iter()
        .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
        .collect()
}

/// The table as a relation message of the stream describes it — its columns at that point of
/// the stream, which the catalog may already have moved past. Types come from `pg_type`;
/// nullability from the catalog for columns it still has (else nullable); the key stays
/// `current`'s while the replica identity columns agree with it, else the catalog's.
pub async fn from_relation(
    client: &Client,
    current: &SourceTable,
    rel: &Relation,
) -> Result<SourceTable> {
    let now = load_table(client, &current.schema.source, &current.entry).await?;
    let unsupported = |message: String| Error::Unsupported {
        table: current.entry.clone(),
        message,
    };
    let mut columns = Vec::with_capacity(rel.columns.len());
    for c in &rel.columns {
        let row = client
            .query_one(
                "SELECT format_type($1::int8::oid, $2), t.typname::text, \
                 COALESCE(et.typname::text, '') FROM pg_type t \
                 LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
                 WHERE t.oid = $1::int8::oid",
                &[&(c.type_oid as i64), &c.type_modifier],
            )
            .await
            .map_err(|e| unsupported(format!("reading pg_type of column {}: {e}", c.name)))?;
        let get = |i: usize| -> Result<String> {
            row.try_get::<_, String>(i)
                .map_err(|e| unsupported(e.to_string()))
        };
        let (source_type, type_name, elem) = (get(0)?, get(1)?, get(2)?);
        let (column_type, kind) = classify(&type_name, c.type_modifier, &elem);
        let nullable = now
            .columns
            .iter()
            .find(|x| x.schema.name == c.name)
            .is_none_or(|x| x.schema.nullable);
        columns.push(SourceColumn {
            schema: ColumnSchema {
                name: c.name.clone(),
                source_type,
                kind: column_type,
                nullable,
            },
            type_name,
            kind,
        });
    }
    let flagged: Vec<&str> = rel
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.as_str())
        .collect();
    let same_set = |key: &[String]| {
        key.len() == flagged.len() && key.iter().all(|k| flagged.contains(&k.as_str()))
    };
    let exists = |key: &[String]| {
        key.iter()
            .all(|k| columns.iter().any(|c| &c.schema.name == k))
    };
    let primary_key = if rel.replica_identity == b'd' {
        if same_set(&current.schema.primary_key) {
            current.schema.primary_key.clone()
        } else if same_set(&now.schema.primary_key) {
            now.schema.primary_key.clone()
        } else {
            flagged.iter().map(|k| k.to_string()).collect()
        }
    } else if exists(&current.schema.primary_key) {
        current.schema.primary_key.clone()
    } else {
        now.schema.primary_key.clone()
    };
    Ok(SourceTable {
        schema: TableSchema {
            columns: columns.iter().map(|c| c.schema.clone()).collect(),
            primary_key,
            ..current.schema.clone()
        },
        columns,
        replica_identity: rel.replica_identity,
        ..current.clone()
    })
}

/// The logical type of a column from its `typname`, type modifier and (arrays) element type.
pub fn classify(type_name: &str, typmod: i32, elem: &str) -> (ColumnType, PgKind) {
    match type_name {
        "int2" | "int4" => (ColumnType::Int, PgKind::Integer),
        "int8" | "oid" => (ColumnType::Long, PgKind::Integer),
        "bool" => (ColumnType::Int, PgKind::Bool),
        "numeric" => {
            // typmod = ((precision << 16) | scale) + 4; -1 when unconstrained.
            if typmod >= 4 {
                let precision = ((typmod - 4) >> 16) & 0xffff;
                let scale = (typmod - 4) & 0xffff;
                if (1..=38).contains(&precision) && scale <= precision {
                    return (
                        ColumnType::Decimal {
                            precision: precision as u8,
                            scale: scale as u8,
                        },
                        PgKind::Decimal { scale: scale as u8 },
                    );
                }
            }
            (ColumnType::String, PgKind::Text)
        }
        "float4" => (ColumnType::Float, PgKind::Float4),
        "float8" => (ColumnType::Double, PgKind::Float8),
        "bytea" => (ColumnType::Binary, PgKind::Bytea),
        "date" => (ColumnType::Date, PgKind::Date),
        "time" => (ColumnType::Time, PgKind::Time),
        "timestamp" => (ColumnType::DateTime, PgKind::Timestamp),
        "timestamptz" => (ColumnType::Timestamp, PgKind::Timestamptz),
        "json" | "jsonb" => (ColumnType::Json, PgKind::Json),
        _ if !elem.is_empty() => {
            let elem = match elem {
                "int2" | "int4" | "int8" | "oid" | "float4" | "float8" | "numeric" => {
                    ElemKind::Number
                }
                "bool" => ElemKind::Bool,
                "json" | "jsonb" => ElemKind::Json,
                _ => ElemKind::String,
            };
            (ColumnType::Json, PgKind::Array { elem })
        }
        _ => (ColumnType::String, PgKind::Text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_classify() {
        assert_eq!(classify("int8", -1, "").0, ColumnType::Long);
        assert_eq!(classify("bool", -1, "").1, PgKind::Bool);
        // numeric(12,4): typmod (12 << 16 | 4) + 4
        assert_eq!(
            classify("numeric", (12 << 16 | 4) + 4, "").0,
            ColumnType::Decimal {
                precision: 12,
                scale: 4
            }
        );
        assert_eq!(
            classify("numeric", (50 << 16 | 4) + 4, "").0,
            ColumnType::String
        );
        assert_eq!(classify("numeric", -1, "").0, ColumnType::String);
        assert_eq!(
            classify("_int4", -1, "int4"),
            (
                ColumnType::Json,
                PgKind::Array {
                    elem: ElemKind::Number
                }
            )
        );
        assert_eq!(classify("uuid", -1, "").0, ColumnType::String);
        assert_eq!(classify("timestamptz", 6, "").0, ColumnType::Timestamp);
    }

    #[test]
    fn entries_split_into_schema_and_table() {
        assert_eq!(split_entry("users"), ("public", "users"));
        assert_eq!(split_entry("sales.orders"), ("sales", "orders"));
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
