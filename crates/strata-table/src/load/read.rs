//! Reading one file: its columns (for the schema check or a new table's schema), then its rows
//! in the shape the load writes — table columns under the table's names and types, plus the
//! change columns of a merge. The readers are arrow's (CSV, newline-delimited JSON) and
//! parquet's; they run on a blocking thread.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use super::source::{Content, SourceFile};
use super::types::{fits, show};
use super::{FileFormat, FILE_COLUMN, OP_COLUMN, ROW_COLUMN};
use crate::error::{Error, Result};

/// Rows per batch the readers produce.
const BATCH_ROWS: usize = 8192;

/// CSV settings. Files have a header row naming their columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { delimiter: b',' }
    }
}

/// A file's columns as it gives them. `typed`: infer CSV/JSON types from every row (for a new
/// table's schema); otherwise CSV gives only its header (types come from the table).
pub(super) fn columns(
    file: &SourceFile,
    content: Content,
    csv: CsvOptions,
    typed: bool,
) -> Result<Schema> {
    let bad = |e: arrow::error::ArrowError| Error::Invalid(format!("{}: {e}", file.location));
    if file.format == FileFormat::Parquet {
        no_gzip(file)?;
    }
    match (file.format, content) {
        (FileFormat::Parquet, Content::File(path)) => parquet_schema(file, open(file, &path)?),
        (FileFormat::Parquet, Content::Bytes(b)) => parquet_schema(file, b),
        (FileFormat::Csv, content) => {
            let format = arrow::csv::reader::Format::default()
                .with_header(true)
                .with_delimiter(csv.delimiter);
            let limit = (!typed).then_some(0);
            let (schema, _) = with_reader(file, content, |r| {
                format.infer_schema(r, limit).map_err(bad)
            })?;
            Ok(schema)
        }
        (FileFormat::Json, content) => {
            let (schema, _) = with_reader(file, content, |r| {
                arrow::json::reader::infer_json_schema(r, None).map_err(bad)
            })?;
            Ok(schema)
        }
    }
}

fn open(file: &SourceFile, path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("{}: no such file", file.location)),
        _ => Error::io(format!("opening {}", file.location), e),
    })
}

/// Runs `f` over the file's text (gunzipped when the file is `.gz`).
fn with_reader<T>(
    file: &SourceFile,
    content: Content,
    f: impl FnOnce(&mut dyn BufRead) -> Result<T>,
) -> Result<T> {
    let raw: Box<dyn Read> = match content {
        Content::File(path) => Box::new(open(file, &path)?),
        Content::Bytes(b) => Box::new(std::io::Cursor::new(b)),
    };
    let raw: Box<dyn Read> = if file.gzip {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(raw)))
    } else {
        raw
    };
    let mut r = BufReader::with_capacity(1 << 20, raw);
    f(&mut r)
}

fn no_gzip(file: &SourceFile) -> Result<()> {
    if file.gzip {
        return Err(Error::Invalid(format!(
            "{}: a gzip-compressed Parquet file; Parquet compresses its own pages, load it \
             uncompressed",
            file.location
        )));
    }
    Ok(())
}

fn parquet_schema<R: ChunkReader + 'static>(file: &SourceFile, r: R) -> Result<Schema> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(r).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a readable Parquet file: {e}",
            file.location
        ))
    })?;
    Ok(builder.schema().as_ref().clone())
}

/// What a file column becomes.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Use {
    /// The table column of this name and type.
    Column { name: String, ty: DataType },
    /// The change kind of a DMS-style change file (`I`, `U`, `D`).
    Op,
}

/// How to read one file: what each of its columns becomes, and the shape of its output.
#[derive(Clone, Debug)]
pub(super) struct FilePlan {
    /// Per file column, in file order.
    uses: Vec<Use>,
    /// What the load writes (every batch of every file has this schema).
    output: SchemaRef,
    /// Key columns that must hold a value in every row (merge).
    keys: Vec<String>,
    /// The op column's name as the user gave it, for messages.
    op_name: String,
}

/// Maps a file's columns onto the table's (`table`: the table's Arrow schema). A column the
/// table does not have, or whose type does not fit the table's (Parquet; CSV and JSON values
/// are parsed as the table's types), is an error naming it.
pub(super) fn plan_file(
    file: &SourceFile,
    columns: &Schema,
    table: &Schema,
    table_name: &str,
    op_column: Option<&str>,
    output: SchemaRef,
    keys: &[String],
) -> Result<FilePlan> {
    let mut uses = Vec::with_capacity(columns.fields().len());
    for field in columns.fields() {
        let name = field.name();
        if op_column.is_some_and(|op| op.eq_ignore_ascii_case(name)) {
            uses.push(Use::Op);
            continue;
        }
        let target = table_column(table, name).ok_or_else(|| {
            let names: Vec<&str> = table.fields().iter().map(|f| f.name().as_str()).collect();
            Error::Invalid(format!(
                "{}: column {name} is not in {table_name} (its columns: {})",
                file.location,
                names.join(", ")
            ))
        })?;
        if file.format == FileFormat::Parquet && !fits(field.data_type(), target.data_type()) {
            return Err(Error::Invalid(format!(
                "{}: column {name} is {} but {table_name}.{} is {}; only casts that lose nothing \
                 are made (wider integers, floats and decimals, dates into timestamps)",
                file.location,
                show(field.data_type()),
                target.name(),
                show(target.data_type())
            )));
        }
        uses.push(Use::Column {
            name: target.name().clone(),
            ty: target.data_type().clone(),
        });
    }
    for key in keys {
        let present = uses
            .iter()
            .any(|u| matches!(u, Use::Column { name, .. } if name == key));
        if !present {
            return Err(Error::Invalid(format!(
                "{}: has no key column {key}; every file of a merge needs the key",
                file.location
            )));
        }
    }
    Ok(FilePlan {
        uses,
        output,
        keys: keys.to_vec(),
        op_name: op_column.unwrap_or("op").to_string(),
    })
}

/// The table column a file column goes to: the same name, else the one name that matches
/// ignoring case.
pub(super) fn table_column<'a>(table: &'a Schema, name: &str) -> Option<&'a Field> {
    if let Ok(f) = table.field_with_name(name) {
        return Some(f);
    }
    let mut matching = table
        .fields()
        .iter()
        .filter(|f| f.name().eq_ignore_ascii_case(name));
    match (matching.next(), matching.next()) {
        (Some(f), None) => Some(f.as_ref()),
        _ => None,
    }
}

/// Reads `file` and hands each batch, shaped as the plan's output, to `emit`. `index` is the
/// file's place in the load (the change order of a merge). Returns the rows read.
pub(super) fn read_file(
    file: &SourceFile,
    content: Content,
    plan: &FilePlan,
    csv: CsvOptions,
    index: usize,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let mut rows = 0u64;
    let mut take = |batch: RecordBatch| -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let shaped = shape(file, plan, &batch, index, rows)?;
        rows += n as u64;
        emit(shaped)
    };
    match file.format {
        FileFormat::Parquet => match content {
            Content::File(path) => read_parquet(file, open(file, &path)?, &mut take),
            Content::Bytes(b) => read_parquet::<Bytes>(file, b, &mut take),
        },
        FileFormat::Csv => {
            let schema = read_schema(plan);
            with_reader(file, content, |r| {
                let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(true)
                    .with_delimiter(csv.delimiter)
                    .with_batch_size(BATCH_ROWS)
                    .build_buffered(r)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", file.location)))?;
                for batch in reader {
                    take(batch.map_err(|e| csv_error(file, &schema, e))?)?;
                }
                Ok(())
            })
        }
        FileFormat::Json => {
            let schema = read_schema(plan);
            with_reader(file, content, |r| {
                let reader = arrow::json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(BATCH_ROWS)
                    .with_coerce_primitive(true)
                    .build(r)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", file.location)))?;
                for batch in reader {
                    take(batch.map_err(|e| Error::Invalid(format!("{}: {e}", file.location)))?)?;
                }
                Ok(())
            })
        }
    }?;
    Ok(rows)
}

/// The schema CSV and JSON are decoded with: the file's columns in its order, each as the
/// table's type (the op column as text).
fn read_schema(plan: &FilePlan) -> SchemaRef {
    let fields: Vec<Field> = plan
        .uses
        .iter()
        .map(|u| match u {
            Use::Column { name, ty } => Field::new(name, ty.clone(), true),
            Use::Op => Field::new(OP_COLUMN, DataType::Utf8, true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn read_parquet<R: ChunkReader + 'static>(
    file: &SourceFile,
    r: R,
    take: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(r)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| {
            Error::Invalid(format!(
                "{}: not a readable Parquet file: {e}",
                file.location
            ))
        })?;
    for batch in reader {
        take(batch.map_err(|e| Error::Invalid(format!("{}: {e}", file.location)))?)?;
    }
    Ok(())
}

/// arrow's CSV errors name a column by its number; the name is added. A value that does not
/// parse is reported at its record's 0-based line (the header being line 0); it is made the
/// 1-based line an editor shows, as arrow's other CSV errors already are.
fn csv_error(file: &SourceFile, schema: &Schema, e: arrow::error::ArrowError) -> Error {
    let mut text = e.to_string();
    if text.contains("Error while parsing value") {
        if let Some((before, after)) = text.split_once(" at line ") {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u64>() {
                text = format!("{before} at line {}{}", n + 1, &after[digits.len()..]);
            }
        }
    }
    let named = text
        .split("for column ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|i| schema.fields().get(i))
        .map(|f| format!(" (column {})", f.name()))
        .unwrap_or_default();
    Error::Invalid(format!("{}: {text}{named}", file.location))
}

/// A batch as the file gives it (its columns in file order) → the plan's output: table
/// columns cast to the table's types, missing ones NULL, and for a merge the normalised op,
/// the file's index and each row's number in the file.
fn shape(
    file: &SourceFile,
    plan: &FilePlan,
    batch: &RecordBatch,
    index: usize,
    first_row: u64,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut by_name: HashMap<&str, ArrayRef> = HashMap::new();
    let mut op: Option<ArrayRef> = None;
    for (i, u) in plan.uses.iter().enumerate() {
        let column = batch.column(i);
        match u {
            Use::Column { name, ty } => {
                let cast = if column.data_type() == ty {
                    column.clone()
                } else {
                    arrow::compute::cast_with_options(column, ty, &options).map_err(|e| {
                        Error::Invalid(format!(
                            "{}: column {name}: cannot store {} as {}: {e}",
                            file.location,
                            show(column.data_type()),
                            show(ty)
                        ))
                    })?
                };
                by_name.insert(name.as_str(), cast);
            }
            Use::Op => op = Some(column.clone()),
        }
    }
    for key in &plan.keys {
        if let Some(c) = by_name.get(key.as_str()) {
            if c.null_count() > 0 {
                let row = (0..n).find(|&r| c.is_null(r)).unwrap_or(0);
                return Err(Error::Invalid(format!(
                    "{}: row {} has no value for the key column {key}",
                    file.location,
                    first_row + row as u64 + 1
                )));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.output.fields().len());
    for field in plan.output.fields() {
        let column = match field.name().as_str() {
            OP_COLUMN => ops(file, plan, op.as_ref(), n, first_row)?,
            FILE_COLUMN => Arc::new(Int64Array::from(vec![index as i64; n])) as ArrayRef,
            ROW_COLUMN => Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|r| first_row as i64 + r),
            )) as ArrayRef,
            name => match by_name.remove(name) {
                Some(c) => c,
                None => arrow::array::new_null_array(field.data_type(), n),
            },
        };
        columns.push(column);
    }
    if !by_name.is_empty() {
        return Err(Error::Internal(format!(
            "{}: columns {:?} have no place in the output",
            file.location,
            by_name.keys().collect::<Vec<_>>()
        )));
    }
    RecordBatch::try_new(plan.output.clone(), columns)
        .map_err(|e| Error::arrow(format!("shaping rows of {}", file.location), e))
}

/// The op column normalised to `I`, `U` or `D`; a file without one holds inserts (a DMS
/// full load).
fn ops(
    file: &SourceFile,
    plan: &FilePlan,
    op: Option<&ArrayRef>,
    n: usize,
    first_row: u64,
) -> Result<ArrayRef> {
    let Some(op) = op else {
        return Ok(Arc::new(StringArray::from(vec!["I"; n])));
    };
    let text = arrow::compute::cast(op, &DataType::Utf8)
        .map_err(|e| Error::arrow(format!("reading the op column of {}", file.location), e))?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Internal("op column cast to text is not text".to_string()))?;
    let mut out = Vec::with_capacity(n);
    for r in 0..n {
        let value = (!text.is_null(r)).then(|| text.value(r).trim());
        let op = match value {
            Some(v) if v.eq_ignore_ascii_case("i") => "I",
            Some(v) if v.eq_ignore_ascii_case("u") => "U",
            Some(v) if v.eq_ignore_ascii_case("d") => "D",
            other => {
                return Err(Error::Invalid(format!(
                    "{}: row {}: {} is {}, expected I, U or D",
                    file.location,
                    first_row + r as u64 + 1,
                    plan.op_name,
                    other.map_or("empty".to_string(), |v| format!("{v:?}"))
                )))
            }
        };
        out.push(op);
    }
    Ok(Arc::new(StringArray::from(out)))
}
