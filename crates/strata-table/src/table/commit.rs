//! Strata's own Iceberg commit path: manifests, manifest list and table metadata written with
//! the spec API, then a compare-and-swap of the catalog's metadata pointer (ADR 0005).
//!
//! A [`Change`] says which files a new snapshot adds (data and delete files) and which live
//! files it removes. [`commit_change`] writes the snapshot on top of the snapshot the change
//! was planned against and swaps the catalog row only if the table still points at the
//! metadata file that snapshot came from. If another writer got there first the swap fails
//! with [`Error::Conflict`] and nothing is visible; the caller re-plans against the new
//! snapshot (see [`crate::table::retry_conflicts`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, Snapshot, Summary, TableMetadata, TableMetadataBuildResult,
    TableMetadataBuilder, MAIN_BRANCH,
};
use iceberg::table::Table;
use iceberg::MetadataLocation;

use crate::catalog_client::RestCommit;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::table::files::{LiveFile, LiveManifest, TableFiles};

/// Untouched small manifests of one kind that make a commit merge them (Iceberg's
/// `commit.manifest.min-count-to-merge` default).
const MERGE_MIN_COUNT: usize = 100;
/// Manifests smaller than this are merged, into manifests of up to this size (Iceberg's
/// `commit.manifest.target-size-bytes` default).
const MERGE_TARGET_BYTES: u64 = 8 << 20;

/// What a new snapshot changes.
#[derive(Clone, Debug)]
pub struct Change {
    pub operation: Operation,
    /// Data files, written with the table's default partition spec.
    pub added_data: Vec<DataFile>,
    /// Delete files with the partition spec of the data files they apply to.
    pub added_deletes: Vec<(i32, DataFile)>,
    /// Paths of live data or delete files the snapshot removes.
    pub removed: HashSet<String>,
    /// Extra snapshot summary properties.
    pub properties: HashMap<String, String>,
    /// Record removed files as `deleted` entries in the new manifests (the Iceberg default).
    /// Erasure turns it off: a deleted entry keeps the file's partition values and column
    /// bounds, which may be the erased values themselves. Then every manifest carrying
    /// deleted entries from earlier commits is rewritten without them too.
    pub tombstones: bool,
}

impl Change {
    pub fn new(operation: Operation) -> Self {
        Change {
            operation,
            added_data: Vec::new(),
            added_deletes: Vec::new(),
            removed: HashSet::new(),
            properties: HashMap::new(),
            tombstones: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added_data.is_empty() && self.added_deletes.is_empty() && self.removed.is_empty()
    }
}

/// Writes `change` as a new snapshot on top of `files` (the live files of `table`'s current
/// snapshot) and swaps it in. Returns the reloaded table.
pub async fn commit_change(
    lake: &Lake,
    table: &Table,
    files: &TableFiles,
    change: Change,
) -> Result<Table> {
    let ident = table.identifier();
    let metadata = table.metadata();
    if metadata.format_version() == FormatVersion::V1 {
        return Err(Error::Sql(format!(
            "{ident} is an Iceberg v1 table; Strata writes v2 tables only"
        )));
    }
    let current_id = metadata.current_snapshot().map(|s| s.snapshot_id());
    if files.snapshot_id != current_id {
        return Err(Error::Internal(format!(
            "change for {ident} planned against snapshot {:?}, table is at {current_id:?}",
            files.snapshot_id
        )));
    }
    if !change.removed.is_empty() && !files.entries_loaded {
        return Err(Error::Internal(format!(
            "{ident}: removing files needs the manifests' entries"
        )));
    }
    for path in &change.removed {
        if files.find(path).is_none() {
            return Err(Error::Conflict {
                table: ident.to_string(),
                message: format!("file {path} is no longer live"),
            });
        }
    }
    let file_io = table.file_io();
    let schema = metadata.current_schema().clone();
    let snapshot_id = new_snapshot_id(metadata);
    let sequence_number = metadata.last_sequence_number() + 1;
    let meta_dir = format!("{}/metadata", metadata.location().trim_end_matches('/'));
    let commit_id = uuid::Uuid::now_v7();
    let mut manifest_no = 0;
    let mut next_manifest = || {
        manifest_no += 1;
        format!("{meta_dir}/{commit_id}-m{manifest_no}.avro")
    };
    let io_err = |what: &str, e| Error::iceberg(format!("{what} for {ident}"), e);
    // A writer for the next manifest of this commit.
    let mut new_writer = |spec: &iceberg::spec::PartitionSpec, content: ManifestContentType| {
        let output = file_io
            .new_output(next_manifest())
            .map_err(|e| io_err("creating a manifest", e))?;
        let builder =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec.clone());
        Ok::<_, Error>(match content {
            ManifestContentType::Data => builder.build_v2_data(),
            ManifestContentType::Deletes => builder.build_v2_deletes(),
        })
    };

    let mut manifests: Vec<ManifestFile> = Vec::new();
    let mut totals = Totals::default();
    // Untouched small manifests per (content, spec), merged below once there are many.
    let mut small: BTreeMap<(bool, i32), Vec<&LiveManifest>> = BTreeMap::new();
    for m in &files.manifests {
        let touched = m.live.iter().any(|f| change.removed.contains(f.path()))
            || (!change.tombstones && m.manifest.deleted_files_count.unwrap_or(0) > 0);
        if !touched {
            if !files.entries_loaded {
                totals.count_manifest(&m.manifest);
                manifests.push(m.manifest.clone());
            } else if !m.live.is_empty() {
                m.live.iter().for_each(|f| totals.count(&f.file));
                if (m.manifest.manifest_length as u64) < MERGE_TARGET_BYTES {
                    let content = m.manifest.content == ManifestContentType::Data;
                    small
                        .entry((content, m.manifest.partition_spec_id))
                        .or_default()
                        .push(m);
                } else {
                    manifests.push(m.manifest.clone());
                }
            }
            continue;
        }
        let spec = metadata
            .partition_spec_by_id(m.manifest.partition_spec_id)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{ident}: manifest {} has unknown partition spec {}",
                    m.manifest.manifest_path, m.manifest.partition_spec_id
                ))
            })?;
        let mut writer = new_writer(spec.as_ref(), m.manifest.content)?;
        for f in &m.live {
            if change.removed.contains(f.path()) {
                totals.removed(&f.file);
                if !change.tombstones {
                    continue;
                }
                writer
                    .add_delete_file(
                        f.file.clone(),
                        f.sequence_number,
                        Some(f.file_sequence_number),
                    )
                    .map_err(|e| io_err("writing a manifest", e))?;
            } else {
                totals.count(&f.file);
                add_existing(&mut writer, f).map_err(|e| io_err("writing a manifest", e))?;
            }
        }
        manifests.push(
            writer
                .write_manifest_file()
                .await
                .map_err(|e| io_err("writing a manifest", e))?,
        );
    }
    // Every commit adds a manifest or two; without merging, a table committing every second
    // (the CDC merger) would list thousands and every reader would open them all. Like
    // Iceberg's `commit.manifest-merge.enabled`: at MERGE_MIN_COUNT small manifests of one
    // kind, their live entries are rewritten as existing entries into manifests of up to
    // MERGE_TARGET_BYTES.
    for ((is_data, spec_id), group) in small {
        let content = if is_data {
            ManifestContentType::Data
        } else {
            ManifestContentType::Deletes
        };
        if group.len() < MERGE_MIN_COUNT {
            manifests.extend(group.iter().map(|m| m.manifest.clone()));
            continue;
        }
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            Error::Internal(format!(
                "{ident}: manifest has unknown partition spec {spec_id}"
            ))
        })?;
        let mut bins: Vec<Vec<&LiveManifest>> = vec![Vec::new()];
        let mut bin_bytes = 0u64;
        for m in group {
            let len = m.manifest.manifest_length as u64;
            if bin_bytes + len > MERGE_TARGET_BYTES && !bins.last().is_some_and(Vec::is_empty) {
                bins.push(Vec::new());
                bin_bytes = 0;
            }
            bin_bytes += len;
            if let Some(bin) = bins.last_mut() {
                bin.push(m);
            }
        }
        for bin in bins {
            if bin.len() == 1 {
                manifests.push(bin[0].manifest.clone());
                continue;
            }
            let mut writer = new_writer(spec.as_ref(), content)?;
            for f in bin.iter().flat_map(|m| m.live.iter()) {
                add_existing(&mut writer, f).map_err(|e| io_err("writing a merged manifest", e))?;
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(|e| io_err("writing a merged manifest", e))?,
            );
        }
    }

    let default_spec = metadata.default_partition_spec_id();
    let added_data = change.added_data.iter().map(|f| (default_spec, f));
    let added_deletes = change.added_deletes.iter().map(|(s, f)| (*s, f));
    for (content, added) in [
        (ManifestContentType::Data, added_data.collect::<Vec<_>>()),
        (ManifestContentType::Deletes, added_deletes.collect()),
    ] {
        // One manifest per partition spec among the added files.
        let mut by_spec: Vec<(i32, Vec<&DataFile>)> = Vec::new();
        for (spec_id, f) in added {
            match by_spec.iter_mut().find(|(id, _)| *id == spec_id) {
                Some((_, v)) => v.push(f),
                None => by_spec.push((spec_id, vec![f])),
            }
        }
        for (spec_id, group) in by_spec {
            let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
                Error::Internal(format!("{ident}: added file has unknown spec {spec_id}"))
            })?;
            let mut writer = new_writer(spec.as_ref(), content)?;
            for f in group {
                totals.added(f);
                writer
                    .add_file(f.clone(), sequence_number)
                    .map_err(|e| io_err("writing a manifest", e))?;
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(|e| io_err("writing a manifest", e))?,
            );
        }
    }

    let list_path = format!("{meta_dir}/snap-{snapshot_id}-1-{commit_id}.avro");
    let list_out = file_io
        .new_output(&list_path)
        .map_err(|e| io_err("creating the manifest list", e))?;
    let mut list = ManifestListWriter::v2(
        list_out
            .writer()
            .await
            .map_err(|e| io_err("creating the manifest list", e))?,
        snapshot_id,
        current_id,
        sequence_number,
    );
    list.add_manifests(manifests.into_iter())
        .map_err(|e| io_err("writing the manifest list", e))?;
    list.close()
        .await
        .map_err(|e| io_err("writing the manifest list", e))?;

    let mut summary = totals.into_summary();
    // Positions (bus offsets, CDC positions) stay in force across other writers' commits.
    summary.extend(crate::position::carried_properties(table));
    summary.extend(change.properties);
    let now = chrono::Utc::now().timestamp_millis();
    let timestamp_ms = now.max(metadata.last_updated_ms() + 1);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(current_id)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(timestamp_ms)
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation: change.operation,
            additional_properties: summary,
        })
        .with_schema_id(schema.schema_id())
        .build();
    let location = table.metadata_location().map(str::to_string);
    let next = TableMetadataBuilder::new_from_metadata(metadata.clone(), location)
        .set_branch_snapshot(snapshot, MAIN_BRANCH)
        .map_err(|e| io_err("building metadata", e))?
        .build()
        .map_err(|e| io_err("building metadata", e))?;
    swap_metadata(lake, table, next).await
}

/// After a schema change, gives `ident` a snapshot written with its current schema (the same
/// files, nothing added) unless its current snapshot already has it. iceberg-rust scans read a
/// snapshot with the schema it was written with, so without this an added or renamed column
/// could not be selected until the next write; time travel to older snapshots still sees their
/// own schemas.
pub async fn snapshot_current_schema(lake: &Lake, ident: &iceberg::TableIdent) -> Result<()> {
    let mut backoff = crate::retry::Backoff::new(8);
    loop {
        let table = lake.load_table(ident).await?;
        let metadata = table.metadata();
        let Some(current) = metadata.current_snapshot() else {
            return Ok(());
        };
        if current.schema_id() == Some(metadata.current_schema_id()) {
            return Ok(());
        }
        let files = TableFiles::manifests_only(&table).await?;
        match commit_change(lake, &table, &files, Change::new(Operation::Append)).await {
            Ok(_) => return Ok(()),
            Err(Error::Conflict { .. }) if backoff.can_retry() => backoff.wait().await,
            Err(e) => return Err(e),
        }
    }
}

/// Carries a live file into a rewritten manifest with what it inherited (snapshot, sequence
/// numbers).
fn add_existing(writer: &mut ManifestWriter, f: &LiveFile) -> iceberg::Result<()> {
    writer.add_existing_file(
        f.file.clone(),
        f.snapshot_id,
        f.sequence_number,
        Some(f.file_sequence_number),
    )
}

/// Makes `next` (built from `table`'s metadata) the table's current metadata: writes it as the
/// next metadata file and swaps the SQL catalog's pointer from the file `table` was loaded
/// from, or, on a REST catalog, sends the builder's recorded changes with requirements that
/// hold for `table` (`rest::client::RestCommit`). [`Error::Conflict`] when another writer moved
/// the table first.
pub async fn swap_metadata(
    lake: &Lake,
    table: &Table,
    next: TableMetadataBuildResult,
) -> Result<Table> {
    let ident = table.identifier();
    if let Some(rest) = lake.rest() {
        let commit = RestCommit::new(table.metadata(), next.changes);
        return match rest.commit(ident, commit).await {
            Ok(table) => Ok(table),
            Err(e) if e.kind() == iceberg::ErrorKind::CatalogCommitConflicts => {
                Err(Error::Conflict {
                    table: ident.to_string(),
                    message: e.to_string(),
                })
            }
            Err(e) => Err(Error::iceberg(format!("committing {ident}"), e)),
        };
    }
    let next = next.metadata;
    let current = table
        .metadata_location()
        .ok_or_else(|| Error::Internal(format!("{ident} has no metadata location")))?;
    let next_location = MetadataLocation::from_str(current)
        .map_err(|e| Error::iceberg(format!("parsing metadata location of {ident}"), e))?
        .with_next_version()
        .with_new_metadata(&next);
    next.write_to(table.file_io(), &next_location)
        .await
        .map_err(|e| Error::iceberg(format!("writing metadata of {ident}"), e))?;
    let next_str = next_location.to_string();
    let swapped = lake.swap_pointer(ident, current, &next_str).await?;
    if !swapped {
        // Nobody references the file we just wrote; remove it (best effort).
        let _ = table.file_io().delete(&next_str).await;
        return Err(Error::Conflict {
            table: ident.to_string(),
            message: "another writer committed first".to_string(),
        });
    }
    lake.load_table(ident).await
}

/// A fresh positive snapshot id not used by the table.
fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Snapshot summary counters (the standard Iceberg keys engines show).
#[derive(Default)]
struct Totals {
    added_data_files: u64,
    added_delete_files: u64,
    added_records: u64,
    added_position_deletes: u64,
    added_equality_deletes: u64,
    added_size: u64,
    deleted_data_files: u64,
    removed_delete_files: u64,
    deleted_records: u64,
    removed_size: u64,
    total_data_files: u64,
    total_delete_files: u64,
    total_records: u64,
    total_position_deletes: u64,
    total_equality_deletes: u64,
    total_size: u64,
}

impl Totals {
    fn count(&mut self, f: &DataFile) {
        use iceberg::spec::DataContentType as C;
        self.total_size += f.file_size_in_bytes();
        match f.content_type() {
            C::Data => {
                self.total_data_files += 1;
                self.total_records += f.record_count();
            }
            C::PositionDeletes => {
                self.total_delete_files += 1;
                self.total_position_deletes += f.record_count();
            }
            C::EqualityDeletes => {
                self.total_delete_files += 1;
                self.total_equality_deletes += f.record_count();
            }
        }
    }

    /// Counts a manifest carried over unread, from its manifest-list counters.
    fn count_manifest(&mut self, m: &ManifestFile) {
        let files = u64::from(m.added_files_count.unwrap_or(0))
            + u64::from(m.existing_files_count.unwrap_or(0));
        let rows = m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0);
        match m.content {
            ManifestContentType::Data => {
                self.total_data_files += files;
                self.total_records += rows;
            }
            ManifestContentType::Deletes => {
                self.total_delete_files += files;
                self.total_position_deletes += rows;
            }
        }
    }

    fn added(&mut self, f: &DataFile) {
        use iceberg::spec::DataContentType as C;
        self.count(f);
        self.added_size += f.file_size_in_bytes();
        match f.content_type() {
            C::Data => {
                self.added_data_files += 1;
                self.added_records += f.record_count();
            }
            C::PositionDeletes => {
                self.added_delete_files += 1;
                self.added_position_deletes += f.record_count();
            }
            C::EqualityDeletes => {
                self.added_delete_files += 1;
                self.added_equality_deletes += f.record_count();
            }
        }
    }

    fn removed(&mut self, f: &DataFile) {
        use iceberg::spec::DataContentType as C;
        self.removed_size += f.file_size_in_bytes();
        match f.content_type() {
            C::Data => {
                self.deleted_data_files += 1;
                self.deleted_records += f.record_count();
            }
            _ => self.removed_delete_files += 1,
        }
    }

    fn into_summary(self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        let mut put = |k: &str, v: u64, always: bool| {
            if always || v > 0 {
                m.insert(k.to_string(), v.to_string());
            }
        };
        put("added-data-files", self.added_data_files, false);
        put("added-delete-files", self.added_delete_files, false);
        put("added-records", self.added_records, false);
        put("added-position-deletes", self.added_position_deletes, false);
        put("added-equality-deletes", self.added_equality_deletes, false);
        put("added-files-size", self.added_size, false);
        put("deleted-data-files", self.deleted_data_files, false);
        put("removed-delete-files", self.removed_delete_files, false);
        put("deleted-records", self.deleted_records, false);
        put("removed-files-size", self.removed_size, false);
        put("total-data-files", self.total_data_files, true);
        put("total-delete-files", self.total_delete_files, true);
        put("total-records", self.total_records, true);
        put("total-position-deletes", self.total_position_deletes, true);
        put("total-equality-deletes", self.total_equality_deletes, true);
        m
    }
}
