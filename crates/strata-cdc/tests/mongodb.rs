//! The MongoDB source against a real MongoDB (a replica set or sharded cluster: change
//! streams need an oplog) or Amazon DocumentDB named by `STRATA_TEST_MONGO_URI`, e.g.
//! `mongodb://127.0.0.1:27017/?replicaSet=rs0`.
//!
//! No MongoDB server installs on the machines these tests run on (every package downloads
//! `mongod` at run time; see `../shared/TEST-SERVERS.md`), so the server tests are SKIPPED,
//! with a printed reason, when `STRATA_TEST_MONGO_URI` is unset. BSON → column conversion
//! and change-event decoding are unit-tested on real BSON bytes in
//! `src/mongodb/tests.rs`, which always run. Each run works in its own database
//! (`strata_test_<pid>_<time>`), dropped at the end.
//!
//! The source runs in process on an embedded bus; the ODS merger then lands the topic in the
//! lake and the ODS rows are compared with the collection (`strata cdc verify`'s comparison).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::time::Duration;

use bson::{doc, Bson, DateTime, Document};
use strata_cdc::config::SourceConfig;
use strata_cdc::mongodb::decode::{fields, table_schema};
use strata_cdc::mongodb::ResumePoint;
use strata_cdc::state::Phase;
use strata_core::cdc::{Row, TableSchema, Value};

mod common;
use common::{by_id, SourceHarness, WAIT};

const COLL: &str = "orders";
const URI_ENV: &str = "STRATA_TEST_MONGO_URI";

/// The server's connection string, or None with the reason printed (the test is skipped).
fn server_uri() -> Option<String> {
    match std::env::var(URI_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            eprintln!(
                "SKIPPED: {URI_ENV} is not set (no MongoDB server installs here; point it at a \
                 replica set, e.g. mongodb://127.0.0.1:27017/?replicaSet=rs0, to run this test)"
            );
            None
        }
    }
}

/// Order `i`: every BSON type the source maps turns up somewhere.
fn order(i: i32) -> Document {
    doc! {
        "_id": i,
        "customer": { "id": format!("c{}", i % 7), "vip": i % 5 == 0 },
        "amount": { "total": f64::from(i) * 1.5 + 0.25 },
        "items": [ { "sku": format!("sku-{i}"), "qty": i64::from(i % 4) } ],
        "placed_at": DateTime::from_millis(1_796_083_200_000 + i64::from(i) * 1000),
        "note": if i % 3 == 0 { Bson::Null } else { Bson::String(format!("note ✓ {i}")) },
    }
}

/// The shared harness and the test's own database on the server.
struct Harness {
    source: SourceHarness<ResumePoint>,
    client: mongodb::Client,
    database: String,
}

impl std::ops::Deref for Harness {
    type Target = SourceHarness<ResumePoint>;
    fn deref(&self) -> &Self::Target {
        &self.source
    }
}

impl Harness {
    async fn new(uri: &str) -> Harness {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let database = format!("strata_test_{}_{nanos}", std::process::id());
        let text = format!(
            "name = \"shop\"\nkind = \"mongodb\"\nuri_env = \"{URI_ENV}\"\ndatabase = \"{database}\"\n\
             tables = [\"{COLL}\"]\nsnapshot_chunk_rows = 100\non_position_lost = \"resnapshot\"\n\
             [fields.{COLL}]\ntotal = {{ path = \"amount.total\", type = \"double\" }}\n\
             customer_id = {{ path = \"customer.id\", type = \"string\" }}\n\
             vip = {{ path = \"customer.vip\", type = \"bool\" }}\n\
             first_qty = {{ path = \"items.0.qty\", type = \"long\" }}\n\
             placed_at = {{ type = \"timestamp\" }}\n"
        );
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        Harness {
            source: SourceHarness::new(&text, COLL).await,
            client,
            database,
        }
    }

    fn coll(&self) -> mongodb::Collection<Document> {
        self.client.database(&self.database).collection(COLL)
    }

    fn schema(&self) -> TableSchema {
        let SourceConfig::Mongodb(m) = &self.config else {
            panic!("{:?}", self.config)
        };
        table_schema(&m.name, &m.database, COLL, &fields(m, COLL))
    }

    /// The ODS table equals the collection: every document once, every value equal.
    async fn assert_ods_equals_collection(&self) -> Vec<Row> {
        self.assert_ods_equals_source(&self.schema(), "ods_orders")
            .await
    }

    async fn drop_database(&self) {
        self.client.database(&self.database).drop().await.unwrap();
    }
}

/// Snapshot in `_id` chunks, then inserts, updates, replaces and deletes through the change
/// stream; a restart resumes from the saved token without writing anything twice; the ODS
/// table ends equal to the collection, latest document by `_id`, deletes applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_snapshot_then_change_stream_lands_latest_by_id_with_deletes() {
    let Some(uri) = server_uri() else { return };
    bounded(snapshot_then_stream(uri)).await;
}

/// Runs a server test with an overall bound: a server that stops answering fails the test.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(4 * WAIT, test)
        .await
        .expect("the test did not finish in time");
}

async fn snapshot_then_stream(uri: String) {
    let h = Harness::new(&uri).await;
    const N: i32 = 250;
    h.coll()
        .insert_many((0..N).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let running = h.start();
    h.wait_changes(N as u64).await;
    let state = h.state().unwrap();
    assert_eq!(state.tables[COLL].rows, N as u64);

    // Changes while streaming: 5 inserts, 3 updates, 1 replace, 2 deletes.
    h.coll()
        .insert_many((N..N + 5).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    for i in 0..3 {
        h.coll()
            .update_one(
                doc! { "_id": i },
                doc! { "$set": { "amount.total": 1000.0 + f64::from(i) } },
            )
            .await
            .unwrap();
    }
    h.coll()
        .replace_one(doc! { "_id": 10 }, doc! { "_id": 10, "replaced": true })
        .await
        .unwrap();
    h.coll()
        .delete_many(doc! { "_id": { "$in": [20, 21] } })
        .await
        .unwrap();
    h.wait_changes(N as u64 + 11).await;
    running.stop().await;
    let state = h.state().unwrap();
    assert_eq!(state.phase, Phase::Stream);
    assert!(state.resume.token.is_some(), "{}", state.resume);

    // A restart resumes from the token: one new insert is the only new change.
    let running = h.start();
    h.coll().insert_one(order(N + 100)).await.unwrap();
    h.wait_changes(N as u64 + 12).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.changes().await, N as u64 + 12, "a restart wrote again");
    running.stop().await;

    let ods = h.assert_ods_equals_collection().await;
    assert_eq!(ods.len(), N as usize + 5 + 1 - 2);
    let rows = by_id(&ods);
    let key = |i: i32| format!(r#"{{"$numberInt":"{i}"}}"#);
    assert!(!rows.contains_key(&key(20)) && !rows.contains_key(&key(21)));
    assert_eq!(rows[&key(1)]["total"], Value::Float("1001".into()));
    assert_eq!(rows[&key(5)]["vip"], Value::Int(1));
    assert_eq!(rows[&key(6)]["customer_id"], Value::Str("c6".into()));
    assert_eq!(rows[&key(7)]["first_qty"], Value::Int(3));
    assert_eq!(
        rows[&key(2)]["placed_at"],
        Value::Timestamp(1_796_083_202_000_000)
    );
    assert_eq!(rows[&key(10)]["total"], Value::Null);
    assert_eq!(
        rows[&key(10)]["doc"],
        Value::Json(r#"{"_id":10,"replaced":true}"#.into())
    );
    h.drop_database().await;
}

/// A collection dropped while streaming empties its ODS table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_dropped_collection_empties_its_table() {
    let Some(uri) = server_uri() else { return };
    bounded(dropped_collection(uri)).await;
}

async fn dropped_collection(uri: String) {
    let h = Harness::new(&uri).await;
    h.coll()
        .insert_many((0..20).map(order).collect::<Vec<_>>())
        .await
        .unwrap();
    let running = h.start();
    h.wait_changes(20).await;
    h.coll().drop().await.unwrap();
    h.coll().insert_one(order(99)).await.unwrap();
    h.wait_changes(21).await;
    running.stop().await;
    let ods = h.assert_ods_equals_collection().await;
    assert_eq!(ods.len(), 1);
    h.drop_database().await;
}

/// Needs no server: nothing listens on port 1, and the error names the host, not the
/// password, and is retried.
#[tokio::test]
async fn mongo_a_server_that_is_not_there_is_retried_and_named() {
    std::env::set_var(
        "STRATA_TEST_MONGO_NOWHERE",
        "mongodb://cdc:secret@127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
    );
    let config: SourceConfig = toml::from_str(
        "name = \"shop\"\nkind = \"mongodb\"\nuri_env = \"STRATA_TEST_MONGO_NOWHERE\"\ndatabase = \"shop\"\ntables = [\"orders\"]\n",
    )
    .unwrap();
    config.validate().unwrap();
    let SourceConfig::Mongodb(m) = &config else {
        panic!()
    };
    let err = match strata_cdc::mongodb::source::connect(m).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    assert!(err.retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}
