//! Writes a small lake for other engines to read (`tests/interop/pyiceberg_read.py`).
//! Run with `STRATA_INTEROP_DIR=/some/dir cargo nextest run -p strata-lake --run-ignored only interop`.

use std::sync::Arc;
use std::time::Duration;

use strata_bus::{Log, Record};
use strata_core::event::EVENTS_TOPIC;
use tokio::sync::watch;

use super::memlog::MemLog;
use super::*;
use crate::LakeSink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes to STRATA_INTEROP_DIR for the pyiceberg check"]
async fn interop_write_sample_lake() {
    let Ok(dir) = std::env::var("STRATA_INTEROP_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut c = config(&dir);
    c.lake.flush_max_rows = 40;
    let lake = Lake::open(&c).await.unwrap();
    let log: Arc<dyn Log> = Arc::new(MemLog::default());
    log.ensure_topic(EVENTS_TOPIC, 2).await.unwrap();
    let records = (0..100)
        .map(|i| {
            let r = if i % 10 == 9 {
                rejected_record(i)
            } else {
                event_record(i, ["Signed Up", "Followed"][i % 2], (i % 2) as i64)
            };
            Record {
                key: r.key().as_bytes().to_vec().into(),
                value: r.to_json().into(),
                timestamp_ms: T0 / 1000,
            }
        })
        .collect();
    log.append(EVENTS_TOPIC, records).await.unwrap();
    let (tx, rx) = watch::channel(false);
    let sink = LakeSink::new(&lake, log.clone(), &c.lake).await.unwrap();
    let handle = tokio::spawn(sink.run(rx));
    for _ in 0..500 {
        if count(&lake, "SELECT count(*) FROM ods.ods_event").await == 90 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(count(&lake, "SELECT count(*) FROM ods.ods_event").await, 90);
}

/// Rough cost split of the sink's hot path (decode + build vs. Parquet + commit). Not an
/// assertion: prints numbers. `cargo nextest run -p strata-lake --run-ignored only hot_path --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints timings"]
async fn hot_path_cost_split() {
    use crate::batch::{BusPosition, EventBuffer};
    use crate::schema::OdsTable;
    use crate::write::{commit_with_position, write_data_files};
    use iceberg::arrow::schema_to_arrow_schema;

    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let n = 100_000;
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            event_record(
                i,
                ["Signed Up", "Followed", "Liked", "Posted"][i % 4],
                (i % 3) as i64,
            )
            .to_json()
        })
        .collect();
    let t = std::time::Instant::now();
    let mut buf = EventBuffer::default();
    for (i, v) in values.iter().enumerate() {
        if let Ok(strata_core::BusRecord::Event(e)) = strata_core::BusRecord::from_json(v) {
            buf.push(
                &e,
                BusPosition {
                    partition: 0,
                    offset: i as u64,
                    ingested_at: T0,
                },
            );
        }
    }
    let decode = t.elapsed();
    let table = lake
        .catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap();
    let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
    let t = std::time::Instant::now();
    let groups: Vec<_> = buf
        .take_groups()
        .into_iter()
        .map(|(k, c)| (k, c.finish(schema.clone()).unwrap()))
        .collect();
    let finish = t.elapsed();
    let t = std::time::Instant::now();
    let files = write_data_files(&table, groups).await.unwrap();
    let parquet = t.elapsed();
    let t = std::time::Instant::now();
    let position = [(0, n as u64)].into_iter().collect();
    commit_with_position(
        lake.catalog().as_ref(),
        &table.identifier().clone(),
        files,
        "events",
        None,
        &position,
        &[],
    )
    .await
    .unwrap();
    let commit = t.elapsed();
    eprintln!(
        "{n} events: decode+build {decode:?}, finish {finish:?}, parquet {parquet:?}, commit {commit:?}"
    );
}
