//! Casting incoming rows to a table's Arrow schema, by column position or by name.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::CastOptions;
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::table::read::table_arrow_schema;

/// How incoming columns map to the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The i-th column goes to the i-th table column (INSERT without a column list).
    ByPosition,
    /// Columns go to the table column of the same name; missing ones are NULL.
    ByName,
}

/// Casts `batches` to the table's Arrow schema. Errors name the column: an unknown column, a
/// value that does not fit the column's type, a NULL in a required column.
pub fn conform(table: &Table, batches: &[RecordBatch], by: Match) -> Result<Vec<RecordBatch>> {
    let schema = table_arrow_schema(table)?;
    let ident = table.identifier();
    let mut out = Vec::with_capacity(batches.len());
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    for batch in batches {
        let incoming = batch.schema();
        if by == Match::ByPosition && incoming.fields().len() != schema.fields().len() {
            return Err(Error::Sql(format!(
                "{ident} has {} columns but the query gives {}",
                schema.fields().len(),
                incoming.fields().len()
            )));
        }
        if by == Match::ByName {
            for f in incoming.fields() {
                if schema.field_with_name(f.name()).is_err() {
                    return Err(Error::Sql(format!("{ident} has no column {}", f.name())));
                }
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let source = match by {
                Match::ByPosition => Some(batch.column(i).clone()),
                Match::ByName => batch.column_by_name(field.name()).cloned(),
            };
            let column = match source {
                Some(c) if c.data_type() == field.data_type() => c,
                Some(c) => arrow::compute::cast_with_options(&c, field.data_type(), &options)
                    .map_err(|e| {
                        Error::Sql(format!(
                            "column {} of {ident}: cannot store {} as {}: {e}",
                            field.name(),
                            c.data_type(),
                            field.data_type()
                        ))
                    })?,
                None => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::Sql(format!(
                    "column {} of {ident} is NOT NULL but {} rows give NULL",
                    field.name(),
                    column.null_count()
                )));
            }
            columns.push(column);
        }
        out.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::arrow(format!("conforming rows to {ident}"), e))?,
        );
    }
    Ok(out)
}
