//! A full disk on a real (small) file system: appends fail with `StorageFull` and are not
//! acknowledged, `health` says so, and once space is freed the log takes appends again by
//! itself — every acknowledged record exactly once, nothing of a failed append left behind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod smallfs;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Error, Health, Log, Record};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 4;

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 128 << 10,
        group_commit_window: Duration::from_millis(1),
        ..EmbeddedOptions::default()
    }
}

/// What the producers saw: values acknowledged (with their position) and values that landed
/// as part of a partial append.
#[derive(Default)]
struct Seen {
    acked: HashMap<String, (u32, u64)>,
    landed_unacked: HashSet<String>,
    full_errors: usize,
}

/// Appends batches of 8 records until `stop`; a failed batch is retried (new values for the
/// records that did not land) after a short pause, as a client would.
async fn produce(log: Arc<EmbeddedLog>, id: usize, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let values: Vec<String> = (0..8).map(|i| format!("p{id}-b{n}-r{i}")).collect();
        n += 1;
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record {
                key: Bytes::from(v.clone()),
                value: Bytes::from(v.clone().into_bytes().repeat(20)),
                timestamp_ms: 0,
            })
            .collect();
        let result = log.append(TOPIC, records).await;
        {
            let mut s = seen.lock().unwrap();
            match result {
                Ok(positions) => {
                    for (v, p) in values.into_iter().zip(positions) {
                        s.acked.insert(v, (p.partition, p.offset));
                    }
                }
                Err(e) => {
                    assert!(e.is_storage_full(), "unexpected error: {e}");
                    s.full_errors += 1;
                    if let Error::Partial { appended, .. } = &e {
                        for &i in appended {
                            s.landed_unacked.insert(values[i].clone());
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_left_by_itself_once_space_returns() {
    let Some(fs) = smallfs::SmallFs::mount(8 << 20) else {
        return;
    };
    let dir = fs.path().join("bus");
    let log = EmbeddedLog::open(&dir, options()).await.unwrap();
    log.ensure_topic(TOPIC, PARTITIONS).await.unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..4)
        .map(|id| tokio::spawn(produce(log.clone(), id, seen.clone(), stop.clone())))
        .collect();

    // Let some land, then take the rest of the disk away under load.
    while seen.lock().unwrap().acked.len() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fs.fill();
    let mut waited = 0;
    while seen.lock().unwrap().full_errors < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(waited < 3000, "no append failed on the full disk");
    }
    assert_eq!(log.health(), Health::StorageFull);
    let acked_while_full = seen.lock().unwrap().acked.len();

    // Space returns: ready again at once, and appends are acknowledged again.
    fs.free();
    assert_eq!(log.health(), Health::Ready);
    let mut waited = 0;
    while seen.lock().unwrap().acked.len() < acked_while_full + 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(
            waited < 3000,
            "appends did not recover after space was freed"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    assert_eq!(log.health(), Health::Ready);
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    check(&log, &seen).await;
    log.close().await.unwrap();
    drop(log);

    // The same after reopening: what is on disk is what was acknowledged.
    let log = EmbeddedLog::open(&dir, options()).await.unwrap();
    check(&log, &seen).await;
    log.close().await.unwrap();
}

/// Offsets contiguous; every acknowledged value at its position once; nothing else stored but
/// what a partial append reported as landed.
async fn check(log: &EmbeddedLog, seen: &Seen) {
    let ends = log.end_offsets(TOPIC).await.unwrap();
    let mut stored: HashMap<String, (u32, u64)> = HashMap::new();
    for p in 0..PARTITIONS {
        let mut from = 0;
        while from < ends[&p] {
            let batch = log.read(TOPIC, p, from, 1000, 1 << 20).await.unwrap();
            assert!(!batch.is_empty());
            for r in batch {
                assert_eq!(r.offset, from, "offsets contiguous");
                let key = String::from_utf8_lossy(&r.key).into_owned();
                assert!(
                    stored.insert(key.clone(), (p, r.offset)).is_none(),
                    "{key} stored twice"
                );
                from += 1;
            }
        }
    }
    for (v, pos) in &seen.acked {
        assert_eq!(stored.get(v), Some(pos), "acknowledged {v} lost or moved");
    }
    for v in stored.keys() {
        assert!(
            seen.acked.contains_key(v) || seen.landed_unacked.contains(v),
            "{v} is stored but its append failed"
        );
    }
}
