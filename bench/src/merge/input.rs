//! The benchmark's input as Parquet files, which every engine loads: the target in chunks
//! (`target-NNNN.parquet`), the change set (`changes.parquet`) and `manifest.json` with the
//! sizes and the expected result, which the Python peers read.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::data::{self, Expected, Sizes};

/// Rows per change batch handed to the engines.
const CHANGE_BATCH_ROWS: u64 = 65_536;

pub struct Inputs {
    pub sizes: Sizes,
    pub expected: Expected,
    pub target_files: Vec<PathBuf>,
    pub changes_file: PathBuf,
    pub manifest: PathBuf,
    /// The change set in memory (what Strata's MERGE gets as its source).
    pub changes: Vec<RecordBatch>,
}

/// Writes the input files under `dir`.
pub fn generate(dir: &Path, sizes: Sizes, chunk_rows: u64) -> Result<Inputs> {
    sizes.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut target_files = Vec::new();
    let mut start = 0;
    while start < sizes.rows {
        let end = (start + chunk_rows.max(1)).min(sizes.rows);
        let path = dir.join(format!("target-{:04}.parquet", target_files.len()));
        write_parquet(&path, &[data::target_batch(start..end)?])?;
        target_files.push(path);
        start = end;
    }
    let changes = data::changes_batches(&sizes, CHANGE_BATCH_ROWS)?;
    let changes_file = dir.join("changes.parquet");
    write_parquet(&changes_file, &changes)?;
    let expected = data::expected(&sizes);
    let manifest = dir.join("manifest.json");
    let doc = json!({
        "rows": sizes.rows,
        "changes": sizes.changes,
        "chunk_rows": chunk_rows,
        "target_files": target_files,
        "changes_file": changes_file,
        "expected": {
            "updates": expected.updates,
            "inserts": expected.inserts,
            "deletes": expected.deletes,
            "rows_after": expected.rows_after,
            "score_sum_before": expected.score_sum_before,
            "score_sum_after": expected.score_sum_after,
        },
    });
    std::fs::write(&manifest, serde_json::to_string_pretty(&doc)?)?;
    Ok(Inputs {
        sizes,
        expected,
        target_files,
        changes_file,
        manifest,
        changes,
    })
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let schema = batches.first().context("no batch to write")?.schema();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(())
}

pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(65_536)
        .build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Bytes of the input files (for the report).
pub fn bytes(inputs: &Inputs) -> u64 {
    inputs
        .target_files
        .iter()
        .chain(std::iter::once(&inputs.changes_file))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
