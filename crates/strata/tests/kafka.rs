//! The Kafka bus end to end on the real binary: HTTP → collector → Kafka (a real tansu
//! broker) → lake sink → `strata sql`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::broker::Broker;
use common::s3server::S3Server;
use common::*;
use strata_bus::Log;
use strata_bus_kafka::{KafkaLog, KafkaOptions};
use strata_core::BusRecordView;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Message ids of accepted events on the `events` topic, read with our own Kafka client.
fn topic_message_ids(brokers: &str) -> Vec<String> {
    rt().block_on(async {
        let log = KafkaLog::open(KafkaOptions {
            brokers: brokers.to_string(),
            ..KafkaOptions::default()
        })
        .await
        .expect("open kafka");
        let mut ids = Vec::new();
        let ends = log.end_offsets("events").await.expect("end offsets");
        for (p, end) in ends {
            let mut from = 0;
            while from < end {
                let batch = log
                    .read("events", p, from, 10_000, 8 << 20)
                    .await
                    .expect("read");
                let Some(last) = batch.last() else { break };
                from = last.offset + 1;
                for r in batch {
                    let record = BusRecordView::decode(&r.value).expect("a bus record");
                    if let BusRecordView::Event(e) = record {
                        ids.push(e.message_id.into_owned());
                    }
                }
            }
        }
        log.close().await.expect("close");
        ids
    })
}

#[test]
fn kafka_bus_end_to_end_exactly_once() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let env = Env::new();
    env.use_kafka(&broker.brokers());
    let check = std::process::Command::new(strata_bin())
        .args(["check", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let server = env.serve("200ms");
    let mut sent = HashSet::new();
    for b in 0..12 {
        let body = batch(&format!("kafka-{b}"), 50);
        let res = post(server.addr, "/v1/batch", &[basic_auth(WRITE_KEY)], &body).unwrap();
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(res.json()["accepted"], 50, "{}", res.body);
        sent.extend((0..50).map(|i| format!("kafka-{b}-{i}")));
    }
    // An SDK retry of an acknowledged batch: deduplicated by the collector.
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("kafka-3", 50),
    )
    .unwrap();
    assert_eq!(res.status, 200);

    let acked = sent.len() as i64;
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked,
        Duration::from_secs(90),
    );
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        acked
    );
    // Rows are the events sent, enriched on the way.
    let ids: HashSet<String> = env
        .sql("SELECT message_id FROM ods.ods_event")
        .into_iter()
        .filter_map(|r| r["message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, sent);
    assert_eq!(
        env.sql_count(
            "SELECT count(*) FROM ods.ods_event WHERE ip = '127.0.0.1' AND os = 'iPhone'"
        ),
        acked
    );
    // The lake's position is in its snapshot: the offsets it covers add up to the topic.
    let on_topic = topic_message_ids(&broker.brokers());
    assert_eq!(on_topic.len() as i64, acked, "events on the Kafka topic");
    assert_eq!(on_topic.into_iter().collect::<HashSet<_>>(), sent);

    server.stop();
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), acked);
    assert!(
        !env.data().join("bus").exists(),
        "the embedded bus was opened"
    );

    // A restart resumes from the snapshot's offsets: nothing is appended twice.
    let server = env.serve("200ms");
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("after", 10),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        acked + 10,
        Duration::from_secs(90),
    );
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(DISTINCT message_id) FROM ods.ods_event"),
        acked + 10
    );
}

#[test]
fn kafka_bus_unreachable_at_start_fails_clearly() {
    let env = Env::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    env.use_kafka(&format!("127.0.0.1:{port}"));
    let out = std::process::Command::new(strata_bin())
        .args(["serve", "-c"])
        .arg(&env.config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("strata serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Kafka"), "{err}");
}

/// Broker gone: the collector answers 503 with Retry-After (bounded by
/// `bus.delivery_timeout`, nothing buffered without bound), and what was committed before is
/// still there once.
#[test]
fn kafka_broker_down_answers_503() {
    let Some(broker) = Broker::start() else {
        return;
    };
    broker_down(broker, None);
}

/// Broker killed and restarted with its data (tansu's S3 storage on moto, as a real broker
/// keeps its log on disk): the collector answers 503 while it is away, then 200 again by
/// itself, and the lake sink resumes — every acknowledged event lands exactly once.
///
/// A broker that comes back *empty* (tansu's memory storage) re-creates the topic with a new
/// topic id, and librdkafka 2.12.1's metadata cache can then crash the process (SIGSEGV in
/// `rd_kafka_metadata_cache_find`; upstream confluentinc/librdkafka#4964, #5280): that case is
/// documented in docs/scale-out.md, not tested.
#[test]
fn kafka_broker_restart_recovers_by_itself() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket("tansu");
    let Some(broker) = Broker::start_on_s3(&s3.endpoint(), "tansu") else {
        return;
    };
    broker_down(broker, Some(&s3));
}

fn broker_down(mut broker: Broker, durable: Option<&S3Server>) {
    let env = Env::new();
    env.use_kafka(&broker.brokers());
    let server = env.serve_with_env("200ms", &[("STRATA_BUS__DELIVERY_TIMEOUT", "2s")]);
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("up", 20),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        20,
        Duration::from_secs(60),
    );

    broker.kill();
    let started = std::time::Instant::now();
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("down", 20),
    )
    .unwrap();
    assert_eq!(res.status, 503, "{}", res.body);
    assert!(res.header("Retry-After").is_some(), "{:?}", res.headers);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let Some(_s3) = durable else {
        server.stop();
        assert_eq!(
            env.sql_count("SELECT count(*) FROM ods.ods_event WHERE message_id LIKE 'up-%'"),
            20
        );
        return;
    };
    broker.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The SDK's retry: the same batch again.
        let res = post(
            server.addr,
            "/v1/batch",
            &[basic_auth(WRITE_KEY)],
            &batch("down", 20),
        )
        .unwrap();
        if res.status == 200 {
            assert_eq!(res.json()["accepted"], 20, "{}", res.body);
            break;
        }
        assert_eq!(res.status, 503, "{}", res.body);
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {}",
            res.body
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // And the sink resumed by itself: the retried batch reaches the lake, nothing twice.
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        40,
        Duration::from_secs(60),
    );
    server.stop();
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.ods_event WHERE message_id LIKE 'up-%'"),
        20
    );
    assert_eq!(
        env.sql_count(
            "SELECT count(DISTINCT message_id) FROM ods.ods_event WHERE message_id LIKE 'down-%'"
        ),
        20
    );
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 40);
}

/// SIGTERM drains the topic to its end offsets before stopping: with a flush interval far
/// longer than the test, only that drain can put the rows in the lake.
#[test]
fn kafka_graceful_shutdown_flushes_buffered_events() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let env = Env::new();
    env.use_kafka(&broker.brokers());
    let server = env.serve("1h");
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("term", 30),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 0);
    server.stop();
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 30);
}

/// Scale-out: two collector-only processes and one sink-only process (each with its own data
/// dir, as on separate machines) over one Kafka cluster, the lake on S3 (moto). Every event
/// acknowledged by either collector lands in the lake exactly once, and the collectors never
/// open a lake.
#[test]
fn two_collectors_and_one_writer_exactly_once() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket("scale-out");
    let writer_env = Env::new();
    writer_env.use_kafka(&broker.brokers());
    writer_env.use_s3(&s3.endpoint(), "scale-out", &[]);
    let writer = writer_env.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"sink\"]")]);
    // A sink-only process serves no collector API.
    let res = post(
        writer.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("nowhere", 1),
    )
    .unwrap();
    assert_eq!(res.status, 404, "{}", res.body);

    let collector_envs = [Env::new(), Env::new()];
    let collectors: Vec<Server> = collector_envs
        .iter()
        .map(|e| {
            e.use_kafka(&broker.brokers());
            e.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"collector\"]")])
        })
        .collect();

    let sent: Vec<HashSet<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = collectors
            .iter()
            .enumerate()
            .map(|(c, server)| {
                s.spawn(move || {
                    let mut sent = HashSet::new();
                    for b in 0..10 {
                        let prefix = format!("c{c}-{b}");
                        let res = post(
                            server.addr,
                            "/v1/batch",
                            &[basic_auth(WRITE_KEY)],
                            &batch(&prefix, 40),
                        )
                        .unwrap();
                        assert_eq!(res.status, 200, "collector {c}: {}", res.body);
                        assert_eq!(res.json()["accepted"], 40, "{}", res.body);
                        sent.extend((0..40).map(|i| format!("{prefix}-{i}")));
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: HashSet<String> = sent.iter().flatten().cloned().collect();
    assert_eq!(all.len(), 800);

    writer_env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        all.len() as i64,
        Duration::from_secs(90),
    );
    let ids: HashSet<String> = writer_env
        .sql("SELECT message_id FROM ods.ods_event")
        .into_iter()
        .filter_map(|r| r["message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, all);
    assert!(
        s3.keys("scale-out", "lake/ods/ods_event/")
            .iter()
            .any(|k| k.ends_with(".parquet")),
        "the writer's table files are on S3"
    );
    for server in collectors {
        server.stop();
    }
    writer.stop();
    // Stopped cleanly, the writer committed nothing twice.
    assert_eq!(
        writer_env.sql_count("SELECT count(*) FROM ods.ods_event"),
        all.len() as i64
    );
    for e in &collector_envs {
        #[derive(serde::Deserialize)]
        struct LakeSection {
            #[serde(default)]
            lake: strata_table::config::LakeConfig,
        }
        let text = std::fs::read_to_string(&e.config).expect("config");
        let parsed: LakeSection = toml::from_str(&text).expect("config");
        let mut config = strata_table::config::LakeOptions::new(e.data());
        config.lake = parsed.lake;
        assert!(
            !config.catalog_path().exists() && !config.warehouse_dir().exists(),
            "a collector-only process opened a lake"
        );
    }
}
