//! Erasure end to end: events landed by the real sink, an ODS-like table with position
//! deletes and an update, a partitioned warehouse-like table whose old snapshots alone still
//! hold a user, an unpartitioned pair table with a per-table key override; two users are
//! forgotten while another writer appends to one of the tables. Then no row of theirs is
//! visible, every other row is, and no file under the warehouse — Parquet decoded cell by
//! cell, manifests and manifest lists decoded as Avro, metadata JSON — holds their ids.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_bus::{Log, Record};
use strata_core::event::RecordFormat;
use strata_core::event::EVENTS_TOPIC;
use strata_core::{BusRecord, Event};
use strata_table::config::PrivacyConfig;
use tokio::sync::watch;

use crate::memlog::MemLog;
use crate::*;
use strata_sink::LakeSink;
use strata_table::position::{covers, table_position};
use strata_table::schema::OdsTable;
use strata_table::table::erase::{self, ErasureReport};
use strata_table::table::maintain::parse_table_name;

/// A user known by a string id (events only).
const ALICE: &str = "u-alice-7f3a9c";
/// A user known by an integer id: a BIGINT in ODS, its decimal text in events.
const BOB: &str = "987654321987";
const BOB_INT: i64 = 987_654_321_987;
/// Users who stay.
const KEEP: [&str; 4] = [
    "keep-user-01",
    "keep-user-02",
    "keep-user-03",
    "keep-user-04",
];

fn privacy() -> PrivacyConfig {
    let mut p = PrivacyConfig::default();
    p.tables.insert(
        "ads.pairs".to_string(),
        vec!["user_id".to_string(), "other_id".to_string()],
    );
    p
}

fn ids() -> Vec<String> {
    vec![ALICE.to_string(), BOB.to_string()]
}

/// Event `i`: user KEEP[i % 4] mostly, ALICE for i % 5 == 1 (every other one of hers
/// anonymous: only anonymous_id carries her id), BOB for i % 5 == 3. Two days, three hours.
fn event_of(i: usize) -> Event {
    let ts = T0 + (i % 2) as i64 * 86_400_000_000 + (i % 3) as i64 * 3_600_000_000 + i as i64;
    let (user, anon) = match i % 5 {
        1 if i.is_multiple_of(2) => (None, Some(ALICE.to_string())),
        1 => (Some(ALICE.to_string()), Some(format!("anon-{i:05}"))),
        3 => (Some(BOB.to_string()), Some(format!("anon-{i:05}"))),
        _ => (Some(KEEP[i % 4].to_string()), Some(format!("anon-{i:05}"))),
    };
    Event {
        message_id: format!("msg-{i:05}"),
        app: "web".into(),
        kind: "track".into(),
        event: Some(["Signed Up", "Liked", "Posted"][i % 3].into()),
        user_id: user,
        anonymous_id: anon,
        server_ts: ts,
        event_ts: ts,
        country: Some("DE".into()),
        ..Default::default()
    }
}

const EVENTS: usize = 400;

fn is_forgotten_event(i: usize) -> bool {
    i % 5 == 1 || i % 5 == 3
}

/// Lands `EVENTS` events through the lake sink in several commits, then stops it.
async fn land_events(lake: &Lake, dir: &Path) {
    let log = Arc::new(MemLog::default());
    log.ensure_topic(EVENTS_TOPIC, 2).await.unwrap();
    let mut c = config(dir);
    c.lake.flush_max_rows = 60;
    c.lake.flush_interval = Duration::from_millis(20);
    let (tx, rx) = watch::channel(false);
    let sink = {
        let lake = lake.clone();
        let log: Arc<dyn Log> = log.clone();
        tokio::spawn(async move {
            let sink = LakeSink::new(&lake, log, &c.lake).await?;
            sink.run(rx).await
        })
    };
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(50) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|&i| {
                let r = BusRecord::Event(Box::new(event_of(i)));
                Record {
                    key: r.key().as_bytes().to_vec().into(),
                    value: r.encode(RecordFormat::Binary).into(),
                    timestamp_ms: T0 / 1000,
                }
            })
            .collect();
        log.append(EVENTS_TOPIC, records).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let end = log.end_offsets(EVENTS_TOPIC).await.unwrap();
    let mut caught_up = false;
    for _ in 0..1000 {
        let table = lake.load_table(&OdsTable::Event.ident()).await.unwrap();
        let pos = table_position(&table, EVENTS_TOPIC).unwrap();
        if pos.is_some_and(|p| covers(&p, &end)) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(caught_up, "the sink did not land the events");
    tx.send(true).unwrap();
    sink.await.unwrap().unwrap();
}

async fn run(lake: &Lake, sql: &str) {
    let session = SqlSession::new(lake).await.unwrap();
    session
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The other tables, built with SQL: see the module docs.
async fn build_tables(lake: &Lake) {
    let mut users = vec![format!("({BOB_INT}, 'bob', 'bob@example.com')")];
    users.extend((1..=20).map(|i| format!("({i}, 'keep{i}', 'k{i}@example.com')")));
    for sql in [
        "CREATE TABLE ods.ods_users (user_id BIGINT NOT NULL, username STRING, email STRING)"
            .to_string(),
        format!("INSERT INTO ods.ods_users VALUES {}", users[..11].join(", ")),
        format!("INSERT INTO ods.ods_users VALUES {}", users[11..].join(", ")),
        // Position deletes (merge-on-read): a kept user's row, and Bob's old row by update.
        "DELETE FROM ods.ods_users WHERE user_id = 3".to_string(),
        format!("UPDATE ods.ods_users SET email = 'bob2@example.com' WHERE user_id = {BOB_INT}"),
        "CREATE NAMESPACE dws".to_string(),
        "CREATE TABLE dws.user_daily (user_id STRING, dt DATE, n BIGINT) PARTITIONED BY (dt)"
            .to_string(),
        format!(
            "INSERT INTO dws.user_daily VALUES ('{ALICE}', DATE '2026-11-20', 1), ('{BOB}', DATE '2026-11-20', 2), \
             ('keep-user-01', DATE '2026-11-20', 3), ('{ALICE}', DATE '2026-11-21', 4), ('keep-user-02', DATE '2026-11-21', 5)"
        ),
        // The 11-20 partition rebuilt without Alice and Bob: they stay only in old snapshots.
        "INSERT OVERWRITE dws.user_daily VALUES ('keep-user-01', DATE '2026-11-20', 3), ('keep-user-03', DATE '2026-11-20', 6)"
            .to_string(),
        "CREATE NAMESPACE ads".to_string(),
        "CREATE TABLE ads.pairs (user_id STRING, other_id STRING, score DOUBLE)".to_string(),
        format!(
            "INSERT INTO ads.pairs VALUES ('keep-user-01', '{ALICE}', 0.5), ('{BOB}', 'keep-user-02', 0.25), \
             ('keep-user-01', 'keep-user-02', 0.75), ('keep-user-03', 'keep-user-04', 1.0)"
        ),
        // A table without user key columns is left alone.
        "CREATE TABLE ads.posts (post_id BIGINT, caption STRING)".to_string(),
        "INSERT INTO ads.posts VALUES (1, 'hello'), (2, 'world')".to_string(),
    ] {
        run(lake, &sql).await;
    }
}

/// Row counts that must not change: (events of others, ods_users others, user_daily others,
/// pairs without the users).
async fn others(lake: &Lake) -> (i64, i64, i64, i64) {
    let not = |c: &str| format!("({c} IS NULL OR {c} NOT IN ('{ALICE}', '{BOB}'))");
    (
        count(
            lake,
            &format!(
                "SELECT count(*) FROM ods.ods_event WHERE {} AND {}",
                not("user_id"),
                not("anonymous_id")
            ),
        )
        .await,
        count(
            lake,
            &format!("SELECT count(*) FROM ods.ods_users WHERE user_id <> {BOB_INT}"),
        )
        .await,
        count(
            lake,
            &format!(
                "SELECT count(*) FROM dws.user_daily WHERE {}",
                not("user_id")
            ),
        )
        .await,
        count(
            lake,
            &format!(
                "SELECT count(*) FROM ads.pairs WHERE {} AND {}",
                not("user_id"),
                not("other_id")
            ),
        )
        .await,
    )
}

/// Visible rows of the two users in every table.
async fn visible(lake: &Lake) -> i64 {
    let ids = format!("('{ALICE}', '{BOB}')");
    count(
        lake,
        &format!(
            "SELECT count(*) FROM ods.ods_event WHERE user_id IN {ids} OR anonymous_id IN {ids}"
        ),
    )
    .await
        + count(
            lake,
            &format!("SELECT count(*) FROM ods.ods_users WHERE user_id = {BOB_INT}"),
        )
        .await
        + count(
            lake,
            &format!("SELECT count(*) FROM dws.user_daily WHERE user_id IN {ids}"),
        )
        .await
        + count(
            lake,
            &format!("SELECT count(*) FROM ads.pairs WHERE user_id IN {ids} OR other_id IN {ids}"),
        )
        .await
}

/// Appends kept users to `ods.ods_users` until `stop`; counts the rows committed.
fn append_loop(
    lake: &Lake,
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let lake = lake.clone();
    tokio::spawn(async move {
        let ident = parse_table_name("ods.ods_users").unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("username", DataType::Utf8, true),
        ]));
        let mut next = 100_000i64;
        while !stop.load(Ordering::SeqCst) {
            let batch = arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![next, next + 1])),
                    Arc::new(StringArray::from(vec!["loop", "loop"])),
                ],
            )
            .unwrap();
            strata_table::table::append(&lake, &ident, vec![batch])
                .await
                .unwrap();
            rows.fetch_add(2, Ordering::SeqCst);
            next += 2;
            // 20 commits a second: twenty times the CDC merger's default pace.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn table<'a>(report: &'a ErasureReport, name: &str) -> &'a erase::TableErasure {
    report
        .tables
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_erases_users_from_every_file_while_a_writer_appends() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    land_events(&lake, dir.path()).await;
    build_tables(&lake).await;

    let forgotten_events = (0..EVENTS).filter(|&i| is_forgotten_event(i)).count() as i64;
    assert_eq!(visible(&lake).await, forgotten_events + 1 + 1 + 2);
    // Before: the users' ids are in the files (the scan below can see them).
    let before = findings(dir.path());
    assert!(
        before.iter().any(|f| f.contains(".parquet")) && before.iter().any(|f| f.contains(".avro")),
        "{before:?}"
    );
    let others_before = others(&lake).await;
    assert_eq!(others_before, (EVENTS as i64 - forgotten_events, 19, 3, 2));

    // A writer appending to ods_users throughout the erasure.
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let writer = append_loop(&lake, stop.clone(), appended.clone());
    while appended.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_start = appended.load(Ordering::SeqCst);
    let report = erase::forget(&lake, &privacy(), &ids()).await.unwrap();
    let at_end = appended.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let appended = appended.load(Ordering::SeqCst) as i64;
    assert!(
        at_end > at_start,
        "the writer committed nothing during the erasure"
    );

    assert!(report.complete(), "{report:#?}");
    assert_eq!(report.users, 2);
    let events = table(&report, "ods.ods_event");
    assert_eq!(events.rows_removed, forgotten_events as u64);
    assert_eq!(events.columns, ["user_id", "anonymous_id", "previous_id"]);
    assert!(
        events.snapshots_expired > 0 && events.data_files_deleted > 0,
        "{events:#?}"
    );
    // Bob's live row; his pre-update row was already deleted (position delete) but is
    // physically erased all the same.
    let users = table(&report, "ods.ods_users");
    assert_eq!(users.rows_removed, 1, "{users:#?}");
    assert!(users.delete_files_dropped > 0, "{users:#?}");
    // Alice's 11-21 row is live; her and Bob's 11-20 rows only in old snapshots.
    let daily = table(&report, "dws.user_daily");
    assert_eq!(daily.rows_removed, 1, "{daily:#?}");
    assert!(daily.files_holding_rows >= 2, "{daily:#?}");
    assert_eq!(table(&report, "ads.pairs").rows_removed, 2);
    assert!(
        !report.tables.iter().any(|t| t.table == "ads.posts"),
        "a table without key columns was touched"
    );
    assert_eq!(report.rows_removed(), forgotten_events as u64 + 1 + 1 + 2);

    // (a) gone in SQL, (b) everyone else still there, the concurrent appends included.
    assert_eq!(visible(&lake).await, 0);
    let (e, u, d, p) = others_before;
    assert_eq!(others(&lake).await, (e, u + appended, d, p));
    // The sink's bus position survived the expiry (a restart does not re-land events).
    let table = lake.load_table(&OdsTable::Event.ident()).await.unwrap();
    assert!(table_position(&table, EVENTS_TOPIC).unwrap().is_some());

    // (c) no file anywhere under the warehouse holds their ids.
    let after = findings(dir.path());
    assert!(
        after.is_empty(),
        "files still holding the users: {after:#?}"
    );

    // (e) again: nothing to do.
    let again = erase::forget(&lake, &privacy(), &ids()).await.unwrap();
    assert!(again.complete(), "{again:#?}");
    assert_eq!(again.rows_removed(), 0);
    for t in &again.tables {
        assert_eq!(
            (t.files_holding_rows, t.snapshots_expired, t.snapshot_id),
            (0, 0, None),
            "{t:#?}"
        );
    }
    assert_eq!(others(&lake).await, (e, u + appended, d, p));
}

#[tokio::test]
async fn forget_refuses_blank_ids_and_key_columns_of_other_types() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    assert!(erase::forget(&lake, &privacy(), &[]).await.is_err());
    assert!(erase::forget(&lake, &privacy(), &[" ".to_string()])
        .await
        .is_err());
    run(&lake, "CREATE NAMESPACE app").await;
    run(&lake, "CREATE TABLE app.t (user_id DOUBLE, x BIGINT)").await;
    run(&lake, "INSERT INTO app.t VALUES (1.0, 1)").await;
    let report = erase::forget(&lake, &privacy(), &ids()).await.unwrap();
    assert!(!report.complete());
    let t = table(&report, "app.t");
    assert!(
        t.error
            .as_deref()
            .unwrap_or("")
            .contains("strings or integers"),
        "{t:#?}"
    );
}

/// Every place under `dir`'s warehouse where a forgotten id still shows: raw bytes of any
/// file; every decoded cell of every Parquet file; every decoded value of every Avro file.
fn findings(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let root = config(dir).warehouse_dir();
    let mut stack = vec![root.clone()];
    assert!(root.is_dir(), "no warehouse at {}", root.display());
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let name = path.display().to_string();
            for id in [ALICE, BOB] {
                if contains(&bytes, id.as_bytes()) {
                    out.push(format!("{name}: raw bytes hold {id}"));
                }
            }
            if name.ends_with(".parquet") {
                out.extend(parquet_findings(&name, bytes.into()));
            } else if name.ends_with(".avro") {
                let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
                for value in reader {
                    if avro_holds(&value.unwrap()) {
                        out.push(format!("{name}: an Avro value holds a user id"));
                    }
                }
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn parquet_findings(name: &str, bytes: bytes::Bytes) -> Vec<String> {
    let mut out = Vec::new();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let hit = match column.data_type() {
                DataType::Int64 => column
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .iter()
                    .any(|v| v == Some(BOB_INT)),
                _ => match arrow::compute::cast(column, &DataType::Utf8) {
                    Ok(text) => text
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap()
                        .iter()
                        .flatten()
                        .any(|s| s.contains(ALICE) || s.contains(BOB)),
                    Err(_) => false,
                },
            };
            if hit {
                out.push(format!("{name}: column {} holds a user id", field.name()));
            }
        }
    }
    out
}

fn avro_holds(value: &apache_avro::types::Value) -> bool {
    use apache_avro::types::Value as V;
    let text = |s: &[u8]| contains(s, ALICE.as_bytes()) || contains(s, BOB.as_bytes());
    match value {
        V::String(s) => text(s.as_bytes()),
        V::Bytes(b) | V::Fixed(_, b) => text(b) || b.as_slice() == BOB_INT.to_le_bytes(),
        V::Long(n) => *n == BOB_INT,
        V::Union(_, v) => avro_holds(v),
        V::Array(items) => items.iter().any(avro_holds),
        V::Map(m) => m.values().any(avro_holds),
        V::Record(fields) => fields.iter().any(|(_, v)| avro_holds(v)),
        _ => false,
    }
}
