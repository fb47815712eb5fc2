use std::sync::Arc;

use iceberg::arrow::schema_to_arrow_schema;

use crate::*;
use strata_table::batch::{BusPosition, EventBuffer};
use strata_table::schema::OdsTable;
use strata_table::write::write_data_files;

pub fn at(offset: u64) -> BusPosition {
    BusPosition {
        partition: 0,
        offset,
    }
}

/// Writes data files (not committed) for events `(i, name, hours after T0)` at offsets
/// `start_offset..` of partition 0.
pub async fn write_events(
    lake: &Lake,
    events: &[(usize, &str, i64)],
    start_offset: u64,
) -> Vec<iceberg::spec::DataFile> {
    let table = lake
        .catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap();
    let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
    let mut buf = EventBuffer::default();
    for (n, (i, name, h)) in events.iter().enumerate() {
        buf.push(&event(*i, name, *h), at(start_offset + n as u64));
    }
    let groups = buf
        .take_groups()
        .into_iter()
        .map(|(k, c)| (k, c.finish(schema.clone()).unwrap()))
        .collect();
    write_data_files(&table, groups).await.unwrap()
}
