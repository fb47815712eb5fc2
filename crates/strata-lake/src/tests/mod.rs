//! Tests against real files in temp dirs: catalog and tables, Arrow building, commits with bus
//! offsets, SQL and time travel, and the sink end to end.

mod compact;
mod dml;
mod erase;
mod expire;
mod memlog;
mod rest_props;
mod sink;
mod sql;
mod tables;
mod tables_helpers;

use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use strata_core::{BusRecord, Config, Event, Rejected};

use crate::{Lake, SqlSession};

/// 2026-11-22T10:30:00Z in epoch microseconds.
pub const T0: i64 = 1_795_343_400_000_000;

pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.data.dir = dir.to_path_buf();
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
