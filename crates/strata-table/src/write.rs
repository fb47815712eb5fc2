//! Writing Parquet data files and committing them as a fast-append snapshot that carries the
//! bus position (see [`crate::position`]).
//!
//! Files go through iceberg's writer stack (`ParquetWriterBuilder` → `RollingFileWriter` →
//! `DataFileWriter` with the partition key), zstd-compressed, one writer per partition group.
//! Commits are optimistic with bounded backoff; when a commit's outcome is unknown the table
//! is reloaded and its snapshot summary decides whether the position is already in.

use std::collections::HashMap;

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::metadata_columns::{
    RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS,
};
use iceberg::spec::Operation;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, NestedField, PartitionKey, PrimitiveType,
    Schema as IcebergSchema, Struct, Type,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::TableIdent;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use strata_bus::Offsets;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::position::{claim_key, covers, encode_offsets, offsets_key, table_position};
use crate::retry::Backoff;
use crate::table::{commit_change, Change, LiveFile, TableFiles};

/// Data files roll over at this size.
const TARGET_FILE_BYTES: usize = 512 * 1024 * 1024;
/// Commit attempts before giving up (the sink then stops; a restart resumes from the table).
const COMMIT_RETRIES: u32 = 8;

/// Places data files under `<table>/data/<field>=<value>/…` with every partition value
/// percent-encoded, so an event name like `../../x` cannot leave the table directory.
#[derive(Clone, Debug)]
pub struct SafeLocationGenerator {
    data_location: String,
}

impl SafeLocationGenerator {
    pub fn new(table: &Table) -> Self {
        let location = table.metadata().location().trim_end_matches('/');
        SafeLocationGenerator {
            data_location: format!("{location}/data"),
        }
    }
}

/// Keeps `[A-Za-z0-9_-]`, percent-encodes every other byte (so `.`, `/` and `%` too).
pub fn encode_path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

impl LocationGenerator for SafeLocationGenerator {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        let Some(pk) = partition_key.filter(|pk| !pk.spec().is_unpartitioned()) else {
            return format!("{}/{}", self.data_location, file_name);
        };
        let mut path = self.data_location.clone();
        let types = pk.spec().partition_type(pk.schema()).ok();
        for (i, field) in pk.spec().fields().iter().enumerate() {
            let value = pk.data().fields().get(i).and_then(|v| v.as_ref());
            let human = match types.as_ref().and_then(|t| t.fields().get(i)) {
                Some(t) => field.transform.to_human_string(&t.field_type, value),
                None => "null".to_string(),
            };
            path.push('/');
            path.push_str(&field.name);
            path.push('=');
            path.push_str(&encode_path_segment(&human));
        }
        path.push('/');
        path.push_str(file_name);
        path
    }
}

/// Writes one Parquet data file (or more, past the roll-over size) per partition group of
/// the table's default partition spec.
pub async fn write_data_files(
    table: &Table,
    groups: Vec<(Struct, RecordBatch)>,
) -> Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    let keyed = groups
        .into_iter()
        .map(|(partition, batch)| {
            (
                PartitionKey::new(spec.clone(), schema.clone(), partition),
                batch,
            )
        })
        .collect();
    write_keyed(table, keyed).await
}

/// Splits `batches` (in the table's Arrow schema) by the default partition spec and writes
/// them as data files.
pub async fn write_rows(table: &Table, batches: &[RecordBatch]) -> Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    if spec.is_unpartitioned() {
        let batches: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let batch = arrow::compute::concat_batches(&first.schema(), &batches)
            .map_err(|e| Error::arrow("joining rows", e))?;
        let key = PartitionKey::new(
            spec.as_ref().clone(),
            metadata.current_schema().clone(),
            Struct::empty(),
        );
        return write_keyed(table, vec![(key, batch)]).await;
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(
        metadata.current_schema().clone(),
        metadata.default_partition_spec().clone(),
    )
    .map_err(|e| Error::iceberg("partitioning rows", e))?;
    // Merge the pieces of each partition so every partition gets one file per call.
    let mut groups: Vec<(PartitionKey, Vec<RecordBatch>)> = Vec::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        for (key, part) in splitter
            .split(batch)
            .map_err(|e| Error::iceberg("partitioning rows", e))?
        {
            match groups.iter_mut().find(|(k, _)| k.data() == key.data()) {
                Some((_, v)) => v.push(part),
                None => groups.push((key, vec![part])),
            }
        }
    }
    let mut keyed = Vec::with_capacity(groups.len());
    for (key, parts) in groups {
        let schema = parts[0].schema();
        let batch = arrow::compute::concat_batches(&schema, &parts)
            .map_err(|e| Error::arrow("joining rows of one partition", e))?;
        keyed.push((key, batch));
    }
    write_keyed(table, keyed).await
}

/// Writes a stream of rows (any schema that conforms to the table's by column name) as data
/// files of the default partition spec, keeping one rolling writer open per partition the
/// rows reach, so no more than a row group per partition is held in memory. `accept` vets
/// each partition before its first row is written. Returns the files and the rows written.
/// On any error the files already written are deleted (best effort).
pub async fn write_stream(
    table: &Table,
    mut stream: datafusion::execution::SendableRecordBatchStream,
    accept: impl Fn(&Struct) -> Result<()>,
) -> Result<(Vec<DataFile>, u64)> {
    use futures::StreamExt;
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    let splitter = (!spec.is_unpartitioned())
        .then(|| {
            RecordBatchPartitionSplitter::try_new_with_computed_values(
                schema.clone(),
                metadata.default_partition_spec().clone(),
            )
        })
        .transpose()
        .map_err(|e| Error::iceberg("partitioning rows", e))?;
    let builder = data_file_writer_builder(table);
    let mut writers = Vec::new();
    let mut rows = 0u64;
    let written: Result<()> = async {
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(Error::datafusion)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch =
                crate::table::dml::conform(table, &[batch], crate::table::dml::Match::ByName)?
                    .remove(0);
            let parts = match &splitter {
                Some(s) => s
                    .split(&batch)
                    .map_err(|e| Error::iceberg("partitioning rows", e))?,
                None => vec![(
                    PartitionKey::new(spec.clone(), schema.clone(), Struct::empty()),
                    batch,
                )],
            };
            for (key, part) in parts {
                rows += part.num_rows() as u64;
                // Its own statement: a scrutinee's borrow of `writers` would live across
                // the awaits below (and the writers are not Sync).
                let found = writers
                    .iter()
                    .position(|(k, _): &(Struct, _)| k == key.data());
                let at = match found {
                    Some(at) => at,
                    None => {
                        accept(key.data())?;
                        let data = key.data().clone();
                        let key = (!key.spec().is_unpartitioned()).then_some(key);
                        let writer = builder
                            .build(key)
                            .await
                            .map_err(|e| Error::iceberg("creating data file writer", e))?;
                        writers.push((data, writer));
                        writers.len() - 1
                    }
                };
                writers[at]
                    .1
                    .write(part)
                    .await
                    .map_err(|e| Error::iceberg("writing data file", e))?;
            }
        }
        Ok(())
    }
    .await;
    let mut files = Vec::new();
    let mut closed = Ok(());
    for (_, mut writer) in writers {
        match writer.close().await {
            Ok(f) => files.extend(f),
            Err(e) => closed = Err(Error::iceberg("closing data file", e)),
        }
    }
    if let Err(e) = written.and(closed) {
        for f in &files {
            let _ = table.file_io().delete(f.file_path()).await;
        }
        return Err(e);
    }
    Ok((files, rows))
}

/// Columns whose values are (nearly) all distinct wherever they occur: event ids and the JSON
/// text of `ods.ods_event`. A dictionary never pays off for them; building one costs an
/// interner lookup per value until the dictionary page overflows and the writer falls back.
const NO_DICTIONARY: [&str; 4] = ["message_id", "context", "properties", "traits"];

/// Parquet settings of every data file Strata writes (zstd at its default level; no
/// dictionary for [`NO_DICTIONARY`] columns).
pub fn writer_properties() -> WriterProperties {
    let mut props =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default()));
    for column in NO_DICTIONARY {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    props.build()
}

/// Data file writers for `table`: zstd Parquet rolled at the target size, under a fresh
/// name prefix per call (a retried write never overwrites a file an earlier attempt, possibly
/// committed, wrote).
fn data_file_writer_builder(
    table: &Table,
) -> DataFileWriterBuilder<ParquetWriterBuilder, SafeLocationGenerator, DefaultFileNameGenerator> {
    let schema = table.metadata().current_schema().clone();
    let parquet = ParquetWriterBuilder::new(writer_properties(), schema);
    // A fresh prefix per call: a retried write never overwrites a file an earlier attempt
    // (possibly committed) wrote.
    let names = DefaultFileNameGenerator::new(
        format!("{}", uuid::Uuid::now_v7()),
        None,
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        SafeLocationGenerator::new(table),
        names,
    );
    DataFileWriterBuilder::new(rolling)
}

/// Writes each (partition key, rows) group as data files.
pub async fn write_keyed(
    table: &Table,
    groups: Vec<(PartitionKey, RecordBatch)>,
) -> Result<Vec<DataFile>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let builder = data_file_writer_builder(table);
    let mut files = Vec::with_capacity(groups.len());
    for (key, batch) in groups {
        let key = (!key.spec().is_unpartitioned()).then_some(key);
        let mut writer = builder
            .build(key)
            .await
            .map_err(|e| Error::iceberg("creating data file writer", e))?;
        writer
            .write(batch)
            .await
            .map_err(|e| Error::iceberg("writing data file", e))?;
        files.extend(
            writer
                .close()
                .await
                .map_err(|e| Error::iceberg("closing data file", e))?,
        );
    }
    Ok(files)
}

/// Position deletes of one partition: (spec id, partition, [(data file, positions)]).
type DeleteGroup = (i32, Struct, Vec<(String, Vec<i64>)>);

/// The Iceberg schema of position delete files (`file_path`, `pos`, reserved field ids).
fn position_delete_schema() -> Result<IcebergSchema> {
    IcebergSchema::builder()
        .with_fields(vec![
            NestedField::required(
                RESERVED_FIELD_ID_DELETE_FILE_PATH,
                "file_path",
                Type::Primitive(PrimitiveType::String),
            )
            .into(),
            NestedField::required(
                RESERVED_FIELD_ID_DELETE_FILE_POS,
                "pos",
                Type::Primitive(PrimitiveType::Long),
            )
            .into(),
        ])
        .build()
        .map_err(|e| Error::iceberg("building the position delete schema", e))
}

/// Writes position delete files: one per partition of the deleted rows' data files, rows
/// sorted by (file_path, pos) as the spec requires. `deleted` maps each data file (with its
/// partition and spec) to the positions to delete.
pub async fn write_position_deletes(
    table: &Table,
    deleted: Vec<(&LiveFile, Vec<i64>)>,
) -> Result<Vec<(i32, DataFile)>> {
    let metadata = table.metadata();
    let schema = Arc::new(position_delete_schema()?);
    let arrow_schema = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&schema)
            .map_err(|e| Error::iceberg("position delete schema", e))?,
    );
    // Group by (spec, partition).
    let mut groups: Vec<DeleteGroup> = Vec::new();
    for (file, mut positions) in deleted {
        positions.sort_unstable();
        positions.dedup();
        let entry = (file.path().to_string(), positions);
        let partition = file.file.partition();
        match groups
            .iter_mut()
            .find(|(s, p, _)| *s == file.spec_id && p == partition)
        {
            Some((_, _, v)) => v.push(entry),
            None => groups.push((file.spec_id, partition.clone(), vec![entry])),
        }
    }
    let names = DefaultFileNameGenerator::new(
        format!("{}-deletes", uuid::Uuid::now_v7()),
        None,
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(writer_properties(), schema.clone()),
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        SafeLocationGenerator::new(table),
        names,
    );
    let mut out = Vec::new();
    for (spec_id, partition, mut files) in groups {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let spec = metadata
            .partition_spec_by_id(spec_id)
            .ok_or_else(|| Error::Internal(format!("unknown partition spec {spec_id}")))?;
        let key = PartitionKey::new(
            spec.as_ref().clone(),
            metadata.current_schema().clone(),
            partition.clone(),
        );
        let referenced = (files.len() == 1).then(|| files[0].0.clone());
        let mut paths = Vec::new();
        let mut positions = Vec::new();
        for (path, pos) in files {
            for p in pos {
                paths.push(path.clone());
                positions.push(p);
            }
        }
        let batch = RecordBatch::try_new(
            arrow_schema.clone(),
            vec![
                Arc::new(StringArray::from(paths)),
                Arc::new(Int64Array::from(positions)),
            ],
        )
        .map_err(|e| Error::arrow("building position deletes", e))?;
        let key = (!spec.is_unpartitioned()).then_some(key);
        let mut writer = rolling.build();
        writer
            .write(&key, &batch)
            .await
            .map_err(|e| Error::iceberg("writing a position delete file", e))?;
        for mut builder in writer
            .close()
            .await
            .map_err(|e| Error::iceberg("closing a position delete file", e))?
        {
            builder.content(DataContentType::PositionDeletes);
            builder.partition(partition.clone());
            builder.partition_spec_id(spec_id);
            if let Some(r) = &referenced {
                builder.referenced_data_file(Some(r.clone()));
            }
            out.push((
                spec_id,
                builder
                    .build()
                    .map_err(|e| Error::Internal(format!("building a delete file entry: {e}")))?,
            ));
        }
    }
    Ok(out)
}

/// Commits `files` (possibly none: a position-only snapshot) to `ident` as an append whose
/// summary sets the table's position in `topic` to `position`. Returns the table after commit.
///
/// Every attempt reloads the table first and reads its position:
/// - already `position`: an earlier attempt whose outcome was unknown did land; nothing is
///   written again;
/// - equal to `expected` (the position this commit continues from): commit;
/// - anything else: another writer moved the table → [`Error::Conflict`].
///
/// `expected = None` skips the fencing and treats any position covering `position` as done.
/// The commit is a compare-and-swap against the metadata file the position was read from
/// ([`commit_change`]), so check and swap are one atomic step: when another writer (a
/// compaction, a second sink) commits in between, the swap fails and the next attempt
/// re-reads the position.
pub async fn commit_with_position(
    lake: &Lake,
    ident: &TableIdent,
    files: Vec<DataFile>,
    topic: &str,
    expected: Option<&Offsets>,
    position: &Offsets,
    claims: &[(String, Offsets)],
) -> Result<Table> {
    let mut backoff = Backoff::new(COMMIT_RETRIES);
    let mut props = HashMap::from([(offsets_key(topic), encode_offsets(position))]);
    for (other, offsets) in claims {
        props.insert(claim_key(topic, other), encode_offsets(offsets));
    }
    loop {
        let attempt = async {
            let table = lake.load_table(ident).await?;
            let have = table_position(&table, topic)?.unwrap_or_default();
            match expected {
                _ if have == *position => return Ok(Attempt::Already(table)),
                None if covers(&have, position) => return Ok(Attempt::Already(table)),
                Some(expected) if have != *expected => {
                    return Err(Error::Conflict {
                        table: ident.to_string(),
                        message: format!(
                            "table position {} is neither the expected {} nor the target {}",
                            encode_offsets(&have),
                            encode_offsets(expected),
                            encode_offsets(position)
                        ),
                    })
                }
                _ => {}
            }
            let live = TableFiles::manifests_only(&table).await?;
            let mut change = Change::new(Operation::Append);
            change.added_data = files.clone();
            change.properties = props.clone();
            match commit_change(lake, &table, &live, change).await {
                Ok(table) => Ok(Attempt::Committed(table)),
                // Lost the swap: re-read the position and try again.
                Err(Error::Conflict { message, .. }) => Ok(Attempt::Raced(message)),
                Err(e) => Err(e),
            }
        }
        .await;
        match attempt {
            Ok(Attempt::Committed(table)) => return Ok(table),
            Ok(Attempt::Already(table)) => {
                tracing::info!(table = %ident, "position already committed by an earlier attempt");
                return Ok(table);
            }
            Ok(Attempt::Raced(message)) if backoff.can_retry() => {
                tracing::info!(table = %ident, %message, "another writer committed first, retrying");
                backoff.wait().await;
            }
            Ok(Attempt::Raced(message)) => {
                return Err(Error::CommitFailed {
                    table: ident.to_string(),
                    attempts: backoff.attempts(),
                    message,
                })
            }
            Err(e @ Error::Conflict { .. }) => return Err(e),
            Err(e) if backoff.can_retry() && e.retryable() => {
                tracing::warn!(table = %ident, attempt = backoff.attempts(), error = %e, "commit failed, retrying");
                backoff.wait().await;
            }
            Err(e) => {
                return Err(Error::CommitFailed {
                    table: ident.to_string(),
                    attempts: backoff.attempts(),
                    message: e.to_string(),
                })
            }
        }
    }
}

enum Attempt {
    Committed(Table),
    Already(Table),
    Raced(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(encode_path_segment("Order Completed"), "Order%20Completed");
        assert_eq!(encode_path_segment("../../x"), "%2E%2E%2F%2E%2E%2Fx");
        assert_eq!(encode_path_segment("2026-11-22"), "2026-11-22");
        assert_eq!(encode_path_segment(""), "%00");
    }
}
