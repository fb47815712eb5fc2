//! Reading a table's live rows together with where each row lives (`_file`, `_pos`), which
//! row-level changes need to write position deletes or rewrite files.
//!
//! Each data file is read through iceberg's Arrow reader (so columns resolve by field id and
//! renamed or added columns read right) without predicates or deletes, which keeps the output
//! rows in file order: the n-th row is position n. The table's position deletes are then
//! applied here. Equality deletes (Strata never writes them) are refused: compact first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Int32Array, Int64Array, RecordBatch, RunArray,
    StringArray, UInt32Array,
};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataContentType;
use iceberg::table::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::table::cache;
use crate::table::files::{LiveFile, TableFiles};

/// Column with the data file path of each row.
pub const FILE_COLUMN: &str = "_file";
/// Column with the row's position in its data file.
pub const POS_COLUMN: &str = "_pos";

/// Arrow schema of the table's current schema (with iceberg's field-id metadata), plus
/// `_file` and `_pos`.
pub fn located_schema(table: &Table) -> Result<SchemaRef> {
    let base = table_arrow_schema(table)?;
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    // One value per data file: dictionary-encoded, so a file's rows share one string.
    fields.push(Field::new(
        FILE_COLUMN,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    ));
    fields.push(Field::new(POS_COLUMN, DataType::Int64, false));
    Ok(Arc::new(ArrowSchema::new(fields)))
}

/// The current schema as Arrow, as iceberg's reader and writer see it.
pub fn table_arrow_schema(table: &Table) -> Result<SchemaRef> {
    let schema = schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(|e| Error::iceberg("converting the table schema to arrow", e))?;
    Ok(Arc::new(schema))
}

/// Position deletes of the snapshot, by data file path.
pub async fn position_deletes(
    table: &Table,
    files: &TableFiles,
) -> Result<HashMap<String, HashSet<i64>>> {
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    for f in files.delete_files() {
        match f.file.content_type() {
            DataContentType::PositionDeletes => {}
            DataContentType::EqualityDeletes => {
                return Err(Error::Sql(format!(
                    "{} has equality delete files (written by another engine); run `strata table compact {}` first",
                    table.identifier(),
                    table.identifier()
                )))
            }
            DataContentType::Data => continue,
        }
        let file = match cache::lookup(&cache::DELETES, f.path()) {
            Some(file) => file,
            None => {
                let file = Arc::new(read_position_delete_file(table, f).await?);
                let weight = file.values().map(|p| p.len() as u64).sum();
                cache::store(&cache::DELETES, f.path(), file.clone(), weight);
                file
            }
        };
        for (path, positions) in file.iter() {
            out.entry(path.clone())
                .or_default()
                .extend(positions.iter().copied());
        }
    }
    Ok(out)
}

/// The (data file path → positions) pairs of one position delete file.
pub async fn read_position_delete_file(
    table: &Table,
    f: &LiveFile,
) -> Result<HashMap<String, HashSet<i64>>> {
    let mut out: HashMap<String, HashSet<i64>> = HashMap::new();
    let bytes = table
        .file_io()
        .new_input(f.path())
        .map_err(|e| Error::iceberg(format!("opening {}", f.path()), e))?
        .read()
        .await
        .map_err(|e| Error::iceberg(format!("reading {}", f.path()), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| Error::io(format!("reading delete file {}", f.path()), e))?
        .build()
        .map_err(|e| Error::io(format!("reading delete file {}", f.path()), e))?;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(format!("reading {}", f.path()), e))?;
        let paths = batch
            .column_by_name("file_path")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let positions = batch
            .column_by_name("pos")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
        let (Some(paths), Some(positions)) = (paths, positions) else {
            return Err(Error::Internal(format!(
                "position delete file {} lacks file_path/pos columns",
                f.path()
            )));
        };
        for i in 0..batch.num_rows() {
            out.entry(paths.value(i).to_string())
                .or_default()
                .insert(positions.value(i));
        }
    }
    Ok(out)
}

/// Reads the live rows of one data file with `_file` and `_pos` appended: the columns of
/// `schema`, which is [`located_schema`] or a projection of it that keeps `_file` and `_pos`
/// last (unread columns are never decoded).
pub async fn read_located(
    table: &Table,
    file: &LiveFile,
    deleted: Option<&HashSet<i64>>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    stream_located(table, file, deleted.cloned(), schema)?
        .try_collect()
        .await
}

/// [`read_located`] as a stream of batches: one batch of the file in memory at a time, so a
/// reader of a large file (a feature sync) holds a bounded amount of it.
pub fn stream_located(
    table: &Table,
    file: &LiveFile,
    deleted: Option<HashSet<i64>>,
    schema: &SchemaRef,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let metadata = table.metadata();
    let current = metadata.current_schema().clone();
    // The columns `schema` asks for (a located schema, possibly projected), by field id. With
    // none asked for (only `_file` / `_pos`), the first column is read to count the rows.
    let wanted: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .filter(|f| f.name() != FILE_COLUMN && f.name() != POS_COLUMN)
        .collect();
    let mut field_ids = Vec::with_capacity(wanted.len().max(1));
    for f in &wanted {
        let field = current.field_by_name(f.name()).ok_or_else(|| {
            Error::Internal(format!("{} has no column {}", table.identifier(), f.name()))
        })?;
        field_ids.push(field.id);
    }
    let counting_only = field_ids.is_empty();
    if counting_only {
        if let Some(first) = current.as_struct().fields().first() {
            field_ids.push(first.id);
        }
    }
    let spec = metadata.partition_spec_by_id(file.spec_id).cloned();
    let task = FileScanTask::builder()
        .with_file_size_in_bytes(file.file.file_size_in_bytes())
        .with_start(0)
        .with_length(file.file.file_size_in_bytes())
        .with_record_count(Some(file.file.record_count()))
        .with_data_file_path(file.path().to_string())
        .with_data_file_format(file.file.file_format())
        .with_schema(current)
        .with_project_field_ids(field_ids)
        .with_partition(Some(file.file.partition().clone()))
        .with_partition_spec(spec)
        .with_name_mapping(None)
        .with_case_sensitive(true)
        .build();
    let reader = table.reader_builder().build();
    let tasks = Box::pin(futures::stream::once(async { Ok(task) }));
    let path = file.path().to_string();
    let stream = reader
        .read(tasks)
        .map_err(|e| Error::iceberg(format!("reading {path}"), e))?
        .stream();
    let schema = schema.clone();
    let mut pos: i64 = 0;
    let located = stream
        .map_err(move |e| Error::iceberg("reading a data file", e))
        .and_then(move |batch| {
            let n = batch.num_rows();
            let start = pos;
            pos += n as i64;
            let result = locate(
                batch,
                &wanted,
                counting_only,
                &path,
                start,
                deleted.as_ref(),
                &schema,
            );
            futures::future::ready(result)
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0));
    Ok(Box::pin(located))
}

/// One batch of a data file, starting at row `start`, as located rows with deletes applied.
fn locate(
    batch: RecordBatch,
    wanted: &[Field],
    counting_only: bool,
    path: &str,
    start: i64,
    deleted: Option<&HashSet<i64>>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = if counting_only {
        Vec::new()
    } else {
        batch
            .columns()
            .iter()
            .zip(wanted.iter())
            .map(|(c, f)| plain_column(c, f.data_type()))
            .collect::<Result<_>>()?
    };
    columns.push(Arc::new(DictionaryArray::<Int32Type>::new(
        Int32Array::from(vec![0; n]),
        Arc::new(StringArray::from(vec![path])),
    )));
    let positions = Int64Array::from_iter_values(start..start + n as i64);
    columns.push(Arc::new(positions.clone()));
    let located = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::arrow(format!("reading {path}"), e))?;
    match deleted {
        Some(deleted) if !deleted.is_empty() => {
            let keep: BooleanArray = positions
                .iter()
                .map(|p| p.map(|p| !deleted.contains(&p)))
                .collect();
            arrow::compute::filter_record_batch(&located, &keep)
                .map_err(|e| Error::arrow("applying position deletes", e))
        }
        _ => Ok(located),
    }
}

/// The reader returns identity-partition columns as run-end encoded constants; expand them
/// (and cast anything else that differs) to the table's plain type.
pub fn plain_column(column: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    if column.data_type() == target {
        return Ok(column.clone());
    }
    if let Some(run) = column.as_any().downcast_ref::<RunArray<Int32Type>>() {
        let mut indices = Vec::with_capacity(run.len());
        let mut start = 0i32;
        for (i, end) in run.run_ends().values().iter().enumerate() {
            for _ in start..*end {
                indices.push(i as u32);
            }
            start = *end;
        }
        let indices = UInt32Array::from(indices);
        let expanded = arrow::compute::take(run.values().as_ref(), &indices, None)
            .map_err(|e| Error::arrow("expanding a partition column", e))?;
        return plain_column(&expanded, target);
    }
    arrow::compute::cast(column, target).map_err(|e| Error::arrow("reading a column", e))
}

/// Every live row of the current snapshot (deletes applied), located, from the data files
/// `keep` accepts.
pub async fn read_table_located(
    table: &Table,
    files: &TableFiles,
    keep: impl Fn(&LiveFile) -> bool,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = located_schema(table)?;
    let deletes = position_deletes(table, files).await?;
    let mut out = Vec::new();
    for file in files.data_files().filter(|f| keep(f)) {
        let deleted = deletes.get(file.path());
        out.extend(read_located(table, file, deleted, &schema).await?);
    }
    Ok((schema, out))
}
