//! Helpers of the lake tests (real files in temp dirs): a config, an open lake, events and bus
//! records, an in-memory bus, event data files, and reading a count back with SQL.

// Shared by the test binaries of strata-table, strata-sql and strata-sink (included with
// `#[path]`), each of which uses only part of it.
#![allow(dead_code)]

pub mod memlog;
pub mod tables_helpers;

use std::path::Path;
use std::time::Duration;

pub use arrow::array::{Array, Int64Array};
pub use arrow::record_batch::RecordBatch;
pub use strata_core::{BusRecord, Event, Rejected};
pub use strata_table::config::LakeOptions;

pub use strata_sql::SqlSession;
pub use strata_table::Lake;

/// 2026-11-22T10:30:00Z in epoch microseconds.
pub const T0: i64 = 1_795_343_400_000_000;

pub fn config(dir: &Path) -> LakeOptions {
    let mut c = LakeOptions::new(dir);
    c.lake.flush_interval = Duration::from_millis(50);
    c
}

pub async fn open_lake(dir: &Path) -> Lake {
    Lake::open(&config(dir)).await.unwrap()
}

/// Event number `i`: a track `name`, `hours` hours after `T0`.
pub fn event(i: usize, name: &str, hours: i64) -> Event {
    let ts = T0 + hours * 3_600_000_000 + i as i64;
    Event {
        message_id: format!("m-{i}"),
        app: "web".into(),
        kind: "track".into(),
        event: Some(name.into()),
        user_id: Some(format!("u{}", i % 7)),
        anonymous_id: Some(format!("a{i}")),
        server_ts: ts,
        event_ts: ts,
        client_ts: Some(ts - 5),
        properties: Some(format!("{{\"i\":{i}}}")),
        country: Some("DE".into()),
        ..Default::default()
    }
}

pub fn event_record(i: usize, name: &str, hours: i64) -> BusRecord {
    BusRecord::Event(Box::new(event(i, name, hours)))
}

pub fn rejected_record(i: usize) -> BusRecord {
    BusRecord::Rejected(Box::new(Rejected {
        message_id: Some(format!("r-{i}")),
        app: "web".into(),
        server_ts: T0,
        reason: "missing field: userId or anonymousId".into(),
        raw: "{\"type\":\"track\"}".into(),
    }))
}

/// The single i64 of a one-row, one-column result.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let col = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an i64 column");
    assert!(!col.is_null(0));
    col.value(0)
}

pub async fn count(lake: &Lake, sql: &str) -> i64 {
    let session = SqlSession::new(lake).await.unwrap();
    scalar_i64(&session.run(sql).await.unwrap())
}
