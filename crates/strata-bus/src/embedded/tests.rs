//! Tests of the embedded log on real files in temporary directories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::{EmbeddedLog, EmbeddedOptions};
use crate::error::Error;
use crate::log::{Log, Offsets, Record, StoredRecord};

fn rec(key: &str, value: &str, ts: i64) -> Record {
    Record {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        timestamp_ms: ts,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn small() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 1024,
        group_commit_window: Duration::from_millis(1),
        ..EmbeddedOptions::default()
    }
}

async fn read_all(log: &EmbeddedLog, topic: &str, partition: u32) -> Vec<StoredRecord> {
    let start = log.start_offsets(topic).await.unwrap()[&partition];
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let batch = log.read(topic, partition, from, 7, 1 << 20).await.unwrap();
        let Some(last) = batch.last() else { break };
        from = last.offset + 1;
        out.extend(batch);
    }
    out
}

fn partition_dir(dir: &Path, topic: &str, p: u32) -> PathBuf {
    dir.join("topics").join(topic).join(p.to_string())
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn round_trip_across_partitions_and_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    log.ensure_topic("events", 4).await.unwrap();
    assert_eq!(log.partitions("events").await.unwrap(), 4);
    let records: Vec<Record> = (0..300)
        .map(|i| rec(&format!("user-{}", i % 17), &format!("value-{i}"), 1000 + i))
        .collect();
    // Several appends: a single batch always lands in one segment.
    let mut positions = Vec::new();
    for chunk in records.chunks(10) {
        positions.extend(log.append("events", chunk.to_vec()).await.unwrap());
    }
    assert_eq!(positions.len(), records.len());
    for (r, pos) in records.iter().zip(&positions) {
        assert_eq!(pos.partition, crate::partition_for(&r.key, 4));
        let got = log
            .read("events", pos.partition, pos.offset, 1, 1 << 20)
            .await
            .unwrap();
        assert_eq!(got[0].value, r.value);
        assert_eq!(got[0].key, r.key);
        assert_eq!(got[0].timestamp_ms, r.timestamp_ms);
    }
    let ends = log.end_offsets("events").await.unwrap();
    let mut total = 0;
    for p in 0..4 {
        let all = read_all(&log, "events", p).await;
        assert_eq!(all.len() as u64, ends[&p]);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
        }
        total += all.len();
    }
    assert_eq!(total, 300);
    assert!(segment_files(&partition_dir(dir.path(), "events", 0)).len() > 2);
    // Reading past the end is empty at the end, out of range beyond it.
    assert!(log
        .read("events", 0, ends[&0], 10, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        log.read("events", 0, ends[&0] + 1, 10, 100).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.append("nope", vec![rec("a", "b", 0)]).await,
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        log.read("events", 9, 0, 1, 1).await,
        Err(Error::UnknownPartition { .. })
    ));
}

#[tokio::test]
async fn read_respects_max_bytes_but_returns_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    let big = "x".repeat(1000);
    log.append("t", (0..10).map(|_| rec("", &big, 0)).collect())
        .await
        .unwrap();
    assert_eq!(log.read("t", 0, 0, 100, 10).await.unwrap().len(), 1);
    assert_eq!(log.read("t", 0, 0, 100, 3000).await.unwrap().len(), 3);
    assert_eq!(log.read("t", 0, 8, 100, 1 << 20).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appenders_all_acknowledged_and_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 64 << 10,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), opts).await.unwrap();
    log.ensure_topic("events", 3).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..50 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..10 {
                let batch: Vec<Record> = (0..20)
                    .map(|i| rec(&format!("k{t}-{i}"), &format!("{t}/{b}/{i}"), 0))
                    .collect();
                let pos = log.append("events", batch.clone()).await.unwrap();
                acked.extend(batch.into_iter().zip(pos));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 50 * 10 * 20);
    let mut stored = std::collections::HashMap::new();
    let ends = log.end_offsets("events").await.unwrap();
    for p in 0..3 {
        let all = read_all(&log, "events", p).await;
        assert_eq!(all.len() as u64, ends[&p]);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "offsets contiguous");
            stored.insert((p, r.offset), r.value.clone());
        }
    }
    assert_eq!(stored.len(), acked.len(), "no duplicates, nothing missing");
    for (r, pos) in acked {
        assert_eq!(stored[&(pos.partition, pos.offset)], r.value);
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    log.ensure_topic("a", 2).await.unwrap();
    log.ensure_topic("b.c-d_e", 1).await.unwrap();
    for i in 0..50 {
        log.append("a", vec![rec(&format!("k{i}"), &format!("v{i}"), i)])
            .await
            .unwrap();
    }
    log.append("b.c-d_e", vec![rec("", "only", 5)])
        .await
        .unwrap();
    let before_a0 = read_all(&log, "a", 0).await;
    let before_a1 = read_all(&log, "a", 1).await;
    drop(log);
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    // An existing topic keeps its partition count.
    log.ensure_topic("a", 8).await.unwrap();
    assert_eq!(log.partitions("a").await.unwrap(), 2);
    assert_eq!(read_all(&log, "a", 0).await, before_a0);
    assert_eq!(read_all(&log, "a", 1).await, before_a1);
    assert_eq!(read_all(&log, "b.c-d_e", 0).await[0].value, "only");
    let pos = log.append("a", vec![rec("k1", "after", 0)]).await.unwrap();
    let p = pos[0].partition;
    let expected = if p == 0 {
        before_a0.len()
    } else {
        before_a1.len()
    };
    assert_eq!(pos[0].offset, expected as u64);
    // Index files of closed segments are used on reopen; deleting them forces a rebuild.
    log.close().await.unwrap();
    drop(log);
    for f in std::fs::read_dir(partition_dir(dir.path(), "a", 0)).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(f).unwrap();
        }
    }
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    assert_eq!(
        read_all(&log, "a", 0).await.len(),
        before_a0.len() + usize::from(p == 0)
    );
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions::default;
    let log = EmbeddedLog::open(dir.path(), opts()).await.unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    for i in 0..10 {
        log.append("t", vec![rec("", &format!("v{i}"), i)])
            .await
            .unwrap();
    }
    drop(log);
    let seg = segment_files(&partition_dir(dir.path(), "t", 0))
        .pop()
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last record in half.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let log = EmbeddedLog::open(dir.path(), opts()).await.unwrap();
    assert_eq!(log.end_offsets("t").await.unwrap()[&0], 9);
    let all = read_all(&log, "t", 0).await;
    assert_eq!(all.len(), 9);
    assert_eq!(all[8].value, "v8");
    let pos = log.append("t", vec![rec("", "again", 0)]).await.unwrap();
    assert_eq!(pos[0].offset, 9);
    drop(log);

    // Garbage after the last record.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = EmbeddedLog::open(dir.path(), opts()).await.unwrap();
    let all = read_all(&log, "t", 0).await;
    assert_eq!(all.len(), 10);
    assert_eq!(all[9].value, "again");
    drop(log);

    // A flipped bit in a middle record: everything from there on is cut.
    let mut bytes = std::fs::read(&seg).unwrap();
    let one = bytes.len() / 10;
    bytes[one * 5 + 30] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let log = EmbeddedLog::open(dir.path(), opts()).await.unwrap();
    let all = read_all(&log, "t", 0).await;
    assert!(all.len() < 10 && all.len() >= 4, "kept {}", all.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
    }
    let pos = log.append("t", vec![rec("", "next", 0)]).await.unwrap();
    assert_eq!(pos[0].offset, all.len() as u64);
}

#[tokio::test]
async fn consumer_group_commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    log.ensure_topic("t", 3).await.unwrap();
    assert!(log.committed("lake", "t").await.unwrap().is_empty());
    let offsets: Offsets = [(0, 5), (2, 7)].into_iter().collect();
    log.commit("lake", "t", &offsets).await.unwrap();
    log.commit("lake", "t", &[(0, 6)].into_iter().collect())
        .await
        .unwrap();
    log.commit("ods", "t", &[(1, 1)].into_iter().collect())
        .await
        .unwrap();
    assert!(matches!(
        log.commit("lake", "t", &[(3, 1)].into_iter().collect())
            .await,
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.commit("../evil", "t", &offsets).await,
        Err(Error::Invalid(_))
    ));
    drop(log);
    let log = EmbeddedLog::open(dir.path(), small()).await.unwrap();
    let want: Offsets = [(0, 6), (2, 7)].into_iter().collect();
    assert_eq!(log.committed("lake", "t").await.unwrap(), want);
    assert_eq!(
        log.committed("ods", "t").await.unwrap(),
        [(1, 1)].into_iter().collect::<Offsets>()
    );
    assert!(dir.path().join("groups").join("lake.json").exists());
}

#[tokio::test]
async fn retention_deletes_old_segments_but_respects_a_lagging_group() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 200,
        retention: Duration::from_secs(3600),
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), opts.clone()).await.unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    let old = now_ms() - 2 * 3600 * 1000;
    // ~100-byte frames: about two per segment.
    let value = "o".repeat(70);
    for _ in 0..10 {
        log.append("t", vec![rec("", &value, old)]).await.unwrap();
    }
    let recent = now_ms();
    for _ in 0..4 {
        log.append("t", vec![rec("", &value, recent)])
            .await
            .unwrap();
    }
    let pdir = partition_dir(dir.path(), "t", 0);
    let before = segment_files(&pdir).len();
    // A group that has committed nothing on the topic does not hold retention back; a group
    // at offset 3 does.
    log.ensure_topic("other", 1).await.unwrap();
    log.commit("idle", "other", &[(0, 0)].into_iter().collect())
        .await
        .unwrap();
    log.commit("slow", "t", &[(0, 3)].into_iter().collect())
        .await
        .unwrap();
    let deleted = log.enforce_retention().await.unwrap();
    let start = log.start_offsets("t").await.unwrap()[&0];
    assert!(deleted >= 1, "deleted {deleted}");
    assert!(start <= 3, "start {start} passed the slow group");
    assert_eq!(segment_files(&pdir).len(), before - deleted);
    // Once the group catches up, every expired closed segment goes; recent ones stay.
    log.commit("slow", "t", &[(0, 14)].into_iter().collect())
        .await
        .unwrap();
    log.enforce_retention().await.unwrap();
    let start = log.start_offsets("t").await.unwrap()[&0];
    assert!(start >= 9, "old records still retained from {start}");
    let kept = read_all(&log, "t", 0).await;
    assert!(kept.iter().all(|r| r.offset >= start));
    assert!(kept.iter().filter(|r| r.timestamp_ms == recent).count() == 4);
    assert!(matches!(
        log.read("t", 0, 0, 10, 1000).await,
        Err(Error::OffsetOutOfRange { offset: 0, .. })
    ));
    // Deletion survives reopen.
    drop(log);
    let log = EmbeddedLog::open(dir.path(), opts).await.unwrap();
    assert_eq!(log.start_offsets("t").await.unwrap()[&0], start);
    assert_eq!(log.end_offsets("t").await.unwrap()[&0], 14);
}

#[tokio::test]
async fn retention_by_bytes_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 200,
        retention_bytes: 600,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), opts).await.unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    let value = "b".repeat(70);
    for _ in 0..20 {
        log.append("t", vec![rec("", &value, now_ms())])
            .await
            .unwrap();
    }
    assert!(log.enforce_retention().await.unwrap() > 0);
    let kept = read_all(&log, "t", 0).await;
    let bytes: usize = kept.iter().map(|r| r.value.len() + 28).sum();
    assert!(bytes <= 600 + 200, "kept {bytes} bytes");
    assert_eq!(kept.last().unwrap().offset, 19);
}

#[tokio::test]
async fn overloaded_when_pending_bytes_exceed_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        max_pending_bytes: 64,
        ..EmbeddedOptions::default()
    };
    let log = EmbeddedLog::open(dir.path(), opts).await.unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    let err = log
        .append("t", vec![rec("", &"x".repeat(100), 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Overloaded(_)));
    assert!(err.retryable());
    // Small appends still go through, and nothing was written for the rejected one.
    let pos = log.append("t", vec![rec("", "ok", 0)]).await.unwrap();
    assert_eq!(pos[0].offset, 0);
}

#[tokio::test]
async fn wait_for_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            log.wait_for("t", 0, 0, Duration::from_secs(3600))
                .await
                .unwrap();
            log.read("t", 0, 0, 10, 1 << 20).await.unwrap()
        })
    };
    tokio::task::yield_now().await;
    log.append("t", vec![rec("", "wake", 0)]).await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got[0].value, "wake");
    // Already available: returns at once.
    log.wait_for("t", 0, 0, Duration::from_secs(3600))
        .await
        .unwrap();
}

#[tokio::test]
async fn close_drains_and_rejects_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    log.ensure_topic("t", 2).await.unwrap();
    let pending: Vec<_> = (0..20)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append("t", vec![rec(&format!("{i}"), "v", 0)]).await })
        })
        .collect();
    tokio::task::yield_now().await;
    log.close().await.unwrap();
    let mut ok = 0;
    for p in pending {
        match p.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Closed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(matches!(
        log.append("t", vec![rec("", "late", 0)]).await,
        Err(Error::Closed)
    ));
    let ends = log.end_offsets("t").await.unwrap();
    assert_eq!(ends.values().sum::<u64>(), ok);
    drop(log);
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    assert_eq!(log.end_offsets("t").await.unwrap(), ends);
}

#[tokio::test]
async fn invalid_names_and_arguments_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    for bad in ["", "..", "a/b", "a b"] {
        assert!(matches!(
            log.ensure_topic(bad, 1).await,
            Err(Error::Invalid(_))
        ));
    }
    assert!(matches!(
        log.ensure_topic("t", 0).await,
        Err(Error::Invalid(_))
    ));
    log.ensure_topic("t", 1).await.unwrap();
    assert!(log.append("t", Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    let lock = std::fs::File::open(dir.path().join(".lock")).unwrap();
    assert!(lock.try_lock().is_err());
}
