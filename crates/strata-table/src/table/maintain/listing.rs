//! The listings behind `strata table history|snapshots|files`: rows as Rust values, and as
//! Arrow batches for `strata_sql::format_batches` (table, CSV or JSON).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use iceberg::spec::{DataContentType, Struct};
use iceberg::table::Table;
use iceberg::TableIdent;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::files::TableFiles;

/// One entry of the table's history: when a snapshot became current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    /// Epoch milliseconds.
    pub made_current_at: i64,
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    /// On the current snapshot's line of ancestors (false: rolled back or replaced).
    pub is_current_ancestor: bool,
}

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Epoch milliseconds.
    pub committed_at: i64,
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    /// `append`, `replace`, `overwrite` or `delete`.
    pub operation: String,
    pub manifest_list: String,
    pub summary: BTreeMap<String, String>,
}

/// One live file of the current snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    /// `data`, `position_deletes` or `equality_deletes`.
    pub content: String,
    pub file_path: String,
    /// `field=value/…`, empty for an unpartitioned file.
    pub partition: String,
    pub spec_id: i32,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
    pub sequence_number: i64,
}

/// The snapshot log, oldest first.
pub async fn history(lake: &Lake, ident: &TableIdent) -> Result<Vec<HistoryRow>> {
    let table = lake.load_table(ident).await?;
    let metadata = table.metadata();
    let mut ancestors = HashSet::new();
    let mut next = metadata.current_snapshot();
    while let Some(s) = next {
        if !ancestors.insert(s.snapshot_id()) {
            break;
        }
        next = s
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    Ok(metadata
        .history()
        .iter()
        .map(|log| HistoryRow {
            made_current_at: log.timestamp_ms,
            snapshot_id: log.snapshot_id,
            parent_id: metadata
                .snapshot_by_id(log.snapshot_id)
                .and_then(|s| s.parent_snapshot_id()),
            is_current_ancestor: ancestors.contains(&log.snapshot_id),
        })
        .collect())
}

/// Every snapshot the metadata holds, oldest first.
pub async fn snapshots(lake: &Lake, ident: &TableIdent) -> Result<Vec<SnapshotRow>> {
    let table = lake.load_table(ident).await?;
    let mut rows: Vec<SnapshotRow> = table
        .metadata()
        .snapshots()
        .map(|s| SnapshotRow {
            committed_at: s.timestamp_ms(),
            snapshot_id: s.snapshot_id(),
            parent_id: s.parent_snapshot_id(),
            operation: s.summary().operation.as_str().to_string(),
            manifest_list: s.manifest_list().to_string(),
            summary: s
                .summary()
                .additional_properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect();
    rows.sort_by_key(|r| (r.committed_at, r.snapshot_id));
    Ok(rows)
}

/// The live data and delete files of the current snapshot, by partition and path.
pub async fn files(lake: &Lake, ident: &TableIdent) -> Result<Vec<FileRow>> {
    let table = lake.load_table(ident).await?;
    let files = TableFiles::current(&table).await?;
    let mut rows: Vec<FileRow> = files
        .manifests
        .iter()
        .flat_map(|m| m.live.iter())
        .map(|f| FileRow {
            content: match f.file.content_type() {
                DataContentType::Data => "data",
                DataContentType::PositionDeletes => "position_deletes",
                DataContentType::EqualityDeletes => "equality_deletes",
            }
            .to_string(),
            file_path: f.path().to_string(),
            partition: partition_text(&table, f.spec_id, f.file.partition()),
            spec_id: f.spec_id,
            record_count: f.file.record_count(),
            file_size_in_bytes: f.file.file_size_in_bytes(),
            sequence_number: f.sequence_number,
        })
        .collect();
    rows.sort_by(|a, b| (&a.partition, &a.file_path).cmp(&(&b.partition, &b.file_path)));
    Ok(rows)
}

/// `field=value/…` as in data file paths (human-readable transform values).
fn partition_text(table: &Table, spec_id: i32, partition: &Struct) -> String {
    let metadata = table.metadata();
    let Some(spec) = metadata.partition_spec_by_id(spec_id) else {
        return format!("spec {spec_id}: {partition:?}");
    };
    let types = spec.partition_type(metadata.current_schema()).ok();
    spec.fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let value = partition.fields().get(i).and_then(|v| v.as_ref());
            let text = match types.as_ref().and_then(|t| t.fields().get(i)) {
                Some(t) => field.transform.to_human_string(&t.field_type, value),
                None => format!("{value:?}"),
            };
            format!("{}={text}", field.name)
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn ts_array(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("building a listing", e))
}

/// `made_current_at, snapshot_id, parent_id, is_current_ancestor`.
pub fn history_batch(rows: &[HistoryRow]) -> Result<RecordBatch> {
    batch(
        vec![
            ts_field("made_current_at"),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("is_current_ancestor", DataType::Boolean, false),
        ],
        vec![
            ts_array(rows.iter().map(|r| r.made_current_at)),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.parent_id))),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.is_current_ancestor)),
            )),
        ],
    )
}

/// `committed_at, snapshot_id, parent_id, operation` and the summary's file and record
/// counts (`added_data_files`, `deleted_data_files`, `added_delete_files`,
/// `removed_delete_files`, `total_records`, `total_data_files`, `total_delete_files`).
pub fn snapshots_batch(rows: &[SnapshotRow]) -> Result<RecordBatch> {
    let counters = [
        ("added_data_files", "added-data-files"),
        ("deleted_data_files", "deleted-data-files"),
        ("added_delete_files", "added-delete-files"),
        ("removed_delete_files", "removed-delete-files"),
        ("total_records", "total-records"),
        ("total_data_files", "total-data-files"),
        ("total_delete_files", "total-delete-files"),
    ];
    let mut fields = vec![
        ts_field("committed_at"),
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("operation", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        ts_array(rows.iter().map(|r| r.committed_at)),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.snapshot_id),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.parent_id))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.operation.as_str()),
        )),
    ];
    for (column, key) in counters {
        fields.push(Field::new(column, DataType::Int64, true));
        columns.push(Arc::new(Int64Array::from_iter(rows.iter().map(|r| {
            r.summary
                .get(key)
                .and_then(|v| v.parse::<i64>().ok())
                .or(if key.starts_with("total") {
                    None
                } else {
                    Some(0)
                })
        }))));
    }
    batch(fields, columns)
}

/// `content, partition, file_path, record_count, file_size_in_bytes, sequence_number,
/// spec_id`.
pub fn files_batch(rows: &[FileRow]) -> Result<RecordBatch> {
    batch(
        vec![
            Field::new("content", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("file_path", DataType::Utf8, false),
            Field::new("record_count", DataType::Int64, false),
            Field::new("file_size_in_bytes", DataType::Int64, false),
            Field::new("sequence_number", DataType::Int64, false),
            Field::new("spec_id", DataType::Int32, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.content.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.partition.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.file_path.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.record_count as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.file_size_in_bytes as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.sequence_number),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.spec_id))),
        ],
    )
}
