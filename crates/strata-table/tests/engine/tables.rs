use std::collections::HashMap;

use arrow::array::{AsArray, Date32Array, Int32Array};
use arrow::datatypes::{DataType, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::FormatVersion;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use std::sync::Arc;
use strata_bus::Offsets;

use crate::tables_helpers::*;
use crate::*;
use strata_table::batch::{EventBuffer, RejectedBuffer, RejectedRow};
use strata_table::position::table_position;
use strata_table::schema::OdsTable;
use strata_table::write::{commit_with_position, write_data_files};

#[tokio::test]
async fn open_creates_namespace_and_tables_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    // Opening again finds everything in place.
    let lake2 = open_lake(dir.path()).await;
    assert!(dir.path().join("catalog.db").exists());
    let table = lake2
        .catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap();
    let meta = table.metadata();
    assert_eq!(meta.format_version(), FormatVersion::V2);
    let names: Vec<_> = meta
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names.len(), 39);
    assert_eq!(
        &names[..5],
        ["message_id", "app", "type", "event", "event_type"]
    );
    assert_eq!(&names[11..15], ["server_ts", "event_ts", "dt", "hr"]);
    assert_eq!(
        &names[33..],
        [
            "context",
            "properties",
            "traits",
            "bus_partition",
            "bus_offset",
            "ingested_at"
        ]
    );
    let spec: Vec<_> = meta
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(spec, ["dt", "hr", "event_type"]);
    assert_eq!(
        meta.properties()
            .get("write.parquet.compression-codec")
            .map(String::as_str),
        Some("zstd")
    );
    let arrow = schema_to_arrow_schema(meta.current_schema()).unwrap();
    assert_eq!(
        arrow.field_with_name("server_ts").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    );
    assert!(!arrow.field_with_name("message_id").unwrap().is_nullable());

    let rejected = lake
        .catalog()
        .load_table(&OdsTable::Rejected.ident())
        .await
        .unwrap();
    let spec: Vec<_> = rejected
        .metadata()
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(spec, ["dt"]);
    assert!(table_position(&rejected, "events").unwrap().is_none());
}

#[tokio::test]
async fn events_become_arrow_columns_grouped_by_partition() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let table = lake
        .catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap();
    let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());

    let mut buf = EventBuffer::default();
    buf.push(&event(0, "Signed Up", 0), at(0));
    buf.push(&event(1, "Signed Up", 0), at(1));
    buf.push(&event(2, "Signed Up", 1), at(2));
    buf.push(&event(3, "Followed", 0), at(3));
    let mut identify = event(4, "", 0);
    identify.kind = "identify".into();
    identify.event = None;
    buf.push(&identify, at(4));
    let mut nameless = event(5, "", 0);
    nameless.event = None;
    buf.push(&nameless, at(5));
    assert_eq!(buf.rows(), 6);

    let groups = buf.take_groups();
    assert_eq!(buf.rows(), 0);
    let keys: Vec<String> = groups.iter().map(|(k, _)| format!("{k:?}")).collect();
    assert_eq!(groups.len(), 5, "{keys:?}");
    let mut by_type = HashMap::new();
    for (key, columns) in groups {
        let batch = columns.finish(schema.clone()).unwrap();
        let et = batch
            .column_by_name("event_type")
            .unwrap()
            .as_string::<i32>();
        let hr = batch
            .column_by_name("hr")
            .unwrap()
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let dt = batch
            .column_by_name("dt")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap();
        assert_eq!(dt.value(0), 20779, "{key:?}");
        *by_type
            .entry((et.value(0).to_string(), hr.value(0)))
            .or_insert(0) += batch.num_rows();
    }
    assert_eq!(by_type[&("Signed Up".to_string(), 10)], 2);
    assert_eq!(by_type[&("Signed Up".to_string(), 11)], 1);
    assert_eq!(by_type[&("Followed".to_string(), 10)], 1);
    assert_eq!(by_type[&("identify".to_string(), 10)], 1);
    assert_eq!(by_type[&("track".to_string(), 10)], 1);
}

#[test]
fn utc_date_and_hour_handle_negative_times() {
    assert_eq!(strata_table::utc_date(T0), 20779);
    assert_eq!(strata_table::utc_hour(T0), 10);
    assert_eq!(strata_table::utc_date(-1), -1);
    assert_eq!(strata_table::utc_hour(-1), 23);
}

#[tokio::test]
async fn commit_carries_offsets_and_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let catalog = lake.catalog();
    let ident = OdsTable::Event.ident();

    let files = write_events(&lake, &[(0, "a", 0), (1, "b", 0), (2, "../../evil", 0)], 0).await;
    assert_eq!(files.len(), 3);
    for f in &files {
        let path = f.file_path();
        assert!(
            path.starts_with(&format!(
                "{}/ods/ods_event/data/dt=2026-11-22/hr=10/event_type=",
                lake.warehouse()
            )),
            "{path}"
        );
        assert!(!path.contains("/../"), "{path}");
        assert!(
            std::path::Path::new(path.trim_start_matches("file:")).exists(),
            "{path}"
        );
    }
    let position: Offsets = [(0, 3), (1, 0)].into_iter().collect();
    let table = commit_with_position(&lake, &ident, files.clone(), "events", None, &position, &[])
        .await
        .unwrap();
    assert_eq!(
        table_position(&table, "events").unwrap(),
        Some(position.clone())
    );
    let snapshot = table.metadata().current_snapshot().unwrap();
    assert_eq!(
        snapshot
            .summary()
            .additional_properties
            .get("strata.bus.events.offsets")
            .map(String::as_str),
        Some(r#"{"0":3,"1":0}"#)
    );
    assert_eq!(
        snapshot
            .summary()
            .additional_properties
            .get("added-records")
            .map(String::as_str),
        Some("3")
    );

    // A retry of the same commit (outcome unknown the first time) writes nothing new.
    let again = commit_with_position(&lake, &ident, files, "events", None, &position, &[])
        .await
        .unwrap();
    assert_eq!(again.metadata().snapshots().len(), 1);

    // A snapshot from another writer without the key: the position is found on its parent.
    let more = write_events(&lake, &[(9, "a", 0)], 100).await;
    let tx = Transaction::new(&again);
    let tx = tx.fast_append().add_data_files(more).apply(tx).unwrap();
    let table = tx.commit(catalog.as_ref()).await.unwrap();
    assert_eq!(table.metadata().snapshots().len(), 2);
    assert_eq!(table_position(&table, "events").unwrap(), Some(position));

    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 4);
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM ods.ods_event WHERE event_type = '../../evil'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn position_only_commit_moves_position_without_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let catalog = lake.catalog();
    let ident = OdsTable::Rejected.ident();
    let position: Offsets = [(0, 10)].into_iter().collect();
    let table = commit_with_position(&lake, &ident, vec![], "events", None, &position, &[])
        .await
        .unwrap();
    assert_eq!(table_position(&table, "events").unwrap(), Some(position));
    assert_eq!(
        count(&lake, "SELECT count(*) FROM ods.ods_event_rejected").await,
        0
    );

    // And rejected rows land with their partition.
    let table = catalog.load_table(&ident).await.unwrap();
    let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
    let mut buf = RejectedBuffer::default();
    let r = Rejected {
        message_id: None,
        app: "web".into(),
        server_ts: T0,
        reason: "bad".into(),
        raw: "{".into(),
    };
    buf.push(&RejectedRow::from(&r), at(10));
    let groups = buf
        .take_groups()
        .into_iter()
        .map(|(k, c)| (k, c.finish(schema.clone()).unwrap()))
        .collect();
    let files = write_data_files(&table, groups).await.unwrap();
    let position: Offsets = [(0, 11)].into_iter().collect();
    commit_with_position(&lake, &ident, files, "events", None, &position, &[])
        .await
        .unwrap();
    assert_eq!(
        count(&lake, "SELECT count(*) FROM ods.ods_event_rejected WHERE dt = DATE '2026-11-22' AND message_id IS NULL").await,
        1
    );
}

#[tokio::test]
async fn commit_is_fenced_on_the_expected_position() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = OdsTable::Event.ident();
    let p1: Offsets = [(0, 1)].into_iter().collect();
    let p2: Offsets = [(0, 2)].into_iter().collect();
    let empty = Offsets::new();
    let files = write_events(&lake, &[(0, "a", 0)], 0).await;
    commit_with_position(&lake, &ident, files, "events", Some(&empty), &p1, &[])
        .await
        .unwrap();
    // A writer that still believes the table is empty is refused.
    let files = write_events(&lake, &[(1, "a", 0)], 1).await;
    let err = commit_with_position(
        &lake,
        &ident,
        files.clone(),
        "events",
        Some(&empty),
        &p2,
        &[],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, strata_table::Error::Conflict { .. }), "{err}");
    assert!(!err.retryable());
    commit_with_position(&lake, &ident, files, "events", Some(&p1), &p2, &[])
        .await
        .unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 2);
}

#[tokio::test]
async fn open_adds_missing_table_properties() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let ident = OdsTable::Event.ident();
    let table = lake.catalog().load_table(&ident).await.unwrap();
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .remove("commit.retry.num-retries".to_string())
        .apply(tx)
        .unwrap();
    let table = tx.commit(lake.catalog().as_ref()).await.unwrap();
    assert!(!table
        .metadata()
        .properties()
        .contains_key("commit.retry.num-retries"));
    let lake = open_lake(dir.path()).await;
    let table = lake.catalog().load_table(&ident).await.unwrap();
    assert_eq!(
        table
            .metadata()
            .properties()
            .get("commit.retry.num-retries")
            .map(String::as_str),
        Some("0")
    );
}

#[test]
fn buffers_start_as_large_as_the_last_flush_of_their_event_type() {
    let mut buf = EventBuffer::default();
    for i in 0..3 {
        buf.push(&event(i, "Signed Up", 0), at(i as u64));
    }
    for i in 3..5 {
        buf.push(&event(i, "Signed Up", 1), at(i as u64));
    }
    buf.push(&event(5, "Followed", 0), at(5));
    assert_eq!(buf.hint("Signed Up"), None);
    let id_bytes = event(0, "Signed Up", 0).message_id.len();
    assert_eq!(buf.take_groups().len(), 3);
    // The larger of the two hours' groups.
    assert_eq!(buf.hint("Signed Up"), Some((3, 3 * id_bytes)));
    assert_eq!(buf.hint("Followed"), Some((1, id_bytes)));
    // A flush without an event type forgets its hint.
    buf.push(&event(6, "Followed", 0), at(6));
    buf.take_groups();
    assert_eq!(buf.hint("Signed Up"), None);
    assert_eq!(buf.hint("Followed"), Some((1, id_bytes)));
}

/// Models of a DAG run in parallel each create their namespace when it is missing: racing
/// creators all succeed (the SQL catalog reports the loser of the race as a constraint
/// violation, not "already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_of_one_namespace_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = common::open_lake(dir.path()).await;
    for round in 0..5 {
        let ns = iceberg::NamespaceIdent::new(format!("race{round}"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (catalog, ns) = (lake.catalog(), ns.clone());
                tokio::spawn(async move {
                    strata_table::lake::ensure_namespace(catalog.as_ref(), &ns).await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                created += 1;
            }
        }
        assert!(created >= 1, "round {round}: someone created it");
        assert!(lake.catalog().namespace_exists(&ns).await.unwrap());
    }
}
