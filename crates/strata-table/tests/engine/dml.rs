//! Row-level writes through the Rust API, read back through `strata sql` (which reads through
//! iceberg's scan, so position deletes written here must be applied there).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};

use crate::*;
use strata_table::table::{self, MergeClause, MergeSpec, WriteMode};

pub(super) fn users_ident() -> TableIdent {
    TableIdent::new(NamespaceIdent::new("app".into()), "users".into())
}

pub(super) async fn create_users(lake: &Lake, mode: WriteMode) -> TableIdent {
    let catalog = lake.catalog();
    let ns = NamespaceIdent::new("app".into());
    if !catalog.namespace_exists(&ns).await.unwrap() {
        catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
    }
    let schema = IcebergSchema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(3, "score", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(4, "dt", Type::Primitive(PrimitiveType::Date)).into(),
        ])
        .build()
        .unwrap();
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(4, "dt", Transform::Identity)
        .unwrap()
        .build();
    let mode = match mode {
        WriteMode::MergeOnRead => "merge-on-read",
        WriteMode::CopyOnWrite => "copy-on-write",
    };
    let props: HashMap<String, String> = ["delete", "update", "merge"]
        .iter()
        .map(|op| (format!("write.{op}.mode"), mode.to_string()))
        .collect();
    let creation = TableCreation::builder()
        .name("users".into())
        .schema(schema)
        .partition_spec(spec)
        .properties(props)
        .build();
    catalog.create_table(&ns, creation).await.unwrap();
    users_ident()
}

/// Rows (id, name, score, day offset from 2026-11-20).
pub(super) fn users(rows: &[(i64, &str, i32, i32)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Int32, true),
        Field::new("dt", DataType::Date32, true),
    ]));
    let day0 = 20_777; // 2026-11-20
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| day0 + r.3),
            )),
        ],
    )
    .unwrap()
}

pub(super) async fn rows(lake: &Lake, sql: &str) -> String {
    let session = SqlSession::new(lake).await.unwrap();
    let batches = session.run(sql).await.unwrap();
    strata_sql::format_batches(&batches, strata_sql::OutputFormat::Csv).unwrap()
}

async fn row_level_ops(mode: WriteMode) {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, mode).await;
    let ctx = SessionContext::new();
    let out = table::append(
        &lake,
        &ident,
        vec![users(&[
            (1, "ann", 10, 0),
            (2, "bob", 20, 0),
            (3, "cy", 30, 1),
            (4, "di", 40, 1),
        ])],
    )
    .await
    .unwrap();
    assert_eq!(out.inserted, 4);

    let out = table::delete_where(&lake, &ctx, &ident, Some(col("id").eq(lit(2i64))))
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    let out = table::update(
        &lake,
        &ctx,
        &ident,
        vec![("score".into(), col("score") + lit(1))],
        Some(col("id").gt_eq(lit(3i64))),
    )
    .await
    .unwrap();
    assert_eq!(out.updated, 2);
    assert_eq!(
        rows(&lake, "SELECT id, name, score FROM app.users ORDER BY id").await,
        "id,name,score\n1,ann,10\n3,cy,31\n4,di,41\n"
    );

    // MERGE: 1 deleted, 3 updated, 5 inserted, 4 ignored (op I but not matched is inserted).
    let source = ctx
        .read_batch({
            let b = users(&[(1, "ann2", 11, 0), (3, "cy2", 32, 1), (5, "ed", 50, 2)]);
            let op = StringArray::from(vec!["D", "U", "I"]);
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(op));
            let mut fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("op", DataType::Utf8, false));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
        })
        .unwrap();
    let s = |c: &str| col(datafusion::common::Column::new(Some("s"), c));
    let t = |c: &str| col(datafusion::common::Column::new(Some("t"), c));
    let spec = MergeSpec {
        target_alias: "t".into(),
        source_alias: "s".into(),
        on: t("id").eq(s("id")),
        clauses: vec![
            MergeClause::Delete {
                condition: Some(s("op").eq(lit("D"))),
            },
            MergeClause::Update {
                condition: Some(s("op").in_list(vec![lit("U"), lit("I")], false)),
                assignments: None,
            },
            MergeClause::Insert {
                condition: Some(s("op").in_list(vec![lit("U"), lit("I")], false)),
                values: None,
            },
        ],
    };
    let out = table::merge(&lake, &ctx, &ident, source.clone(), spec.clone())
        .await
        .unwrap();
    assert_eq!((out.inserted, out.updated, out.deleted), (1, 1, 1));
    assert_eq!(
        rows(
            &lake,
            "SELECT id, name, score, CAST(dt AS VARCHAR) AS dt FROM app.users ORDER BY id"
        )
        .await,
        "id,name,score,dt\n3,cy2,32,2026-11-21\n4,di,41,2026-11-21\n5,ed,50,2026-11-22\n"
    );

    // Cardinality violation: two source rows for id 4; the table stays as it was.
    let before = lake
        .load_table(&ident)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id();
    let dup = ctx
        .read_batch(users(&[(4, "x", 1, 1), (4, "y", 2, 1)]))
        .unwrap();
    let err = table::merge(
        &lake,
        &ctx,
        &ident,
        dup,
        MergeSpec {
            clauses: vec![MergeClause::Update {
                condition: None,
                assignments: None,
            }],
            ..spec
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cardinality"), "{err}");
    let after = lake
        .load_table(&ident)
        .await
        .unwrap()
        .metadata()
        .current_snapshot_id();
    assert_eq!(before, after);

    // Dynamic partition overwrite: replaces only 2026-11-21.
    let out = table::overwrite_partitions(&lake, &ident, vec![users(&[(7, "gus", 70, 1)])])
        .await
        .unwrap();
    assert_eq!(out.inserted, 1);
    assert_eq!(
        rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
        "id\n5\n7\n"
    );
}

#[tokio::test]
async fn row_level_changes_merge_on_read() {
    row_level_ops(WriteMode::MergeOnRead).await;
}

#[tokio::test]
async fn row_level_changes_copy_on_write() {
    row_level_ops(WriteMode::CopyOnWrite).await;
}

/// Writers racing on one table: every append and delete lands exactly once (optimistic
/// commits re-plan on conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    table::append(&lake, &ident, vec![users(&[(0, "zero", 0, 0)])])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let lake = lake.clone();
        let ident = ident.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5i64 {
                let id = 100 + w * 10 + i;
                table::append(&lake, &ident, vec![users(&[(id, "x", 1, (i % 2) as i32)])])
                    .await
                    .unwrap();
            }
        }));
    }
    {
        let lake = lake.clone();
        let ident = ident.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = SessionContext::new();
            let out = table::delete_where(&lake, &ctx, &ident, Some(col("id").eq(lit(0i64))))
                .await
                .unwrap();
            assert_eq!(out.deleted, 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        count(&lake, "SELECT count(*) FROM app.users").await,
        20,
        "20 appended rows, the seed row deleted"
    );
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT id) FROM app.users").await,
        20
    );
}

/// A DELETE on the events table carries the sink's bus position forward, so expiring the
/// sink's snapshots can never make the sink forget where it was.
#[tokio::test]
async fn other_writers_carry_the_bus_position() {
    use strata_table::schema::OdsTable;
    use strata_table::write::commit_with_position;
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = OdsTable::Event.ident();
    let files =
        crate::tables_helpers::write_events(&lake, &[(0, "Liked", 0), (1, "Liked", 0)], 0).await;
    let position: strata_bus::Offsets = [(0, 2)].into_iter().collect();
    commit_with_position(&lake, &ident, files, "events", None, &position, &[])
        .await
        .unwrap();
    let ctx = SessionContext::new();
    table::delete_where(&lake, &ctx, &ident, Some(col("message_id").eq(lit("m-0"))))
        .await
        .unwrap();
    let table = lake.load_table(&ident).await.unwrap();
    let current = table.metadata().current_snapshot().unwrap();
    assert_eq!(
        current
            .summary()
            .additional_properties
            .get(strata_table::EVENTS_OFFSETS_KEY)
            .map(String::as_str),
        Some(r#"{"0":2}"#)
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 1);
}

/// Row-level writes read only the files their filter (or a MERGE's source key range) can
/// touch: with one partition's data file gone from disk, writes elsewhere still work.
#[tokio::test]
async fn row_level_writes_skip_files_they_cannot_touch() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    let ctx = SessionContext::new();
    for (id, day) in [(1, 0), (2, 1), (1000, 2)] {
        table::append(&lake, &ident, vec![users(&[(id, "x", 1, day)])])
            .await
            .unwrap();
    }
    // Lose the file of the third day (ids 1000).
    let table = lake.load_table(&ident).await.unwrap();
    let files = table::TableFiles::current(&table).await.unwrap();
    let lost = files
        .data_files()
        .find(|f| f.path().contains("2026-11-22"))
        .unwrap()
        .path()
        .to_string();
    std::fs::remove_file(lost.trim_start_matches("file:")).unwrap();

    let day0 = lit(ScalarValue::Date32(Some(20_777)));
    let out = table::delete_where(&lake, &ctx, &ident, Some(col("dt").eq(day0)))
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    // A MERGE whose source keys (2..=3) lie below the lost file's key range (1000).
    let source = ctx
        .read_batch(users(&[(2, "y", 2, 1), (3, "z", 3, 1)]))
        .unwrap();
    let s = |c: &str| col(datafusion::common::Column::new(Some("s"), c));
    let t = |c: &str| col(datafusion::common::Column::new(Some("t"), c));
    let out = table::merge(
        &lake,
        &ctx,
        &ident,
        source,
        MergeSpec {
            target_alias: "t".into(),
            source_alias: "s".into(),
            on: t("id").eq(s("id")),
            clauses: vec![
                MergeClause::Update {
                    condition: None,
                    assignments: None,
                },
                MergeClause::Insert {
                    condition: None,
                    values: None,
                },
            ],
        },
    )
    .await
    .unwrap();
    assert_eq!((out.updated, out.inserted), (1, 1));
    // The lost file is really needed by a write that can touch it.
    let err = table::delete_where(&lake, &ctx, &ident, Some(col("id").gt(lit(500i64))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2026-11-22"), "{err}");
}

/// The warehouse's materializations: one partition replaced (also emptied), or the whole
/// table; re-running gives the same table.
#[tokio::test]
async fn partition_and_full_replacement_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    table::append(
        &lake,
        &ident,
        vec![users(&[(1, "a", 1, 0), (2, "b", 2, 1), (3, "c", 3, 1)])],
    )
    .await
    .unwrap();
    let day1 = iceberg::spec::Literal::date(20_778);
    for _ in 0..2 {
        let out = table::overwrite_partition(
            &lake,
            &ident,
            "dt",
            day1.clone(),
            vec![users(&[(9, "z", 9, 1)])],
        )
        .await
        .unwrap();
        assert_eq!(out.inserted, 1);
        assert_eq!(
            rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
            "id\n1\n9\n"
        );
    }
    let err = table::overwrite_partition(
        &lake,
        &ident,
        "dt",
        day1.clone(),
        vec![users(&[(5, "x", 5, 0)])],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outside the partition"), "{err}");
    // Emptying the partition.
    table::overwrite_partition(&lake, &ident, "dt", day1, vec![])
        .await
        .unwrap();
    assert_eq!(
        rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
        "id\n1\n"
    );
    table::replace_all(&lake, &ident, vec![users(&[(7, "q", 7, 2)])])
        .await
        .unwrap();
    assert_eq!(
        rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
        "id\n7\n"
    );
}

fn stream_of(
    batches: Vec<datafusion::error::Result<RecordBatch>>,
) -> datafusion::execution::SendableRecordBatchStream {
    let schema = users(&[]).schema();
    Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        ),
    )
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += parquet_files(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            n += 1;
        }
    }
    n
}

/// The streaming forms the warehouse writes models with: rows of several batches land as one
/// replacement (idempotent on re-run); a row outside the partition or a failing stream
/// commits nothing and leaves no data file behind.
#[tokio::test]
async fn streamed_partition_and_full_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    table::append(
        &lake,
        &ident,
        vec![users(&[(1, "a", 1, 0), (2, "b", 2, 1)])],
    )
    .await
    .unwrap();
    let day1 = iceberg::spec::Literal::date(20_778);
    // The first run replaces row 2 of that day, the second the two rows the first wrote.
    for replaced in [1, 2] {
        let out = table::overwrite_partition_stream(
            &lake,
            &ident,
            "dt",
            day1.clone(),
            stream_of(vec![
                Ok(users(&[(8, "y", 8, 1)])),
                Ok(users(&[])),
                Ok(users(&[(9, "z", 9, 1)])),
            ]),
        )
        .await
        .unwrap();
        assert_eq!((out.inserted, out.deleted), (2, replaced));
        assert_eq!(
            rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
            "id\n1\n8\n9\n"
        );
    }
    let files = parquet_files(dir.path());
    let err = table::overwrite_partition_stream(
        &lake,
        &ident,
        "dt",
        day1.clone(),
        stream_of(vec![
            Ok(users(&[(10, "w", 1, 1)])),
            Ok(users(&[(5, "x", 5, 0)])),
        ]),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("outside the partition"), "{err}");
    let err = table::replace_all_stream(
        &lake,
        &ident,
        stream_of(vec![
            Ok(users(&[(11, "v", 1, 1)])),
            Err(datafusion::error::DataFusionError::Execution(
                "source broke".into(),
            )),
        ]),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("source broke"), "{err}");
    assert_eq!(
        parquet_files(dir.path()),
        files,
        "failed writes leave no data files"
    );
    assert_eq!(
        rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
        "id\n1\n8\n9\n"
    );
    let out =
        table::replace_all_stream(&lake, &ident, stream_of(vec![Ok(users(&[(7, "q", 7, 2)]))]))
            .await
            .unwrap();
    assert_eq!((out.inserted, out.deleted), (1, 3));
    assert_eq!(
        rows(&lake, "SELECT id FROM app.users ORDER BY id").await,
        "id\n7\n"
    );
}

/// A table committing often keeps a short manifest list: at 100 untouched small manifests a
/// row-level commit merges them, and the table reads the same through iceberg's scan.
#[tokio::test]
async fn many_small_manifests_are_merged_by_the_next_row_level_commit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = create_users(&lake, WriteMode::MergeOnRead).await;
    for id in 0..105i64 {
        table::append(&lake, &ident, vec![users(&[(id, "x", 1, (id % 2) as i32)])])
            .await
            .unwrap();
    }
    let manifests = |lake: Lake| {
        let ident = ident.clone();
        async move {
            let table = lake.load_table(&ident).await.unwrap();
            table::TableFiles::current(&table)
                .await
                .unwrap()
                .manifests
                .len()
        }
    };
    assert_eq!(manifests(lake.clone()).await, 105);
    let ctx = SessionContext::new();
    let out = table::delete_where(&lake, &ctx, &ident, Some(col("id").eq(lit(0i64))))
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    // The 105 append manifests became one, plus the new delete manifest.
    assert_eq!(manifests(lake.clone()).await, 2);
    assert_eq!(
        rows(
            &lake,
            "SELECT count(*), sum(id), count(DISTINCT dt) FROM app.users"
        )
        .await,
        format!(
            "count(*),sum(app.users.id),count(DISTINCT app.users.dt)\n104,{},2\n",
            (1..105).sum::<i64>()
        )
    );
    // Row-level writes still find every file through the merged manifest.
    let out = table::delete_where(&lake, &ctx, &ident, Some(col("id").lt(lit(10i64))))
        .await
        .unwrap();
    assert_eq!(out.deleted, 9);
}
