//! The `Log` contract of the Kafka backend, against a real tansu broker on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod broker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::Broker;
use bytes::Bytes;
use strata_bus::{partition_for, Error, Log, Offsets, Record};
use strata_bus_kafka::{KafkaLog, KafkaOptions};

fn options(broker: &Broker) -> KafkaOptions {
    KafkaOptions {
        brokers: broker.brokers(),
        client_id: "strata-test".into(),
        request_timeout: Duration::from_secs(5),
        ..KafkaOptions::default()
    }
}

async fn open(broker: &Broker) -> Arc<KafkaLog> {
    KafkaLog::open(options(broker))
        .await
        .expect("open kafka log")
}

fn record(key: &str, value: String, ts: i64) -> Record {
    Record {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value),
        timestamp_ms: ts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_and_offsets() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let log = open(&broker).await;

    // Unknown topics are not created by asking about them.
    assert!(matches!(
        log.partitions("nope").await,
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        log.partitions("nope").await,
        Err(Error::UnknownTopic(_))
    ));

    log.ensure_topic("t", 3).await.unwrap();
    // Idempotent, and an existing topic keeps its partition count.
    log.ensure_topic("t", 7).await.unwrap();
    assert_eq!(log.partitions("t").await.unwrap(), 3);

    // Several appends (separate produce batches), some concurrent.
    let mut sent: Vec<(String, String, i64)> = Vec::new();
    let mut handles = Vec::new();
    for b in 0..6 {
        let batch: Vec<(String, String, i64)> = (0..20)
            .map(|i| {
                (
                    format!("user-{}", (b * 20 + i) % 11),
                    format!("value-{b}-{i}"),
                    1_700_000_000_000 + (b * 20 + i) as i64,
                )
            })
            .collect();
        sent.extend(batch.iter().cloned());
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let records = batch
                .iter()
                .map(|(k, v, t)| record(k, v.clone(), *t))
                .collect::<Vec<_>>();
            let positions = log.append("t", records).await.unwrap();
            (batch, positions)
        }));
    }
    let mut by_partition: BTreeMap<u32, Vec<(u64, String, String, i64)>> = BTreeMap::new();
    for h in handles {
        let (batch, positions) = h.await.unwrap();
        assert_eq!(batch.len(), positions.len());
        for ((k, v, t), pos) in batch.into_iter().zip(positions) {
            // Keyed partitioning is the embedded bus's.
            assert_eq!(pos.partition, partition_for(k.as_bytes(), 3), "{k}");
            by_partition
                .entry(pos.partition)
                .or_default()
                .push((pos.offset, k, v, t));
        }
    }
    assert_eq!(
        by_partition.values().map(Vec::len).sum::<usize>(),
        sent.len()
    );

    let ends = log.end_offsets("t").await.unwrap();
    let starts = log.start_offsets("t").await.unwrap();
    for p in 0..3u32 {
        let mut mine = by_partition.remove(&p).unwrap_or_default();
        mine.sort();
        // Offsets are dense from 0: exactly what was acknowledged, nothing else.
        let offsets: Vec<u64> = mine.iter().map(|m| m.0).collect();
        assert_eq!(
            offsets,
            (0..mine.len() as u64).collect::<Vec<_>>(),
            "partition {p}"
        );
        assert_eq!(ends[&p], mine.len() as u64, "end of partition {p}");
        assert_eq!(starts[&p], 0);

        let read = log.read("t", p, 0, 10_000, 1 << 20).await.unwrap();
        let got: Vec<(u64, String, String, i64)> = read
            .iter()
            .map(|r| {
                assert_eq!(r.partition, p);
                (
                    r.offset,
                    String::from_utf8_lossy(&r.key).into_owned(),
                    String::from_utf8_lossy(&r.value).into_owned(),
                    r.timestamp_ms,
                )
            })
            .collect();
        assert_eq!(got, mine, "partition {p} read back");

        // From the middle, bounded by max_records.
        if mine.len() > 4 {
            let part = log.read("t", p, 2, 2, 1 << 20).await.unwrap();
            let offsets: Vec<u64> = part.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![2, 3]);
            // Then the next read continues where that one stopped.
            let next = log.read("t", p, 4, 1, 1 << 20).await.unwrap();
            assert_eq!(next.first().map(|r| r.offset), Some(4));
        }
        // At the end: empty, and without waiting long.
        let t = Instant::now();
        assert!(log
            .read("t", p, mine.len() as u64, 100, 1 << 20)
            .await
            .unwrap()
            .is_empty());
        assert!(log
            .read("t", p, mine.len() as u64, 100, 1 << 20)
            .await
            .unwrap()
            .is_empty());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
    assert!(matches!(
        log.read("t", 3, 0, 10, 1 << 20).await,
        Err(Error::UnknownPartition { partition: 3, .. })
    ));
    assert!(matches!(
        log.append("nope", vec![record("k", "v".into(), 0)]).await,
        Err(Error::UnknownTopic(_))
    ));
    log.close().await.unwrap();
    assert!(matches!(
        log.append("t", vec![record("k", "v".into(), 0)]).await,
        Err(Error::Closed)
    ));
}

/// tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1: the backend
/// must still report the true end after multi-record batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_offsets_are_exact_after_multi_record_batches() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let log = open(&broker).await;
    log.ensure_topic("one", 1).await.unwrap();
    let mut total = 0u64;
    for n in [7usize, 1, 13, 5] {
        let records = (0..n).map(|i| record("", format!("r{i}"), 1)).collect();
        let positions = log.append("one", records).await.unwrap();
        assert_eq!(positions.first().map(|p| p.offset), Some(total));
        total += n as u64;
        assert_eq!(log.end_offsets("one").await.unwrap()[&0], total);
    }
    // Another process's view (fresh clients) agrees.
    let other = open(&broker).await;
    assert_eq!(other.end_offsets("one").await.unwrap()[&0], total);
    assert_eq!(
        other.read("one", 0, 0, 1000, 1 << 20).await.unwrap().len() as u64,
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_wakes_on_append_and_times_out_otherwise() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let log = open(&broker).await;
    log.ensure_topic("w", 2).await.unwrap();

    // Nothing there: returns after the timeout, without error.
    let t = Instant::now();
    log.wait_for("w", 0, 0, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Empty key: partition 0.
            log.append("w", vec![record("", "late".into(), 5)])
                .await
                .unwrap()
        })
    };
    let t = Instant::now();
    log.wait_for("w", 0, 0, Duration::from_secs(20))
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "wait_for did not wake: {waited:?}"
    );
    let pos = writer.await.unwrap();
    assert_eq!(pos[0].partition, 0);
    let read = log.read("w", 0, 0, 10, 1 << 20).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(&read[0].value[..], b"late");
    // Past the end again: waits the timeout.
    let t = Instant::now();
    log.wait_for("w", 0, 1, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250));
    // A record at or after the offset exists: immediate.
    let t = Instant::now();
    log.wait_for("w", 0, 0, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_commit_and_read_back() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let log = open(&broker).await;
    log.ensure_topic("g", 3).await.unwrap();
    assert!(log.committed("lake", "g").await.unwrap().is_empty());

    let first: Offsets = [(0, 5), (2, 1)].into_iter().collect();
    log.commit("lake", "g", &first).await.unwrap();
    assert_eq!(log.committed("lake", "g").await.unwrap(), first);

    let second: Offsets = [(0, 9), (1, 3), (2, 1)].into_iter().collect();
    log.commit("lake", "g", &second).await.unwrap();
    assert_eq!(log.committed("lake", "g").await.unwrap(), second);
    // Groups are separate.
    assert!(log.committed("ods", "g").await.unwrap().is_empty());
    // Stored by the brokers: fresh clients see them.
    let other = open(&broker).await;
    assert_eq!(other.committed("lake", "g").await.unwrap(), second);

    let bad: Offsets = [(3, 1)].into_iter().collect();
    assert!(matches!(
        log.commit("lake", "g", &bad).await,
        Err(Error::UnknownPartition { partition: 3, .. })
    ));
}

/// Broker gone: appends fail fast with `Overloaded` (never an unbounded queue), and once a
/// broker is back the same log works again. tansu keeps data in memory only, so the broker
/// that comes back is a fresh, empty one on the same port: this tests the client's recovery,
/// not the broker's durability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_overloaded_then_recovers() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let log = KafkaLog::open(KafkaOptions {
        delivery_timeout: Duration::from_secs(2),
        max_pending_records: 50,
        ..options(&broker)
    })
    .await
    .unwrap();
    log.ensure_topic("d", 1).await.unwrap();
    log.append("d", vec![record("", "before".into(), 1)])
        .await
        .unwrap();

    broker.kill();
    // More records than the queue holds: refused at once.
    let t = Instant::now();
    let many = (0..80).map(|i| record("", format!("x{i}"), 1)).collect();
    match log.append("d", many).await {
        Err(Error::Overloaded(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    // A few records: queued, then failed at the delivery timeout, not held forever.
    match log.append("d", vec![record("", "during".into(), 1)]).await {
        Err(e @ Error::Overloaded(_)) => assert!(e.retryable()),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

    broker.restart();
    // The fresh broker has no topics; what a restarted collector does: ensure, then append,
    // retrying (bounded) while the client reconnects.
    let deadline = Instant::now() + Duration::from_secs(60);
    let position = loop {
        let attempt = async {
            log.ensure_topic("d", 1).await?;
            log.append("d", vec![record("", "after".into(), 1)]).await
        };
        match attempt.await {
            Ok(p) => break p,
            Err(e) => {
                eprintln!("attempt failed: {e}");
                if Instant::now() >= deadline {
                    panic!("no recovery: {e}\n{}", broker.log());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert_eq!(position.len(), 1);
    let read = log
        .read("d", 0, position[0].offset, 10, 1 << 20)
        .await
        .unwrap();
    assert_eq!(read.first().map(|r| &r.value[..]), Some(&b"after"[..]));
}
