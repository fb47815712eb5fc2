//! The MERGE through Strata's Rust API (`strata_table::table`), in one write mode: create the
//! table, append the target in chunks, read it, MERGE the change set, read it again, compact
//! (when the lake has compaction) and read once more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::common::Column;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};
use serde_json::{json, Value};
use strata_sql::SqlSession;
use strata_table::table::{self, MergeClause, MergeSpec, TableFiles, WriteMode};
use strata_table::Lake;

use super::data::Expected;
use super::input::Inputs;
use crate::{reset_peak_rss, self_rss_mib};

/// Namespace of the benchmark's tables.
pub const NAMESPACE: &str = "bench";

/// What to run.
pub struct StrataRun<'a> {
    pub lake: &'a Lake,
    pub inputs: &'a Inputs,
    pub mode: WriteMode,
    /// Timed repetitions of each full-scan read.
    pub read_runs: usize,
}

pub fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::MergeOnRead => "merge-on-read",
        WriteMode::CopyOnWrite => "copy-on-write",
    }
}

/// Opens (creating) a lake under `dir`.
pub async fn open_lake(dir: &Path) -> Result<Lake> {
    let config = strata_table::config::LakeOptions::new(dir);
    Ok(Lake::open(&config).await?)
}

impl StrataRun<'_> {
    /// Runs every step; a failing step ends the run with its error in the figures (so the
    /// peers still run and the report shows what broke).
    pub async fn run(&self) -> Value {
        let mode = mode_name(self.mode);
        let mut figures = json!({
            "name": format!("strata {mode}"),
            "engine": "strata",
            "mode": mode,
        });
        if let Err(e) = self.steps(&mut figures).await {
            eprintln!("strata {mode}: {e:#}");
            figures["error"] = json!(format!("{e:#}"));
        }
        figures
    }

    async fn steps(&self, figures: &mut Value) -> Result<()> {
        let mode = mode_name(self.mode);
        let ident = self.create_table().await?;
        let expected = &self.inputs.expected;

        // Load: the target appended chunk by chunk, one commit per chunk.
        let mut load_secs = 0.0;
        for path in &self.inputs.target_files {
            let batches = super::input::read_parquet(path)?;
            let start = Instant::now();
            table::append(self.lake, &ident, batches)
                .await
                .with_context(|| format!("appending {}", path.display()))?;
            load_secs += start.elapsed().as_secs_f64();
        }
        figures["load"] = json!({
            "secs": load_secs,
            "rows": self.inputs.sizes.rows,
            "rows_per_sec": self.inputs.sizes.rows as f64 / load_secs,
            "commits": self.inputs.target_files.len(),
        });
        figures["table_before_merge"] = self.shape(&ident).await?;
        eprintln!(
            "strata {mode}: appended {} rows in {load_secs:.1} s",
            self.inputs.sizes.rows
        );

        let read = self.read(&ident, expected.score_sum_before).await?;
        eprintln!("strata {mode}: read before merge {}", read_line(&read));
        figures["read_before_merge"] = read;

        // Diagnostic: the merge's first step alone, reading every live row located
        // (`_file`, `_pos`) into memory.
        figures["located_read"] = self.located_read(&ident).await?;

        // The MERGE.
        let ctx = SessionContext::new_with_config_rt(Default::default(), self.lake.runtime());
        let source = ctx.read_batches(self.inputs.changes.clone())?;
        let (rss_before, _) = self_rss_mib();
        let exact_peak = reset_peak_rss();
        let start = Instant::now();
        let outcome = table::merge(self.lake, &ctx, &ident, source, merge_spec()).await;
        let secs = start.elapsed().as_secs_f64();
        let (_, peak) = self_rss_mib();
        let outcome = outcome.context("MERGE")?;
        figures["merge"] = json!({
            "secs": secs,
            "changes_per_sec": self.inputs.sizes.changes as f64 / secs,
            "updated": outcome.updated,
            "inserted": outcome.inserted,
            "deleted": outcome.deleted,
            "files_written": outcome.files_written,
            "bytes_written": outcome.bytes_written,
            "rss_before_mib": rss_before,
            "peak_rss_mib": peak,
            "peak_rss_exact": exact_peak,
        });
        eprintln!(
            "strata {mode}: MERGE {secs:.1} s, {} files / {:.1} MiB written, peak RSS {peak:.0} MiB",
            outcome.files_written,
            outcome.bytes_written as f64 / 1048576.0
        );
        let counts_ok = (outcome.updated, outcome.inserted, outcome.deleted)
            == (expected.updates, expected.inserts, expected.deletes);
        figures["table_after_merge"] = self.shape(&ident).await?;

        let read = self.read(&ident, expected.score_sum_after).await?;
        eprintln!("strata {mode}: read after merge {}", read_line(&read));
        figures["check"] = check(&read, expected, counts_ok);
        figures["read_after_merge"] = read;

        // After compaction.
        match compact(self.lake, &ident).await? {
            Some(c) => {
                let read = self.read(&ident, expected.score_sum_after).await?;
                eprintln!("strata {mode}: read after compaction {}", read_line(&read));
                figures["compaction"] = c;
                figures["table_after_compaction"] = self.shape(&ident).await?;
                figures["read_after_compaction"] = read;
            }
            None => figures["compaction"] = json!({ "skipped": "nothing to compact" }),
        }
        Ok(())
    }

    async fn create_table(&self) -> Result<TableIdent> {
        let catalog = self.lake.catalog();
        let ns = NamespaceIdent::new(NAMESPACE.into());
        if !catalog.namespace_exists(&ns).await? {
            catalog.create_namespace(&ns, HashMap::new()).await?;
        }
        let name = format!("users_{}", mode_name(self.mode).replace('-', "_"));
        let ident = TableIdent::new(ns.clone(), name.clone());
        if catalog.table_exists(&ident).await? {
            catalog.drop_table(&ident).await?;
        }
        let mode = mode_name(self.mode);
        let properties: HashMap<String, String> = ["delete", "update", "merge"]
            .iter()
            .map(|op| (format!("write.{op}.mode"), mode.to_string()))
            .collect();
        // Partitioned by identity(country). Unpartitioned would be the natural mirror of an OLTP
        // table, but `table::append` fails on unpartitioned tables ("Cannot create partition
        // calculator for unpartitioned table", from iceberg's RecordBatchPartitionSplitter).
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(5, "country", Transform::Identity)?
            .build();
        let creation = TableCreation::builder()
            .name(name)
            .schema(iceberg_schema()?)
            .partition_spec(spec)
            .properties(properties)
            .build();
        catalog.create_table(&ns, creation).await?;
        Ok(ident)
    }

    /// `SELECT count(*), sum(score)` through `strata sql`'s session, `read_runs` times.
    async fn read(&self, ident: &TableIdent, expected_sum: i64) -> Result<Value> {
        let session = SqlSession::new(self.lake).await?;
        let sql = format!(
            "SELECT count(*) AS n, sum(score) AS s FROM {}.{}",
            NAMESPACE,
            ident.name()
        );
        let mut secs = Vec::with_capacity(self.read_runs);
        let mut result = (0, 0);
        for _ in 0..self.read_runs.max(1) {
            let start = Instant::now();
            let batches = session.run(&sql).await?;
            secs.push(start.elapsed().as_secs_f64());
            result = count_and_sum(&batches)?;
        }
        Ok(read_figures(result.0, result.1, expected_sum, secs))
    }

    async fn located_read(&self, ident: &TableIdent) -> Result<Value> {
        let table = self.lake.load_table(ident).await?;
        let files = TableFiles::current(&table).await?;
        let (rss_before, _) = self_rss_mib();
        reset_peak_rss();
        let start = Instant::now();
        let (_, batches) = table::read::read_table_located(&table, &files, |_| true).await?;
        let secs = start.elapsed().as_secs_f64();
        let (_, peak) = self_rss_mib();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let file_column_bytes: usize = batches
            .iter()
            .map(|b| b.column(b.num_columns() - 2).get_array_memory_size())
            .sum();
        Ok(json!({
            "secs": secs,
            "rows": rows,
            "batches": batches.len(),
            "arrow_mib": bytes as f64 / 1048576.0,
            "file_column_mib": file_column_bytes as f64 / 1048576.0,
            "rss_before_mib": rss_before,
            "peak_rss_mib": peak,
        }))
    }

    /// Live data and delete files of the current snapshot.
    async fn shape(&self, ident: &TableIdent) -> Result<Value> {
        let table = self.lake.load_table(ident).await?;
        let files = TableFiles::current(&table).await?;
        let (mut data, mut data_bytes, mut deletes, mut delete_bytes) = (0u64, 0u64, 0u64, 0u64);
        for f in files.data_files() {
            data += 1;
            data_bytes += f.file.file_size_in_bytes();
        }
        for f in files.delete_files() {
            deletes += 1;
            delete_bytes += f.file.file_size_in_bytes();
        }
        Ok(json!({
            "data_files": data,
            "data_bytes": data_bytes,
            "delete_files": deletes,
            "delete_bytes": delete_bytes,
            "snapshots": table.metadata().snapshots().count(),
        }))
    }
}

/// Compacts the table (default options: 128 MiB target; files with deletes are always
/// rewritten) and returns its figures.
async fn compact(lake: &Lake, ident: &TableIdent) -> Result<Option<Value>> {
    let start = Instant::now();
    let r = strata_table::table::maintain::compact(
        lake,
        ident,
        &strata_table::table::maintain::CompactOptions::default(),
    )
    .await?;
    Ok(Some(json!({
        "secs": start.elapsed().as_secs_f64(),
        "data_files_rewritten": r.data_files_rewritten,
        "delete_files_removed": r.delete_files_removed,
        "files_written": r.data_files_written,
        "bytes_written": r.bytes_written,
    })))
}

/// The MERGE: delete on 'D', `UPDATE SET *` on 'U'/'I', `INSERT *` when not matched.
pub fn merge_spec() -> MergeSpec {
    let s = |c: &str| col(Column::new(Some("s"), c));
    let t = |c: &str| col(Column::new(Some("t"), c));
    let upsert = || s("op").in_list(vec![lit("U"), lit("I")], false);
    MergeSpec {
        target_alias: "t".into(),
        source_alias: "s".into(),
        on: t("user_id").eq(s("user_id")),
        clauses: vec![
            MergeClause::Delete {
                condition: Some(s("op").eq(lit("D"))),
            },
            MergeClause::Update {
                condition: Some(upsert()),
                assignments: None,
            },
            MergeClause::Insert {
                condition: Some(upsert()),
                values: None,
            },
        ],
    }
}

fn iceberg_schema() -> Result<IcebergSchema> {
    let p = |t| Type::Primitive(t);
    Ok(IcebergSchema::builder()
        .with_fields(vec![
            NestedField::required(1, "user_id", p(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", p(PrimitiveType::String)).into(),
            NestedField::optional(3, "score", p(PrimitiveType::Int)).into(),
            NestedField::optional(4, "updated_at", p(PrimitiveType::Timestamptz)).into(),
            NestedField::optional(5, "country", p(PrimitiveType::String)).into(),
        ])
        .build()?)
}

fn count_and_sum(batches: &[RecordBatch]) -> Result<(i64, i64)> {
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .context("no row")?;
    let get = |i: usize| -> Result<i64> {
        let c = batch
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("not int64")?;
        Ok(if c.is_null(0) { 0 } else { c.value(0) })
    };
    Ok((get(0)?, get(1)?))
}

/// Read figures in the shape every engine reports.
pub fn read_figures(rows: i64, score_sum: i64, expected_sum: i64, mut secs: Vec<f64>) -> Value {
    let all = secs.clone();
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    json!({
        "rows": rows,
        "score_sum": score_sum,
        "score_sum_ok": score_sum == expected_sum,
        "secs": all,
        "median_secs": median,
        "rows_per_sec": rows as f64 / median,
    })
}

fn read_line(read: &Value) -> String {
    format!(
        "{} rows in {:.2} s median ({:.1} M rows/s)",
        read["rows"],
        read["median_secs"].as_f64().unwrap_or(f64::NAN),
        read["rows_per_sec"].as_f64().unwrap_or(f64::NAN) / 1e6
    )
}

/// Whether the merged table holds exactly what the generator says it must.
fn check(read: &Value, expected: &Expected, counts_ok: bool) -> Value {
    let rows_ok = read["rows"].as_u64() == Some(expected.rows_after);
    let sum_ok = read["score_sum"].as_i64() == Some(expected.score_sum_after);
    json!({
        "ok": rows_ok && sum_ok && counts_ok,
        "rows_ok": rows_ok,
        "score_sum_ok": sum_ok,
        "outcome_counts_ok": counts_ok,
        "expected_rows": expected.rows_after,
        "expected_score_sum": expected.score_sum_after,
    })
}

/// Where one mode's lake lives under the work directory.
pub fn lake_dir(work: &Path, mode: WriteMode) -> PathBuf {
    work.join(format!("strata-{}", mode_name(mode)))
}
