//! Compaction and its policy on real tables: rows never change, small files and delete
//! files go, and concurrent writers (appends, deletes) are never lost.

use std::sync::Arc;
use std::time::Duration;

use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::spec::{Literal, Operation, PartitionKey, Struct};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::equality_delete_writer::{
    EqualityDeleteFileWriterBuilder, EqualityDeleteWriterConfig,
};
use iceberg::writer::file_writer::location_generator::DefaultFileNameGenerator;
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::TableIdent;
use parquet::file::properties::WriterProperties;
use strata_table::config::LakeConfig;

use crate::dml::{create_users, rows, users};
use crate::*;
use strata_table::table::maintain::compact::prepare;
use strata_table::table::maintain::policy::{auto_compact, compact_if_needed};
use strata_table::table::maintain::{files, history, snapshots};
use strata_table::table::{
    self, commit_change, compact, Change, CompactOptions, CompactionPolicy, TableFiles, WriteMode,
};
use strata_table::Error;

const ALL: &str = "SELECT id, name, score, CAST(dt AS VARCHAR) AS dt FROM app.users ORDER BY id";

fn options(min_input_files: usize) -> CompactOptions {
    CompactOptions {
        min_input_files,
        ..Default::default()
    }
}

/// Six appends of one row into day 0 and one into day 1: 12 small files, 6 per partition.
async fn small_files(lake: &Lake, mode: WriteMode) -> TableIdent {
    let ident = create_users(lake, mode).await;
    for i in 0..6i64 {
        let name = format!("u{i}");
        table::append(
            lake,
            &ident,
            vec![users(&[
                (i * 2, &name, i as i32, 0),
                (i * 2 + 1, &name, i as i32, 1),
            ])],
        )
        .await
        .unwrap();
    }
    ident
}

/// (data files, delete files) of the current snapshot.
async fn file_counts(lake: &Lake, ident: &TableIdent) -> (usize, usize) {
    let listed = files(lake, ident).await.unwrap();
    let data = listed.iter().filter(|f| f.content == "data").count();
    (data, listed.len() - data)
}

fn id_is(id: i64) -> Option<datafusion::logical_expr::Expr> {
    Some(col("id").eq(lit(id)))
}

#[tokio::test]
async fn compaction_keeps_rows_and_folds_small_and_delete_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, id_is(3))
        .await
        .unwrap();
    table::update(
        &lake,
        &ctx,
        &ident,
        vec![("score".into(), lit(100))],
        id_is(4),
    )
    .await
    .unwrap();
    let before = rows(&lake, ALL).await;
    assert_eq!(before.lines().count(), 12, "{before}");
    let (data_before, deletes_before) = file_counts(&lake, &ident).await;
    assert_eq!((data_before, deletes_before), (13, 2));
    let pre_compaction = lake
        .load_table(&ident)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id()
        .unwrap();

    let report = compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(report.partitions, 2);
    assert_eq!(report.data_files_rewritten, 13);
    assert_eq!(report.delete_files_removed, 2);
    assert_eq!(report.data_files_written, 2);
    assert_eq!(report.rows, 11);
    assert_eq!(report.commit_attempts, 1);

    assert_eq!(rows(&lake, ALL).await, before);
    assert_eq!(file_counts(&lake, &ident).await, (2, 0));
    let table = lake.load_table(&ident).await.unwrap();
    let current = table.metadata().current_snapshot().unwrap();
    assert_eq!(current.summary().operation, Operation::Replace);
    assert_eq!(Some(current.snapshot_id()), report.snapshot_id);
    // The snapshot before compaction still reads the same rows (time travel).
    let old = rows(
        &lake,
        &ALL.replace(
            "FROM app.users",
            &format!("FROM app.users VERSION AS OF {pre_compaction}"),
        ),
    )
    .await;
    assert_eq!(old, before);

    // Nothing left to do.
    let again = compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(again, Default::default());

    // Listings.
    let snaps = snapshots(&lake, &ident).await.unwrap();
    assert_eq!(snaps.len(), 9);
    assert_eq!(snaps.last().unwrap().operation, "replace");
    assert_eq!(snaps.last().unwrap().summary["total-records"], "11");
    let hist = history(&lake, &ident).await.unwrap();
    assert_eq!(hist.len(), 9);
    assert!(hist.iter().all(|h| h.is_current_ancestor));
    let listed = files(&lake, &ident).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|f| f.partition.as_str())
            .collect::<Vec<_>>(),
        ["dt=2026-11-20", "dt=2026-11-21"]
    );
    use strata_table::table::maintain::{files_batch, history_batch, snapshots_batch};
    for batch in [
        history_batch(&hist).unwrap(),
        snapshots_batch(&snaps).unwrap(),
        files_batch(&listed).unwrap(),
    ] {
        let text = strata_sql::format_batches(&[batch], strata_sql::OutputFormat::Table).unwrap();
        assert!(text.lines().count() > 3, "{text}");
    }
}

#[tokio::test]
async fn compaction_leaves_lone_files_and_honours_min_input_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    // 6 small files per partition, 7 needed.
    let report = compact(&lake, &ident, &options(7)).await.unwrap();
    assert_eq!(report.snapshot_id, None);
    assert_eq!(file_counts(&lake, &ident).await, (12, 0));
    // A file of its own without deletes is not rewritten.
    let report = compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(report.data_files_written, 2);
    let again = compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(again.snapshot_id, None);
    assert!(compact(&lake, &ident, &options(1)).await.is_err());
}

#[tokio::test]
async fn compaction_rebases_over_a_concurrent_append() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let prepared = prepare(&lake, &ident, &options(2)).await.unwrap().unwrap();
    // Another writer commits between planning and commit.
    table::append(&lake, &ident, vec![users(&[(100, "late", 1, 0)])])
        .await
        .unwrap();
    let report = prepared.commit(&lake).await.unwrap();
    assert_eq!(report.commit_attempts, 2);
    assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 13);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM app.users WHERE id = 100").await,
        1
    );
    // Compacted file per partition + the late file.
    assert_eq!(file_counts(&lake, &ident).await, (3, 0));
}

#[tokio::test]
async fn compaction_conflicts_with_a_concurrent_delete_and_loses_nothing() {
    for mode in [WriteMode::MergeOnRead, WriteMode::CopyOnWrite] {
        let dir = tempfile::tempdir().unwrap();
        let lake = open_lake(dir.path()).await;
        let ident = small_files(&lake, mode).await;
        let ctx = SessionContext::new();
        let prepared = prepare(&lake, &ident, &options(2)).await.unwrap().unwrap();
        // Deletes a row of a file the compaction is rewriting.
        table::delete_where(&lake, &ctx, &ident, id_is(0))
            .await
            .unwrap();
        let err = prepared.commit(&lake).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{mode:?}: {err}");
        assert_eq!(
            count(&lake, "SELECT count(*) FROM app.users WHERE id = 0").await,
            0
        );
        // The full operation re-plans and folds the delete in.
        let report = compact(&lake, &ident, &options(2)).await.unwrap();
        assert!(report.snapshot_id.is_some());
        assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 11);
        assert_eq!(
            count(&lake, "SELECT count(*) FROM app.users WHERE id = 0").await,
            0
        );
        assert_eq!(file_counts(&lake, &ident).await, (2, 0), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_racing_appends_and_deletes_keeps_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let appends = {
        let (lake, ident) = (lake.clone(), ident.clone());
        tokio::spawn(async move {
            for i in 0..8i64 {
                table::append(
                    &lake,
                    &ident,
                    vec![users(&[(1000 + i, "x", 0, (i % 2) as i32)])],
                )
                .await
                .unwrap();
            }
        })
    };
    let deletes = {
        let (lake, ident) = (lake.clone(), ident.clone());
        tokio::spawn(async move {
            let ctx = SessionContext::new();
            for id in [1i64, 2, 5] {
                table::delete_where(&lake, &ctx, &ident, id_is(id))
                    .await
                    .unwrap();
            }
        })
    };
    // Compact for as long as the writers write.
    while !(appends.is_finished() && deletes.is_finished()) {
        compact(&lake, &ident, &options(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    appends.await.unwrap();
    deletes.await.unwrap();
    compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(
        count(&lake, "SELECT count(*) FROM app.users").await,
        12 + 8 - 3
    );
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT id) FROM app.users").await,
        17
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM app.users WHERE id IN (1, 2, 5)"
        )
        .await,
        0
    );
    assert_eq!(file_counts(&lake, &ident).await, (2, 0));
}

/// Commits an equality delete of `ids` in partition day `day` (as Flink or Spark would).
async fn equality_delete(lake: &Lake, ident: &TableIdent, ids: &[i64], day: i32) {
    let table = lake.load_table(ident).await.unwrap();
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let config = EqualityDeleteWriterConfig::new(vec![1], schema.clone()).unwrap();
    let delete_schema =
        iceberg::arrow::arrow_schema_to_schema(config.projected_arrow_schema_ref()).unwrap();
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(WriterProperties::default(), Arc::new(delete_schema)),
        1 << 30,
        table.file_io().clone(),
        strata_table::write::SafeLocationGenerator::new(&table),
        DefaultFileNameGenerator::new("eq".into(), None, iceberg::spec::DataFileFormat::Parquet),
    );
    let spec = metadata.default_partition_spec().as_ref().clone();
    let partition = Struct::from_iter([Some(Literal::date(20_777 + day))]);
    let key = PartitionKey::new(spec.clone(), schema.clone(), partition);
    let mut writer = EqualityDeleteFileWriterBuilder::new(rolling, config)
        .build(Some(key))
        .await
        .unwrap();
    let rows: Vec<(i64, &str, i32, i32)> = ids.iter().map(|id| (*id, "", 0, day)).collect();
    let batch =
        strata_table::table::conform(&table, &[users(&rows)], strata_table::table::Match::ByName)
            .unwrap()
            .remove(0);
    writer.write(batch).await.unwrap();
    let deletes = writer.close().await.unwrap();
    let files = TableFiles::current(&table).await.unwrap();
    let mut change = Change::new(Operation::Delete);
    change.added_deletes = deletes.into_iter().map(|f| (spec.spec_id(), f)).collect();
    commit_change(lake, &table, &files, change).await.unwrap();
}

#[tokio::test]
async fn compaction_applies_and_drops_equality_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, id_is(2))
        .await
        .unwrap();
    // Ids 0 and 4 live in day 0; 1 is in day 1, so this delete does not touch it.
    equality_delete(&lake, &ident, &[0, 4, 1], 0).await;
    let before = rows(&lake, ALL).await;
    assert_eq!(before.lines().count(), 1 + 12 - 3, "{before}");
    // Strata's own row-level reader refuses equality deletes until compaction folds them in.
    let err = table::delete_where(&lake, &ctx, &ident, id_is(6))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("compact"), "{err}");

    let report = compact(&lake, &ident, &options(2)).await.unwrap();
    assert_eq!(report.delete_files_removed, 2);
    assert_eq!(rows(&lake, ALL).await, before);
    assert_eq!(file_counts(&lake, &ident).await, (2, 0));
    // Row-level writes work again.
    table::delete_where(&lake, &ctx, &ident, id_is(6))
        .await
        .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 8);
}

async fn set_properties(lake: &Lake, ident: &TableIdent, props: &[(&str, &str)]) {
    let table = lake.load_table(ident).await.unwrap();
    let tx = Transaction::new(&table);
    let mut action = tx.update_table_properties();
    for (k, v) in props {
        action = action.set(k.to_string(), v.to_string());
    }
    let tx = action.apply(tx).unwrap();
    tx.commit(lake.catalog().as_ref()).await.unwrap();
}

fn policy() -> CompactionPolicy {
    CompactionPolicy {
        enabled: true,
        options: options(5),
        min_files: 10,
        small_file_ratio: 0.5,
        delete_file_ratio: 0.1,
    }
}

#[tokio::test]
async fn policy_triggers_on_small_files_and_delete_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let table = lake.load_table(&ident).await.unwrap();
    let trigger = policy()
        .evaluate(&TableFiles::current(&table).await.unwrap())
        .unwrap();
    assert_eq!(trigger.reason, "small files");
    assert_eq!((trigger.data_files, trigger.small_files), (12, 12));

    // Table properties override the defaults.
    set_properties(&lake, &ident, &[("strata.compaction.enabled", "false")]).await;
    assert_eq!(
        compact_if_needed(&lake, &ident, &policy()).await.unwrap(),
        None
    );
    set_properties(
        &lake,
        &ident,
        &[
            ("strata.compaction.enabled", "true"),
            ("strata.compaction.min-files", "100"),
        ],
    )
    .await;
    assert_eq!(
        compact_if_needed(&lake, &ident, &policy()).await.unwrap(),
        None
    );
    set_properties(&lake, &ident, &[("strata.compaction.min-files", "many")]).await;
    let err = compact_if_needed(&lake, &ident, &policy())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("strata.compaction.min-files"),
        "{err}"
    );
    set_properties(&lake, &ident, &[("strata.compaction.min-files", "12")]).await;
    let report = compact_if_needed(&lake, &ident, &policy())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.data_files_written, 2);
    // Two files, one per partition: nothing to merge, no trigger.
    assert_eq!(
        compact_if_needed(&lake, &ident, &policy()).await.unwrap(),
        None
    );

    // One delete file against two data files crosses the 0.1 delete-file ratio.
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, id_is(0))
        .await
        .unwrap();
    let table = lake.load_table(&ident).await.unwrap();
    let trigger = policy()
        .evaluate(&TableFiles::current(&table).await.unwrap())
        .unwrap();
    assert_eq!(trigger.reason, "delete files");
    compact_if_needed(&lake, &ident, &policy())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(file_counts(&lake, &ident).await, (2, 0));
    assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_runs_next_to_writers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = small_files(&lake, WriteMode::MergeOnRead).await;
    let config = LakeConfig {
        compaction_interval: Duration::from_millis(50),
        compaction_min_files: 2,
        compaction_min_input_files: 2,
        ..LakeConfig::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(auto_compact(lake.clone(), config, stopped));
    for i in 0..10i64 {
        table::append(&lake, &ident, vec![users(&[(100 + i, "w", 0, 0)])])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bounded wait for the eventual state: one file per partition.
    let mut counts = (0, 0);
    for _ in 0..200 {
        counts = file_counts(&lake, &ident).await;
        if counts == (2, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts, (2, 0));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM app.users").await, 22);
    let table = lake.load_table(&ident).await.unwrap();
    let replaced = table
        .metadata()
        .snapshots()
        .filter(|s| s.summary().operation == Operation::Replace)
        .count();
    assert!(replaced >= 1);
}
