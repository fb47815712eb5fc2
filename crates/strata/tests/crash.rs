//! Crash safety: a client keeps sending while the server is SIGKILLed and restarted several
//! times. Afterwards every acknowledged event is in the lake exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[test]
fn sigkill_loses_and_duplicates_nothing() {
    sigkill_rounds(&Env::new());
}

/// The same with the Kafka bus: serve is SIGKILLed mid-load and restarted while the broker
/// keeps running; the lake's offsets (in its snapshots) and the collector's dedup (warmed from
/// the topic's tail) keep it exactly-once.
#[test]
fn sigkill_with_kafka_bus_loses_and_duplicates_nothing() {
    let Some(broker) = broker::Broker::start() else {
        return;
    };
    let env = Env::new();
    env.use_kafka(&broker.brokers());
    sigkill_rounds(&env);
    // Kafka, not the embedded log, carried the events.
    assert!(
        !env.data().join("bus").exists(),
        "the embedded bus was opened"
    );
}

/// The same with the lake on S3 (moto on loopback): kills land in the middle of Parquet
/// uploads and metadata writes to S3; what was not committed to the catalog is re-read from
/// the bus on restart, and files of an interrupted commit are orphans, never rows.
#[test]
fn sigkill_with_lake_on_s3_loses_and_duplicates_nothing() {
    let Some(s3) = s3server::S3Server::start() else {
        return;
    };
    s3.create_bucket("strata-crash");
    let env = Env::new();
    env.use_s3(&s3.endpoint(), "strata-crash", &[]);
    sigkill_rounds(&env);
    assert!(!env.data().join("lake").exists(), "a local lake dir exists");
    let keys = s3.keys("strata-crash", "lake/ods/ods_event/data/");
    assert!(keys.iter().any(|k| k.ends_with(".parquet")), "{keys:?}");
}

/// The lake on another Strata's REST catalog (`[catalog] kind = "rest"`): the sink commits
/// through `/iceberg` of a second `strata serve`, which owns the tables; SIGKILL of the writer
/// loses and duplicates nothing, and the catalog's owner sees exactly the same rows.
#[test]
fn sigkill_with_rest_catalog_loses_and_duplicates_nothing() {
    let owner = Env::new();
    let token = create_token(&owner.config, "writer");
    let catalog = owner.serve("100ms");
    let writer = Env::new();
    writer.use_rest_catalog(
        &format!("http://{}/iceberg", catalog.addr),
        &token,
        &owner.data().join("lake"),
    );
    sigkill_rounds(&writer);
    assert!(
        !writer.data().join("catalog.db").exists(),
        "the writer made a local catalog"
    );
    assert_eq!(
        owner.sql_count("SELECT count(*) FROM ods.ods_event"),
        writer.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event")
    );
    catalog.stop();
}

fn sigkill_rounds(env: &Env) {
    let mut server = env.serve("100ms");
    let addr: Arc<Mutex<SocketAddr>> = Arc::new(Mutex::new(server.addr));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));

    // The client: sends numbered batches; a batch that fails (connection refused/reset during
    // a crash, 503) is retried with the same message ids until acknowledged, as SDKs do.
    let client = {
        let addr = addr.clone();
        let acked = acked.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut b = 0;
            while !done.load(Ordering::SeqCst) {
                let body = batch(&format!("crash-{b}"), 40);
                loop {
                    let target = *addr.lock().unwrap_or_else(|e| e.into_inner());
                    match post(target, "/v1/batch", &[basic_auth(WRITE_KEY)], &body) {
                        Ok(r) if r.status == 200 => break,
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                let mut a = acked.lock().unwrap_or_else(|e| e.into_inner());
                for i in 0..40 {
                    a.insert(format!("crash-{b}-{i}"));
                }
                b += 1;
            }
            b
        })
    };

    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        // kill -9 while the client is sending, then restart on the same data directory.
        server.kill();
        server = env.serve("100ms");
        *addr.lock().unwrap_or_else(|e| e.into_inner()) = server.addr;
    }
    std::thread::sleep(Duration::from_millis(800));
    done.store(true, Ordering::SeqCst);
    let batches = client.join().expect("client thread");
    assert!(
        batches > 4,
        "the client made too little progress: {batches} batches"
    );
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();

    // Graceful stop of the last server: everything on the bus gets committed.
    server.stop();

    let rows = env.sql_count("SELECT count(*) FROM ods.ods_event");
    let distinct = env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event");
    assert_eq!(rows, distinct, "duplicates in the lake");
    let ids: HashSet<String> = env
        .sql("SELECT message_id FROM ods.ods_event")
        .into_iter()
        .filter_map(|r| r["message_id"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<_> = acked.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Every row is an event the client sent (it retried each batch until acknowledged).
    assert_eq!(rows as usize, acked.len());
}
