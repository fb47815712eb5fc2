//! `strata load TABLE PATH…`: files into a lake table as one commit. The work is in
//! `strata_table::load`; this builds the load from the flags and prints what it did.

use anyhow::{bail, Context, Result};
use strata_table::load::{self, CsvOptions, FileFormat, LoadMode, LoadSpec, SourceS3};
use strata_table::table::parse_table_name;
use strata_table::Lake;

use super::load_config;
use crate::cli::{LoadArgs, LoadFormatArg, LoadModeArg};

pub async fn run(args: LoadArgs) -> Result<()> {
    let config = load_config(&args.config.config)?;
    let spec = spec(&args, &config)?;
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    let report = load::load(&lake, &spec)
        .await
        .with_context(|| format!("loading into {}", spec.table))?;
    let out = &report.outcome;
    if args.json {
        let value = serde_json::json!({
            "table": spec.table.to_string(),
            "mode": spec.mode.name(),
            "files": report.files,
            "rows_read": report.rows_read,
            "created": report.created,
            "inserted": out.inserted,
            "updated": out.updated,
            "deleted": out.deleted,
            "snapshot_id": out.snapshot_id,
        });
        println!("{value}");
    } else {
        if report.created {
            println!("created {}", spec.table);
        }
        let snapshot = out
            .snapshot_id
            .map_or("nothing to commit".to_string(), |s| format!("snapshot {s}"));
        let replaced = match spec.mode {
            LoadMode::Overwrite { .. } => "replaced",
            _ => "deleted",
        };
        println!(
            "loaded {} rows from {} file{} into {} ({}): {} inserted, {} updated, {} {replaced}; {snapshot}",
            report.rows_read,
            report.files,
            if report.files == 1 { "" } else { "s" },
            spec.table,
            spec.mode.name(),
            out.inserted,
            out.updated,
            out.deleted,
        );
    }
    super::audit_admin(
        &config,
        "load".to_string(),
        Some(spec.table.to_string()),
        Some(format!(
            "{} {} rows from {}",
            spec.mode.name(),
            report.rows_read,
            spec.sources.join(", ")
        )),
    )
    .await;
    Ok(())
}

/// The load the flags describe; flags that do not belong to the mode are errors.
fn spec(args: &LoadArgs, config: &crate::config::Config) -> Result<LoadSpec> {
    let table = parse_table_name(&args.table)?;
    let merge_flags = !args.key.is_empty() || args.op_column.is_some() || args.order_by.is_some();
    let mode = match args.mode {
        LoadModeArg::Append => {
            if merge_flags || args.partition.is_some() {
                bail!("--key, --op-column and --order-by go with --mode merge, --partition with --mode overwrite");
            }
            LoadMode::Append
        }
        LoadModeArg::Overwrite => {
            if merge_flags {
                bail!("--key, --op-column and --order-by go with --mode merge");
            }
            let partition = match &args.partition {
                None => None,
                Some(p) => {
                    let (c, v) = p.split_once('=').with_context(|| {
                        format!("--partition {p:?}: expected COLUMN=VALUE, e.g. dt=2026-12-07")
                    })?;
                    Some((c.trim().to_string(), v.trim().to_string()))
                }
            };
            LoadMode::Overwrite { partition }
        }
        LoadModeArg::Merge => {
            if args.partition.is_some() {
                bail!("--partition goes with --mode overwrite");
            }
            if args.key.is_empty() {
                bail!("--mode merge needs --key (the key columns, e.g. --key id)");
            }
            LoadMode::Merge {
                key: args.key.clone(),
                op_column: args.op_column.clone(),
                order_by: args.order_by.clone(),
            }
        }
    };
    if !args.delimiter.is_ascii() {
        bail!("--delimiter must be one ASCII character");
    }
    let format = args.format.map(|f| match f {
        LoadFormatArg::Parquet => FileFormat::Parquet,
        LoadFormatArg::Csv => FileFormat::Csv,
        LoadFormatArg::Json => FileFormat::Json,
    });
    Ok(LoadSpec {
        table,
        sources: args.sources.clone(),
        format,
        mode,
        csv: CsvOptions {
            delimiter: args.delimiter as u8,
        },
        partition_by: args.partition_by.clone(),
        s3: SourceS3 {
            lake_config: Some(config.lake.clone()),
        },
    })
}
