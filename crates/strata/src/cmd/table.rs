//! `strata table …`: maintenance of one lake table (compaction, snapshot expiry, orphan
//! removal) and its listings. The work is in `strata_table::table::maintain`; this prints.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use strata_sql::format_batches;
use strata_table::table::maintain::{self, CompactionPolicy};
use strata_table::Lake;

use super::{load_config, output_format};
use crate::cli::{CompactArgs, ExpireArgs, ListArgs, OrphanArgs, TableCommand};

/// Shorter cutoffs need `--force`: they can delete a running write's files.
const MIN_ORPHAN_AGE: Duration = Duration::from_secs(3600);

pub async fn run(command: TableCommand) -> Result<()> {
    // Maintenance that changes or deletes files is an admin command: it goes in the access log.
    let audited = match &command {
        TableCommand::Compact(a) => Some(("table compact", &a.config.config, a.table.clone())),
        TableCommand::ExpireSnapshots(a) => {
            Some(("table expire-snapshots", &a.config.config, a.table.clone()))
        }
        TableCommand::RemoveOrphans(a) => {
            Some(("table remove-orphans", &a.config.config, a.table.clone()))
        }
        _ => None,
    }
    .map(|(action, config, table)| (action, config.clone(), table));
    let result = match command {
        TableCommand::Compact(args) => compact(args).await,
        TableCommand::ExpireSnapshots(args) => expire(args).await,
        TableCommand::RemoveOrphans(args) => orphans(args).await,
        TableCommand::History(args) => list(args, Listing::History).await,
        TableCommand::Snapshots(args) => list(args, Listing::Snapshots).await,
        TableCommand::Files(args) => list(args, Listing::Files).await,
    };
    if let (Some((action, config, table)), Ok(())) = (audited, &result) {
        if let Ok(config) = load_config(&config) {
            super::audit_admin(&config, action.to_string(), Some(table), None).await;
        }
    }
    result
}

async fn open(config: &std::path::Path) -> Result<(crate::config::Config, Lake)> {
    let config = load_config(config)?;
    let lake = Lake::open(&config.lake_options())
        .await
        .context("opening the lake")?;
    Ok((config, lake))
}

async fn compact(args: CompactArgs) -> Result<()> {
    let (config, lake) = open(&args.config.config).await?;
    let ident = maintain::parse_table_name(&args.table)?;
    let table = lake.load_table(&ident).await?;
    let mut options = CompactionPolicy::from_config(&config.lake)
        .for_table(&table)?
        .options;
    if let Some(size) = args.target_file_size {
        options.target_file_size = size;
    }
    if let Some(n) = args.min_input_files {
        options.min_input_files = n;
    }
    let report = maintain::compact(&lake, &ident, &options).await?;
    match report.snapshot_id {
        None => println!("{ident}: nothing to compact"),
        Some(id) => println!(
            "{ident}: rewrote {} data files ({}) in {} partitions into {} ({}), removed {} delete files, {} rows; snapshot {id}",
            report.data_files_rewritten,
            bytes(report.bytes_rewritten),
            report.partitions,
            report.data_files_written,
            bytes(report.bytes_written),
            report.delete_files_removed,
            report.rows,
        ),
    }
    Ok(())
}

async fn expire(args: ExpireArgs) -> Result<()> {
    let (_, lake) = open(&args.config.config).await?;
    let ident = maintain::parse_table_name(&args.table)?;
    let report =
        maintain::expire_snapshots(&lake, &ident, args.older_than, args.retain_last).await?;
    println!(
        "{ident}: expired {} snapshots ({} kept); deleted {} data files, {} delete files, {} manifests, {} manifest lists",
        report.snapshots_removed,
        report.snapshots_kept,
        report.data_files_deleted,
        report.delete_files_deleted,
        report.manifests_deleted,
        report.manifest_lists_deleted,
    );
    if report.delete_failures > 0 {
        eprintln!(
            "warning: {} files could not be deleted (see the log); `strata table remove-orphans` will retry them",
            report.delete_failures
        );
    }
    Ok(())
}

async fn orphans(args: OrphanArgs) -> Result<()> {
    if args.older_than < MIN_ORPHAN_AGE && !args.force {
        bail!(
            "--older-than {} could delete the files of a write in progress; use at least 1h, or add --force",
            humantime::format_duration(args.older_than)
        );
    }
    let (_, lake) = open(&args.config.config).await?;
    let ident = maintain::parse_table_name(&args.table)?;
    let report = maintain::remove_orphans(&lake, &ident, args.older_than).await?;
    for path in &report.deleted {
        println!("deleted {path}");
    }
    println!(
        "{ident}: removed {} orphan files ({}) of {} scanned; {} unreferenced files newer than the cutoff kept",
        report.deleted.len(),
        bytes(report.bytes_deleted),
        report.files_scanned,
        report.too_recent,
    );
    Ok(())
}

enum Listing {
    History,
    Snapshots,
    Files,
}

async fn list(args: ListArgs, what: Listing) -> Result<()> {
    let (_, lake) = open(&args.config.config).await?;
    let ident = maintain::parse_table_name(&args.table)?;
    let batch = match what {
        Listing::History => maintain::history_batch(&maintain::history(&lake, &ident).await?)?,
        Listing::Snapshots => {
            maintain::snapshots_batch(&maintain::snapshots(&lake, &ident).await?)?
        }
        Listing::Files => maintain::files_batch(&maintain::files(&lake, &ident).await?)?,
    };
    print!("{}", format_batches(&[batch], output_format(args.format))?);
    Ok(())
}

/// `1.5 MiB`
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
