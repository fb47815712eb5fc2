//! Erasure (GDPR / PIPL): remove every row of some users from the lake so that no file holds
//! them any more — not the current snapshot, not an old one, not a manifest's statistics.
//!
//! Per table that has one of the configured user key columns (`[privacy]` in strata.toml):
//! 1. Equality delete files (written by other engines) in the current snapshot are folded in
//!    by a compaction first: they may hold the ids themselves, and Strata's row reader needs
//!    position deletes only.
//! 2. Every data file (and equality delete file) any snapshot mentions — live or as a
//!    `deleted` manifest entry — is checked: files whose column bounds rule the ids out are
//!    skipped, the others are read (key columns only, position deletes ignored: a deleted row
//!    is still in the file's bytes). Those holding a matching row are *tainted*.
//! 3. The live tainted files are rewritten without the users' rows (copy-on-write, whatever
//!    the table's `write.delete.mode`) and committed as one `overwrite` snapshot that also
//!    drops the position delete files only they needed, and writes its manifests without
//!    `deleted` entries (those keep the removed files' partition values and column bounds).
//!    The commit goes through the one commit path (`commit.rs`), rebased onto writers that
//!    commit meanwhile as compaction is (`maintain/rebase.rs`).
//! 4. Every snapshot that still mentions a tainted file is expired, whatever the retention
//!    settings, with all older snapshots of the main history (which stays unbroken), and
//!    the files only they referenced are deleted: the tainted data files, delete files,
//!    manifests and manifest lists.
//! 5. The table is searched again (only files not yet known clean): rows of the users that
//!    a concurrent writer committed meanwhile are erased by another pass (at most
//!    [`MAX_PASSES`]).
//!
//! Not covered here: the embedded bus keeps raw events until its retention, and the lake
//! sink lands events of the user still on the bus; the dead-letter table's `raw` payloads are
//! matched by column only (it has no user key column); old metadata JSON files stay (they
//! hold no row values); files no snapshot references (orphans of failed writes) are left to
//! `strata table remove-orphans`.

mod history;
mod keys;

use std::collections::{HashMap, HashSet};

use crate::config::PrivacyConfig;
use arrow::array::RecordBatch;
use iceberg::spec::{DataContentType, Operation};
use iceberg::table::Table;
use iceberg::TableIdent;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::dml::with_conflict_retry;
use crate::table::files::{LiveFile, TableFiles};
use crate::table::maintain::compact::{compact, discard, CompactOptions, Plan};
use crate::table::maintain::expire::expire_keeping;
use crate::table::maintain::rebase;
use crate::table::read::{
    located_schema, position_deletes, read_located, read_position_delete_file, FILE_COLUMN,
    POS_COLUMN,
};
use crate::write::write_rows;

use history::History;
pub use keys::UserKeys;
use keys::{file_may_hold, key_columns, KeyColumn};

/// Search-and-erase passes per table before giving up on rows that keep arriving.
pub const MAX_PASSES: u32 = 3;

/// What erasure did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableErasure {
    /// `namespace.table`.
    pub table: String,
    /// The key columns searched.
    pub columns: Vec<String>,
    /// Rows of the users removed from the current snapshot.
    pub rows_removed: u64,
    /// Files (current or old) found holding rows of the users.
    pub files_holding_rows: usize,
    /// Live data files rewritten without the rows, and the files written for them.
    pub data_files_rewritten: usize,
    pub data_files_written: usize,
    /// Position delete files dropped because every file they applied to was rewritten.
    pub delete_files_dropped: usize,
    /// The erasure's `overwrite` snapshot (the last one when several passes ran).
    pub snapshot_id: Option<i64>,
    /// Snapshots expired because they mentioned a file holding the rows (or were older than
    /// one on the main history), regardless of `snapshot_min_keep` / max-age retention.
    pub snapshots_expired: usize,
    pub data_files_deleted: usize,
    pub delete_files_deleted: usize,
    pub manifests_deleted: usize,
    pub manifest_lists_deleted: usize,
    /// Files holding rows of the users that are still present (deleting them failed; see
    /// the log). Empty when the erasure is complete.
    pub remaining_files: Vec<String>,
    /// Passes run (the last one found nothing left).
    pub passes: u32,
    /// Why this table could not be erased, if it could not.
    pub error: Option<String>,
}

impl TableErasure {
    /// Nothing of the users is left in this table's files.
    pub fn complete(&self) -> bool {
        self.error.is_none() && self.remaining_files.is_empty()
    }
}

/// What erasure did to the lake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// How many user ids were given.
    pub users: usize,
    /// Tables listed in the catalog.
    pub tables_in_catalog: usize,
    /// One entry per table that has a user key column.
    pub tables: Vec<TableErasure>,
}

impl ErasureReport {
    pub fn rows_removed(&self) -> u64 {
        self.tables.iter().map(|t| t.rows_removed).sum()
    }

    /// Every table was erased completely.
    pub fn complete(&self) -> bool {
        self.tables.iter().all(TableErasure::complete)
    }
}

/// Erases the rows of `ids` from every table of the lake that has one of the key columns
/// `privacy` configures for it. A table that fails is reported with its error and the others
/// go on; only a failure to list the catalog is an error.
pub async fn forget(lake: &Lake, privacy: &PrivacyConfig, ids: &[String]) -> Result<ErasureReport> {
    let keys = UserKeys::new(ids)?;
    let idents = table_idents(lake).await?;
    let mut report = ErasureReport {
        users: keys.len(),
        tables_in_catalog: idents.len(),
        tables: Vec::new(),
    };
    for ident in idents {
        let name = table_name(&ident);
        let columns = privacy.columns_for(&name);
        if columns.is_empty() {
            continue;
        }
        let present = match lake.load_table(&ident).await {
            Ok(table) => key_columns(&table, columns).map(|c| !c.is_empty()),
            Err(e) => Err(e),
        };
        match present {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "erasure could not search a table");
                report.tables.push(TableErasure {
                    table: name,
                    columns: columns.to_vec(),
                    error: Some(e.to_string()),
                    ..Default::default()
                });
                continue;
            }
        }
        let erased = match forget_in_table(lake, &ident, columns, &keys).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "erasure failed");
                TableErasure {
                    table: name,
                    columns: columns.to_vec(),
                    error: Some(e.to_string()),
                    ..Default::default()
                }
            }
        };
        report.tables.push(erased);
    }
    Ok(report)
}

/// Erases the rows whose key columns (`columns`, those the table has) hold one of `keys`
/// from one table; see the module docs.
pub async fn forget_in_table(
    lake: &Lake,
    ident: &TableIdent,
    columns: &[String],
    keys: &UserKeys,
) -> Result<TableErasure> {
    let mut report = TableErasure {
        table: table_name(ident),
        ..Default::default()
    };
    // Files read and found without the users' rows, and files this erasure wrote.
    let mut clean: HashSet<String> = HashSet::new();
    for pass in 1..=MAX_PASSES + 1 {
        report.passes = pass;
        let mut table = lake.load_table(ident).await?;
        let cols = key_columns(&table, columns)?;
        report.columns = cols.iter().map(|c| c.name.clone()).collect();
        if cols.is_empty() {
            return Ok(report);
        }
        if fold_equality_deletes(lake, &table).await? {
            table = lake.load_table(ident).await?;
        }
        let history = History::load(&table).await?;
        let tainted = find_tainted(&table, &history, &cols, keys, &mut clean).await?;
        if tainted.is_empty() {
            return Ok(report);
        }
        if pass > MAX_PASSES {
            return Err(Error::CommitFailed {
                table: report.table.clone(),
                attempts: MAX_PASSES,
                message: "rows of the users kept arriving while they were erased; run again"
                    .to_string(),
            });
        }
        report.files_holding_rows += tainted.len();
        let current = table.metadata().current_snapshot_id();
        let current_mentions = current.is_some_and(|id| history.mentioning(&tainted).contains(&id));
        let rows_before = report.rows_removed;
        if current_mentions {
            let written = rewrite_current(lake, ident, &cols, keys, &tainted, &mut report).await?;
            clean.extend(written);
        }
        let expired = expire_keeping(lake, ident, |table| {
            let tainted = &tainted;
            async move { untainted_snapshots(&table, tainted).await }
        })
        .await?;
        report.snapshots_expired += expired.snapshots_removed;
        report.data_files_deleted += expired.data_files_deleted;
        report.delete_files_deleted += expired.delete_files_deleted;
        report.manifests_deleted += expired.manifests_deleted;
        report.manifest_lists_deleted += expired.manifest_lists_deleted;
        for path in &tainted {
            let exists = table
                .file_io()
                .exists(path)
                .await
                .map_err(|e| Error::iceberg(format!("checking {path}"), e))?;
            if exists {
                report.remaining_files.push(path.clone());
            }
        }
        tracing::info!(
            table = %report.table,
            pass,
            rows = report.rows_removed,
            files = tainted.len(),
            snapshots_expired = expired.snapshots_removed,
            remaining = report.remaining_files.len(),
            "erased user rows"
        );
        metrics::counter!("strata_lake_erased_rows_total")
            .increment(report.rows_removed - rows_before);
        if !report.remaining_files.is_empty() {
            return Ok(report);
        }
    }
    Ok(report)
}

/// `namespace.table`, as `[privacy.tables]` names tables.
fn table_name(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}

async fn table_idents(lake: &Lake) -> Result<Vec<TableIdent>> {
    let (tables, unreadable) = crate::table::all_tables(lake.catalog().as_ref()).await?;
    // An erasure must be complete: a namespace it cannot list is an error naming it.
    match unreadable.into_iter().next() {
        None => Ok(tables),
        Some((ns, e)) => Err(Error::iceberg(
            format!("listing tables of namespace {ns:?}"),
            e,
        )),
    }
}

/// Compacts away live equality delete files (another engine's); true when it compacted.
async fn fold_equality_deletes(lake: &Lake, table: &Table) -> Result<bool> {
    let files = TableFiles::current(table).await?;
    if !files
        .delete_files()
        .any(|d| d.file.content_type() == DataContentType::EqualityDeletes)
    {
        return Ok(false);
    }
    tracing::info!(table = %table.identifier(), "folding equality deletes before erasure");
    // Only files with deletes: no partition has usize::MAX small files.
    let options = CompactOptions {
        min_input_files: usize::MAX,
        ..Default::default()
    };
    compact(lake, table.identifier(), &options).await?;
    Ok(true)
}

/// The Arrow schema of the key columns plus `_file` / `_pos`, for reading them alone.
fn key_schema(table: &Table, cols: &[KeyColumn]) -> Result<arrow::datatypes::SchemaRef> {
    let located = located_schema(table)?;
    let mut fields = Vec::with_capacity(cols.len() + 2);
    for name in cols
        .iter()
        .map(|c| c.name.as_str())
        .chain([FILE_COLUMN, POS_COLUMN])
    {
        let field = located
            .field_with_name(name)
            .map_err(|e| Error::arrow(format!("column {name}"), e))?;
        fields.push(field.clone());
    }
    Ok(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)))
}

/// The files `history` mentions that hold a row of the users (read raw: position deletes do
/// not remove bytes). Files found clean are added to `clean` and not read again.
async fn find_tainted(
    table: &Table,
    history: &History,
    cols: &[KeyColumn],
    keys: &UserKeys,
    clean: &mut HashSet<String>,
) -> Result<HashSet<String>> {
    let schema = key_schema(table, cols)?;
    let key_idx: Vec<usize> = (0..cols.len()).collect();
    let mut tainted = HashSet::new();
    for file in history.candidates() {
        let path = file.path().to_string();
        if clean.contains(&path) {
            continue;
        }
        if !file_may_hold(keys, &file.file, cols) {
            clean.insert(path);
            continue;
        }
        let mut hit = false;
        for batch in read_located(table, &file, None, &schema).await? {
            if keys.matches(&batch, &key_idx)?.true_count() > 0 {
                hit = true;
                break;
            }
        }
        if hit {
            tainted.insert(path);
        } else {
            clean.insert(path);
        }
    }
    Ok(tainted)
}

/// Rewrites the live tainted files without the users' rows and commits that (see the module
/// docs). Returns the paths written.
async fn rewrite_current(
    lake: &Lake,
    ident: &TableIdent,
    cols: &[KeyColumn],
    keys: &UserKeys,
    tainted: &HashSet<String>,
    report: &mut TableErasure,
) -> Result<Vec<String>> {
    let (table, done) = with_conflict_retry(ident, || async {
        let table = lake.load_table(ident).await?;
        let files = TableFiles::current(&table).await?;
        if let Some(d) = files.delete_files().find(|d| tainted.contains(d.path())) {
            return Err(Error::Conflict {
                table: ident.to_string(),
                message: format!(
                    "delete file {} holding the users' ids is live again",
                    d.path()
                ),
            });
        }
        let live: Vec<&LiveFile> = files
            .data_files()
            .filter(|f| tainted.contains(f.path()))
            .collect();
        let mut rewrite = Rewrite::default();
        if let Err(e) = rewrite_files(&table, &files, &live, cols, keys, &mut rewrite).await {
            discard(&table, &rewrite.written).await;
            return Err(e);
        }
        let plan = plan(&table, &files, &live).await?;
        let kind = rebase::Commit {
            operation: Operation::Overwrite,
            tombstones: false,
            properties: HashMap::from([(
                "erased-records".to_string(),
                rewrite.rows_removed.to_string(),
            )]),
        };
        rewrite.rewritten = live.len();
        rewrite.deletes_dropped = plan.removed_deletes.len();
        let (table, _) =
            rebase::commit(lake, ident, table, files, &plan, &rewrite.written, kind).await?;
        Ok((table, rewrite))
    })
    .await?;
    report.rows_removed += done.rows_removed;
    report.data_files_rewritten += done.rewritten;
    report.data_files_written += done.written.len();
    report.delete_files_dropped += done.deletes_dropped;
    report.snapshot_id = table.metadata().current_snapshot_id();
    Ok(done
        .written
        .iter()
        .map(|f| f.file_path().to_string())
        .collect())
}

/// The outcome of one rewrite attempt.
#[derive(Default)]
struct Rewrite {
    written: Vec<iceberg::spec::DataFile>,
    rows_removed: u64,
    rewritten: usize,
    deletes_dropped: usize,
}

/// Reads each live tainted file with its position deletes applied and writes what is left
/// without the users' rows.
async fn rewrite_files(
    table: &Table,
    files: &TableFiles,
    live: &[&LiveFile],
    cols: &[KeyColumn],
    keys: &UserKeys,
    out: &mut Rewrite,
) -> Result<()> {
    let located = located_schema(table)?;
    let n = located.fields().len() - 2;
    let key_idx: Vec<usize> = cols
        .iter()
        .map(|c| {
            located
                .index_of(&c.name)
                .map_err(|e| Error::arrow(format!("column {}", c.name), e))
        })
        .collect::<Result<_>>()?;
    let deletes = position_deletes(table, files).await?;
    for file in live {
        let mut kept: Vec<RecordBatch> = Vec::new();
        for batch in read_located(table, file, deletes.get(file.path()), &located).await? {
            let hits = keys.matches(&batch, &key_idx)?;
            out.rows_removed += hits.true_count() as u64;
            let keep = arrow::compute::not(&hits).map_err(|e| Error::arrow("erasure", e))?;
            let rest = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| Error::arrow("erasure", e))?
                .project(&(0..n).collect::<Vec<_>>())
                .map_err(|e| Error::arrow("erasure", e))?;
            if rest.num_rows() > 0 {
                kept.push(rest);
            }
        }
        out.written.extend(write_rows(table, &kept).await?);
    }
    Ok(())
}

/// The compaction-shaped plan `rebase::commit` checks and commits: the tainted files go, and
/// so does every position delete file that applies only to them (or to files gone already).
async fn plan(table: &Table, files: &TableFiles, live: &[&LiveFile]) -> Result<Plan> {
    let metadata = table.metadata();
    let rewritten: HashSet<String> = live.iter().map(|f| f.path().to_string()).collect();
    let live_data: HashSet<&str> = files.data_files().map(|f| f.path()).collect();
    let mut removed_deletes = HashSet::new();
    for d in files.delete_files() {
        if d.file.content_type() != DataContentType::PositionDeletes {
            continue;
        }
        let referenced = read_position_delete_file(table, d).await?;
        let obsolete = referenced
            .keys()
            .all(|p| rewritten.contains(p) || !live_data.contains(p.as_str()));
        if obsolete {
            removed_deletes.insert(d.path().to_string());
        }
    }
    Ok(Plan {
        snapshot_id: files.snapshot_id,
        schema_id: metadata.current_schema_id(),
        spec_id: metadata.default_partition_spec_id(),
        equality: false,
        bins: Vec::new(),
        rewritten_partitions: live
            .iter()
            .map(|f| (f.spec_id, f.file.partition().clone()))
            .collect(),
        rewritten,
        removed_deletes,
        known_deletes: files.delete_files().map(|d| d.path().to_string()).collect(),
        positions: HashMap::new(),
        partitions: 0,
        bytes: live.iter().map(|f| f.file.file_size_in_bytes()).sum(),
    })
}

/// The snapshots erasure keeps: the main history from the current snapshot back to the
/// newest one that mentions a tainted file (exclusive: it and every older one go), and other
/// snapshots that mention none.
async fn untainted_snapshots(table: &Table, tainted: &HashSet<String>) -> Result<HashSet<i64>> {
    let history = History::load(table).await?;
    let bad = history.mentioning(tainted);
    let metadata = table.metadata();
    let mut keep = HashSet::new();
    let mut lineage = HashSet::new();
    let mut broken = false;
    let mut next = metadata.current_snapshot();
    while let Some(s) = next {
        let id = s.snapshot_id();
        if !lineage.insert(id) {
            break;
        }
        broken |= bad.contains(&id);
        if !broken {
            keep.insert(id);
        }
        next = s
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p));
    }
    if let Some(id) = metadata.current_snapshot_id() {
        if !keep.contains(&id) {
            return Err(Error::Internal(format!(
                "{}: the current snapshot {id} still mentions a file holding the users' rows",
                table.identifier()
            )));
        }
    }
    for s in metadata.snapshots() {
        let id = s.snapshot_id();
        if !lineage.contains(&id) && !bad.contains(&id) {
            keep.insert(id);
        }
    }
    Ok(keep)
}
