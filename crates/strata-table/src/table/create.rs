//! Creating lake tables from an Arrow schema: type mapping to what Iceberg stores, and
//! partition specs written as SQL (`dt, day(ts), bucket(16, id)`). `strata sql`'s CREATE TABLE
//! and the warehouse's model tables both go through here.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use datafusion::sql::sqlparser::parser::Parser;
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{Schema as IcebergSchema, Transform, UnboundPartitionSpec};
use iceberg::{TableCreation, TableIdent};

use crate::dialect::TimeTravelDialect;
use crate::error::{Error, Result};
use crate::lake::Lake;

/// Creates `ident` (and its namespace) with columns from `schema` and partitioning from
/// `partition_by` (SQL, e.g. `"dt"` or `"day(ts), bucket(8, id)"`). No-op if it exists.
pub async fn create_table(
    lake: &Lake,
    ident: &TableIdent,
    schema: &ArrowSchema,
    partition_by: Option<&str>,
    properties: HashMap<String, String>,
) -> Result<bool> {
    let catalog = lake.catalog();
    let ns = ident.namespace().clone();
    strata_core::names::check_namespace(ns.as_ref()).map_err(Error::Invalid)?;
    strata_core::names::check_name("table name", ident.name()).map_err(Error::Invalid)?;
    crate::lake::ensure_namespace(catalog.as_ref(), &ns).await?;
    if catalog
        .table_exists(ident)
        .await
        .map_err(|e| Error::iceberg(format!("looking up {ident}"), e))?
    {
        return Ok(false);
    }
    let arrow = lake_schema(&Arc::new(schema.clone()), true)?;
    let iceberg_schema = arrow_schema_to_schema_auto_assign_ids(&arrow)
        .map_err(|e| Error::Sql(format!("columns of {ident}: {e}")))?;
    let spec = match partition_by {
        Some(text) if !text.trim().is_empty() => Some(partition_spec(text, &iceberg_schema)?),
        _ => None,
    };
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(iceberg_schema)
        .partition_spec_opt(spec)
        .properties(properties)
        .build();
    match catalog.create_table(&ns, creation).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => Ok(false),
        Err(e) => Err(Error::iceberg(format!("creating {ident}"), e)),
    }
}

fn normalize(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    crate::dialect::normalize(ident)
}

/// Arrow types Iceberg can store: nanosecond timestamps become microseconds, view and large
/// strings plain strings, unsigned integers the next wider signed type.
pub fn lake_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Time32(_) | DataType::Time64(_) => DataType::Time64(TimeUnit::Microsecond),
        DataType::Date64 => DataType::Date32,
        DataType::Dictionary(_, v) => lake_type(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => DataType::List(
            Arc::new(f.as_ref().clone().with_data_type(lake_type(f.data_type()))),
        ),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(lake_type(f.data_type())))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn lake_schema(schema: &SchemaRef, all_nullable: bool) -> Result<ArrowSchema> {
    Ok(ArrowSchema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                Field::new(
                    f.name(),
                    lake_type(f.data_type()),
                    all_nullable || f.is_nullable(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// `PARTITIONED BY` items: `col`, `year|month|day|hour(col)` (also plural), `bucket(n, col)`,
/// `truncate(w, col)`.
pub fn partition_spec(text: &str, schema: &IcebergSchema) -> Result<UnboundPartitionSpec> {
    let exprs = Parser::new(&TimeTravelDialect)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_comma_separated(Parser::parse_expr))
        .map_err(|e| Error::Sql(format!("PARTITIONED BY ({text}): {e}")))?;
    let mut builder = UnboundPartitionSpec::builder();
    for expr in exprs {
        let (transform, column, suffix) = match &expr {
            SqlExpr::Identifier(i) => (Transform::Identity, normalize(i), None),
            SqlExpr::Function(f) => {
                let fname = f.name.to_string().to_lowercase();
                let args: Vec<String> = match &f.args {
                    datafusion::sql::sqlparser::ast::FunctionArguments::List(l) => {
                        l.args.iter().map(|a| a.to_string()).collect()
                    }
                    _ => Vec::new(),
                };
                let column_of = |s: &str| s.trim_matches('"').to_lowercase();
                let number = |s: &str| {
                    s.parse::<u32>().map_err(|_| {
                        Error::Sql(format!(
                            "PARTITIONED BY {expr}: {s} is not a positive number"
                        ))
                    })
                };
                match (fname.as_str(), args.as_slice()) {
                    ("year" | "years", [c]) => (Transform::Year, column_of(c), Some("year")),
                    ("month" | "months", [c]) => (Transform::Month, column_of(c), Some("month")),
                    ("day" | "days", [c]) => (Transform::Day, column_of(c), Some("day")),
                    ("hour" | "hours", [c]) => (Transform::Hour, column_of(c), Some("hour")),
                    ("bucket", [n, c]) => (Transform::Bucket(number(n)?), column_of(c), Some("bucket")),
                    ("truncate", [w, c]) => {
                        (Transform::Truncate(number(w)?), column_of(c), Some("trunc"))
                    }
                    _ => {
                        return Err(Error::Sql(format!(
                            "PARTITIONED BY {expr}: use a column, year/month/day/hour(col), bucket(n, col) or truncate(w, col)"
                        )))
                    }
                }
            }
            other => {
                return Err(Error::Sql(format!(
                    "PARTITIONED BY {other}: use a column or a transform like day(ts)"
                )))
            }
        };
        let field = schema
            .field_by_name(&column)
            .ok_or_else(|| Error::Sql(format!("PARTITIONED BY {expr}: no column {column}")))?;
        let name = match suffix {
            None => column.clone(),
            Some(s) => format!("{column}_{s}"),
        };
        builder = builder
            .add_partition_field(field.id, name, transform)
            .map_err(|e| Error::Sql(format!("PARTITIONED BY {expr}: {e}")))?;
    }
    let spec = builder.build();
    // Check each transform fits its column's type now, not at the first write.
    spec.clone()
        .bind(schema.clone())
        .map_err(|e| Error::Sql(format!("PARTITIONED BY ({text}): {e}")))?;
    Ok(spec)
}
