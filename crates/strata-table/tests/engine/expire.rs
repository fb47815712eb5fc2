//! Snapshot expiry and orphan removal on real tables: what goes, what stays, and that
//! retained snapshots still read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::spec::Operation;
use iceberg::TableIdent;
use strata_bus::Offsets;

use crate::dml::{create_users, rows, users};
use crate::tables_helpers::write_events;
use crate::*;
use crate::{encode_offsets, EVENTS_OFFSETS_KEY};
use strata_table::position::table_position;
use strata_table::schema::OdsTable;
use strata_table::table::{
    self, compact, expire_snapshots, remove_orphans, CompactOptions, WriteMode,
};
use strata_table::table::{commit_change, Change, TableFiles};

const ALL: &str = "SELECT id, name, score FROM app.users ORDER BY id";

fn options() -> CompactOptions {
    CompactOptions {
        min_input_files: 2,
        ..Default::default()
    }
}

fn local(path: &str) -> PathBuf {
    PathBuf::from(path.strip_prefix("file://").unwrap_or(path))
}

async fn current_id(lake: &Lake, ident: &TableIdent) -> i64 {
    lake.load_table(ident)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id()
        .unwrap()
}

async fn sql(lake: &Lake, query: &str) -> strata_table::Result<String> {
    let session = SqlSession::new(lake).await?;
    let batches = session.run(query).await?;
    strata_sql::format_batches(&batches, strata_sql::OutputFormat::Csv)
}

#[tokio::test]
async fn expiry_drops_old_snapshots_and_only_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    for i in 0..3i64 {
        table::append(&lake, &ident, vec![users(&[(i, "a", 1, 0)])])
            .await
            .unwrap();
    }
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, Some(col("id").eq(lit(1i64))))
        .await
        .unwrap();
    let before_compaction = current_id(&lake, &ident).await;
    let rows_before = rows(&lake, ALL).await;
    // The files the compaction replaces, and everything the current metadata names.
    let old_files = table::maintain::files(&lake, &ident).await.unwrap();
    assert_eq!(old_files.len(), 4);
    compact(&lake, &ident, &options()).await.unwrap();
    let table = lake.load_table(&ident).await.unwrap();
    let mut snapshots: Vec<_> = table.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| s.sequence_number());
    let manifest_lists: Vec<String> = snapshots
        .iter()
        .map(|s| s.manifest_list().to_string())
        .collect();
    assert_eq!(manifest_lists.len(), 5);

    // Recent snapshots are kept whatever retain_last says.
    let report = expire_snapshots(&lake, &ident, Duration::from_secs(3600), 1)
        .await
        .unwrap();
    assert_eq!(report.snapshots_removed, 0);

    // Keep two: the compaction and the delete before it. The delete still needs the
    // original files, so only the three older manifest lists go.
    let report = expire_snapshots(&lake, &ident, Duration::ZERO, 2)
        .await
        .unwrap();
    assert_eq!((report.snapshots_removed, report.snapshots_kept), (3, 2));
    assert_eq!(report.manifest_lists_deleted, 3);
    assert_eq!(report.data_files_deleted + report.delete_files_deleted, 0);
    assert_eq!(report.delete_failures, 0);
    assert!(old_files.iter().all(|f| local(&f.file_path).exists()));
    // Time travel to the retained snapshot still works.
    let travelled = rows(
        &lake,
        &ALL.replace(
            "FROM app.users",
            &format!("FROM app.users VERSION AS OF {before_compaction}"),
        ),
    )
    .await;
    assert_eq!(travelled, rows_before);
    let history = table::maintain::history(&lake, &ident).await.unwrap();
    assert_eq!(history.len(), 2);

    // Keep one: the original data files and the delete file go with the delete snapshot.
    let report = expire_snapshots(&lake, &ident, Duration::ZERO, 1)
        .await
        .unwrap();
    assert_eq!(report.snapshots_removed, 1);
    assert_eq!(report.data_files_deleted, 3);
    assert_eq!(report.delete_files_deleted, 1);
    assert_eq!(report.manifest_lists_deleted, 1);
    assert!(report.manifests_deleted >= 1);
    assert!(old_files.iter().all(|f| !local(&f.file_path).exists()));
    for path in &manifest_lists[..4] {
        assert!(!local(path).exists(), "{path}");
    }
    let current = table::maintain::files(&lake, &ident).await.unwrap();
    assert!(current.iter().all(|f| local(&f.file_path).exists()));
    assert!(local(&manifest_lists[4]).exists());
    assert_eq!(rows(&lake, ALL).await, rows_before);
    let err = sql(
        &lake,
        &format!("SELECT count(*) FROM app.users VERSION AS OF {before_compaction}"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // Writers go on on top of the expired table.
    table::append(&lake, &ident, vec![users(&[(9, "z", 1, 1)])])
        .await
        .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 3);
}

/// A sink-like commit: `events` and the bus position after them in the summary.
async fn commit_events(lake: &Lake, events: &[(usize, &str, i64)], start: u64, position: &Offsets) {
    let ident = OdsTable::Event.ident();
    let data = write_events(lake, events, start).await;
    let table = lake.load_table(&ident).await.unwrap();
    let files = TableFiles::current(&table).await.unwrap();
    let mut change = Change::new(Operation::Append);
    change.added_data = data;
    change
        .properties
        .insert(EVENTS_OFFSETS_KEY.to_string(), encode_offsets(position));
    commit_change(lake, &table, &files, change).await.unwrap();
}

#[tokio::test]
async fn expiry_keeps_the_sink_position() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = OdsTable::Event.ident();
    let mut position = Offsets::new();
    for n in 0..3u64 {
        position = [(0, n + 1)].into_iter().collect();
        commit_events(&lake, &[(n as usize, "Followed", 0)], n, &position).await;
    }
    // A row-level delete commits a snapshot that does not set the position itself.
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, Some(col("message_id").eq(lit("m-0"))))
        .await
        .unwrap();
    let report = expire_snapshots(&lake, &ident, Duration::ZERO, 1)
        .await
        .unwrap();
    assert!(report.snapshots_removed >= 2, "{report:?}");
    let table = lake.load_table(&ident).await.unwrap();
    assert_eq!(
        table_position(&table, "events").unwrap(),
        Some(position.clone())
    );

    // A compaction carries the position forward, so after it one snapshot is enough.
    compact(&lake, &ident, &options()).await.unwrap();
    let report = expire_snapshots(&lake, &ident, Duration::ZERO, 1)
        .await
        .unwrap();
    assert_eq!(report.snapshots_kept, 1);
    let table = lake.load_table(&ident).await.unwrap();
    assert_eq!(
        table_position(&table, "events").unwrap(),
        Some(position.clone())
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 2);
    // The sink goes on from there.
    let next: Offsets = [(0, 4)].into_iter().collect();
    commit_events(&lake, &[(7, "Followed", 0)], 3, &next).await;
    let table = lake.load_table(&ident).await.unwrap();
    assert_eq!(table_position(&table, "events").unwrap(), Some(next));
    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 3);
}

/// Sets the modification time of `path`.
fn touch(path: &Path, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn orphan_removal_deletes_only_old_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    for i in 0..3i64 {
        table::append(&lake, &ident, vec![users(&[(i, "a", 1, (i % 2) as i32)])])
            .await
            .unwrap();
    }
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, Some(col("id").eq(lit(0i64))))
        .await
        .unwrap();
    let before = rows(&lake, ALL).await;
    let table = lake.load_table(&ident).await.unwrap();
    let root = local(table.metadata().location());
    let partition_dir = local(&table::maintain::files(&lake, &ident).await.unwrap()[0].file_path)
        .parent()
        .unwrap()
        .to_path_buf();

    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    // Every real file is old: only references protect them.
    let mut real = Vec::new();
    all_files(&root, &mut real);
    for path in &real {
        touch(path, two_days_ago);
    }
    let old_data = partition_dir.join("00000-0-crashed-write.parquet");
    let old_meta = root.join("metadata").join("crashed-commit-m1.avro");
    let new_data = root.join("data").join("being-written.parquet");
    for path in [&old_data, &old_meta, &new_data] {
        std::fs::write(path, b"not referenced").unwrap();
    }
    touch(&old_data, two_days_ago);
    touch(&old_meta, two_days_ago);

    let report = remove_orphans(&lake, &ident, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut expected = vec![
        old_meta.display().to_string(),
        old_data.display().to_string(),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(report.too_recent, 1);
    assert_eq!(report.files_scanned, real.len() + 3);
    assert!(new_data.exists());
    assert!(real.iter().all(|p| p.exists()));
    assert_eq!(rows(&lake, ALL).await, before);

    // After compaction and expiry, the superseded files are referenced nowhere: with a zero
    // cutoff nothing is left to remove but the stray being-written file.
    compact(&lake, &ident, &options()).await.unwrap();
    expire_snapshots(&lake, &ident, Duration::ZERO, 1)
        .await
        .unwrap();
    let report = remove_orphans(&lake, &ident, Duration::ZERO).await.unwrap();
    assert!(
        report
            .deleted
            .iter()
            .any(|p| p.ends_with("being-written.parquet")),
        "{:?}",
        report.deleted
    );
    assert_eq!(rows(&lake, ALL).await, before);
}

#[tokio::test]
async fn background_expiry_follows_lake_config_and_table_properties() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    for i in 0..4i64 {
        table::append(&lake, &ident, vec![users(&[(i, "a", 1, 0)])])
            .await
            .unwrap();
    }
    let snapshots = |lake: Lake, ident: TableIdent| async move {
        lake.load_table(&ident)
            .await
            .unwrap()
            .metadata()
            .snapshots()
            .len()
    };
    let mut config = strata_table::config::LakeConfig::default();
    // Nothing is old enough under the default hour: no metadata is written.
    let location = lake
        .load_table(&ident)
        .await
        .unwrap()
        .metadata_location()
        .map(str::to_string);
    assert!(table::maintain::expire_if_due(&lake, &ident, &config)
        .await
        .unwrap()
        .is_none());
    let after = lake
        .load_table(&ident)
        .await
        .unwrap()
        .metadata_location()
        .map(str::to_string);
    assert_eq!(location, after);
    // A table property keeps more than the lake's default.
    config.snapshot_max_age = Duration::ZERO;
    sql(
        &lake,
        "ALTER TABLE app.users SET TBLPROPERTIES ('history.expire.min-snapshots-to-keep' = '3')",
    )
    .await
    .unwrap();
    let report = table::maintain::expire_if_due(&lake, &ident, &config)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(report.snapshots_removed, 1);
    assert_eq!(snapshots(lake.clone(), ident.clone()).await, 3);
    // Without it, the lake default keeps one; the rows are untouched.
    sql(
        &lake,
        "ALTER TABLE app.users SET TBLPROPERTIES ('history.expire.min-snapshots-to-keep' = '1')",
    )
    .await
    .unwrap();
    table::maintain::expire_if_due(&lake, &ident, &config)
        .await
        .unwrap();
    assert_eq!(snapshots(lake.clone(), ident.clone()).await, 1);
    assert_eq!(
        rows(&lake, ALL).await.lines().count(),
        5,
        "{}",
        rows(&lake, ALL).await
    );
}
