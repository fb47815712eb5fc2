//! Issue #29: an SDK retry that the load balancer sends to another collector than the first
//! attempt lands once. Two `strata serve --roles collector` processes and one `--roles sink`
//! process over a real Kafka broker (tansu), each with its own data dir as on separate
//! machines, all on 127.0.0.1. Each collector's messageId window is its own, so the bus holds
//! both copies; the lake sink, the one writer, drops the second (ADR 0048).

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
use common::*;
use strata_bus::Log;
use strata_bus_kafka::{KafkaLog, KafkaOptions};
use strata_core::BusRecordView;

/// Events (accepted ones, copies included) on the `events` topic, read with our own client.
fn events_on_topic(brokers: &str) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let log = KafkaLog::open(KafkaOptions {
            brokers: brokers.to_string(),
            ..KafkaOptions::default()
        })
        .await
        .expect("open kafka");
        let mut n = 0;
        for (p, end) in log.end_offsets("events").await.expect("end offsets") {
            let mut from = 0;
            while from < end {
                let batch = log
                    .read("events", p, from, 10_000, 8 << 20)
                    .await
                    .expect("read");
                let Some(last) = batch.last() else { break };
                from = last.offset + 1;
                n += batch
                    .iter()
                    .filter(|r| {
                        matches!(BusRecordView::decode(&r.value), Ok(BusRecordView::Event(_)))
                    })
                    .count();
            }
        }
        log.close().await.expect("close");
        n
    })
}

/// The value of an unlabelled counter in a Prometheus text page (0 when absent).
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

fn send(server: &Server, prefix: &str, n: usize) -> serde_json::Value {
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch(prefix, n),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()
}

#[test]
fn sdk_retry_through_another_collector_lands_once() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let writer_env = Env::new();
    writer_env.use_kafka(&broker.brokers());
    let writer = writer_env.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"sink\"]")]);
    let collector_envs = [Env::new(), Env::new()];
    let collectors: Vec<Server> = collector_envs
        .iter()
        .map(|e| {
            e.use_kafka(&broker.brokers());
            e.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"collector\"]")])
        })
        .collect();
    let (a, b) = (&collectors[0], &collectors[1]);
    let third_env = Env::new();
    third_env.use_kafka(&broker.brokers());
    let third = third_env.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"collector\"]")]);

    // A batch of 250 through collector A; the SDK's retry (same messageIds) through B.
    let first = send(a, "retried", 250);
    assert_eq!(first["accepted"], 250, "{first}");
    send(b, "retried", 250);
    // 750 more distinct events, through either collector.
    for i in 0..15 {
        let via = if i % 2 == 0 { a } else { b };
        let res = send(via, &format!("more-{i}"), 50);
        assert_eq!(res["accepted"], 50, "{res}");
    }
    let mut expected: HashSet<String> = (0..250).map(|i| format!("retried-{i}")).collect();
    expected.extend((0..15).flat_map(|b| (0..50).map(move |i| format!("more-{b}-{i}"))));
    assert_eq!(expected.len(), 1000);

    // The collectors do not share their windows: the bus holds both copies of the batch.
    assert_eq!(events_on_topic(&broker.brokers()), 1250);

    writer_env.wait_count(
        "SELECT count(DISTINCT message_id) FROM ods.ods_event",
        1000,
        Duration::from_secs(90),
    );
    let metrics = get(writer.addr, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    for server in collectors {
        server.stop();
    }
    // A graceful stop drains the bus to its end and commits: whatever was still to land has.
    writer.stop();
    assert_eq!(
        writer_env.sql_count("SELECT count(*) FROM ods.ods_event"),
        1000
    );
    let ids: HashSet<String> = writer_env
        .sql("SELECT message_id FROM ods.ods_event")
        .into_iter()
        .filter_map(|r| r["message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, expected);
    // Counted as it dropped them (the page was read once all 1,000 had landed, so every copy
    // was behind it).
    assert_eq!(
        counter(&metrics.body, "strata_lake_duplicates_dropped_total"),
        250.0,
        "{}",
        metrics.body
    );

    // The sink restarted: a third copy, through a third collector that was started before
    // any of this reached the bus (so its own window does not know the ids), is still dropped.
    let writer = writer_env.serve_with_env("200ms", &[("STRATA_SERVER__ROLES", "[\"sink\"]")]);
    let res = send(&third, "retried", 250);
    assert_eq!(res["accepted"], 250, "{res}");
    let res = send(&third, "after-restart", 10);
    assert_eq!(res["accepted"], 10, "{res}");
    assert_eq!(events_on_topic(&broker.brokers()), 1510);
    writer_env.wait_count(
        "SELECT count(DISTINCT message_id) FROM ods.ods_event",
        1010,
        Duration::from_secs(90),
    );
    third.stop();
    writer.stop();
    assert_eq!(
        writer_env.sql_count("SELECT count(*) FROM ods.ods_event"),
        1010
    );
}
