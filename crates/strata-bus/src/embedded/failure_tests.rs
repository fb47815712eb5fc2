//! Failed fsyncs and writer panics (injected through `partition::faults`, compiled only for
//! these tests): the batch is not acknowledged, its bytes are cut from the segment, and the
//! partition goes on at the same offsets. The full-disk case runs on a real small file system
//! in `tests/disk_full.rs`.

use bytes::Bytes;

use super::partition::faults::{inject, Fault};
use super::{EmbeddedLog, EmbeddedOptions};
use crate::error::Error;
use crate::log::{Health, Log, Record};

fn rec(key: &str, value: &str) -> Record {
    Record {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        timestamp_ms: 1,
    }
}

async fn values(log: &EmbeddedLog, partition: u32) -> Vec<(u64, String)> {
    log.read("t", partition, 0, 10_000, 1 << 20)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned()))
        .collect()
}

fn segment_len(dir: &std::path::Path, partition: u32) -> u64 {
    let pdir = dir.join("topics/t").join(partition.to_string());
    std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

async fn fault_is_survived(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    for i in 0..5 {
        log.append("t", vec![rec("", &format!("v{i}"))])
            .await
            .unwrap();
    }
    let durable = segment_len(dir.path(), 0);
    inject(&dir.path().join("topics/t/0"), fault);
    let err = log
        .append("t", vec![rec("", "lost-1"), rec("", "lost-2")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.retryable());
    // The written but unacknowledged bytes are gone from the file, not just hidden.
    assert_eq!(segment_len(dir.path(), 0), durable);
    assert_eq!(log.health(), Health::Ready);
    assert_eq!(log.end_offsets("t").await.unwrap()[&0], 5);

    let pos = log.append("t", vec![rec("", "next")]).await.unwrap();
    assert_eq!(pos[0].offset, 5, "the failed batch's offsets are reused");
    let want: Vec<(u64, String)> = (0..5)
        .map(|i| (i, format!("v{i}")))
        .chain([(5, "next".to_string())])
        .collect();
    assert_eq!(values(&log, 0).await, want);
    log.close().await.unwrap();
    drop(log);

    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    assert_eq!(values(&log, 0).await, want, "after reopening");
}

#[tokio::test]
async fn a_failed_fsync_is_not_acknowledged_and_its_bytes_are_cut() {
    fault_is_survived(Fault::Fsync).await;
}

#[tokio::test]
async fn a_writer_panic_fails_the_batch_and_the_partition_goes_on() {
    fault_is_survived(Fault::Panic).await;
}

#[tokio::test]
async fn a_partial_append_names_the_records_that_landed() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), EmbeddedOptions::default())
        .await
        .unwrap();
    log.ensure_topic("t", 2).await.unwrap();
    let keys: Vec<String> = (0..8).map(|i| format!("key-{i}")).collect();
    let parts: Vec<u32> = keys
        .iter()
        .map(|k| crate::partition_for(k.as_bytes(), 2))
        .collect();
    assert!(parts.contains(&0) && parts.contains(&1), "{parts:?}");
    inject(&dir.path().join("topics/t/1"), Fault::Fsync);
    let records: Vec<Record> = keys.iter().map(|k| rec(k, k)).collect();
    let err = log.append("t", records).await.unwrap_err();
    let Error::Partial {
        appended, total, ..
    } = &err
    else {
        panic!("expected a partial append, got {err:?}");
    };
    assert_eq!(*total, 8);
    let want: Vec<usize> = (0..8).filter(|&i| parts[i] == 0).collect();
    assert_eq!(appended, &want);
    assert!(err.retryable());
    let landed: Vec<String> = values(&log, 0).await.into_iter().map(|(_, v)| v).collect();
    let want_values: Vec<String> = want.iter().map(|&i| keys[i].clone()).collect();
    assert_eq!(landed, want_values);
    assert!(values(&log, 1).await.is_empty());
}
