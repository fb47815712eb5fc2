//! Message ids across collectors (ADR 0048): copies of an event that two collectors appended to
//! the bus land once, also when the copy arrives after a restart or a crash of the sink; a copy
//! older than the window is written again.

use std::sync::Arc;
use std::time::Duration;

use strata_bus::{Log, Record};
use strata_core::event::{RecordFormat, EVENTS_TOPIC};

use crate::sink::{counts, embedded_log, mem_log, sink_config, start, wait_caught_up};
use crate::*;
use strata_table::schema::OdsTable;

const MINUTE_MS: i64 = 60_000;

/// How a collector put events on the bus: its record format and the record key.
#[derive(Clone, Copy)]
enum Sent {
    /// Keyed by user, as the collector does: a copy lands in the original's partition.
    ByUser(RecordFormat),
    /// Keyed by something else: the copy lands in another partition than the original.
    Elsewhere(RecordFormat),
}

/// Appends events `ids` (message ids `m-<i>`, app `web`) as one collector took them at
/// `at_ms` after `T0`.
async fn append(log: &dyn Log, ids: std::ops::Range<usize>, at_ms: i64, sent: Sent) {
    let records: Vec<Record> = ids
        .map(|i| {
            let r = event_record(i, "Liked", 0);
            let (key, format) = match sent {
                Sent::ByUser(f) => (r.key().to_string(), f),
                Sent::Elsewhere(f) => (format!("elsewhere-{i}"), f),
            };
            Record {
                key: key.into_bytes().into(),
                value: r.encode(format).into(),
                timestamp_ms: T0 / 1000 + at_ms,
            }
        })
        .collect();
    for chunk in records.chunks(100) {
        log.append(EVENTS_TOPIC, chunk.to_vec()).await.unwrap();
    }
}

/// Runs a sink until it has committed everything on the bus, then stops it gracefully.
async fn run_to_end(lake: &Lake, log: &Arc<dyn Log>, c: &LakeOptions) {
    let (stop, handle) = start(lake, log.clone(), c);
    wait_caught_up(lake, log.as_ref()).await;
    stop.send(true).unwrap();
    handle.await.unwrap().unwrap();
}

async fn snapshots(lake: &Lake) -> usize {
    lake.catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap()
        .metadata()
        .snapshots()
        .len()
}

async fn copies_land_once(log: Arc<dyn Log>, dir: &std::path::Path) {
    let mut c = sink_config(dir, 37);
    c.lake.dedup_window = Duration::from_secs(3600);
    let lake = Lake::open(&c).await.unwrap();
    let binary = RecordFormat::Binary;
    let json = RecordFormat::Json;

    // Collector A takes 300 events; the SDK retries them through collector B a minute later,
    // which appends them again (in the other record format, partly in other partitions); then
    // 100 new ones.
    append(log.as_ref(), 0..300, 0, Sent::ByUser(binary)).await;
    append(log.as_ref(), 0..150, MINUTE_MS, Sent::ByUser(json)).await;
    append(log.as_ref(), 150..300, MINUTE_MS, Sent::Elsewhere(json)).await;
    append(log.as_ref(), 300..400, MINUTE_MS, Sent::ByUser(binary)).await;
    run_to_end(&lake, &log, &c).await;
    assert_eq!(counts(&lake).await, (400, 400, 0));

    // After a restart, a third copy is still dropped; new events still land.
    append(log.as_ref(), 0..300, 2 * MINUTE_MS, Sent::Elsewhere(binary)).await;
    append(log.as_ref(), 400..450, 2 * MINUTE_MS, Sent::ByUser(binary)).await;
    run_to_end(&lake, &log, &c).await;
    assert_eq!(counts(&lake).await, (450, 450, 0));

    // Crashes mid-stream: originals and their copies (in other partitions) on the bus, the
    // sink killed after each new commit, wherever it is. A copy read after the restart whose
    // original was committed before the crash is dropped; nothing is lost.
    append(log.as_ref(), 450..850, 3 * MINUTE_MS, Sent::ByUser(binary)).await;
    append(log.as_ref(), 450..850, 4 * MINUTE_MS, Sent::Elsewhere(json)).await;
    for _ in 0..4 {
        let before = snapshots(&lake).await;
        let (_stop, handle) = start(&lake, log.clone(), &c);
        for _ in 0..2000 {
            if snapshots(&lake).await > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        handle.abort();
        let _ = handle.await;
    }
    append(log.as_ref(), 0..850, 5 * MINUTE_MS, Sent::ByUser(binary)).await;
    run_to_end(&lake, &log, &c).await;
    assert_eq!(counts(&lake).await, (850, 850, 0));

    // The window is one hour: a copy two hours after the original is written again.
    append(log.as_ref(), 0..50, 120 * MINUTE_MS, Sent::ByUser(binary)).await;
    run_to_end(&lake, &log, &c).await;
    assert_eq!(counts(&lake).await, (900, 850, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_from_two_collectors_land_once_mem_log() {
    let dir = tempfile::tempdir().unwrap();
    copies_land_once(mem_log().await, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_from_two_collectors_land_once_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = embedded_log(dir.path()).await;
    copies_land_once(log.clone(), dir.path()).await;
    log.close().await.unwrap();
}

/// `lake.dedup_window = "0s"` turns the sink's de-duplication off: every copy lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_off_writes_every_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = mem_log().await;
    let mut c = sink_config(dir.path(), 100);
    c.lake.dedup_window = Duration::ZERO;
    let lake = Lake::open(&c).await.unwrap();
    append(log.as_ref(), 0..100, 0, Sent::ByUser(RecordFormat::Binary)).await;
    append(log.as_ref(), 0..100, 1, Sent::ByUser(RecordFormat::Binary)).await;
    run_to_end(&lake, &log, &c).await;
    assert_eq!(counts(&lake).await, (200, 100, 0));
}
