//! The pull's lake table: created on the first window (partitioned by `identity(window_start)`),
//! given new columns when fields are declared later, and written one window at a time by a
//! partition overwrite — the window's partition replaced in one Iceberg commit.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use iceberg::spec::Literal;
use strata_table::table::evolve;
use strata_table::table::read::table_arrow_schema;
use strata_table::table::{self, Outcome};
use strata_table::Lake;

use crate::error::{Error, Result};
use crate::pull::Pull;
use crate::rows::{self, WINDOW_START};
use crate::window::Window;

/// Creates the table, or adds the declared fields it lacks. A field whose column has another
/// type is an error naming both.
pub async fn ensure_table(lake: &Lake, pull: &Pull) -> Result<()> {
    let wanted = rows::schema(&pull.fields);
    let ident = &pull.table;
    if table::create_table(lake, ident, &wanted, Some(WINDOW_START), HashMap::new()).await? {
        tracing::info!(pull = %pull.name(), table = %ident, "created the pull's table");
        return Ok(());
    }
    let existing = table_arrow_schema(&lake.load_table(ident).await?)?;
    let mut missing = Vec::new();
    for f in wanted.fields() {
        match existing.field_with_name(f.name()) {
            Ok(have) if same_type(have.data_type(), f.data_type()) => {}
            Ok(have) => {
                return Err(Error::Config(format!(
                    "{ident} has column {} as {}, but pulls.{} declares it {}: rename the field or change the table",
                    f.name(),
                    have.data_type(),
                    pull.name(),
                    f.data_type()
                )))
            }
            Err(_) => missing.push(f.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names = evolve::add_columns(lake, ident, &missing).await?;
    tracing::info!(pull = %pull.name(), table = %ident, columns = ?names, "added the pull's new fields to its table");
    Ok(())
}

fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Timestamp(ua, ta), DataType::Timestamp(ub, tb)) => {
            ua == ub && ta.is_some() == tb.is_some()
        }
        _ => a == b,
    }
}

/// Replaces `window`'s partition with `batches` (none: the partition is emptied) in one
/// commit.
pub async fn write_window(
    lake: &Lake,
    pull: &Pull,
    window: &Window,
    batches: Vec<RecordBatch>,
) -> Result<Outcome> {
    let value = Literal::timestamptz(window.start.timestamp_micros());
    Ok(table::overwrite_partition(lake, &pull.table, WINDOW_START, value, batches).await?)
}
