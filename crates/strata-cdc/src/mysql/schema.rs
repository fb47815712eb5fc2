//! Table schemas from `information_schema`: columns in table order with their logical type,
//! and the primary key.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use strata_core::cdc::{ColumnSchema, ColumnType, TableSchema};

use crate::error::{Error, Result};

/// What decoding needs beyond the public [`ColumnSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    pub schema: ColumnSchema,
    /// `information_schema.COLUMNS.DATA_TYPE`, lowercase (`int`, `enum`, …).
    pub data_type: String,
    pub unsigned: bool,
    /// Bits of the integer type (8, 16, 24, 32, 64) or of BIT(n).
    pub bits: u32,
    /// DECIMAL scale (digits after the point).
    pub scale: u32,
    /// ENUM / SET members in declaration order.
    pub members: Vec<String>,
}

/// A source table as the connector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTable {
    pub columns: Vec<SourceColumn>,
    pub schema: TableSchema,
}

impl SourceTable {
    pub fn name(&self) -> &str {
        &self.schema.table
    }

    /// Indexes of the primary key columns in `columns`.
    pub fn key_indexes(&self) -> Vec<usize> {
        self.schema
            .primary_key
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| &c.schema.name == k))
            .collect()
    }
}

impl SourceColumn {
    /// Rebuilds what decoding needs from a column's public schema (its `source_type` is the
    /// server's `COLUMN_TYPE` text), for a schema read back from the bus.
    pub fn from_schema(schema: &ColumnSchema) -> std::result::Result<SourceColumn, String> {
        let column_type = schema.source_type.as_str();
        let data_type: String = column_type
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let numbers: Vec<u64> = column_type
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(inside, _)| {
                inside
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let (precision, scale) = match schema.kind {
            ColumnType::Decimal { precision, scale } => {
                (Some(precision as u64), Some(scale as u64))
            }
            _ => (numbers.first().copied(), numbers.get(1).copied()),
        };
        let (_, bits) = classify(&schema.name, &data_type, column_type, precision, scale)?;
        Ok(SourceColumn {
            schema: schema.clone(),
            data_type,
            unsigned: column_type.contains("unsigned"),
            bits,
            scale: scale.unwrap_or(0) as u32,
            members: parse_members(column_type),
        })
    }
}

impl SourceTable {
    /// The table as a schema record describes it (see [`SourceColumn::from_schema`]).
    pub fn from_schema(schema: &TableSchema) -> std::result::Result<SourceTable, String> {
        Ok(SourceTable {
            columns: schema
                .columns
                .iter()
                .map(SourceColumn::from_schema)
                .collect::<std::result::Result<_, _>>()?,
            schema: schema.clone(),
        })
    }
}

type ColumnRow = (
    String,
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

/// Reads `database.table`'s columns and primary key.
pub async fn load_table(
    conn: &mut Conn,
    source: &str,
    database: &str,
    table: &str,
) -> Result<SourceTable> {
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), LOWER(COLUMN_TYPE), IS_NULLABLE, \
             NUMERIC_PRECISION, NUMERIC_SCALE, CAST(ORDINAL_POSITION AS UNSIGNED) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| Error::Unsupported {
            table: table.to_string(),
            message: format!("reading information_schema.COLUMNS: {e}"),
        })?;
    if rows.is_empty() {
        return Err(Error::Unsupported {
            table: format!("{database}.{table}"),
            message: "table not found (or the user cannot see it)".to_string(),
        });
    }
    let mut columns = Vec::with_capacity(rows.len());
    for (name, data_type, column_type, nullable, precision, scale, _) in rows {
        let col = classify(&name, &data_type, &column_type, precision, scale).map_err(|m| {
            Error::Unsupported {
                table: format!("{database}.{table}"),
                message: format!("column {name} ({column_type}): {m}"),
            }
        })?;
        columns.push(SourceColumn {
            schema: ColumnSchema {
                name,
                source_type: column_type.clone(),
                kind: col.0,
                nullable: nullable == "YES",
            },
            data_type,
            unsigned: column_type.contains("unsigned"),
            bits: col.1,
            scale: scale.unwrap_or(0) as u32,
            members: parse_members(&column_type),
        });
    }
    let key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| Error::Unsupported {
            table: table.to_string(),
            message: format!("reading the primary key: {e}"),
        })?;
    Ok(SourceTable {
        schema: TableSchema {
            source: source.to_string(),
            database: database.to_string(),
            table: table.to_string(),
            columns: columns.iter().map(|c| c.schema.clone()).collect(),
            primary_key: key,
        },
        columns,
    })
}

/// The logical type and bit width of a column.
fn classify(
    _name: &str,
    data_type: &str,
    column_type: &str,
    precision: Option<u64>,
    scale: Option<u64>,
) -> std::result::Result<(ColumnType, u32), String> {
    let unsigned = column_type.contains("unsigned");
    Ok(match data_type {
        "tinyint" => (ColumnType::Int, 8),
        "smallint" => (ColumnType::Int, 16),
        "mediumint" => (ColumnType::Int, 24),
        "int" | "integer" if unsigned => (ColumnType::Long, 32),
        "int" | "integer" => (ColumnType::Int, 32),
        "bigint" if unsigned => (ColumnType::UnsignedLong, 64),
        "bigint" => (ColumnType::Long, 64),
        "year" => (ColumnType::Int, 16),
        "bit" => {
            let n = precision.unwrap_or(1) as u32;
            if n >= 64 {
                (ColumnType::UnsignedLong, 64)
            } else {
                (ColumnType::Long, n)
            }
        }
        "decimal" | "numeric" => {
            let p = precision.unwrap_or(10);
            let s = scale.unwrap_or(0);
            if p <= 38 {
                (
                    ColumnType::Decimal {
                        precision: p as u8,
                        scale: s as u8,
                    },
                    0,
                )
            } else {
                (ColumnType::String, 0)
            }
        }
        "float" => (ColumnType::Float, 0),
        "double" | "real" => (ColumnType::Double, 0),
        "date" => (ColumnType::Date, 0),
        "time" => (ColumnType::Time, 0),
        "datetime" => (ColumnType::DateTime, 0),
        "timestamp" => (ColumnType::Timestamp, 0),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "uuid" | "inet4" | "inet6" => (ColumnType::String, 0),
        "json" => (ColumnType::Json, 0),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            (ColumnType::Binary, 0)
        }
        other => return Err(format!("type {other} is not supported")),
    })
}

/// `enum('a','b''c')` → `["a", "b'c"]`; anything else → empty.
pub fn parse_members(column_type: &str) -> Vec<String> {
    let inner = column_type
        .strip_prefix("enum(")
        .or_else(|| column_type.strip_prefix("set("))
        .and_then(|s| s.strip_suffix(')'));
    let Some(inner) = inner else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        loop {
            match chars.next() {
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                Some('\'') | None => break,
                Some('\\') => {
                    if let Some(n) = chars.next() {
                        member.push(n);
                    }
                }
                Some(ch) => member.push(ch),
            }
        }
        out.push(member);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_quotes() {
        assert_eq!(parse_members("enum('a','b''c','')"), vec!["a", "b'c", ""]);
        assert_eq!(parse_members("set('x','y,z')"), vec!["x", "y,z"]);
        assert!(parse_members("int(11)").is_empty());
    }

    #[test]
    fn types_classify() {
        let c = |d: &str, t: &str| classify("c", d, t, Some(20), Some(0)).unwrap().0;
        assert_eq!(c("bigint", "bigint(20) unsigned"), ColumnType::UnsignedLong);
        assert_eq!(c("int", "int(10) unsigned"), ColumnType::Long);
        assert_eq!(c("tinyint", "tinyint(1)"), ColumnType::Int);
        assert!(classify("c", "geometry", "geometry", None, None).is_err());
    }
}
