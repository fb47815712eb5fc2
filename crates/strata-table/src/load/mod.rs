//! File loads: Parquet, CSV and newline-delimited JSON files from local paths or
//! `s3://bucket/prefix` into a lake table, as one Iceberg commit (`strata load`, and
//! `COPY … FROM` in `strata sql`). ADR 0051.
//!
//! A load has three steps:
//! 1. every path or URL is expanded to its files (`source.rs`), and each file's columns are
//!    read (a Parquet footer, a CSV header; CSV and JSON types are inferred from every row only
//!    when the table does not exist yet);
//! 2. the table is created from the files' columns when it does not exist; otherwise each
//!    file's columns are checked against it (`read.rs`, `types.rs`): a column the table lacks,
//!    or a Parquet type that does not fit without loss, fails the load before a row is written;
//! 3. the rows are written and committed once: `append` adds them; `overwrite` replaces the
//!    whole table or one identity partition; `merge` upserts by key through the same MERGE the
//!    CDC merger and SQL use ([`crate::table::merge`]), with the latest change per key winning
//!    and, with an op column (`I`/`U`/`D`, DMS's `Op`), deletes applied (`changes.rs`).
//!
//! Nothing is visible until the commit; a failed load deletes the data files it wrote (best
//! effort) and, if it created the table, drops it again.

mod changes;
mod read;
mod source;
mod types;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use iceberg::spec::{DataFile, Literal, Operation, PrimitiveType, Type};
use iceberg::table::Table;
use iceberg::TableIdent;

pub use read::CsvOptions;
pub use source::{SourceFile, SourceS3};

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::commit::{commit_change, Change};
use crate::table::dml::{with_conflict_retry, Outcome};
use crate::table::files::TableFiles;
use crate::table::read::table_arrow_schema;
use crate::write::write_stream;

/// Column of a merge's source rows holding the normalised change kind (`I`, `U`, `D`).
const OP_COLUMN: &str = "__strata_op";
/// Column holding the index of the file a change came from (change order across files).
const FILE_COLUMN: &str = "__strata_file";
/// Column holding a change's row number in its file (change order within a file).
const ROW_COLUMN: &str = "__strata_row";

/// What a file reader reports when the writer stopped taking rows (the writer's error is the
/// one to show).
const WRITER_GONE: &str = "the writer stopped taking rows";

/// A file format a load reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON: one object per line.
    Json,
}

impl FileFormat {
    /// `parquet`, `csv`, `json` (also `jsonl`, `ndjson`), any case.
    pub fn parse(text: &str) -> Result<FileFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "parquet" => Ok(FileFormat::Parquet),
            "csv" => Ok(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Ok(FileFormat::Json),
            other => Err(Error::Invalid(format!(
                "format {other:?}: expected parquet, csv or json"
            ))),
        }
    }

    /// The format a file name's extension says, if any.
    pub fn from_name(name: &str) -> Option<FileFormat> {
        let name = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        let ext = name.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "parquet" | "parq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
        }
    }
}

/// How the loaded rows land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Added to the table's rows.
    Append,
    /// Replace the table's rows, or with `partition = (column, value)` only that identity
    /// partition's (every row must belong to it).
    Overwrite { partition: Option<(String, String)> },
    /// Upsert by `key`: per key the latest change wins (by `order_by`, then file order, then
    /// row order); with `op_column`, a latest change `D` deletes the key's row, `I`/`U` upsert
    /// it, and the op column is not stored.
    Merge {
        key: Vec<String>,
        op_column: Option<String>,
        order_by: Option<String>,
    },
}

impl LoadMode {
    pub fn name(&self) -> &'static str {
        match self {
            LoadMode::Append => "append",
            LoadMode::Overwrite { .. } => "overwrite",
            LoadMode::Merge { .. } => "merge",
        }
    }
}

/// One load.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub table: TableIdent,
    /// Local files or directories, `s3://bucket/prefix/` or `s3://bucket/key`.
    pub sources: Vec<String>,
    /// The files' format; `None`: from each file's extension.
    pub format: Option<FileFormat>,
    pub mode: LoadMode,
    pub csv: CsvOptions,
    /// Partitioning of a table the load creates (`PARTITIONED BY` syntax: `dt, day(ts)`).
    pub partition_by: Option<String>,
    /// Settings for `s3://` sources.
    pub s3: SourceS3,
}

impl LoadSpec {
    /// Checks the spec alone (no files, no lake).
    pub fn validate(&self) -> Result<()> {
        if self.sources.is_empty() {
            return Err(Error::Invalid(
                "name at least one file, directory or s3:// prefix to load".to_string(),
            ));
        }
        if let LoadMode::Merge { key, .. } = &self.mode {
            if key.is_empty() || key.iter().any(|k| k.trim().is_empty()) {
                return Err(Error::Invalid(
                    "merge needs the key columns (--key id or --key a,b)".to_string(),
                ));
            }
        }
        if let LoadMode::Overwrite {
            partition: Some((column, _)),
        } = &self.mode
        {
            if column.trim().is_empty() {
                return Err(Error::Invalid(
                    "--partition takes COLUMN=VALUE, e.g. dt=2026-12-07".to_string(),
                ));
            }
        }
        if !self.csv.delimiter.is_ascii() {
            return Err(Error::Invalid(
                "the CSV delimiter must be one ASCII character".to_string(),
            ));
        }
        Ok(())
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub files: usize,
    /// Rows read from the files.
    pub rows_read: u64,
    /// Whether the load created the table.
    pub created: bool,
    /// The commit: rows inserted, updated, deleted (replaced, for an overwrite) and the snapshot.
    pub outcome: Outcome,
}

/// Runs one load: see the module docs.
pub async fn load(lake: &Lake, spec: &LoadSpec) -> Result<LoadReport> {
    spec.validate()?;
    let files = source::expand(lake, &spec.s3, &spec.sources, spec.format).await?;
    let exists = lake
        .catalog()
        .table_exists(&spec.table)
        .await
        .map_err(|e| Error::iceberg(format!("looking up {}", spec.table), e))?;
    let mut columns = Vec::with_capacity(files.len());
    for file in &files {
        let content = file.content().await?;
        let (f, csv) = (file.clone(), spec.csv);
        columns.push(blocking(move || read::columns(&f, content, csv, !exists)).await?);
    }
    let created = if exists {
        false
    } else {
        let schema = new_table_schema(&files, &columns, op_column(&spec.mode))?;
        crate::table::create_table(
            lake,
            &spec.table,
            &schema,
            spec.partition_by.as_deref(),
            Default::default(),
        )
        .await?
    };
    let result = write(lake, spec, &files, &columns).await;
    match result {
        Ok((rows_read, outcome)) => {
            metrics::counter!("strata_load_rows_total").increment(rows_read);
            tracing::info!(table = %spec.table, mode = spec.mode.name(), files = files.len(), rows_read, snapshot = ?outcome.snapshot_id, "load committed");
            Ok(LoadReport {
                files: files.len(),
                rows_read,
                created,
                outcome,
            })
        }
        Err(e) => {
            if created {
                if let Err(drop) = lake.catalog().drop_table(&spec.table).await {
                    tracing::warn!(table = %spec.table, error = %drop, "dropping the table a failed load created failed");
                }
            }
            Err(e)
        }
    }
}

fn op_column(mode: &LoadMode) -> Option<&str> {
    match mode {
        LoadMode::Merge { op_column, .. } => op_column.as_deref(),
        _ => None,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a file reader stopped: {e}")))?
}

/// A new table's columns: every file column but the op column, in the order first seen, with
/// one type per column (types two files disagree on are widened; CSV and JSON text that
/// cannot be widened becomes a string).
fn new_table_schema(
    files: &[SourceFile],
    columns: &[Schema],
    op_column: Option<&str>,
) -> Result<Schema> {
    let mut fields: Vec<(String, DataType, usize)> = Vec::new();
    for (i, schema) in columns.iter().enumerate() {
        for field in schema.fields() {
            let name = field.name();
            if op_column.is_some_and(|op| op.eq_ignore_ascii_case(name)) {
                continue;
            }
            let ty = field.data_type();
            match fields.iter_mut().find(|(n, _, _)| n == name) {
                None => fields.push((name.clone(), ty.clone(), i)),
                Some((_, known, first)) => {
                    if let Some(t) = types::unify(known, ty) {
                        *known = t;
                    } else if files[i].format != FileFormat::Parquet
                        && files[*first].format != FileFormat::Parquet
                    {
                        *known = DataType::Utf8;
                    } else {
                        return Err(Error::Invalid(format!(
                            "column {name} is {} in {} but {} in {}; convert one, or create the \
                             table first with the type you want",
                            types::show(known),
                            files[*first].location,
                            types::show(ty),
                            files[i].location
                        )));
                    }
                }
            }
        }
    }
    if fields.is_empty() {
        return Err(Error::Invalid("the files have no columns".to_string()));
    }
    Ok(Schema::new(
        fields
            .into_iter()
            .map(|(name, ty, _)| {
                let ty = if ty == DataType::Null {
                    DataType::Utf8
                } else {
                    ty
                };
                Field::new(name, ty, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Reads every file and commits: returns the rows read and the commit's outcome.
async fn write(
    lake: &Lake,
    spec: &LoadSpec,
    files: &[SourceFile],
    columns: &[Schema],
) -> Result<(u64, Outcome)> {
    let table = lake.load_table(&spec.table).await?;
    let table_schema = table_arrow_schema(&table)?;
    let name = spec.table.to_string();
    match &spec.mode {
        LoadMode::Append | LoadMode::Overwrite { .. } => {
            // Every column nullable here: a NOT NULL column the files leave empty is refused
            // by the writer's conform step, with a message naming it.
            let output: SchemaRef = Arc::new(Schema::new(
                table_schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            ));
            let plans = files
                .iter()
                .zip(columns)
                .map(|(f, c)| {
                    read::plan_file(f, c, &table_schema, &name, None, output.clone(), &[])
                })
                .collect::<Result<Vec<_>>>()?;
            let partition = match &spec.mode {
                LoadMode::Overwrite {
                    partition: Some((column, value)),
                } => Some(partition_literal(&table, column, value)?),
                _ => None,
            };
            let (stream, reading) = stream_files(files, plans, spec.csv, output);
            let written = match (&spec.mode, partition) {
                (LoadMode::Overwrite { .. }, Some((column, literal))) => {
                    crate::table::overwrite_partition_stream(
                        lake,
                        &spec.table,
                        &column,
                        literal,
                        stream,
                    )
                    .await
                }
                (LoadMode::Overwrite { .. }, None) => {
                    crate::table::replace_all_stream(lake, &spec.table, stream).await
                }
                _ => append_stream(lake, &table, stream).await,
            };
            // A reader's own error says more than the writer's view of it, unless the
            // reader stopped because the writer had failed.
            match (reading.await, written) {
                (Err(Error::Internal(m)), Err(e)) if m == WRITER_GONE => Err(e),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(rows), Ok(outcome)) => Ok((rows, outcome)),
            }
        }
        LoadMode::Merge {
            key,
            op_column,
            order_by,
        } => {
            changes::merge(
                lake,
                &table,
                &table_schema,
                files,
                columns,
                spec.csv,
                changes::MergeOptions {
                    key,
                    op_column: op_column.as_deref(),
                    order_by: order_by.as_deref(),
                },
            )
            .await
        }
    }
}

/// The files' rows as one stream, read file by file on a blocking thread. The stream ends
/// without an error only when every file was read to its end: a reader that fails or stops
/// ends it with an error, so no writer commits part of a load. The returned future gives the
/// rows read, or the reader's own error.
fn stream_files(
    files: &[SourceFile],
    plans: Vec<read::FilePlan>,
    csv: CsvOptions,
    schema: SchemaRef,
) -> (
    datafusion::execution::SendableRecordBatchStream,
    impl std::future::Future<Output = Result<u64>>,
) {
    type Item = datafusion::error::Result<RecordBatch>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(4);
    let done = Arc::new(AtomicBool::new(false));
    let files: Vec<SourceFile> = files.to_vec();
    let done_w = done.clone();
    let producer = tokio::spawn(async move {
        let result: Result<u64> = async {
            let mut total = 0;
            for (index, (file, plan)) in files.into_iter().zip(plans).enumerate() {
                let content = file.content().await?;
                let tx = tx.clone();
                let location = file.location.clone();
                let rows = blocking(move || {
                    read::read_file(&file, content, &plan, csv, index, &mut |batch| {
                        tx.blocking_send(Ok(batch))
                            .map_err(|_| Error::Internal(WRITER_GONE.to_string()))
                    })
                })
                .await?;
                tracing::info!(file = %location, rows, "file read");
                total += rows;
            }
            Ok(total)
        }
        .await;
        match &result {
            Ok(_) => done_w.store(true, Ordering::SeqCst),
            Err(e) => {
                let _ = tx
                    .send(Err(datafusion::error::DataFusionError::Execution(
                        e.to_string(),
                    )))
                    .await;
            }
        }
        result
    });
    let stream = futures::stream::unfold((rx, done, false), |(mut rx, done, ended)| async move {
        if ended {
            return None;
        }
        match rx.recv().await {
            Some(item) => Some((item, (rx, done, false))),
            None if done.load(Ordering::SeqCst) => None,
            None => Some((
                Err(datafusion::error::DataFusionError::Execution(
                    "the file reader stopped before the end of the files".to_string(),
                )),
                (rx, done, true),
            )),
        }
    });
    let stream = Box::pin(RecordBatchStreamAdapter::new(schema, stream));
    let reading = async move {
        match producer.await {
            Ok(result) => result,
            Err(e) => Err(Error::Internal(format!("the file reader failed: {e}"))),
        }
    };
    (stream, reading)
}

/// Writes the stream's rows as data files and commits them as one append (re-committed on
/// top of concurrent writers; refused if the table's schema or partitioning changed meanwhile).
async fn append_stream(
    lake: &Lake,
    written_for: &Table,
    stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<Outcome> {
    let ident = written_for.identifier();
    let (data, rows) = write_stream(written_for, stream, |_| Ok(())).await?;
    let shape = |t: &Table| {
        (
            t.metadata().current_schema_id(),
            t.metadata().default_partition_spec_id(),
        )
    };
    let committed = with_conflict_retry(ident, || async {
        let mut outcome = Outcome {
            inserted: rows,
            files_written: data.len() as u64,
            bytes_written: data.iter().map(DataFile::file_size_in_bytes).sum(),
            ..Default::default()
        };
        if data.is_empty() {
            return Ok(outcome);
        }
        let table = lake.load_table(ident).await?;
        if shape(&table) != shape(written_for) {
            return Err(Error::Invalid(format!(
                "{ident} changed its schema or partitioning during the load; run it again"
            )));
        }
        let files = TableFiles::manifests_only(&table).await?;
        let mut change = Change::new(Operation::Append);
        change.added_data = data.clone();
        let table = commit_change(lake, &table, &files, change).await?;
        outcome.snapshot_id = table.metadata().current_snapshot_id();
        Ok(outcome)
    })
    .await;
    if committed.is_err() {
        for f in &data {
            let _ = written_for.file_io().delete(f.file_path()).await;
        }
    }
    committed
}

/// `--partition COLUMN=VALUE`: the table's column name and the value as its type.
fn partition_literal(table: &Table, column: &str, value: &str) -> Result<(String, Literal)> {
    let schema = table.metadata().current_schema();
    let field = schema
        .as_struct()
        .fields()
        .iter()
        .find(|f| f.name == column)
        .or_else(|| {
            schema
                .as_struct()
                .fields()
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(column))
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "--partition {column}={value}: {} has no column {column}",
                table.identifier()
            ))
        })?;
    let bad = |what: &str| {
        Error::Invalid(format!(
            "--partition {column}={value}: {value:?} is not {what}"
        ))
    };
    let literal = match field.field_type.as_ref() {
        Type::Primitive(PrimitiveType::String) => Literal::string(value),
        Type::Primitive(PrimitiveType::Int) => {
            Literal::int(value.parse::<i32>().map_err(|_| bad("an int"))?)
        }
        Type::Primitive(PrimitiveType::Long) => {
            Literal::long(value.parse::<i64>().map_err(|_| bad("a bigint"))?)
        }
        Type::Primitive(PrimitiveType::Date) => {
            Literal::date_from_str(value).map_err(|_| bad("a date (YYYY-MM-DD)"))?
        }
        Type::Primitive(PrimitiveType::Boolean) => {
            Literal::bool_from_str(value).map_err(|_| bad("true or false"))?
        }
        other => {
            return Err(Error::Invalid(format!(
                "--partition {column}={value}: partitions of a {other} column cannot be named \
                 this way; use a string, int, bigint, date or boolean identity partition"
            )))
        }
    };
    Ok((field.name.clone(), literal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(FileFormat::parse("Parquet").unwrap(), FileFormat::Parquet);
        assert_eq!(FileFormat::parse("ndjson").unwrap(), FileFormat::Json);
        assert!(FileFormat::parse("avro").is_err());
        assert_eq!(
            FileFormat::from_name("s3://b/x/y.CSV"),
            Some(FileFormat::Csv)
        );
        assert_eq!(FileFormat::from_name("a.jsonl"), Some(FileFormat::Json));
        assert_eq!(
            FileFormat::from_name("LOAD0001.parquet"),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_name("README"), None);
        assert_eq!(FileFormat::from_name("dir.csv/README"), None);
    }
}
