//! Row-level writes through the Rust API, read back through `strata sql` (which reads through
//! iceberg's scan, so position deletes written here must be applied there).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::{NamespaceIdent, TableCreation, TableIdent};

use super::*;
use crate::table::{self, MergeClause, MergeSpec, WriteMode};

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
    crate::format_batches(&batches, crate::OutputFormat::Csv).unwrap()
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
