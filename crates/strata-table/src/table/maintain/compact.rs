//! Compaction: rewrite small data files, and data files with deletes against them, into
//! files of about the target size, without changing the table's rows.
//!
//! Planning, per partition (partition spec + partition value) of the current snapshot:
//! - candidates are data files smaller than `small_file_threshold × target_file_size` and data
//!   files that position or equality deletes apply to;
//! - a partition is rewritten when it has `min_input_files` candidates, or any candidate with
//!   deletes (deletes are always folded in);
//! - candidates are bin-packed (first fit, largest first) into bins of at most the target
//!   size; a bin of one file without deletes is left alone (nothing to gain).
//!
//! Each bin's live rows are read with the deletes applied and written through the normal
//! writer. Tables without equality deletes are read with Strata's own reader
//! ([`read_located`]); tables with equality deletes (written by other engines) are read
//! through iceberg's scan, which applies both kinds. One `replace` snapshot then removes the
//! rewritten data files plus every delete file that no longer applies to anything: a position
//! delete file whose referenced data files are all rewritten (or gone), an equality delete
//! file with no remaining older data file in its partition.
//!
//! Concurrency ([`super::rebase`]): the new files are planned against one snapshot. If another
//! writer commits first, the compaction rebases onto the new snapshot — reusing the files it wrote — as long
//! as every input file is still live, the schema and partition spec are unchanged and no new
//! delete file applies to a rewritten file (checked by reading the new position delete files;
//! a new equality delete in a rewritten partition counts as applying). Otherwise the written
//! files are dropped and the compaction re-plans from the new snapshot (bounded backoff).
//! Appends (the lake sink) therefore never force a re-plan; a delete racing against the
//! rewrite of its file does, and is never lost.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataContentType, DataFile, Struct};
use iceberg::table::Table;
use iceberg::TableIdent;

use super::rebase;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::dml::with_conflict_retry;
use crate::table::files::{LiveFile, TableFiles};
use crate::table::read::{
    located_schema, plain_column, read_located, read_position_delete_file, table_arrow_schema,
};
use crate::write::write_rows;

/// Default size new data files aim for.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// What [`compact`] rewrites and how big the new files get.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactOptions {
    /// Size new data files aim for, in bytes of (compressed) Parquet.
    pub target_file_size: u64,
    /// A partition's small files are rewritten only when it has at least this many
    /// candidates (files with deletes are always rewritten).
    pub min_input_files: usize,
    /// Files below this fraction of `target_file_size` are small.
    pub small_file_threshold: f64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            min_input_files: 5,
            small_file_threshold: 0.75,
        }
    }
}

impl CompactOptions {
    pub fn validate(&self) -> Result<()> {
        if self.target_file_size < 1024 {
            return Err(Error::Invalid(format!(
                "target file size {} is below 1 KiB",
                self.target_file_size
            )));
        }
        if self.min_input_files < 2 {
            return Err(Error::Invalid(
                "min input files must be at least 2".to_string(),
            ));
        }
        let t = self.small_file_threshold;
        if t.is_nan() || t <= 0.0 || t > 1.0 {
            return Err(Error::Invalid(format!(
                "small file ratio {} must be in (0, 1]",
                self.small_file_threshold
            )));
        }
        Ok(())
    }

    /// Data files below this size are small.
    pub fn small_below(&self) -> u64 {
        (self.target_file_size as f64 * self.small_file_threshold) as u64
    }
}

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The `replace` snapshot committed, or `None` when there was nothing to do.
    pub snapshot_id: Option<i64>,
    /// Partitions with rewritten files.
    pub partitions: usize,
    pub data_files_rewritten: usize,
    pub delete_files_removed: usize,
    pub data_files_written: usize,
    /// Live rows rewritten.
    pub rows: u64,
    pub bytes_rewritten: u64,
    pub bytes_written: u64,
    /// Commits tried for the final plan (more than one: other writers committed meanwhile
    /// and the compaction was rebased on them).
    pub commit_attempts: u32,
}

/// Compacts `ident` (see the module docs). Rows stay exactly as they were.
pub async fn compact(
    lake: &Lake,
    ident: &TableIdent,
    options: &CompactOptions,
) -> Result<CompactReport> {
    options.validate()?;
    with_conflict_retry(ident, || async {
        match prepare(lake, ident, options).await? {
            Some(prepared) => prepared.commit(lake).await,
            None => {
                tracing::debug!(table = %ident, "nothing to compact");
                Ok(CompactReport::default())
            }
        }
    })
    .await
}

/// A planned compaction with its new files written, not yet committed.
pub struct Prepared {
    table: Table,
    files: TableFiles,
    plan: Plan,
    written: Vec<DataFile>,
    report: CompactReport,
}

/// Plans against the current snapshot and writes the new files; `None`: nothing to do.
pub async fn prepare(
    lake: &Lake,
    ident: &TableIdent,
    options: &CompactOptions,
) -> Result<Option<Prepared>> {
    let table = lake.load_table(ident).await?;
    let files = TableFiles::current(&table).await?;
    let plan = plan(&table, &files, options).await?;
    if plan.is_empty() {
        return Ok(None);
    }
    let (written, rows) = rewrite(&table, &plan).await?;
    let report = CompactReport {
        partitions: plan.partitions,
        data_files_rewritten: plan.rewritten.len(),
        delete_files_removed: plan.removed_deletes.len(),
        data_files_written: written.len(),
        rows,
        bytes_rewritten: plan.bytes,
        bytes_written: written.iter().map(|f| f.file_size_in_bytes()).sum(),
        ..Default::default()
    };
    Ok(Some(Prepared {
        table,
        files,
        plan,
        written,
        report,
    }))
}

impl Prepared {
    /// Commits, rebasing over concurrent commits while the plan holds;
    /// [`Error::Conflict`] when it must be re-planned.
    pub async fn commit(self, lake: &Lake) -> Result<CompactReport> {
        let ident = self.table.identifier().clone();
        let Prepared {
            table,
            files,
            plan,
            written,
            mut report,
        } = self;
        let (table, attempts) = rebase::commit(
            lake,
            &ident,
            table,
            files,
            &plan,
            &written,
            rebase::Commit::compaction(),
        )
        .await?;
        report.snapshot_id = table.metadata().current_snapshot_id();
        report.commit_attempts = attempts;
        tracing::info!(
            table = %ident,
            partitions = report.partitions,
            rewritten = report.data_files_rewritten,
            written = report.data_files_written,
            delete_files_removed = report.delete_files_removed,
            rows = report.rows,
            "compacted"
        );
        metrics::counter!("strata_lake_compactions_total", "table" => ident.to_string())
            .increment(1);
        metrics::counter!("strata_lake_compaction_files_rewritten_total", "table" => ident.to_string())
            .increment(report.data_files_rewritten as u64);
        Ok(report)
    }
}

/// Files a compaction rewrites and removes, planned against one snapshot.
pub struct Plan {
    pub snapshot_id: Option<i64>,
    pub schema_id: i32,
    pub spec_id: i32,
    /// Read through iceberg's scan (the table has equality deletes).
    pub equality: bool,
    pub bins: Vec<Vec<LiveFile>>,
    /// Paths of the data files rewritten.
    pub rewritten: HashSet<String>,
    /// (spec id, partition) of the rewritten files.
    pub rewritten_partitions: HashSet<(i32, Struct)>,
    /// Delete files removed.
    pub removed_deletes: HashSet<String>,
    /// Every delete file live when planning.
    pub known_deletes: HashSet<String>,
    /// Deleted positions of the rewritten files.
    pub positions: HashMap<String, HashSet<i64>>,
    pub partitions: usize,
    pub bytes: u64,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.bins.is_empty() && self.removed_deletes.is_empty()
    }
}

/// Whether delete file `delete` can apply to data file `data` by partition: the delete's spec
/// is unpartitioned, or both share spec and partition value.
pub(super) fn same_scope(
    table: &Table,
    delete: &LiveFile,
    data_spec: i32,
    data_partition: &Struct,
) -> bool {
    let global = table
        .metadata()
        .partition_spec_by_id(delete.spec_id)
        .is_some_and(|s| s.is_unpartitioned());
    global || (delete.spec_id == data_spec && delete.file.partition() == data_partition)
}

/// Whether equality delete `eq` applies to data file `data` (older data, same scope).
fn equality_applies(table: &Table, eq: &LiveFile, data: &LiveFile) -> bool {
    eq.sequence_number > data.sequence_number
        && same_scope(table, eq, data.spec_id, data.file.partition())
}

async fn plan(table: &Table, files: &TableFiles, options: &CompactOptions) -> Result<Plan> {
    let metadata = table.metadata();
    let target = options.target_file_size;
    let small_below = options.small_below();

    // Which data files each position delete file refers to, and the equality delete files.
    let mut positions: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut position_files: Vec<(&LiveFile, HashSet<String>)> = Vec::new();
    let mut equality: Vec<&LiveFile> = Vec::new();
    for d in files.delete_files() {
        match d.file.content_type() {
            DataContentType::PositionDeletes => {
                let entries = read_position_delete_file(table, d).await?;
                let referenced = entries.keys().cloned().collect();
                for (path, pos) in entries {
                    positions.entry(path).or_default().extend(pos);
                }
                position_files.push((d, referenced));
            }
            DataContentType::EqualityDeletes => equality.push(d),
            DataContentType::Data => {}
        }
    }
    let has_deletes = |f: &LiveFile| {
        positions.contains_key(f.path()) || equality.iter().any(|eq| equality_applies(table, eq, f))
    };

    // Candidates per partition.
    let mut groups: HashMap<(i32, Struct), Vec<(&LiveFile, bool)>> = HashMap::new();
    for f in files.data_files() {
        let deletes = has_deletes(f);
        if deletes || f.file.file_size_in_bytes() < small_below {
            groups
                .entry((f.spec_id, f.file.partition().clone()))
                .or_default()
                .push((f, deletes));
        }
    }

    let mut plan = Plan {
        snapshot_id: files.snapshot_id,
        schema_id: metadata.current_schema_id(),
        spec_id: metadata.default_partition_spec_id(),
        equality: !equality.is_empty(),
        bins: Vec::new(),
        rewritten: HashSet::new(),
        rewritten_partitions: HashSet::new(),
        removed_deletes: HashSet::new(),
        known_deletes: files.delete_files().map(|d| d.path().to_string()).collect(),
        positions: HashMap::new(),
        partitions: 0,
        bytes: 0,
    };
    for (key, mut candidates) in groups {
        let any_deletes = candidates.iter().any(|(_, d)| *d);
        if !any_deletes && candidates.len() < options.min_input_files {
            continue;
        }
        // First fit, largest first.
        candidates.sort_by_key(|(f, _)| Reverse(f.file.file_size_in_bytes()));
        let mut bins: Vec<(u64, Vec<(&LiveFile, bool)>)> = Vec::new();
        for candidate in candidates {
            let size = candidate.0.file.file_size_in_bytes();
            match bins.iter_mut().find(|(total, _)| total + size <= target) {
                Some((total, bin)) => {
                    *total += size;
                    bin.push(candidate);
                }
                None => bins.push((size, vec![candidate])),
            }
        }
        let mut used = false;
        for (_, bin) in bins {
            // One file without deletes would come out as the same file.
            if bin.len() == 1 && !bin[0].1 {
                continue;
            }
            used = true;
            for (f, _) in &bin {
                plan.rewritten.insert(f.path().to_string());
                plan.bytes += f.file.file_size_in_bytes();
                if let Some(p) = positions.get(f.path()) {
                    plan.positions.insert(f.path().to_string(), p.clone());
                }
            }
            plan.bins
                .push(bin.into_iter().map(|(f, _)| f.clone()).collect());
        }
        if used {
            plan.partitions += 1;
            plan.rewritten_partitions.insert(key);
        }
    }

    // Delete files that no longer apply to anything once the rewrite lands.
    let live_data: HashSet<&str> = files.data_files().map(|f| f.path()).collect();
    for (d, referenced) in &position_files {
        let obsolete = referenced
            .iter()
            .all(|p| plan.rewritten.contains(p) || !live_data.contains(p.as_str()));
        if obsolete {
            plan.removed_deletes.insert(d.path().to_string());
        }
    }
    for eq in &equality {
        let applies = files
            .data_files()
            .any(|f| !plan.rewritten.contains(f.path()) && equality_applies(table, eq, f));
        if !applies {
            plan.removed_deletes.insert(eq.path().to_string());
        }
    }
    Ok(plan)
}

/// Writes each bin's live rows as new data files. Returns them and the row count; on error
/// the files written so far are deleted (they are referenced nowhere).
async fn rewrite(table: &Table, plan: &Plan) -> Result<(Vec<DataFile>, u64)> {
    let mut written = Vec::new();
    let result = rewrite_into(table, plan, &mut written).await;
    if result.is_err() {
        discard(table, &written).await;
    }
    result.map(|rows| (written, rows))
}

async fn rewrite_into(table: &Table, plan: &Plan, written: &mut Vec<DataFile>) -> Result<u64> {
    let schema = table_arrow_schema(table)?;
    let located = located_schema(table)?;
    let columns: Vec<usize> = (0..schema.fields().len()).collect();
    let mut tasks = if plan.equality {
        scan_tasks(table, plan).await?
    } else {
        HashMap::new()
    };
    let mut rows = 0u64;
    for bin in &plan.bins {
        let mut batches: Vec<RecordBatch> = Vec::new();
        for f in bin {
            if plan.equality {
                let file_tasks = tasks.remove(f.path()).ok_or_else(|| {
                    Error::Internal(format!(
                        "the scan of {} has no task for {}",
                        table.identifier(),
                        f.path()
                    ))
                })?;
                batches.extend(read_tasks(table, file_tasks, &schema).await?);
            } else {
                let deleted = plan.positions.get(f.path());
                for batch in read_located(table, f, deleted, &located).await? {
                    batches.push(
                        batch
                            .project(&columns)
                            .map_err(|e| Error::arrow("dropping _file/_pos", e))?,
                    );
                }
            }
        }
        rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        written.extend(write_rows(table, &batches).await?);
    }
    Ok(rows)
}

/// Iceberg's scan tasks (deletes attached) of the rewritten files, by data file path.
async fn scan_tasks(table: &Table, plan: &Plan) -> Result<HashMap<String, Vec<FileScanTask>>> {
    let ident = table.identifier();
    let mut scan = table.scan().select_all();
    if let Some(id) = plan.snapshot_id {
        scan = scan.snapshot_id(id);
    }
    let tasks: Vec<FileScanTask> = scan
        .build()
        .map_err(|e| Error::iceberg(format!("planning a scan of {ident}"), e))?
        .plan_files()
        .await
        .map_err(|e| Error::iceberg(format!("planning a scan of {ident}"), e))?
        .try_collect()
        .await
        .map_err(|e| Error::iceberg(format!("planning a scan of {ident}"), e))?;
    let mut out: HashMap<String, Vec<FileScanTask>> = HashMap::new();
    for task in tasks {
        if plan.rewritten.contains(&task.data_file_path) {
            out.entry(task.data_file_path.clone())
                .or_default()
                .push(task);
        }
    }
    Ok(out)
}

/// Reads scan tasks (deletes applied by iceberg's reader) as batches of the table schema.
async fn read_tasks(
    table: &Table,
    tasks: Vec<FileScanTask>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let reader = table.reader_builder().build();
    let stream = Box::pin(futures::stream::iter(tasks.into_iter().map(Ok)));
    let batches: Vec<RecordBatch> = reader
        .read(stream)
        .map_err(|e| Error::iceberg("reading data files to compact", e))?
        .stream()
        .try_collect()
        .await
        .map_err(|e| Error::iceberg("reading data files to compact", e))?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        if batch.num_columns() != schema.fields().len() {
            return Err(Error::Internal(format!(
                "scan gave {} columns, the table has {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields().iter())
            .map(|(c, f)| plain_column(c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        out.push(
            RecordBatch::try_new(Arc::clone(schema), columns)
                .map_err(|e| Error::arrow("rows to compact", e))?,
        );
    }
    Ok(out)
}

/// Deletes files written by an attempt that definitely did not commit (best effort).
pub async fn discard(table: &Table, written: &[DataFile]) {
    for f in written {
        if let Err(e) = table.file_io().delete(f.file_path()).await {
            tracing::warn!(path = f.file_path(), error = %e, "could not delete an uncommitted file");
        }
    }
}
