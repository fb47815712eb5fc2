//! The lake sink's throughput with and without its message-id window (ADR 0048), one against
//! the other in the same run: EVENTS events (~400 bytes, binary records, unique message ids
//! plus COPY_PERCENT copies of earlier ones) on an embedded bus, drained into a fresh lake by a
//! `LakeSink` at the default `[lake]` settings; timed from the sink's start until it has
//! committed the whole bus (a graceful stop requested at once: it drains to the end offsets). Rounds alternate `lake.dedup_window = "0s"` and
//! the default (24 h, 2 M ids). Then the window's rebuild (what every start does) is timed
//! over the same bus.
//!
//! ```sh
//! cargo run --release -p strata-sink --example sink_throughput -- [EVENTS] [ROUNDS] [COPY_PERCENT]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a measurement: a failed step stops it"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::{Log, Record};
use strata_core::event::{RecordFormat, EVENTS_TOPIC};
use strata_core::{BusRecord, Event};
use strata_sink::dedup::Written;
use strata_sink::LakeSink;
use strata_table::config::LakeOptions;
use strata_table::position::{covers, table_position};
use strata_table::schema::OdsTable;
use strata_table::Lake;

const PARTITIONS: u32 = 4;

fn event(i: usize, now_us: i64) -> Event {
    Event {
        message_id: format!("{i:08x}-6d0c-4f7e-9a55-3b1c2e5d7f90"),
        app: "web".into(),
        kind: "track".into(),
        event: Some("Post Viewed".into()),
        user_id: Some(format!("user-{}", i % 10_000)),
        anonymous_id: Some(format!("anon-{}", i % 10_000)),
        server_ts: now_us,
        event_ts: now_us,
        client_ts: Some(now_us - 5),
        properties: Some(format!(
            "{{\"post_id\":{i},\"feed\":\"home\",\"position\":{},\"author_id\":{}}}",
            i % 50,
            i % 977
        )),
        ip: Some("203.0.113.7".into()),
        country: Some("DE".into()),
        user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".into()),
        os: Some("iOS".into()),
        ..Default::default()
    }
}

async fn fill(log: &dyn Log, events: usize, copy_percent: usize) -> usize {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let copies = events * copy_percent / 100;
    // Copies of every (events / copies)-th event, appended after the originals.
    let ids = (0..events).chain((0..copies).map(|c| c * events / copies.max(1)));
    let mut chunk = Vec::with_capacity(1000);
    let mut total = 0;
    for i in ids {
        let e = event(i, now_us);
        let key = e.user_id.clone().unwrap_or_default();
        chunk.push(Record {
            key: key.into_bytes().into(),
            value: BusRecord::Event(Box::new(e))
                .encode(RecordFormat::Binary)
                .into(),
            timestamp_ms: now_us / 1000,
        });
        if chunk.len() == 1000 {
            total += chunk.len();
            log.append(EVENTS_TOPIC, std::mem::take(&mut chunk))
                .await
                .unwrap();
        }
    }
    total += chunk.len();
    if !chunk.is_empty() {
        log.append(EVENTS_TOPIC, chunk).await.unwrap();
    }
    total
}

/// Seconds from the sink's start until it stopped: told to stop at once, it reads the bus to
/// the end offsets it finds, flushes (by `flush_max_bytes` on the way) and commits.
async fn drain(log: Arc<dyn Log>, dir: &Path, dedup: bool) -> f64 {
    let mut options = LakeOptions::new(dir);
    if !dedup {
        options.lake.dedup_window = Duration::ZERO;
    }
    let lake = Lake::open(&options).await.unwrap();
    let started = Instant::now();
    let sink = LakeSink::new(&lake, log.clone(), &options.lake)
        .await
        .unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(true);
    sink.run(rx).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let table = lake
        .catalog()
        .load_table(&OdsTable::Event.ident())
        .await
        .unwrap();
    let end = log.end_offsets(EVENTS_TOPIC).await.unwrap();
    let position = table_position(&table, EVENTS_TOPIC).unwrap().unwrap();
    assert!(covers(&position, &end), "the sink stopped short");
    secs
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let events = args.first().copied().unwrap_or(1_000_000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let copy_percent = args.get(2).copied().unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn Log> =
            EmbeddedLog::open(&dir.path().join("bus"), EmbeddedOptions::default())
                .await
                .unwrap();
        log.ensure_topic(EVENTS_TOPIC, PARTITIONS).await.unwrap();
        let records = fill(log.as_ref(), events, copy_percent).await;
        let end = log.end_offsets(EVENTS_TOPIC).await.unwrap();
        println!("{records} records on the bus ({events} distinct events, {copy_percent}% copies)");
        let mut figures: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for dedup in [false, true] {
                let run_dir = dir.path().join(format!("lake-{round}-{dedup}"));
                let secs = drain(log.clone(), &run_dir, dedup).await;
                let rate = records as f64 / secs;
                println!(
                    "round {round} dedup {}: {secs:.2} s, {rate:.0} records/s",
                    if dedup { "on " } else { "off" }
                );
                figures[usize::from(dedup)].push(rate);
                std::fs::remove_dir_all(&run_dir).unwrap();
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (off, on) = (median(&mut figures[0]), median(&mut figures[1]));
        println!(
            "median: off {off:.0} records/s, on {on:.0} records/s, on/off {:.3}",
            on / off
        );

        let started = Instant::now();
        let written = Written::rebuild(
            &log,
            EVENTS_TOPIC,
            &end,
            Duration::from_secs(24 * 3600),
            2_000_000,
        )
        .await
        .unwrap();
        println!(
            "rebuild: {} ids from {records} records in {:.2} s",
            written.len(),
            started.elapsed().as_secs_f64()
        );
        log.close().await.unwrap();
    });
}
