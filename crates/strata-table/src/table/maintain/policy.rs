//! Automatic compaction: when a table needs it, and the loop in `strata serve` that checks
//! every table.
//!
//! Defaults come from `[lake]` in strata.toml (`compaction_*`); per table, these properties
//! override them:
//!
//! | property | meaning |
//! |---|---|
//! | `strata.compaction.enabled` | `false` exempts the table |
//! | `strata.compaction.min-files` | compact only tables with at least this many data files … |
//! | `strata.compaction.small-file-ratio` | … of which at least this fraction are compactable small files |
//! | `strata.compaction.delete-file-ratio` | or when delete files reach this fraction of data files |
//! | `strata.compaction.min-input-files` | small files a partition needs before it is rewritten |
//! | `write.target-file-size-bytes` | size compacted files aim for (Iceberg's standard key) |
//!
//! "Compactable small files" counts only small files in partitions holding at least
//! `min-input-files` of them, so a table whose partitions each hold one small file (nothing
//! to merge) does not trigger a compaction on every check.
//!
//! The loop compacts through [`compact`], whose optimistic commits rebase over the lake
//! sink's appends: writers are never blocked or waited for. The same pass expires old
//! snapshots ([`expire_if_due`]): `[lake] snapshot_max_age` / `snapshot_min_keep`, per table
//! Iceberg's `history.expire.max-snapshot-age-ms` / `history.expire.min-snapshots-to-keep`.

use std::collections::HashMap;
use std::str::FromStr;

use crate::config::LakeConfig;
use iceberg::spec::Struct;
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};
use tokio::sync::watch;

use super::compact::{compact, CompactOptions, CompactReport};
use super::expire::{expire_snapshots, ExpireReport};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::files::TableFiles;

pub const ENABLED_PROPERTY: &str = "strata.compaction.enabled";
pub const MIN_FILES_PROPERTY: &str = "strata.compaction.min-files";
pub const SMALL_FILE_RATIO_PROPERTY: &str = "strata.compaction.small-file-ratio";
pub const DELETE_FILE_RATIO_PROPERTY: &str = "strata.compaction.delete-file-ratio";
pub const MIN_INPUT_FILES_PROPERTY: &str = "strata.compaction.min-input-files";
pub const TARGET_FILE_SIZE_PROPERTY: &str = "write.target-file-size-bytes";
pub const MAX_SNAPSHOT_AGE_PROPERTY: &str = "history.expire.max-snapshot-age-ms";
pub const MIN_SNAPSHOTS_PROPERTY: &str = "history.expire.min-snapshots-to-keep";

/// When a table gets compacted, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CompactionPolicy {
    pub enabled: bool,
    /// What the compaction rewrites once triggered.
    pub options: CompactOptions,
    pub min_files: usize,
    pub small_file_ratio: f64,
    pub delete_file_ratio: f64,
}

/// Why a table needs compaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub reason: &'static str,
    pub data_files: usize,
    /// Small files in partitions with enough of them to compact.
    pub small_files: usize,
    pub delete_files: usize,
}

impl CompactionPolicy {
    /// The defaults of `[lake]`.
    pub fn from_config(config: &LakeConfig) -> Self {
        CompactionPolicy {
            enabled: config.compaction,
            options: CompactOptions {
                target_file_size: config.compaction_target_file_size,
                min_input_files: config.compaction_min_input_files,
                ..CompactOptions::default()
            },
            min_files: config.compaction_min_files,
            small_file_ratio: config.compaction_small_file_ratio,
            delete_file_ratio: config.compaction_delete_file_ratio,
        }
    }

    /// This policy with `table`'s properties applied. A bad value is an error naming the
    /// property.
    pub fn for_table(&self, table: &Table) -> Result<Self> {
        let props = table.metadata().properties();
        let mut out = self.clone();
        fn get<T: FromStr>(props: &HashMap<String, String>, key: &str) -> Result<Option<T>> {
            match props.get(key) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Invalid(format!("table property {key} = {v:?} is not a valid value"))
                }),
            }
        }
        if let Some(v) = get(props, ENABLED_PROPERTY)? {
            out.enabled = v;
        }
        if let Some(v) = get(props, MIN_FILES_PROPERTY)? {
            out.min_files = v;
        }
        if let Some(v) = get(props, SMALL_FILE_RATIO_PROPERTY)? {
            out.small_file_ratio = v;
        }
        if let Some(v) = get(props, DELETE_FILE_RATIO_PROPERTY)? {
            out.delete_file_ratio = v;
        }
        if let Some(v) = get(props, MIN_INPUT_FILES_PROPERTY)? {
            out.options.min_input_files = v;
        }
        if let Some(v) = get(props, TARGET_FILE_SIZE_PROPERTY)? {
            out.options.target_file_size = v;
        }
        out.options.validate().map_err(|e| {
            Error::Invalid(format!("compaction policy of {}: {e}", table.identifier()))
        })?;
        Ok(out)
    }

    /// Whether the files of a snapshot cross a threshold (no I/O).
    pub fn evaluate(&self, files: &TableFiles) -> Option<Trigger> {
        if !self.enabled {
            return None;
        }
        let small_below = self.options.small_below();
        let mut data_files = 0usize;
        let mut small: HashMap<(i32, &Struct), usize> = HashMap::new();
        for f in files.data_files() {
            data_files += 1;
            if f.file.file_size_in_bytes() < small_below {
                *small.entry((f.spec_id, f.file.partition())).or_default() += 1;
            }
        }
        let small_files: usize = small
            .values()
            .filter(|n| **n >= self.options.min_input_files)
            .sum();
        let delete_files = files.delete_files().count();
        let trigger = |reason| Trigger {
            reason,
            data_files,
            small_files,
            delete_files,
        };
        if data_files >= self.min_files
            && data_files > 0
            && small_files as f64 >= self.small_file_ratio * data_files as f64
        {
            return Some(trigger("small files"));
        }
        if delete_files > 0 && delete_files as f64 >= self.delete_file_ratio * data_files as f64 {
            return Some(trigger("delete files"));
        }
        None
    }
}

/// Compacts `ident` if its policy (`defaults` + its table properties) says so.
pub async fn compact_if_needed(
    lake: &Lake,
    ident: &TableIdent,
    defaults: &CompactionPolicy,
) -> Result<Option<CompactReport>> {
    let table = lake.load_table(ident).await?;
    let policy = defaults.for_table(&table)?;
    if !policy.enabled {
        return Ok(None);
    }
    let files = TableFiles::current(&table).await?;
    let Some(trigger) = policy.evaluate(&files) else {
        return Ok(None);
    };
    tracing::info!(
        table = %ident,
        reason = trigger.reason,
        data_files = trigger.data_files,
        small_files = trigger.small_files,
        delete_files = trigger.delete_files,
        "compaction policy triggered"
    );
    compact(lake, ident, &policy.options).await.map(Some)
}

/// Expires the snapshots of `ident` older than its retention (`config`'s
/// `snapshot_max_age` / `snapshot_min_keep`, or the table's `history.expire.*` properties).
/// Nothing is written when none is old enough.
pub async fn expire_if_due(
    lake: &Lake,
    ident: &TableIdent,
    config: &LakeConfig,
) -> Result<Option<ExpireReport>> {
    let table = lake.load_table(ident).await?;
    let props = table.metadata().properties();
    let parse = |key: &str| -> Result<Option<u64>> {
        props
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::Invalid(format!(
                        "table property {key} = {v:?} is not a whole number"
                    ))
                })
            })
            .transpose()
    };
    let max_age = parse(MAX_SNAPSHOT_AGE_PROPERTY)?
        .map(std::time::Duration::from_millis)
        .unwrap_or(config.snapshot_max_age);
    let min_keep = parse(MIN_SNAPSHOTS_PROPERTY)?
        .map(|n| n as usize)
        .unwrap_or(config.snapshot_min_keep);
    let cutoff_ms = chrono::Utc::now().timestamp_millis()
        - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let metadata = table.metadata();
    let expirable = metadata.snapshots().len() > min_keep.max(1)
        && metadata.snapshots().any(|s| s.timestamp_ms() < cutoff_ms);
    if !expirable {
        return Ok(None);
    }
    let report = expire_snapshots(lake, ident, max_age, min_keep).await?;
    if report.snapshots_removed > 0 {
        tracing::info!(
            table = %ident,
            removed = report.snapshots_removed,
            kept = report.snapshots_kept,
            files_deleted = report.data_files_deleted + report.delete_files_deleted + report.manifests_deleted,
            "expired snapshots"
        );
    }
    Ok(Some(report))
}

/// Every `config.compaction_interval`, compacts each table of the catalog whose policy
/// says so and expires its old snapshots, until `shutdown` turns true (a pass in progress is dropped; files it wrote but
/// did not commit are left for orphan removal). Errors are logged and counted
/// (`strata_lake_compaction_errors_total`), never fatal.
pub async fn auto_compact(lake: Lake, config: LakeConfig, mut shutdown: watch::Receiver<bool>) {
    let defaults = CompactionPolicy::from_config(&config);
    tracing::info!(interval = ?config.compaction_interval, "automatic compaction on");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.compaction_interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = compaction_pass(&lake, &defaults, &config) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn compaction_pass(lake: &Lake, defaults: &CompactionPolicy, config: &LakeConfig) {
    let tables = match table_idents(lake.catalog().as_ref()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "compaction: listing tables failed");
            metrics::counter!("strata_lake_compaction_errors_total").increment(1);
            return;
        }
    };
    for ident in tables {
        if let Err(e) = compact_if_needed(lake, &ident, defaults).await {
            tracing::warn!(table = %ident, error = %e, "compaction failed");
            metrics::counter!("strata_lake_compaction_errors_total").increment(1);
        }
        if let Err(e) = expire_if_due(lake, &ident, config).await {
            tracing::warn!(table = %ident, error = %e, "snapshot expiry failed");
            metrics::counter!("strata_lake_compaction_errors_total").increment(1);
        }
    }
}

async fn table_idents(catalog: &dyn Catalog) -> Result<Vec<TableIdent>> {
    let (tables, unreadable) = crate::table::all_tables(catalog).await?;
    for (ns, e) in unreadable {
        tracing::warn!(namespace = %ns, error = %e, "compaction skips a catalog namespace whose tables cannot be listed");
    }
    Ok(tables)
}
